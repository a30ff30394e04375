#include "server/fulfiller_server.h"

#include <utility>

#include "server/adoption.h"
#include "server/errors.h"

namespace refstore::server {

FulfillerServer::FulfillerServer(ObjectStore& store, gc::ObjectId promise, gc::ClientId client)
    : store(store), promise(promise), client(client) {}

class FulfillerServer::Attempt {
 public:
  explicit Attempt(FulfillerServer& fulfiller): fulfiller(fulfiller) {
    fulfiller.state = State::SETTLING;
  }
  ~Attempt() {
    if (fulfiller.state == State::SETTLING) fulfiller.state = State::UNSETTLED;
  }
  KJ_DISALLOW_COPY(Attempt);
  void settled() { fulfiller.state = State::SETTLED; }

 private:
  FulfillerServer& fulfiller;
};

FulfillerServer::~FulfillerServer() noexcept(false) {
  // Calls keep their server alive, so no attempt is in progress by now.
  if (state != State::SETTLED) {
    store.fail(promise, kj::str(RS_ERROR_WORD(BROKEN_PROMISE),
                                ": the fulfiller was dropped before fulfilling the promise"));
  }
}

kj::Own<FulfillerServer::Attempt> FulfillerServer::startAttempt() {
  RS_REQUIRE(state != State::SETTLED, FAILED_PRECONDITION, "the promise was already settled");
  RS_REQUIRE(state != State::SETTLING, FAILED_PRECONDITION,
             "another call is settling the promise (it waits for memory or for its Refs)");
  return kj::heap<Attempt>(*this);
}

kj::Promise<void> FulfillerServer::fulfill(FulfillContext context) {
  context.allowCancellation();
  auto params = context.getParams();
  auto data = params.getData();
  RS_REQUIRE(data.size() > 0, INVALID_ARGUMENT, "cannot fulfil with an empty value");
  RS_REQUIRE(data.size() <= proto::MAX_INLINE_BYTES, TOO_LARGE, "inline value of ", data.size(),
             " bytes exceeds ", proto::MAX_INLINE_BYTES, ": create it, then fulfillWith");
  auto attempt = startAttempt();
  auto memory = store.reserve(data.size(), 0 * kj::SECONDS, client);
  return adoptAll(store, params.getChildren(), client)
      .then([memory = kj::mv(memory)](kj::Own<TemporaryHolds> children) mutable {
        return memory.then([children = kj::mv(children)](kj::Own<Reservation> reserved) mutable {
          return std::make_pair(kj::mv(children), kj::mv(reserved));
        });
      })
      .then([this, context, attempt = kj::mv(attempt)](auto both) mutable {
        store.fulfill(promise, kj::mv(both.second), context.getParams().getData(),
                      both.first->ids());
        attempt->settled();
      });
}

kj::Promise<void> FulfillerServer::fulfillWith(FulfillWithContext context) {
  context.allowCancellation();
  auto attempt = startAttempt();
  return adoptRef(store, context.getParams().getRef(), client)
      .then([this, attempt = kj::mv(attempt)](HeldObject target) mutable {
        TemporaryHolds hold(store, kj::heapArray<HeldObject>({target}));
        store.fulfillWith(promise, target.id);
        attempt->settled();
      });
}

kj::Promise<void> FulfillerServer::reject(RejectContext context) {
  auto attempt = startAttempt();
  kj::StringPtr reason = context.getParams().getReason();
  RS_REQUIRE(store.fail(promise, kj::str(RS_ERROR_WORD(REJECTED), ": ", reason)), NOT_FOUND,
             "the promise no longer exists");
  attempt->settled();
  return kj::READY_NOW;
}

}  // namespace refstore::server
