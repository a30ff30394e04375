// xhost_handoff_64MiB_vs_by_value / _vs_redis: workload 4's handoff (wl_handoff.c++) with the
// consumer on another host. The producer (refbench, host 0's client) has the value in warm
// private memory; a `consumer` process on host 1 must end up having read every byte. Timed from
// the producer's first step to the consumer's answer (its checksum):
//
//   refstore:   on host 0 create, memcpy into shared memory, sealAndShare (single-use token),
//               drop the Ref; the token goes to the consumer over its stdin; it restores the
//               token on host 1 and views it in one round trip (restoreView: host 1's daemon
//               restores from host 0 and pulls the bytes once) and reads every byte.
//   by value:   Cap'n Proto RPC from host 0's address to a `worker` on host 1's, the value
//               inline in 8 MiB Sink.write chunks (`-> stream`), into the worker's warm buffer,
//               read (checksum) before done() answers: the local by-value baseline over TCP.
//   raw TCP:    refbench's raw TCP sender to a receiver on host 1 that reads every byte.
//   Redis:      a redis-server on host 0 (started on its network, listening on its address):
//               SET over its Unix socket; the key goes to the consumer, which GETs it over TCP
//               across the link and reads every byte (xhost_handoff_64MiB_vs_redis).
//
// Interleaved; after each refstore repetition host 1 has freed its copy and host 0 the value.
#include <string.h>

#include <stdexcept>

#include <hiredis/hiredis.h>

#include <memory>

#include "client/cpp/refstore_async.h"
#include "tools/bench/bytes.h"
#include "tools/bench/raw_tcp.h"
#include "tools/bench/rpc.h"
#include "tools/bench/services.h"
#include "tools/bench/timing.h"
#include "tools/bench/xhost.h"

namespace refbench {

void xhostHandoff(Xhost& x) {
  std::vector<uint64_t> sizes = {MiB, 64 * MiB};
  WarmBuffer value(sizes.back());
  fillPattern(value.data(), sizes.back(), 51);
  kj::AsyncIoContext& io = refstore::async::ioContext(x.on(0));
  Child consumer = startConsumer(x, 1);
  TcpWorker sinkWorker(x, /*atHost=*/1, /*fromHost=*/0);
  RawTcpCopy raw(x.link(), /*toHost=*/1, /*readEveryByte=*/true);
  std::unique_ptr<Redis> ownerRedis = [&]() {
    BenchLink::InNetwork onOwner(x.link(), 0);
    return std::make_unique<Redis>(x.ctx.options.redisServer, x.ctx.tmp, "redis-host0",
                                   x.link().ip(0));
  }();
  redisContext* redis = redisConnectUnix(ownerRedis->socket().c_str());
  if (redis == nullptr || redis->err) throw std::runtime_error("cannot connect to host 0's Redis");
  Child redisConsumer = startConsumer(x, 1, ownerRedis->tcpAddress());

  std::vector<std::string> columns = {"size_bytes", "size"};
  for (auto name: {"refstore_ms", "by_value_ms", "raw_tcp_ms", "redis_ms"}) {
    for (auto& c: Table::summaryColumns(name)) columns.push_back(c);
  }
  columns.push_back("vs_by_value");
  columns.push_back("vs_raw_tcp");
  columns.push_back("vs_redis");
  Table& table = x.ctx.report.table("xhost_handoff", columns);

  for (uint64_t size: sizes) {
    uint64_t want = checksum(value.data(), size);
    auto expect = [&](uint64_t got, const char* variant) {
      if (got != want) {
        throw std::runtime_error(std::string("xhost handoff ") + variant + ": wrong checksum");
      }
    };
    auto viaRefstore = [&]() {
      double start = now();
      refstore::WriteBuffer buffer = x.on(0).create(size);
      memcpy(buffer.data(), value.data(), size);
      std::string token = buffer.sealAndShare(60, 1).token;
      consumer.send("refstore " + token);
      uint64_t got = std::stoull(consumer.receive());
      double seconds = now() - start;
      expect(got, "refstore");
      x.waitNoProxies(1);
      x.on(0).stats();
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
      expect(done.getChecksum(), "by value");
      return seconds;
    };
    auto rawTcp = [&]() {
      double start = now();
      uint64_t got = raw.copy(/*fromHost=*/0, value.data(), size);
      double seconds = now() - start;
      expect(got, "raw TCP");
      return seconds;
    };
    auto viaRedis = [&]() {
      double start = now();
      auto reply = redisCommand(redis, "SET handoff %b", value.data(), size_t(size));
      if (reply == nullptr) throw std::runtime_error("Redis SET failed");
      freeReplyObject(reply);
      redisConsumer.send("redis handoff");
      uint64_t got = std::stoull(redisConsumer.receive());
      double seconds = now() - start;
      expect(got, "Redis");
      freeReplyObject(redisCommand(redis, "DEL handoff"));  // untimed: free Redis's copy
      return seconds;
    };
    auto samples = interleave(warmupFor(x.ctx, size), repsFor(x.ctx, size),
                              {viaRefstore, byValue, rawTcp, viaRedis});
    Summary s[4];
    for (size_t v = 0; v < 4; v++) s[v] = summarize(samples[v]);
    std::vector<Value> row = {size, sizeName(size)};
    for (auto& summary: s) Table::appendSummary(row, summary, 1e3);
    double vsByValue = s[1].median / s[0].median, vsRaw = s[2].median / s[0].median;
    double vsRedis = s[3].median / s[0].median;
    row.push_back(vsByValue);
    row.push_back(vsRaw);
    row.push_back(vsRedis);
    table.add(row);
    std::string label = sizeName(size);
    if (size == sizes.back()) {
      x.ctx.report.set("xhost_handoff_" + label + "_vs_by_value", vsByValue);
      x.ctx.report.set("xhost_handoff_" + label + "_vs_raw_tcp", vsRaw);
      x.ctx.report.set("xhost_handoff_" + label + "_vs_redis", vsRedis);
      x.ctx.report.set("xhost_handoff_" + label + "_ms", s[0].median * 1e3);
    }
    x.ctx.progress("xhost handoff %s: refstore %.1f ms, by value %.1f ms, raw TCP %.1f ms, "
                   "Redis %.1f ms: %.2f by value, %.2f Redis",
                   label.c_str(), s[0].median * 1e3, s[1].median * 1e3, s[2].median * 1e3,
                   s[3].median * 1e3, vsByValue, vsRedis);
  }
  consumer.send("");
  redisConsumer.send("");
  redisFree(redis);
}

}  // namespace refbench
