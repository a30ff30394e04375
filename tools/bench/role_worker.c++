// The Worker service (bench.capnp): the echo baseline, by-value sinks, and the pipeline's f and
// add, each by value (bytes inline in RPC messages) and by reference (bytes in refstore's shared
// memory, share tokens in the messages). One process per role instance; refbench starts one as
// the producer and one as the adder. The service runs on the event loop of the refstore client
// (refstore::async::ioContext) and uses the client's asynchronous API inside its handlers,
// which must never block.
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/debug.h>

#include <memory>
#include <stdexcept>
#include <vector>

#include "client/cpp/refstore_async.h"
#include "client/cpp/refstore_client.h"
#include "tools/bench/bench.capnp.h"
#include "tools/bench/bytes.h"
#include "tools/bench/roles.h"
#include "tools/bench/rpc.h"
#include "tools/bench/sink_impl.h"

namespace refbench {
namespace {

// Warm private buffers, reused across calls: the by-value variants get the best case (no page
// faults on their side), like every baseline here. Several calls may be in flight at once
// (a and b are requested together), so each call takes its own buffer from the pool.
class BufferPool {
 public:
  std::shared_ptr<WarmBuffer> acquire(size_t size) {
    std::shared_ptr<WarmBuffer> buffer;
    if (!free->empty()) {
      buffer = std::move(free->back());
      free->pop_back();
    } else {
      buffer = std::make_shared<WarmBuffer>();
    }
    buffer->ensure(size);
    // Handed out with a deleter that returns it to the pool instead of unmapping it. The free
    // list is shared with the deleters, so a buffer may outlive the pool (at exit).
    return std::shared_ptr<WarmBuffer>(buffer.get(), [list = free, buffer](WarmBuffer*) mutable {
      list->push_back(std::move(buffer));
    });
  }

 private:
  std::shared_ptr<std::vector<std::shared_ptr<WarmBuffer>>> free =
      std::make_shared<std::vector<std::shared_ptr<WarmBuffer>>>();
};

class AddJobImpl final: public proto::AddJob::Server {
 public:
  AddJobImpl(BufferPool& pool, uint64_t size, std::shared_ptr<WarmBuffer> a,
             std::shared_ptr<WarmBuffer> b)
      : pool(pool), size(size), a(std::move(a)), b(std::move(b)) {}

  kj::Promise<void> run(RunContext context) override {
    auto c = pool.acquire(size);
    addWords(c->data(), a->data(), b->data(), size);
    auto into = context.getParams().getInto();
    return streamValue(into, c->data(), size)
        .then([into]() mutable { return into.doneRequest().send().ignoreResult(); })
        .attach(kj::mv(c));
  }

 private:
  BufferPool& pool;
  uint64_t size;
  std::shared_ptr<WarmBuffer> a, b;
};

// Seals `buffer` and mints a single-use share token for it in one round trip, then drops the
// Ref: only the token keeps the value (the adder's restore spends it, so dropping the adder's
// View frees the value).
kj::Promise<kj::String> sealAndShareOnce(refstore::WriteBuffer buffer) {
  return refstore::async::sealAndShare(std::move(buffer), 60, 1)
      .then([](refstore::SharedValue shared) { return kj::str(shared.token); });
}

class WorkerImpl final: public proto::Worker::Server {
 public:
  explicit WorkerImpl(refstore::Client& client): client(client) {}

  kj::Promise<void> echo(EchoContext context) override {
    context.getResults().setData(context.getParams().getData());
    return kj::READY_NOW;
  }

  kj::Promise<void> newSink(NewSinkContext context) override {
    auto buffer = pool.acquire(context.getParams().getSize());
    context.getResults().setSink(kj::heap<SinkImpl>(kj::mv(buffer), /*readOnDone=*/true));
    return kj::READY_NOW;
  }

