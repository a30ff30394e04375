// Workload 6b: reclaim latency. How long after the last reference goes away the daemon has
// freed the value, seen from another client polling stats() (each poll is one round trip, so
// that is the resolution):
//
//   drop:    refbench's own client drops its only Ref (the Release message is flushed at once).
//   SIGKILL: a `holder` helper process holding the value is killed; the kernel closes its
//            socket, the daemon sees the disconnect and releases everything it held.
//
// Sizes 1 KiB and 1 MiB (inside shared segments) and 64 MiB (a dedicated segment, unmapped and
// closed on free). Memory freed = Stats.reclaimedTotal has advanced and bytesUsed has dropped.
#include <signal.h>

#include "client/cpp/refstore_client.h"
#include "tools/bench/bytes.h"
#include "tools/bench/timing.h"
#include "tools/bench/workloads.h"

namespace refbench {
namespace {

// Polls until the daemon has reclaimed `count` more objects than `before`; returns the time.
double waitReclaimed(refstore::Client& monitor, uint64_t before, uint64_t count) {
  for (;;) {
    refstore::Stats stats = monitor.stats();
    if (stats.reclaimedTotal >= before + count) return now();
  }
}

}  // namespace

void runReclaim(Context& ctx) {
  refstore::Client owner = refstore::Client::connect(ctx.daemon->socket());
  refstore::Client monitor = refstore::Client::connect(ctx.daemon->socket());
  int reps = ctx.quick() ? 5 : 9;

  std::vector<std::string> columns = {"size_bytes", "size"};
  for (auto prefix: {"drop_ms", "kill_ms"}) {
    for (auto& c: Table::summaryColumns(prefix)) columns.push_back(c);
  }
  Table& table = ctx.report.table("reclaim", columns);

  for (uint64_t size: {KiB, MiB, 64 * MiB}) {
    std::vector<double> drop, kill;
    for (int rep = -1; rep < reps; rep++) {
      refstore::Ref ref = [&]() {
        refstore::WriteBuffer buffer = owner.create(size);
        fillPattern(buffer.data(), size, 5);
        return buffer.seal();
      }();
      uint64_t before = monitor.stats().reclaimedTotal;
      double start = now();
      { refstore::Ref last = std::move(ref); }  // ~Ref flushes the Release
      double freed = waitReclaimed(monitor, before, 1);
      if (rep >= 0) drop.push_back(freed - start);
    }
    for (int rep = -1; rep < reps; rep++) {
      Child holder = Child::role("holder", {ctx.daemon->socket(), std::to_string(size), "1"});
      holder.receive();  // ready: it holds the value
      uint64_t before = monitor.stats().reclaimedTotal;
      double start = now();
      holder.signal(SIGKILL);
      double freed = waitReclaimed(monitor, before, 1);
      if (rep >= 0) kill.push_back(freed - start);
      holder.wait();
    }
    Summary dropS = summarize(drop), killS = summarize(kill);
    std::vector<Value> row = {size, sizeName(size)};
    Table::appendSummary(row, dropS, 1e3);
    Table::appendSummary(row, killS, 1e3);
    table.add(row);
    if (size == MiB) {
      ctx.report.set("reclaim_ms", dropS.median * 1e3);
      ctx.report.set("reclaim_kill_ms", killS.median * 1e3);
    }
    if (size == 64 * MiB) {
      ctx.report.set("reclaim_64MiB_ms", dropS.median * 1e3);
      ctx.report.set("reclaim_64MiB_kill_ms", killS.median * 1e3);
    }
  }
}

}  // namespace refbench
