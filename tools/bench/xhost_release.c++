// xhost_release_ms: how soon the owner frees a value after its last reference anywhere goes,
// when that reference is on another host. Host 0 makes a 1 MiB value, shares a single-use token
// and drops its own Ref; host 1 restores it and views it (its copy is pulled), drops the View,
// and then, on the clock, drops its Ref: host 1's daemon frees its copy and releases its
// capability to host 0 (Cap'n Proto Release over the peer connection), and host 0 frees the
// value. Measured to host 0's stats().lastReclaimMonoUs (CLOCK_MONOTONIC, comparable with
// refbench's clock on this machine), polled with stats() round trips (each one RTT: the
// resolution). Baseline: the same drop by a local client of host 0 (local_release_ms).
#include <optional>
#include <stdexcept>

#include "tools/bench/bytes.h"
#include "tools/bench/timing.h"
#include "tools/bench/xhost.h"

namespace refbench {
namespace {

// Seconds from `droppedAt` until host `host` reports a reclaim later than `previousUs`.
double untilReclaimed(Xhost& x, size_t host, uint64_t previousUs, double droppedAt) {
  for (int i = 0;; i++) {
    refstore::Stats stats = x.on(host).stats();
    if (stats.lastReclaimMonoUs > previousUs) return stats.lastReclaimMonoUs * 1e-6 - droppedAt;
    if (i > 200000) throw std::runtime_error("xhost release: the owner never freed the value");
  }
}

}  // namespace

void xhostRelease(Xhost& x) {
  const uint64_t size = MiB;
  auto remote = [&]() {
    std::optional<refstore::Ref> ref;
    {
      refstore::Ref owned = x.makeValue(0, size, 71);
      ref = x.on(1).restore(owned.share(60, 1));
    }
    {
      refstore::View view = ref->view();
      checkValue(view.data(), size, 71, "xhost release");
    }
    uint64_t previous = x.on(0).stats().lastReclaimMonoUs;
    double droppedAt = now();
    ref.reset();
    double seconds = untilReclaimed(x, 0, previous, droppedAt);
    x.waitNoProxies(1);
    return seconds;
  };
  auto local = [&]() {
    std::optional<refstore::Ref> ref = x.makeValue(0, size, 71);
    uint64_t previous = x.on(0).stats().lastReclaimMonoUs;
    double droppedAt = now();
    ref.reset();
    return untilReclaimed(x, 0, previous, droppedAt);
  };
  int reps = x.ctx.quick() ? 10 : 30;
  auto samples = interleave(x.ctx.warmup, reps, {remote, local});
  Summary r = summarize(samples[0]), l = summarize(samples[1]);
  std::vector<std::string> columns = {"size_bytes"};
  for (auto& c: Table::summaryColumns("xhost_release_ms")) columns.push_back(c);
  for (auto& c: Table::summaryColumns("local_release_ms")) columns.push_back(c);
  Table& table = x.ctx.report.table("xhost_release", columns);
  std::vector<Value> row = {size};
  Table::appendSummary(row, r, 1e3);
  Table::appendSummary(row, l, 1e3);
  table.add(row);
  x.ctx.report.set("xhost_release_ms", r.median * 1e3);
  x.ctx.report.set("xhost_release_local_ms", l.median * 1e3);
  x.ctx.progress("xhost release: %.3f ms (p25 %.3f, p75 %.3f), local %.3f ms", r.median * 1e3,
                 r.p25 * 1e3, r.p75 * 1e3, l.median * 1e3);
}

}  // namespace refbench
