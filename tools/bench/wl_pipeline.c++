// Workload 5: the pipeline a = f(); b = f(); c = add(a, b) across three processes: refbench
// (the driver), a producer worker (f) and an adder worker (add), with 64 MiB values (and 1 MiB
// for contrast). Both forms do the same arithmetic (fill a and b, c = a + b word by word):
//
//   by value:     f streams its value to the driver (8 MiB Sink.write chunks); the driver streams
//                 a and b to the adder, which streams c back: 4 values cross a socket, each
//                 copied into the receiver's warm buffer.
//   by reference: f creates the value in refstore, fills it in place, seals and returns a
//                 single-use share token; the driver passes both tokens to the adder, which
//                 restores and views them (zero-copy), writes c in place into a new object and
//                 returns its token; the driver restores c. Only tokens cross the sockets.
//
// The driver asks for a and b at once in both forms. The driver does not read c inside the
// timed region in either form (it receives c by value, or a Ref to it); c is verified after.
// The two forms take turns, one repetition each per round.
#include "client/cpp/refstore_async.h"
#include "client/cpp/refstore_client.h"
#include "tools/bench/bytes.h"
#include "tools/bench/rpc.h"
#include "tools/bench/sink_impl.h"
#include "tools/bench/timing.h"
#include "tools/bench/workloads.h"

namespace refbench {
namespace {

// Checksum of a pattern value; checksum(a + b) == checksum(a) + checksum(b) (mod 2^64) for
// sizes that are a multiple of 8, which verifies c without the driver keeping a and b.
uint64_t patternChecksum(uint64_t size, uint64_t seed) {
  WarmBuffer buffer(size);
  fillPattern(buffer.data(), size, seed);
  return checksum(buffer.data(), size);
}

}  // namespace

void runPipeline(Context& ctx) {
  std::vector<uint64_t> sizes = {MiB, 64 * MiB};
  std::string producerSocket = ctx.tmp.path() + "/f.sock", adderSocket = ctx.tmp.path() + "/add.sock";
  Child producer = Child::role("worker", {producerSocket, ctx.daemon->socket()});
  Child adder = Child::role("worker", {adderSocket, ctx.daemon->socket()});
  producer.receive();
  adder.receive();

  std::vector<std::string> columns = {"size_bytes", "size"};
  for (auto prefix: {"by_value_ms", "by_ref_ms"}) {
    for (auto& c: Table::summaryColumns(prefix)) columns.push_back(c);
  }
  columns.push_back("by_ref_vs_by_value");
  Table& table = ctx.report.table("pipeline", columns);

  refstore::Client client = refstore::Client::connect(ctx.daemon->socket());
  kj::AsyncIoContext& io = refstore::async::ioContext(client);
  WorkerConnection f(io, producerSocket), add(io, adderSocket);
  auto a = std::make_shared<WarmBuffer>(), b = std::make_shared<WarmBuffer>(),
       c = std::make_shared<WarmBuffer>();

  for (uint64_t size: sizes) {
    a->ensure(size);
    b->ensure(size);
    c->ensure(size);
    uint64_t want = patternChecksum(size, 1) + patternChecksum(size, 2);

    auto produce = [&](uint64_t seed, std::shared_ptr<WarmBuffer> into) {
      auto request = f.worker.fByValueRequest();
      request.setSize(size);
      request.setSeed(seed);
      request.setInto(kj::heap<SinkImpl>(kj::mv(into), /*readOnDone=*/false));
      return request.send().ignoreResult();
    };
    auto byValue = [&]() {
      double start = now();
      auto pa = produce(1, a), pb = produce(2, b);
      pa.wait(io.waitScope);
      pb.wait(io.waitScope);
      auto job = add.worker.addByValueRequest();
      job.setSize(size);
      auto started = job.send();
      auto sendA = streamValue(started.getA(), a->data(), size).then([&]() {
        return started.getA().doneRequest().send().ignoreResult();
      });
      auto sendB = streamValue(started.getB(), b->data(), size).then([&]() {
        return started.getB().doneRequest().send().ignoreResult();
      });
      sendA.wait(io.waitScope);
      sendB.wait(io.waitScope);
      auto run = started.getJob().runRequest();
      run.setInto(kj::heap<SinkImpl>(c, /*readOnDone=*/false));
      run.send().wait(io.waitScope);
      double seconds = now() - start;
      started.wait(io.waitScope);
      if (checksum(c->data(), size) != want) throw std::runtime_error("pipeline by value: wrong c");
      return seconds;
    };
    auto byRef = [&]() {
      double start = now();
      auto fa = f.worker.fByRefRequest(), fb = f.worker.fByRefRequest();
      fa.setSize(size);
      fa.setSeed(1);
      fb.setSize(size);
      fb.setSeed(2);
      auto pa = fa.send(), pb = fb.send();
      auto ta = pa.wait(io.waitScope);
      auto tb = pb.wait(io.waitScope);
      auto addRequest = add.worker.addByRefRequest();
      addRequest.setA(ta.getToken());
      addRequest.setB(tb.getToken());
      auto tc = addRequest.send().wait(io.waitScope);
      refstore::Ref result = refstore::async::restore(client, tc.getToken()).wait(io.waitScope);
      double seconds = now() - start;  // the driver now holds c
      {
        refstore::View view = result.view();
        if (checksum(view.data(), view.size()) != want) {
          throw std::runtime_error("pipeline by reference: wrong c");
        }
      }
      { refstore::Ref drop = std::move(result); }
      client.stats();  // the daemon has freed c before anything else runs
      return seconds;
    };

    auto samples = interleave(warmupFor(ctx, size), repsFor(ctx, size), {byValue, byRef});
    Summary value = summarize(samples[0]), reference = summarize(samples[1]);
    std::vector<Value> row = {size, sizeName(size)};
    Table::appendSummary(row, value, 1e3);
    Table::appendSummary(row, reference, 1e3);
    row.push_back(value.median / reference.median);
    table.add(row);
    if (size == 64 * MiB) {
      ctx.report.set("pipeline_by_ref_vs_by_value", value.median / reference.median);
      ctx.report.set("pipeline_64MiB_by_ref_ms", reference.median * 1e3);
      ctx.report.set("pipeline_64MiB_by_value_ms", value.median * 1e3);
    }
  }
}

}  // namespace refbench
