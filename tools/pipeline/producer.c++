// f(): creates a value in refstored, written in place, and returns its Ref.
#include "tools/pipeline/services.h"
#include "tools/pipeline/values.h"

namespace refstore::pipeline {
namespace {

class Producer final: public proto::Producer::Server {
 public:
  explicit Producer(Client& client): client(client) {}

  kj::Promise<void> f(FContext context) override {
    uint64_t seed = context.getParams().getSeed(), count = context.getParams().getCount();
    return async::create(client, count * 8)
        .then([seed, count](WriteBuffer buffer) {
          fillF(buffer.data(), seed, count);
          return async::seal(std::move(buffer));
        })
        .then([context](Ref value) mutable {
          // The caller now holds a reference through us; our own Ref can go.
          context.getResults().setValue(async::capability(value));
        });
  }

  kj::Promise<void> fByValue(FByValueContext context) override {
    uint64_t seed = context.getParams().getSeed(), count = context.getParams().getCount();
    auto data = context.getResults().initValue(count * 8);
    fillF(data.begin(), seed, count);
    return kj::READY_NOW;
  }

 private:
  Client& client;
};

}  // namespace

capnp::Capability::Client newProducer(Client& client) { return kj::heap<Producer>(client); }

}  // namespace refstore::pipeline
