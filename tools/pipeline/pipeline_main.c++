// pipeline: the paper's example, a = f(); b = f(); c = add(a, b), as three processes.
//
//   pipeline producer --store SOCK --listen PRODUCER_SOCK   (or --listen HOST:PORT: over TCP,
//                                                           for a consumer on another host)
//   pipeline adder    --store SOCK --listen ADDER_SOCK
//   pipeline driver   --store SOCK --producer PRODUCER_SOCK --adder ADDER_SOCK
//                     [--by-value] [--count N] [--repetitions R]
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <capnp/rpc-twoparty.h>
#include <kj/main.h>

#include "tools/pipeline/services.h"

namespace refstore::pipeline {

[[noreturn]] void serveForever(Client& client, const std::string& path,
                               capnp::Capability::Client bootstrap) {
  auto& io = async::ioContext(client);
  // A path is a Unix socket; anything else a network address (host:port).
  bool unixSocket = path.find('/') != std::string::npos;
  if (unixSocket) unlink(path.c_str());
  auto address = unixSocket ? kj::str("unix:", path.c_str()) : kj::str(path.c_str());
  auto listener = io.provider->getNetwork().parseAddress(address).wait(io.waitScope)->listen();
  printf("listening\n");
  fflush(stdout);
  capnp::ReaderOptions options;
  options.traversalLimitInWords = uint64_t(1) << 27;  // by-value messages carry whole values
  struct LogErrors: kj::TaskSet::ErrorHandler {
    void taskFailed(kj::Exception&& e) override {
      fprintf(stderr, "pipeline: connection failed: %s\n", e.getDescription().cStr());
    }
  } errorHandler;
  kj::TaskSet tasks(errorHandler);
  struct Serve {
    static kj::Promise<void> loop(kj::ConnectionReceiver& listener, capnp::Capability::Client cap,
                                  capnp::ReaderOptions options, kj::TaskSet& tasks) {
      return listener.accept().then([&listener, cap, options, &tasks](
                                        kj::Own<kj::AsyncIoStream> stream) mutable {
        auto network = kj::heap<capnp::TwoPartyVatNetwork>(
            *stream, capnp::rpc::twoparty::Side::SERVER, options);
        auto rpc = kj::heap<capnp::RpcSystem<capnp::rpc::twoparty::VatId>>(
            capnp::makeRpcServer(*network, cap));
        auto done = network->onDisconnect();
        tasks.add(done.attach(kj::mv(rpc), kj::mv(network), kj::mv(stream)));
        return loop(listener, kj::mv(cap), options, tasks);
      });
    }
  };
  Serve::loop(*listener, kj::mv(bootstrap), options, tasks).wait(io.waitScope);
  KJ_UNREACHABLE;
}

namespace {

class PipelineMain {
 public:
  explicit PipelineMain(kj::ProcessContext& context): context(context) {}

  kj::MainFunc getMain() {
    return kj::MainBuilder(context, "pipeline",
                           "a = f(); b = f(); c = add(a, b) across three processes, by reference "
                           "through refstored or by value.")
        .addOptionWithArg({"store"}, KJ_BIND_METHOD(*this, setStore), "<socket>",
                          "refstored socket")
        .addOptionWithArg({"listen"}, KJ_BIND_METHOD(*this, setListen), "<socket|host:port>",
                          "where a service listens (a Unix socket path, or a TCP address)")
        .addOptionWithArg({"producer"}, KJ_BIND_METHOD(*this, setProducer), "<socket>",
                          "the producer service (driver)")
        .addOptionWithArg({"adder"}, KJ_BIND_METHOD(*this, setAdder), "<socket>",
                          "the adder service (driver)")
        .addOption({"by-value"}, KJ_BIND_METHOD(*this, setByValue), "pass values inline")
        .addOptionWithArg({"count"}, KJ_BIND_METHOD(*this, setCount), "<n>",
                          "UInt64 elements per value (default 131072 = 1 MiB)")
        .addOptionWithArg({"repetitions"}, KJ_BIND_METHOD(*this, setRepetitions), "<n>",
                          "runs; the median time is reported")
        .expectArg("producer|adder|driver", KJ_BIND_METHOD(*this, setRole))
        .callAfterParsing(KJ_BIND_METHOD(*this, run))
        .build();
  }

 private:
  kj::MainBuilder::Validity setStore(kj::StringPtr v) { store = v.cStr(); return true; }
  kj::MainBuilder::Validity setListen(kj::StringPtr v) { listen = v.cStr(); return true; }
  kj::MainBuilder::Validity setProducer(kj::StringPtr v) { driver.producerSocket = v.cStr(); return true; }
  kj::MainBuilder::Validity setAdder(kj::StringPtr v) { driver.adderSocket = v.cStr(); return true; }
  kj::MainBuilder::Validity setByValue() { driver.byValue = true; return true; }
  kj::MainBuilder::Validity setCount(kj::StringPtr v) {
    driver.count = strtoull(v.cStr(), nullptr, 10);
    return driver.count > 0 ? kj::MainBuilder::Validity(true) : "count must be positive";
  }
  kj::MainBuilder::Validity setRepetitions(kj::StringPtr v) {
    driver.repetitions = atoi(v.cStr());
    return driver.repetitions > 0 ? kj::MainBuilder::Validity(true) : "repetitions must be positive";
  }
  kj::MainBuilder::Validity setRole(kj::StringPtr v) {
    role = v.cStr();
    if (role != "producer" && role != "adder" && role != "driver") return "unknown role";
    return true;
  }

  kj::MainBuilder::Validity run() {
    ConnectOptions options;
    options.address = store;
    options.clientName = "pipeline-" + role;
    Client client = Client::connect(options);
    if (role == "producer") serveForever(client, listen, newProducer(client));
    if (role == "adder") serveForever(client, listen, newAdder(client));
    int status = runDriver(client, driver);
    if (status != 0) return "the sum was wrong";
    return true;
  }

  kj::ProcessContext& context;
  std::string store, listen, role;
  DriverOptions driver;
};

}  // namespace
}  // namespace refstore::pipeline

KJ_MAIN(refstore::pipeline::PipelineMain)
