// Workload 6a: scale. Put rate and daemon memory per live object from 1,000 to 1,000,000 live
// objects (quick: to 100,000), on a fresh refstored so its baseline is clean.
//
// Memory is read from /proc/<pid>/status of the daemon: VmRSS minus its value before the
// first object, divided by the objects alive. Values are 16 bytes, so all of them fit in the
// first shared-memory segment, which is already resident (segments are pre-faulted), and the
// baseline is taken after one put/drop so that segment and the next pre-faulted spare already
// exist: the VmRSS growth is then the daemon's per-object bookkeeping (object table, capability
// servers, RPC export table), not the values. RssAnon (private heap) and RssShmem are reported
// too, to show that.
//
// The puts are pipelined (a window of 256 in flight, through the client's asynchronous API) so
// that a million of them take seconds, not minutes of round trips; the unpipelined put rate is
// workload 3's.
// Memory is read again 11 s after the last put (full runs only): the daemon's ordinary heap (jemalloc's default
// arenas) keeps freed pages of transient allocations (RPC messages, promise nodes) for
// dirty_decay_ms = 10 s before returning them, so the first reading includes garbage that a
// daemon holding the same objects at rest would not have.
// Dropping all objects at the end measures bulk reclaim: time until stats() says they are gone.
#include <unistd.h>

#include <deque>

#include "client/cpp/refstore_async.h"
#include "client/cpp/refstore_client.h"
#include "tools/bench/processes.h"
#include "tools/bench/timing.h"
#include "tools/bench/workloads.h"

namespace refbench {
namespace {

constexpr uint64_t kValueBytes = 16;
constexpr size_t kWindow = 256;

struct Memory {
  uint64_t rss, anon, shmem;
};

Memory daemonMemory(pid_t pid) {
  return Memory{procStatusBytes(pid, "VmRSS"), procStatusBytes(pid, "RssAnon"),
                procStatusBytes(pid, "RssShmem")};
}

}  // namespace

void runScale(Context& ctx) {
  uint64_t largest = ctx.quick() ? 100000 : 1000000;
  auto daemon = ctx.startDaemon("refstored-scale");
  pid_t pid = daemon->pid();

  Table& table = ctx.report.table(
      "scale", {"live_objects", "put_rate_per_s", "vmrss_bytes", "rss_anon_bytes",
                "rss_shmem_bytes", "bytes_per_object", "anon_bytes_per_object"});

  refstore::Client client = refstore::Client::connect(daemon->socket());
  refstore::Client monitor = refstore::Client::connect(daemon->socket());
  kj::AsyncIoContext& io = refstore::async::ioContext(client);
  auto store = refstore::async::store(client);
  uint8_t value[kValueBytes] = {1, 2, 3};
  auto putOne = [&]() {
    auto request = store.putRequest();
    request.setData(kj::arrayPtr(value, kValueBytes));
    return request.send();
  };

  // Warm-up: the first allocation primes the arena and takes the spare segment; give the daemon
  // time to pre-fault the next spare, so neither lands inside the measurement.
  { putOne().wait(io.waitScope); }
  monitor.stats();
  usleep(300000);
  monitor.stats();
  Memory base = daemonMemory(pid);

  // The client keeps the raw capabilities: a million refstore::Ref wrappers would only add
  // client-side memory, which is not what this measures.
  std::vector<refstore::proto::Ref::Client> held;
  held.reserve(largest);
  uint64_t step = 1000;
  for (uint64_t target = step; target <= largest; target *= 10) {
    double start = now();
    // Keep kWindow puts in flight; each completion adds its Ref to `held`.
    std::deque<capnp::RemotePromise<refstore::proto::Store::PutResults>> window;
    while (held.size() + window.size() < target || !window.empty()) {
      if (held.size() + window.size() < target && window.size() < kWindow) {
        window.push_back(putOne());
        continue;
      }
      auto reply = window.front().wait(io.waitScope);
      window.pop_front();
      held.push_back(reply.getRef());
    }
    double seconds = now() - start;
    uint64_t objects = monitor.stats().objects;  // every put has been processed by now
    Memory m = daemonMemory(pid);
    double perObject = double(int64_t(m.rss - base.rss)) / objects;
    double anonPerObject = double(int64_t(m.anon - base.anon)) / objects;
    uint64_t added = target - (target == step ? 0 : target / 10);
    table.add({target, added / seconds, m.rss, m.anon, m.shmem, perObject, anonPerObject});
    if (target == largest && !ctx.quick()) {
      ctx.progress("scale: %llu objects; waiting 11 s for the daemon's heap to settle",
                   (unsigned long long)largest);
      usleep(11 * 1000000);
      Memory settled = daemonMemory(pid);
      double settledPerObject = double(int64_t(settled.rss - base.rss)) / objects;
      ctx.report.set("bytes_per_object_1M_settled", settledPerObject);
      ctx.report.set("anon_bytes_per_object_1M_settled",
                     double(int64_t(settled.anon - base.anon)) / objects);
    }
    if (target == largest) {
      ctx.report.set("bytes_per_object_1M", perObject);
      ctx.report.set("anon_bytes_per_object_1M", anonPerObject);
      ctx.report.set("scale_largest_count", largest);
      ctx.report.set("scale_put_rate_per_s", added / seconds);
    }
  }

  // Bulk reclaim: release every Ref at once, time until the daemon reports them gone.
  double start = now();
  held.clear();
  io.waitScope.poll();  // sends the Release messages
  while (monitor.stats().objects > 0) {}
  ctx.report.set("reclaim_all_ms", (now() - start) * 1e3);
  ctx.report.set("reclaim_all_objects", largest);
}

}  // namespace refbench
