// What every workload gets: the options, the report it adds to, the run's temporary directory
// and the daemons under test (started once per run by main.c++).
#pragma once

#include <cstdarg>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tools/bench/bench_link.h"
#include "tools/bench/report.h"
#include "tools/bench/services.h"

namespace refbench {

struct Options {
  bool quick = false;           // --quick: smaller sizes and counts, fewer repetitions (< 1 min)
  bool json = false;            // --json: print the report as one JSON object on stdout
  std::string csvDir;           // --csv DIR: one CSV per table, for tools/bench/plot.sh
  std::string refstored;        // --refstored PATH (default: found in runfiles)
  std::string redisServer = "/usr/bin/redis-server";
  std::string memory = "6G";    // --memory for refstored: the 1 GiB cases need room
  std::vector<std::string> refstoredArgs;  // --refstored-arg X (repeatable), e.g. --segment-size=2G
  std::vector<std::string> only;           // --only a,b: run just these workloads
  int reps = 0, warmup = 0;                // 0 = the mode's default
  // For profiling one small-ops configuration: --small-sizes 64,4096 and --small-modes 1x1,8x16
  // (clients x pipeline depth; depth is 1 or 16). Empty = all.
  std::vector<uint64_t> smallSizes;
  std::vector<std::string> smallModes;
  // --xhost-parts pull,tls: run just these parts of the xhost workload (for profiling one).
  std::vector<std::string> xhostParts;
  // --xhost-link loopback|netns|shaped: the link between the xhost workload's hosts
  // (bench_link.h; netns and shaped need root).
  LinkMode xhostLink = LinkMode::LOOPBACK;
  // --xhost-gbit G: the shaped link's rate (Gbit/s each way per host; default 10).
  uint64_t xhostBitsPerSecond = BenchLink::kDefaultShapedBitsPerSecond;
  // --xhost-refs N: cross-host references proxy_bytes holds (0 = its default, see
  // xhost_proxy_bytes.c++).
  uint64_t xhostRefs = 0;
};

struct Context {
  Options options;
  Report report;
  TempDir tmp;
  std::string refstoredBinary;
  std::unique_ptr<Refstored> daemon;  // shared by the workloads (scale starts its own)
  std::unique_ptr<Redis> redis;
  int warmup = 2, reps = 7;
  // Parts of workloads that failed (the xhost parts go on after one fails, so that one daemon's
  // trouble does not lose the others' numbers); refbench then exits with status 1.
  int failures = 0;

  bool quick() const { return options.quick; }
  // A fresh refstored with the run's settings (for workloads that need a clean baseline).
  std::unique_ptr<Refstored> startDaemon(const std::string& name) const {
    std::vector<std::string> args = options.refstoredArgs;
    return std::make_unique<Refstored>(refstoredBinary, tmp, name, options.memory, args);
  }
  // Progress line on stderr (stdout carries the JSON).
  void progress(const char* format, ...) const __attribute__((format(printf, 2, 3))) {
    va_list args;
    va_start(args, format);
    fprintf(stderr, "refbench: ");
    vfprintf(stderr, format, args);
    fprintf(stderr, "\n");
    va_end(args);
  }
};

}  // namespace refbench