  kj::Promise<void> fByValue(FByValueContext context) override {
    auto params = context.getParams();
    uint64_t size = params.getSize();
    auto value = pool.acquire(size);
    fillPattern(value->data(), size, params.getSeed());
    auto into = params.getInto();
    return streamValue(into, value->data(), size)
        .then([into]() mutable { return into.doneRequest().send().ignoreResult(); })
        .attach(kj::mv(value));
  }

  kj::Promise<void> fByRef(FByRefContext context) override {
    auto params = context.getParams();
    uint64_t size = params.getSize(), seed = params.getSeed();
    return refstore::async::create(client, size)
        .then([size, seed](refstore::WriteBuffer buffer) {
          // Produce the value in place: its bytes never exist anywhere else.
          fillPattern(buffer.data(), size, seed);
          return sealAndShareOnce(std::move(buffer));
        })
        .then([context](kj::String token) mutable { context.getResults().setToken(token); });
  }

  kj::Promise<void> addByValue(AddByValueContext context) override {
    uint64_t size = context.getParams().getSize();
    auto a = pool.acquire(size), b = pool.acquire(size);
    auto results = context.getResults();
    // The adder reads the operands when it adds; done() need not read them first.
    results.setA(kj::heap<SinkImpl>(a, /*readOnDone=*/false));
    results.setB(kj::heap<SinkImpl>(b, /*readOnDone=*/false));
    results.setJob(kj::heap<AddJobImpl>(pool, size, a, b));
    return kj::READY_NOW;
  }

  kj::Promise<void> addByRef(AddByRefContext context) override {
    auto params = context.getParams();
    // Both operands' restore + view calls leave together: one round trip for both.
    auto viewA = refstore::async::restoreView(client, params.getA());
    auto viewB = refstore::async::restoreView(client, params.getB());
    return viewA.then([this, viewB = kj::mv(viewB)](refstore::View a) mutable {
      return viewB.then([this, a = std::move(a)](refstore::View b) mutable {
        KJ_REQUIRE(a.size() == b.size(), "operands differ in size");
        uint64_t size = a.size();
        return refstore::async::create(client, size)
            .then([size, a = std::move(a), b = std::move(b)](refstore::WriteBuffer c) mutable {
              addWords(c.data(), a.data(), b.data(), size);
              // Dropping the operands' Views frees a and b: their single-use tokens are spent
              // and no Ref is left.
              { auto dropA = std::move(a), dropB = std::move(b); }
              return sealAndShareOnce(std::move(c));
            });
      });
    })
        .then([context](kj::String token) mutable { context.getResults().setToken(token); });
  }

 private:
  refstore::Client& client;
  BufferPool pool;
};

}  // namespace

int runWorker(const std::vector<std::string>& args) {
  if (args.size() != 2) throw std::runtime_error("worker <bench socket>|tcp:<ip> <refstore socket>");
  refstore::Client client = refstore::Client::connect(args[1]);
  kj::AsyncIoContext& io = refstore::async::ioContext(client);
  capnp::TwoPartyServer server(kj::heap<WorkerImpl>(client));
  // "tcp:<ip>" (the cross-host baselines, xhost.h): TCP on that address, any free port,
  // announced as "ready <port>". Anything else is a Unix socket path.
  bool tcp = args[0].rfind("tcp:", 0) == 0;
  if (!tcp) unlink(args[0].c_str());
  auto address = tcp ? kj::str(args[0].substr(4).c_str(), ":0") : kj::str("unix:", args[0].c_str());
  auto listener = io.provider->getNetwork().parseAddress(address).wait(io.waitScope)->listen();
  auto serving = server.listen(*listener).eagerlyEvaluate(nullptr);
  writeLine(tcp ? "ready " + std::to_string(listener->getPort()) : std::string("ready"));
  // Serve until refbench closes our stdin (or dies).
  auto input = io.lowLevelProvider->wrapInputFd(STDIN_FILENO);
  char byte;
  while (input->tryRead(&byte, 1, 1).wait(io.waitScope) == 1) {}
  return 0;
}

}  // namespace refbench
