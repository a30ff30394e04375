// proxy_bytes_<count>_owner / _reader: daemon memory per cross-host reference, measured like
// workload 6's bytes_per_object_1M (wl_scale.c++): VmRSS of the daemon from /proc/<pid>/status
// minus its value before the first reference, divided by the references. Two fresh hosts on the
// run's link (clean baselines; the peer connection is opened and both daemons warmed up by one
// value restored and dropped before the baselines are read).
//
//   1. Host 0's client puts `count` 16-byte values (putMany, 1,000 a call, a few calls in
//      flight) and keeps their Refs: "owner, local Refs" is host 0's growth per value, as
//      bytes_per_object_1M (values live in the first, already resident, shared segment).
//   2. For every value a single-use token is minted on host 0 and restored by host 1's client
//      (share and restore chained per value, `kWindow` in flight): host 1 dials host 0 once,
//      then each restore makes one proxy on host 1 and one remote holder on host 0. Nothing is
//      read, so no bytes are pulled: this is the cost of the reference alone. Host 1's client
//      keeps the Refs. Reader: host 1's growth per reference (its proxy, the client's Ref, the
//      capability it imports from host 0).
//   3. Host 0's client drops its own Refs: every value is now alive only because host 1 holds
//      it. Owner: host 0's growth per value (the object, its remote holder, the capability
//      exported to host 1) -- everything the owner spends to keep a value for another host.
//
// `count`: 100,000 (20,000 with --quick), or --xhost-refs N. A million takes 4-5 minutes here
// (restores one at a time through one peer connection, ~4,000/s on a loaded machine), so 1M
// is measured with `--xhost-refs 1000000`; the keys name the count (proxy_bytes_1M_owner).
// Unlike workload 6 there is no second reading after jemalloc's dirty_decay_ms: in a 1M run it
// was the same to the byte (without jemalloc's background thread an idle daemon purges nothing).
#include <unistd.h>

#include <deque>

#include "client/cpp/refstore_async.h"
#include "tools/bench/processes.h"
#include "tools/bench/timing.h"
#include "tools/bench/xhost.h"

