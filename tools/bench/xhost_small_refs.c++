// xhost_small_refs_per_s: many small references across hosts. Host 0 holds `kOps` distinct
// 1 KiB values; a sample is a batch in which a reader's client, for each value, restores a
// single-use token of it, reads its 1 KiB (Ref.read, pipelined on the restore's answer: one
// round trip from the client) and drops the Ref, with `kWindow` values in flight. Remote: the
// reader is host 1's client, so each value is restored across the peer connection, pulled
// (1 KiB over the data plane) and, once dropped, freed on host 1 and released to host 0. Local:
// the same on host 0 by host 0's client. Rates are values per second; interleaved batches.
//
// Untimed: minting the batch's tokens (pipelined shares on host 0) and, after a remote batch,
// host 1 freeing its last copies (the drops are sent inside the timed part; the owner's
// bookkeeping of them overlaps the next batch's token minting).
#include <deque>
#include <stdexcept>

#include "client/cpp/refstore_async.h"
#include "tools/bench/bytes.h"
#include "tools/bench/timing.h"
#include "tools/bench/xhost.h"

namespace refbench {
namespace {

constexpr uint64_t kValueBytes = KiB;
constexpr size_t kWindow = 64;

// Tokens of every value in `values` (single-use), shares pipelined `kWindow` at a time.
std::vector<std::string> shareAll(kj::WaitScope& waitScope,
                                  std::vector<refstore::proto::Ref::Client>& values) {
  std::vector<std::string> tokens;
  std::deque<capnp::RemotePromise<refstore::proto::Ref::ShareResults>> window;
  for (size_t i = 0; i < values.size() || !window.empty();) {
    if (i < values.size() && window.size() < kWindow) {
      auto request = values[i++].shareRequest();
      request.setTtlSeconds(600);
      request.setUses(1);
      window.push_back(request.send());
      continue;
    }
    tokens.push_back(window.front().wait(waitScope).getToken());
    window.pop_front();
  }
  return tokens;
}

}  // namespace

void xhostSmallRefs(Xhost& x) {
  const size_t ops = x.ctx.quick() ? 1000 : 4000;
  kj::AsyncIoContext& io = refstore::async::ioContext(x.on(0));  // both clients' (one thread)
  auto ownerStore = refstore::async::store(x.on(0));

  // The values: putMany of distinct 1 KiB patterns (seed 1000 + i), held as raw capabilities.
  std::vector<refstore::proto::Ref::Client> values;
  {
    WarmBuffer data(ops * kValueBytes);
    auto request = ownerStore.putManyRequest();
    auto list = request.initValues(ops);
    for (size_t i = 0; i < ops; i++) {
      uint8_t* value = data.data() + i * kValueBytes;
      fillPattern(value, kValueBytes, 1000 + i);
      list.set(i, kj::arrayPtr(value, kValueBytes));
    }
    auto reply = request.send().wait(io.waitScope);
    for (auto ref: reply.getRefs()) values.push_back(kj::mv(ref));
  }

  // One batch by `reader`'s client: seconds from the first restore to the last value read and
  // dropped.
  auto batch = [&](size_t reader) {
    std::vector<std::string> tokens = shareAll(io.waitScope, values);
    auto store = refstore::async::store(x.on(reader));
    struct InFlight {
      capnp::RemotePromise<refstore::proto::Store::RestoreResults> restored;
      capnp::RemotePromise<refstore::proto::Ref::ReadResults> read;
      size_t index;
    };
    std::deque<InFlight> window;
    double start = now();
    for (size_t i = 0; i < ops || !window.empty();) {
      if (i < ops && window.size() < kWindow) {
        auto restore = store.restoreRequest();
        restore.setToken(tokens[i]);
        auto restored = restore.send();
        auto read = restored.getRef().readRequest();
        read.setOffset(0);
        read.setLength(kValueBytes);
        auto sent = read.send();
        window.push_back(InFlight{kj::mv(restored), kj::mv(sent), i++});
        continue;
      }
      InFlight& front = window.front();
      auto data = front.read.wait(io.waitScope).getData();
      if (data.size() != kValueBytes) throw std::runtime_error("xhost small refs: short read");
      checkValue(data.begin(), kValueBytes, 1000 + front.index, "xhost small refs");
      front.restored.wait(io.waitScope);  // answered before the read was
      window.pop_front();  // drops the Ref: Release
    }
    io.waitScope.poll();  // sends the last Releases
    double seconds = now() - start;
    if (reader != 0) x.waitNoProxies(reader);
    return seconds;
  };
  auto samples = interleave(x.ctx.warmup, x.ctx.reps,
                            {[&]() { return batch(1); }, [&]() { return batch(0); }});
  std::vector<double> remoteRates, localRates;
  for (double s: samples[0]) remoteRates.push_back(ops / s);
  for (double s: samples[1]) localRates.push_back(ops / s);
  Summary remote = summarize(remoteRates), local = summarize(localRates);

  std::vector<std::string> columns = {"value_bytes", "values_per_batch", "window"};
  for (auto& c: Table::summaryColumns("xhost_per_s")) columns.push_back(c);
  for (auto& c: Table::summaryColumns("local_per_s")) columns.push_back(c);
  columns.push_back("xhost_vs_local");
  Table& table = x.ctx.report.table("xhost_small_refs", columns);
  std::vector<Value> row = {kValueBytes, uint64_t(ops), uint64_t(kWindow)};
  Table::appendSummary(row, remote);
  Table::appendSummary(row, local);
  double ratio = remote.median / local.median;
  row.push_back(ratio);
  table.add(row);
  x.ctx.report.set("xhost_small_refs_per_s", remote.median);
  x.ctx.report.set("xhost_small_refs_local_per_s", local.median);
  x.ctx.report.set("xhost_small_refs_vs_local", ratio);
  x.ctx.progress("xhost small refs 1KiB: %.0f/s (p25 %.0f, p75 %.0f), one host %.0f/s: %.3f",
                 remote.median, remote.p25, remote.p75, local.median, ratio);
}

}  // namespace refbench
