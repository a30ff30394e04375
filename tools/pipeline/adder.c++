// add(a, b): adopts both Refs, reads them zero-copy, writes the sum in place.
#include "tools/pipeline/services.h"
#include "tools/pipeline/values.h"

#include <optional>

#include <kj/debug.h>

namespace refstore::pipeline {
namespace {

class Adder final: public proto::Adder::Server {
 public:
  explicit Adder(Client& client): client(client) {}

  kj::Promise<void> add(AddContext context) override {
    // Everything the chain needs, kept alive until it finishes.
    struct Work {
      std::optional<Ref> a, b;
      std::optional<View> viewA, viewB;
    };
    auto work = kj::heap<Work>();
    Work& w = *work;
    auto params = context.getParams();
    return async::adopt(client, params.getA())
        .then([this, &w, params](Ref a) mutable {
          w.a = std::move(a);
          return async::adopt(client, params.getB());
        })
        .then([&w](Ref b) {
          w.b = std::move(b);
          return async::view(*w.a);
        })
        .then([&w](View view) {
          w.viewA = std::move(view);
          return async::view(*w.b);
        })
        .then([this, &w](View view) {
          w.viewB = std::move(view);
          if (w.viewA->size() != w.viewB->size() || w.viewA->size() % 8 != 0) {
            throw Error(ErrorCode::INVALID_ARGUMENT, "add: operands differ in size");
          }
          return async::create(client, w.viewA->size());
        })
        .then([&w](WriteBuffer sum) {
          addInto(sum.data(), w.viewA->data(), w.viewB->data(), w.viewA->size() / 8);
          return async::seal(std::move(sum));
        })
        .then([context](Ref sum) mutable {
          context.getResults().setSum(async::capability(sum));
        })
        .attach(kj::mv(work));
  }

  kj::Promise<void> addByValue(AddByValueContext context) override {
    auto a = context.getParams().getA(), b = context.getParams().getB();
    KJ_REQUIRE(a.size() == b.size() && a.size() % 8 == 0, "add: operands differ in size");
    auto sum = context.getResults().initSum(a.size());
    addInto(sum.begin(), a.begin(), b.begin(), a.size() / 8);
    return kj::READY_NOW;
  }

 private:
  Client& client;
};

}  // namespace

capnp::Capability::Client newAdder(Client& client) { return kj::heap<Adder>(client); }

}  // namespace refstore::pipeline
