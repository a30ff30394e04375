// The driver: c = add(f(), f()), by reference (Refs flow between the services; Cap'n Proto
// pipelining sends all three calls without waiting) or by value (values travel in messages).
#include <time.h>

#include <algorithm>
#include <vector>

#include <capnp/rpc-twoparty.h>

#include "tools/pipeline/services.h"
#include "tools/pipeline/values.h"

namespace refstore::pipeline {
namespace {

// By-value messages carry whole values: allow up to 1 GiB per message.
capnp::ReaderOptions bigMessages() {
  capnp::ReaderOptions options;
  options.traversalLimitInWords = uint64_t(1) << 27;
  return options;
}

struct ServiceConnection {
  kj::Own<kj::AsyncIoStream> stream;
  kj::Own<capnp::TwoPartyVatNetwork> network;
  kj::Own<capnp::RpcSystem<capnp::rpc::twoparty::VatId>> rpc;
  capnp::Capability::Client bootstrap = nullptr;

  ServiceConnection(kj::AsyncIoContext& io, const std::string& path) {
    stream = io.provider->getNetwork().parseAddress(kj::str("unix:", path.c_str()))
                 .wait(io.waitScope)->connect().wait(io.waitScope);
    network = kj::heap<capnp::TwoPartyVatNetwork>(*stream, capnp::rpc::twoparty::Side::CLIENT,
                                                  bigMessages());
    rpc = kj::heap<capnp::RpcSystem<capnp::rpc::twoparty::VatId>>(capnp::makeRpcClient(*network));
    capnp::word scratch[4];
    memset(scratch, 0, sizeof(scratch));
    capnp::MallocMessageBuilder message(scratch);
    auto vatId = message.getRoot<capnp::rpc::twoparty::VatId>();
    vatId.setSide(capnp::rpc::twoparty::Side::SERVER);
    bootstrap = rpc->bootstrap(vatId);
  }
};

double now() {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

bool runByReference(Client& client, proto::Producer::Client& producer, proto::Adder::Client& adder,
                    uint64_t count) {
  auto& io = async::ioContext(client);
  auto fa = producer.fRequest();
  fa.setSeed(1);
  fa.setCount(count);
  auto a = fa.send();
  auto fb = producer.fRequest();
  fb.setSeed(2);
  fb.setCount(count);
  auto b = fb.send();
  auto add = adder.addRequest();
  add.setA(a.getValue());  // promise pipelining: a and b need not have arrived yet
  add.setB(b.getValue());
  auto c = add.send().wait(io.waitScope);
  // Re-home c onto our own refstored connection, then read it zero-copy.
  Ref sum = async::adopt(client, c.getSum()).wait(io.waitScope);
  View view = sum.view();
  return view.size() == count * 8 && checkSum(view.data(), 1, 2, count);
}

bool runByValue(kj::AsyncIoContext& io, proto::Producer::Client& producer,
                proto::Adder::Client& adder, uint64_t count) {
  auto fa = producer.fByValueRequest();
  fa.setSeed(1);
  fa.setCount(count);
  auto fb = producer.fByValueRequest();
  fb.setSeed(2);
  fb.setCount(count);
  auto a = fa.send();
  auto b = fb.send();
  auto ra = a.wait(io.waitScope);
  auto rb = b.wait(io.waitScope);
  auto add = adder.addByValueRequest();
  add.setA(ra.getValue());
  add.setB(rb.getValue());
  auto c = add.send().wait(io.waitScope);
  auto sum = c.getSum();
  return sum.size() == count * 8 && checkSum(sum.begin(), 1, 2, count);
}

}  // namespace

int runDriver(Client& client, const DriverOptions& options) {
  auto& io = async::ioContext(client);
  ServiceConnection producerConnection(io, options.producerSocket);
  ServiceConnection adderConnection(io, options.adderSocket);
  auto producer = producerConnection.bootstrap.castAs<proto::Producer>();
  auto adder = adderConnection.bootstrap.castAs<proto::Adder>();

  std::vector<double> seconds;
  bool correct = true;
  for (int i = 0; i < options.repetitions; i++) {
    double start = now();
    correct = (options.byValue ? runByValue(io, producer, adder, options.count)
                               : runByReference(client, producer, adder, options.count)) &&
              correct;
    seconds.push_back(now() - start);
  }
  std::sort(seconds.begin(), seconds.end());
  printf("{\"mode\": \"%s\", \"bytes\": %llu, \"repetitions\": %d, \"median_seconds\": %.6f, "
         "\"correct\": %s}\n",
         options.byValue ? "by-value" : "by-reference", (unsigned long long)(options.count * 8),
         options.repetitions, seconds[seconds.size() / 2], correct ? "true" : "false");
  fflush(stdout);
  return correct ? 0 : 1;
}

}  // namespace refstore::pipeline
