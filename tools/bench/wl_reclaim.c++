// Workload 6b: reclaim latency. How long after the last reference goes away the daemon has
// freed the value:
//
//   drop:    refbench's own client drops its only Ref (the Release message is flushed at once).
//   SIGKILL: a `holder` helper process holding the value is killed; the kernel closes its
//            socket, the daemon sees the disconnect and releases everything it held.
//
// "Freed" is the daemon's own timestamp of the free (Stats.lastReclaimMonoUs, CLOCK_MONOTONIC,
// which every process on the host shares), read once a second client polling stats() has seen
// reclaimedTotal advance. Polling alone would measure the poller too: on this 2-vCPU machine
// the poll that sees the free came 0.1-0.3 ms after it, depending on how the scheduler placed
// refbench and the daemon it had just woken (the polled figure is reported as well).
// After SIGKILL refbench sleeps on a pidfd until the kernel has torn the holder down (its memory
// unmapped, its files closed), and only then polls: polling during the teardown would put a
// third busy process on two vCPUs and slow the teardown being timed. `kill_exit_ms` is when
// refbench saw the process gone (an upper bound of the kernel's part, which comes first: the
// daemon cannot start before the socket closes).
//
// Sizes 1 KiB and 1 MiB (inside shared segments) and 64 MiB (a dedicated segment, unmapped and
// closed on free). Memory freed = Stats.reclaimedTotal has advanced and bytesUsed has dropped.
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <stdexcept>

#include "client/cpp/refstore_client.h"
#include "tools/bench/bytes.h"
#include "tools/bench/timing.h"
#include "tools/bench/workloads.h"

namespace refbench {
namespace {

struct Reclaimed {
  double seen;   // when a stats() poll first showed it
  double freed;  // when the daemon freed it (its Stats.lastReclaimMonoUs), same clock as now()
};

// Polls until the daemon has reclaimed one more object than `before`.
Reclaimed waitReclaimed(refstore::Client& monitor, uint64_t before) {
  for (;;) {
    refstore::Stats stats = monitor.stats();
    if (stats.reclaimedTotal > before) {
      return {now(), double(stats.lastReclaimMonoUs) * 1e-6};
    }
  }
}

// A pidfd for `pid`, to sleep until the process has exited (after the kernel closed its files).
class ProcessExit {
 public:
  explicit ProcessExit(pid_t pid) : fd(int(syscall(SYS_pidfd_open, pid, 0))) {
    if (fd < 0) throw std::runtime_error("pidfd_open failed");
  }
  ~ProcessExit() { close(fd); }
  void wait() {
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, -1) != 1) throw std::runtime_error("poll on a pidfd failed");
  }

 private:
  int fd;
};

struct KillTimes {
  double exited, freed;  // seconds after the kill
};

// Kills `holder`, sleeps until it has exited, then polls until the daemon has reclaimed one
// more object than `before`.
KillTimes killAndWait(Child& holder, refstore::Client& monitor, uint64_t before) {
  ProcessExit gone(holder.pid());
  double start = now();
  holder.signal(SIGKILL);
  gone.wait();
  double exited = now();
  Reclaimed reclaimed = waitReclaimed(monitor, before);
  return {exited - start, reclaimed.freed - start};
}

}  // namespace

void runReclaim(Context& ctx) {
  refstore::Client owner = refstore::Client::connect(ctx.daemon->socket());
  refstore::Client monitor = refstore::Client::connect(ctx.daemon->socket());
  int reps = ctx.quick() ? 5 : 9;

  std::vector<std::string> columns = {"size_bytes", "size"};
  for (auto prefix: {"drop_ms", "drop_polled_ms", "kill_ms", "kill_exit_ms"}) {
    for (auto& c: Table::summaryColumns(prefix)) columns.push_back(c);
  }
  Table& table = ctx.report.table("reclaim", columns);

  for (uint64_t size: {KiB, MiB, 64 * MiB}) {
    std::vector<double> drop, dropPolled, kill, killExit;
    for (int rep = -1; rep < reps; rep++) {
      refstore::Ref ref = [&]() {
        refstore::WriteBuffer buffer = owner.create(size);
        fillPattern(buffer.data(), size, 5);
        return buffer.seal();
      }();
      uint64_t before = monitor.stats().reclaimedTotal;
      double start = now();
      { refstore::Ref last = std::move(ref); }  // ~Ref flushes the Release
      Reclaimed reclaimed = waitReclaimed(monitor, before);
      if (rep >= 0) {
        drop.push_back(reclaimed.freed - start);
        dropPolled.push_back(reclaimed.seen - start);
      }
    }
    for (int rep = -1; rep < reps; rep++) {
      Child holder = Child::role("holder", {ctx.daemon->socket(), std::to_string(size), "1"});
      holder.receive();  // ready: it holds the value
      uint64_t before = monitor.stats().reclaimedTotal;
      KillTimes times = killAndWait(holder, monitor, before);
      if (rep >= 0) {
        kill.push_back(times.freed);
        killExit.push_back(times.exited);
      }
      holder.wait();
    }
    Summary dropS = summarize(drop), polledS = summarize(dropPolled);
    Summary killS = summarize(kill), exitS = summarize(killExit);
    std::vector<Value> row = {size, sizeName(size)};
    for (auto* summary: {&dropS, &polledS, &killS, &exitS}) {
      Table::appendSummary(row, *summary, 1e3);
    }
    table.add(row);
    if (size == MiB) {
      ctx.report.set("reclaim_ms", dropS.median * 1e3);
      ctx.report.set("reclaim_polled_ms", polledS.median * 1e3);
      ctx.report.set("reclaim_kill_ms", killS.median * 1e3);
      ctx.report.set("reclaim_kill_exit_ms", exitS.median * 1e3);
    }
    if (size == 64 * MiB) {
      ctx.report.set("reclaim_64MiB_ms", dropS.median * 1e3);
      ctx.report.set("reclaim_64MiB_kill_ms", killS.median * 1e3);
    }
  }
}

}  // namespace refbench
