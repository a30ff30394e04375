// refbench: measures refstore against baselines started in the same run and reports ratios.
//
//   bazel build -c opt //tools/bench:refbench
//   bazel-bin/tools/bench/refbench --json --csv /tmp/refbench-csv     # full run, a few minutes
//   bazel-bin/tools/bench/refbench --quick --json                     # under a minute
//
// Method (BENCHMARKS.md has the details): every figure is a median over repetitions after
// warm-up, with its spread; every headline is a ratio against a baseline measured minutes apart
// on the same machine, because this machine (2 cores, shared) is too noisy for absolute numbers
// to mean much from one run to the next.
#include <signal.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iostream>
#include <stdexcept>

#include <kj/exception.h>

#include "tools/bench/context.h"
#include "tools/bench/roles.h"
#include "tools/bench/timing.h"
#include "tools/bench/workloads.h"

namespace refbench {
namespace {

const char* const USAGE =
    "usage: refbench [--quick] [--json] [--csv DIR] [--only w1,w2] [--reps N] [--warmup N]\n"
    "                [--refstored PATH] [--refstored-arg ARG]... [--memory SIZE]\n"
    "                [--redis-server PATH] [--small-sizes N,..] [--small-modes 1x1,8x16,..]\n"
    "                [--xhost-parts pull,first_read,handoff,fanout,release,tls,small_refs,\n"
    "                               broadcast,proxy_bytes]\n"
    "                [--xhost-link loopback|netns|shaped] [--xhost-gbit G] [--xhost-refs N]\n"
    "workloads: transfer put_large view small_ops handoff pipeline scale reclaim pressure xhost\n";

struct Workload {
  const char* name;
  void (*run)(Context&);
};
const Workload kWorkloads[] = {
    {"transfer", runTransfer},   {"put_large", runPutLarge}, {"view", runView},
    {"small_ops", runSmallOps},  {"handoff", runHandoff},    {"pipeline", runPipeline},
    {"scale", runScale},         {"reclaim", runReclaim},     {"pressure", runPressure},
    {"xhost", runXhost},
};

std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(separator, start);
    if (end == std::string::npos) end = text.size();
    if (end > start) out.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

Options parse(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; i++) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error(arg + " needs a value\n" + USAGE);
      return argv[++i];
    };
    if (arg == "--quick") {
      options.quick = true;
    } else if (arg == "--json") {
      options.json = true;
    } else if (arg == "--csv") {
      options.csvDir = value();
    } else if (arg == "--only") {
      options.only = split(value(), ',');
    } else if (arg == "--reps") {
      options.reps = std::stoi(value());
    } else if (arg == "--warmup") {
      options.warmup = std::stoi(value());
    } else if (arg == "--refstored") {
      options.refstored = value();
    } else if (arg == "--refstored-arg") {
      options.refstoredArgs.push_back(value());
    } else if (arg == "--memory") {
      options.memory = value();
    } else if (arg == "--redis-server") {
      options.redisServer = value();
    } else if (arg == "--small-sizes") {
      for (auto& size: split(value(), ',')) options.smallSizes.push_back(std::stoull(size));
    } else if (arg == "--small-modes") {
      options.smallModes = split(value(), ',');
    } else if (arg == "--xhost-parts") {
      options.xhostParts = split(value(), ',');
    } else if (arg == "--xhost-link") {
      options.xhostLink = parseLinkMode(value());
    } else if (arg == "--xhost-gbit") {
      double gbit = std::stod(value());
      if (!(gbit > 0)) throw std::runtime_error("--xhost-gbit: a rate above 0 Gbit/s");
      options.xhostBitsPerSecond = uint64_t(gbit * 1e9);
    } else if (arg == "--xhost-refs") {
      options.xhostRefs = std::stoull(value());
    } else if (arg == "--help" || arg == "-h") {
      std::cout << USAGE;
      exit(0);
    } else {
      throw std::runtime_error("unknown argument " + arg + "\n" + USAGE);
    }
  }
  return options;
}

std::string cpuModel() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown";
}

int runBenchmarks(Options options) {
  Context ctx;
  ctx.options = options;
  ctx.warmup = options.warmup > 0 ? options.warmup : (options.quick ? 1 : 2);
  ctx.reps = options.reps > 0 ? options.reps : (options.quick ? 3 : 7);
  ctx.refstoredBinary = findRefstored(options.refstored);

  struct utsname host;
  uname(&host);
  ctx.report.set("quick", options.quick);
  ctx.report.set("cpus", int(sysconf(_SC_NPROCESSORS_ONLN)));
  ctx.report.set("cpu_model", cpuModel());
  ctx.report.set("kernel", std::string(host.release));
  ctx.report.set("repetitions", ctx.reps);
  ctx.report.set("warmup", ctx.warmup);
  ctx.report.set("refstored_memory", options.memory);
  std::string extra;
  for (auto& arg: options.refstoredArgs) extra += (extra.empty() ? "" : " ") + arg;
  ctx.report.set("refstored_extra_args", extra);
  ctx.report.set("refstored_binary", ctx.refstoredBinary);

  double start = now();
  ctx.progress("starting refstored (%s) and redis-server in %s", ctx.refstoredBinary.c_str(),
               ctx.tmp.path().c_str());
  ctx.daemon = ctx.startDaemon("refstored");
  ctx.redis = std::make_unique<Redis>(options.redisServer, ctx.tmp);

  for (auto& workload: kWorkloads) {
    if (!options.only.empty() &&
        std::find(options.only.begin(), options.only.end(), workload.name) == options.only.end()) {
      continue;
    }
    double began = now();
    ctx.progress("%s ...", workload.name);
    workload.run(ctx);
    ctx.progress("%s done in %.1f s", workload.name, now() - began);
  }
  ctx.report.set("total_seconds", now() - start);

  ctx.redis.reset();
  ctx.daemon.reset();
  if (!options.csvDir.empty()) ctx.report.writeCsv(options.csvDir);
  if (options.json) std::cout << ctx.report.json();
  ctx.progress("finished in %.1f s", now() - start);
  if (ctx.failures > 0) {
    ctx.progress("%d part(s) FAILED (the report has their *_error keys)", ctx.failures);
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace refbench

int main(int argc, char** argv) {
  using namespace refbench;
  signal(SIGPIPE, SIG_IGN);
  killChildrenOnSignals();
  try {
    if (argc >= 3 && strcmp(argv[1], "--role") == 0) {
      std::string role = argv[2];
      std::vector<std::string> args(argv + 3, argv + argc);
      if (role == "consumer") return runConsumer(args);
      if (role == "holder") return runHolder(args);
      if (role == "socket-sink") return runSocketSink(args);
      if (role == "worker") return runWorker(args);
      if (role == "tcp-receiver") return runTcpReceiver(args);
      throw std::runtime_error("unknown role " + role);
    }
    return runBenchmarks(parse(argc, argv));
  } catch (std::exception& e) {
    fprintf(stderr, "refbench: error: %s\n", e.what());
  } catch (kj::Exception& e) {
    fprintf(stderr, "refbench: error: %s\n", e.getDescription().cStr());
  }
  return 1;
}
