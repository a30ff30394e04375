// Workload 4: handoff of one value between two processes. The producer (refbench) has the value
// in warm private memory; the consumer (a `consumer` or `worker` helper process) must end up
// having read every byte. Timed from the producer's first step to the consumer's answer:
//
//   refstore:          create, memcpy into shared memory, seal and share (single-use token) in
//                      one round trip, drop the Ref; the token goes to the consumer over its
//                      stdin; it restores the token and views it (zero-copy) in one round
//                      trip (Client::restoreView) and reads every byte.
//   refstore in place: the same, but the producer had written the value straight into the
//                      WriteBuffer before the clock started (the zero-copy ideal: the value was
//                      produced in shared memory), so the clock starts at seal.
//   Redis:             SET key value; the key goes to the consumer; GET key; read every byte.
//   by value:          Cap'n Proto RPC to the consumer, the value inline in 8 MiB Sink.write
//                      chunks (`-> stream`), appended into the consumer's warm buffer and read.
//   raw Unix / TCP:    the bytes over a plain socket into the consumer's warm buffer and read.
//
// The variants take turns, one repetition each per round. After each refstore repetition the
// consumer has dropped its Ref (refstore frees the value) and a stats() round trip makes sure
// the daemon has finished freeing before anything else runs.
#include <hiredis/hiredis.h>
#include <string.h>

#include <stdexcept>

#include "client/cpp/refstore_client.h"
#include "tools/bench/bytes.h"
#include "client/cpp/refstore_async.h"
#include "tools/bench/rpc.h"
#include "tools/bench/timing.h"
#include "tools/bench/workloads.h"

namespace refbench {
namespace {

void expectChecksum(uint64_t got, uint64_t want, const char* variant) {
  if (got != want) throw std::runtime_error(std::string("handoff ") + variant + ": wrong checksum");
}

}  // namespace

void runHandoff(Context& ctx) {
  std::vector<uint64_t> sizes = ctx.quick() ? std::vector<uint64_t>{MiB, 64 * MiB}
                                            : std::vector<uint64_t>{MiB, 64 * MiB, GiB};
  uint64_t largest = sizes.back();
  WarmBuffer value(largest);
  fillPattern(value.data(), largest, 21);

  refstore::Client client = refstore::Client::connect(ctx.daemon->socket());
  redisContext* redis = redisConnectUnix(ctx.redis->socket().c_str());
  if (redis == nullptr || redis->err) throw std::runtime_error("cannot connect to Redis");
  Child consumer = Child::role("consumer", {ctx.daemon->socket(), ctx.redis->socket()});
  consumer.receive();  // ready
  std::string workerSocket = ctx.tmp.path() + "/sink.sock";
  Child worker = Child::role("worker", {workerSocket, ctx.daemon->socket()});
  worker.receive();
  RawTransfer unixSocket(ctx, /*tcp=*/false), tcp(ctx, /*tcp=*/true);

  std::vector<std::string> columns = {"size_bytes", "size"};
  const char* names[] = {"refstore", "refstore_in_place", "redis", "by_value", "unix", "tcp"};
  for (auto name: names) {
    for (auto& c: Table::summaryColumns(std::string(name) + "_ms")) columns.push_back(c);
  }
  for (auto c: {"vs_redis", "vs_by_value", "vs_unix", "in_place_vs_redis", "in_place_vs_by_value"}) {
    columns.push_back(c);
  }
  Table& table = ctx.report.table("handoff", columns);

  kj::AsyncIoContext& io = refstore::async::ioContext(client);
  WorkerConnection sinkWorker(io, workerSocket);

  for (uint64_t size: sizes) {
    uint64_t want = checksum(value.data(), size);

    auto viaRefstore = [&](bool inPlace) {
      double start = now();
      refstore::WriteBuffer buffer = client.create(size);
      if (inPlace) {
        fillPattern(buffer.data(), size, 21);  // produced in place, before the clock
        start = now();
      } else {
        memcpy(buffer.data(), value.data(), size);
      }
      std::string token = buffer.sealAndShare(60, 1).token;
      // The producer's Ref is dropped with the SharedValue: only the token keeps the value.
      consumer.send("refstore " + token);
      uint64_t got = std::stoull(consumer.receive());
      double seconds = now() - start;
      expectChecksum(got, want, "refstore");
      client.stats();  // the daemon has freed the value (the consumer's Ref is dropped)
      return seconds;
    };
    auto viaRedis = [&]() {
      double start = now();
      auto reply = redisCommand(redis, "SET handoff %b", value.data(), size_t(size));
      if (reply == nullptr) throw std::runtime_error("Redis SET failed");
      freeReplyObject(reply);
      consumer.send("redis handoff");
      uint64_t got = std::stoull(consumer.receive());
      double seconds = now() - start;
      expectChecksum(got, want, "redis");
      freeReplyObject(redisCommand(redis, "DEL handoff"));  // untimed: free Redis's copy
      return seconds;
    };
    auto byValue = [&]() {
      double start = now();
      auto request = sinkWorker.worker.newSinkRequest();
      request.setSize(size);
      auto created = request.send();
      auto sink = created.getSink();  // pipelined: no round trip of its own
      streamValue(sink, value.data(), size).wait(io.waitScope);
      auto done = sink.doneRequest().send().wait(io.waitScope);
      double seconds = now() - start;
      created.wait(io.waitScope);
      expectChecksum(done.getChecksum(), want, "by value");
      return seconds;
    };
    auto raw = [&](RawTransfer& transfer, const char* name) {
      double start = now();
      uint64_t got = transfer.send(value.data(), size);
      double seconds = now() - start;
      expectChecksum(got, want, name);
      return seconds;
    };

    auto samples = interleave(warmupFor(ctx, size), repsFor(ctx, size), {
        [&]() { return viaRefstore(false); },
        [&]() { return viaRefstore(true); },
        viaRedis,
        byValue,
        [&]() { return raw(unixSocket, "unix"); },
        [&]() { return raw(tcp, "tcp"); },
    });

    Summary s[6];
    for (size_t v = 0; v < 6; v++) s[v] = summarize(samples[v]);
    std::vector<Value> row = {size, sizeName(size)};
    for (auto& summary: s) Table::appendSummary(row, summary, 1e3);
    double vsRedis = s[2].median / s[0].median, vsByValue = s[3].median / s[0].median;
    row.push_back(vsRedis);
    row.push_back(vsByValue);
    row.push_back(s[4].median / s[0].median);
    row.push_back(s[2].median / s[1].median);
    row.push_back(s[3].median / s[1].median);
    table.add(row);

    std::string label = sizeName(size);
    if (size == 64 * MiB || size == GiB) {
      ctx.report.set("handoff_" + label + "_vs_redis", vsRedis);
      ctx.report.set("handoff_" + label + "_vs_by_value", vsByValue);
      ctx.report.set("handoff_" + label + "_in_place_vs_redis", s[2].median / s[1].median);
      ctx.report.set("handoff_" + label + "_in_place_vs_by_value", s[3].median / s[1].median);
      ctx.report.set("handoff_" + label + "_ms", s[0].median * 1e3);
    }
  }
  redisFree(redis);
  consumer.send("");
}

}  // namespace refbench