namespace refbench {
namespace {

constexpr uint64_t kValueBytes = 16;
constexpr size_t kPutBatch = 1000, kPutsInFlight = 4, kWindow = 256;

struct Memory {
  uint64_t rss, anon;
};

Memory memoryOf(pid_t pid) {
  return Memory{procStatusBytes(pid, "VmRSS"), procStatusBytes(pid, "RssAnon")};
}

double perRef(uint64_t after, uint64_t before, uint64_t count) {
  return double(int64_t(after - before)) / count;
}

std::string countName(uint64_t count) {
  if (count % 1000000 == 0) return std::to_string(count / 1000000) + "M";
  if (count % 1000 == 0) return std::to_string(count / 1000) + "k";
  return std::to_string(count);
}

}  // namespace

void xhostProxyBytes(Xhost& x) {
  const uint64_t count =
      x.ctx.options.xhostRefs > 0 ? x.ctx.options.xhostRefs : x.ctx.quick() ? 20000 : 100000;
  BenchHosts hosts(x.ctx, x.link(), 2, "pb", "1G");
  Xhost p(x.ctx, hosts);
  pid_t owner = hosts[0].pid(), reader = hosts[1].pid();
  kj::AsyncIoContext& io = refstore::async::ioContext(p.on(0));  // both clients' (one thread)
  auto ownerStore = refstore::async::store(p.on(0)), readerStore = refstore::async::store(p.on(1));

  // Warm-up: the peer connection, both daemons' arenas and spare segments.
  {
    refstore::Ref value = p.makeValue(0, kValueBytes, 1);
    refstore::Ref restored = p.on(1).restore(value.share(60, 1));
  }
  p.waitNoProxies(1);
  usleep(300000);
  p.on(0).stats();
  p.on(1).stats();
  Memory ownerBase = memoryOf(owner), readerBase = memoryOf(reader);

  // 1. count values on host 0.
  double start = now();
  std::vector<refstore::proto::Ref::Client> owned;
  owned.reserve(count);
  {
    uint8_t value[kValueBytes] = {1, 2, 3};
    std::deque<capnp::RemotePromise<refstore::proto::Store::PutManyResults>> window;
    for (uint64_t sent = 0; sent < count || !window.empty();) {
      if (sent < count && window.size() < kPutsInFlight) {
        uint64_t n = std::min<uint64_t>(kPutBatch, count - sent);
        auto request = ownerStore.putManyRequest();
        auto list = request.initValues(n);
        for (uint64_t i = 0; i < n; i++) list.set(i, kj::arrayPtr(value, kValueBytes));
        window.push_back(request.send());
        sent += n;
        continue;
      }
      for (auto ref: window.front().wait(io.waitScope).getRefs()) owned.push_back(kj::mv(ref));
      window.pop_front();
    }
  }
  double putSeconds = now() - start;
  p.on(0).stats();
  Memory ownerLocal = memoryOf(owner);
  x.ctx.progress("xhost proxy bytes: %llu values put on host 0 in %.1f s",
                 (unsigned long long)count, putSeconds);

  // 2. share on host 0 -> restore on host 1, chained per value.
  start = now();
  std::vector<refstore::proto::Ref::Client> restored;
  restored.reserve(count);
  {
    std::deque<kj::Promise<refstore::proto::Ref::Client>> window;
    for (uint64_t i = 0; i < count || !window.empty();) {
      if (i < count && window.size() < kWindow) {
        auto share = owned[i++].shareRequest();
        share.setTtlSeconds(600);
        share.setUses(1);
        window.push_back(share.send().then([readerStore](auto&& shared) mutable {
          auto restore = readerStore.restoreRequest();
          restore.setToken(shared.getToken());
          return restore.send().then([](auto&& reply) { return reply.getRef(); });
        }));
        continue;
      }
      restored.push_back(window.front().wait(io.waitScope));
      window.pop_front();
    }
  }
  double restoreSeconds = now() - start;
  refstore::Stats readerStats = p.on(1).stats(), ownerStats = p.on(0).stats();
  if (readerStats.proxies != count || ownerStats.remoteHolders != count) {
    throw std::runtime_error("xhost proxy bytes: host 1 has " +
                             std::to_string(readerStats.proxies) + " proxies, host 0 " +
                             std::to_string(ownerStats.remoteHolders) + " remote holders, not " +
                             std::to_string(count));
  }
  Memory readerHeld = memoryOf(reader), ownerBoth = memoryOf(owner);
  x.ctx.progress("xhost proxy bytes: %llu restored on host 1 in %.1f s (%.0f/s)",
                 (unsigned long long)count, restoreSeconds, count / restoreSeconds);

  // 3. host 0 lets go: each value is held by host 1 alone.
  owned.clear();
  io.waitScope.poll();  // sends the Releases; the stats() call below is answered after them
  ownerStats = p.on(0).stats();
  if (ownerStats.objects != count) {
    throw std::runtime_error("xhost proxy bytes: host 0 has " + std::to_string(ownerStats.objects) +
                             " objects after dropping its own Refs, not " + std::to_string(count));
  }
  Memory ownerRemote = memoryOf(owner);

  std::string key = "proxy_bytes_" + countName(count);
  Table& table = x.ctx.report.table(
      "xhost_proxy_bytes", {"references", "owner_bytes_per_ref", "owner_anon_per_ref",
                            "reader_bytes_per_ref", "reader_anon_per_ref",
                            "owner_local_bytes_per_value", "owner_with_both_bytes_per_value",
                            "restores_per_s"});
  table.add({count, perRef(ownerRemote.rss, ownerBase.rss, count),
             perRef(ownerRemote.anon, ownerBase.anon, count),
             perRef(readerHeld.rss, readerBase.rss, count),
             perRef(readerHeld.anon, readerBase.anon, count),
             perRef(ownerLocal.rss, ownerBase.rss, count),
             perRef(ownerBoth.rss, ownerBase.rss, count), count / restoreSeconds});
  double ownerPer = perRef(ownerRemote.rss, ownerBase.rss, count);
  double readerPer = perRef(readerHeld.rss, readerBase.rss, count);
  x.ctx.report.set(key + "_owner", ownerPer);
  x.ctx.report.set(key + "_reader", readerPer);
  x.ctx.report.set("proxy_bytes_count", count);
  x.ctx.report.set("proxy_bytes_owner_local_per_value",
                   perRef(ownerLocal.rss, ownerBase.rss, count));
  x.ctx.report.set("proxy_restores_per_s", count / restoreSeconds);
  x.ctx.progress("xhost proxy bytes %s: owner %.0f B/ref (local Refs only: %.0f B/value), "
                 "reader %.0f B/ref", countName(count).c_str(), ownerPer,
                 perRef(ownerLocal.rss, ownerBase.rss, count), readerPer);

  // Host 1 lets go too; everything is freed on both (checked, untimed).
  restored.clear();
  io.waitScope.poll();
  p.waitNoProxies(1);
  for (int i = 0; p.on(0).stats().objects != 0; i++) {
    if (i > 100000) throw std::runtime_error("xhost proxy bytes: host 0 never freed the values");
    usleep(100);
  }
}

}  // namespace refbench
