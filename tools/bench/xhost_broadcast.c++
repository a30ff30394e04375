// xhost_broadcast_3_hosts_over_single: one large value (1 GiB; 256 MiB with --quick) owned by
// host 0 and read on three other hosts at once, against one host's pull of it. Four hosts of
// their own on the same link (hosts 0-3 of the run's link, other ports than the main pair).
// A sample: fresh token(s), then on the clock the readers' clients restore and view it
// (restoreView, one round trip each, all three sent before waiting for any) until the last
// View is in hand; untimed, spot checks of each copy and every reader freeing its copy.
//
// The owner sends the value once: the first reader copies from it, and each later one from the
// reader before it (schema/peer.capnp, Relay), chunk by chunk as the copies arrive, so every
// link carries the value once. The table also has the owner's bytes served per broadcast, in
// value sizes (1 with relays, 3 without). Where the link is the limit (--xhost-link shaped with
// --xhost-gbit 5 or less here) the ratio is that of a chain; where the CPU is (loopback, 10
// Gbit/s), three receivers and two relays share this machine's two vCPUs.
//
// These four daemons run with --peer-timeout-ms 60000 --peer-grace-ms 120000. With the
// defaults (5 s, 15 s) a loaded 2-vCPU machine made the daemons miss each other's heartbeats
// during the three 1 GiB pulls: peers were dropped as silent, and a reader that reconnected
// after the grace period lost its reference (OWNER_LOST), which ended the run (BENCHMARKS.md).
#include <stdexcept>

#include "client/cpp/refstore_async.h"
#include "tools/bench/bytes.h"
#include "tools/bench/processes.h"
#include "tools/bench/timing.h"
#include "tools/bench/xhost.h"

namespace refbench {

void xhostBroadcast(Xhost& x) {
  const uint64_t size = x.ctx.quick() ? 256 * MiB : GiB;
  const size_t readers = 3;
  // Each daemon holds one copy of the value (the owner the original) and a spare segment.
  BenchHosts hosts(x.ctx, x.link(), 1 + readers, "bc", x.ctx.quick() ? "1G" : "2G",
                   {"--peer-timeout-ms", "60000", "--peer-grace-ms", "120000"});
  Xhost b(x.ctx, hosts);
  refstore::Ref owned = b.makeValue(0, size, 91);
  kj::AsyncIoContext& io = refstore::async::ioContext(b.on(0));  // every client's: one thread

  std::vector<double> servedPerBroadcast, coresPerBroadcast, coresPerSingle;
  auto daemonsCpu = [&]() {
    double seconds = 0;
    for (size_t h = 0; h <= readers; h++) seconds += procCpuSeconds(hosts[h].pid());
    return seconds;
  };
  auto readOn = [&](size_t count) {
    std::string token = owned.share(60, count);
    uint64_t servedBefore = b.on(0).stats().bytesServedTotal;
    double cpuBefore = daemonsCpu();
    double start = now();
    kj::Vector<kj::Promise<refstore::View>> views;
    for (size_t h = 1; h <= count; h++) views.add(refstore::async::restoreView(b.on(h), token));
    kj::Array<refstore::View> inHand = kj::joinPromises(views.releaseAsArray()).wait(io.waitScope);
    double seconds = now() - start;
    // How many of the machine's CPUs the daemons kept busy (their user and system time; the
    // kernel's network work in softirqs is counted only when it ran in their context).
    (count == readers ? coresPerBroadcast : coresPerSingle)
        .push_back((daemonsCpu() - cpuBefore) / seconds);
    for (auto& view: inHand) checkValue(view.data(), view.size(), 91, "xhost broadcast");
    inHand = nullptr;
    for (size_t h = 1; h <= count; h++) b.waitNoProxies(h);
    if (count == readers) {
      servedPerBroadcast.push_back(double(b.on(0).stats().bytesServedTotal - servedBefore) / size);
    }
    return seconds;
  };
  auto samples = interleave(warmupFor(x.ctx, size), repsFor(x.ctx, size),
                            {[&]() { return readOn(readers); }, [&]() { return readOn(1); }});
  Summary three = summarize(samples[0]), one = summarize(samples[1]);
  servedPerBroadcast.erase(servedPerBroadcast.begin(),
                           servedPerBroadcast.end() - samples[0].size());  // drop the warm-ups
  Summary served = summarize(servedPerBroadcast);
  for (auto* cores: {&coresPerBroadcast, &coresPerSingle}) {
    cores->erase(cores->begin(), cores->end() - samples[0].size());
  }
  double threeCores = summarize(coresPerBroadcast).median;
  double oneCores = summarize(coresPerSingle).median;

  std::vector<std::string> columns = {"size_bytes", "size", "readers"};
  for (auto& c: Table::summaryColumns("three_hosts_ms")) columns.push_back(c);
  for (auto& c: Table::summaryColumns("one_host_ms")) columns.push_back(c);
  for (auto c: {"three_hosts_gbps_total", "one_host_gbps", "owner_served_sizes",
                "three_hosts_daemon_cores", "one_host_daemon_cores", "three_over_single"}) {
    columns.push_back(c);
  }
  Table& table = x.ctx.report.table("xhost_broadcast", columns);
  std::vector<Value> row = {size, sizeName(size), uint64_t(readers)};
  Table::appendSummary(row, three, 1e3);
  Table::appendSummary(row, one, 1e3);
  double ratio = three.median / one.median;
  row.push_back(readers * size / three.median * 1e-9);
  row.push_back(size / one.median * 1e-9);
  row.push_back(served.median);
  row.push_back(threeCores);
  row.push_back(oneCores);
  row.push_back(ratio);
  table.add(row);
  x.ctx.report.set("xhost_broadcast_3_hosts_over_single", ratio);
  x.ctx.report.set("xhost_broadcast_" + sizeName(size) + "_3_hosts_ms", three.median * 1e3);
  x.ctx.report.set("xhost_broadcast_" + sizeName(size) + "_single_ms", one.median * 1e3);
  x.ctx.report.set("xhost_broadcast_owner_served_sizes", served.median);
  x.ctx.report.set("xhost_broadcast_daemon_cores", threeCores);
  x.ctx.report.set("xhost_broadcast_single_daemon_cores", oneCores);
  x.ctx.progress("xhost broadcast %s to 3 hosts: %.1f ms (p25 %.1f, p75 %.1f), one host %.1f ms:"
                 " %.2fx; owner served %.2f copies; daemons busy %.2f / %.2f CPUs",
                 sizeName(size).c_str(), three.median * 1e3, three.p25 * 1e3, three.p75 * 1e3,
                 one.median * 1e3, ratio, served.median, threeCores, oneCores);
}

}  // namespace refbench
