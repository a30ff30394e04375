#include "server/fulfiller_server.h"

#include <utility>

#include "server/adoption.h"
#include "server/errors.h"

namespace refstore::server {

FulfillerServer::FulfillerServer(ObjectStore& store, gc::ObjectId promise, gc::ClientId client)
    : store(store), promise(promise), client(client) {}

FulfillerServer::~FulfillerServer() noexcept(false) {
  if (!settled) {
    store.fail(promise, kj::str(RS_ERROR_WORD(BROKEN_PROMISE),
                                ": the fulfiller was dropped before fulfilling the promise"));
  }
}

void FulfillerServer::requireUnsettled() {
  RS_REQUIRE(!settled, FAILED_PRECONDITION, "the promise was already settled");
}

kj::Promise<void> FulfillerServer::fulfill(FulfillContext context) {
  requireUnsettled();
  settled = true;
  auto params = context.getParams();
  auto data = params.getData();
  RS_REQUIRE(data.size() > 0, INVALID_ARGUMENT, "cannot fulfil with an empty value");
  RS_REQUIRE(data.size() <= proto::MAX_INLINE_BYTES, TOO_LARGE, "inline value of ", data.size(),
             " bytes exceeds ", proto::MAX_INLINE_BYTES, ": create it, then fulfillWith");
  auto memory = store.reserve(data.size(), 0 * kj::SECONDS);
  return adoptAll(store, params.getChildren(), client)
      .then([memory = kj::mv(memory)](kj::Own<TemporaryHolds> children) mutable {
        return memory.then([children = kj::mv(children)](kj::Own<Reservation> reserved) mutable {
          return std::make_pair(kj::mv(children), kj::mv(reserved));
        });
      })
      .then([this, context](auto both) mutable {
        store.fulfill(promise, kj::mv(both.second), context.getParams().getData(),
                      both.first->ids());
      })
      .catch_([this](kj::Exception&& e) {
        settled = false;  // nothing changed: the caller may retry or reject
        kj::throwFatalException(kj::mv(e));
      });
}

kj::Promise<void> FulfillerServer::fulfillWith(FulfillWithContext context) {
  requireUnsettled();
  settled = true;
  return adoptRef(store, context.getParams().getRef(), client)
      .then([this](HeldObject target) {
        TemporaryHolds hold(store, kj::heapArray<HeldObject>({target}));
        store.fulfillWith(promise, target.id);
      })
      .catch_([this](kj::Exception&& e) {
        settled = false;
        kj::throwFatalException(kj::mv(e));
      });
}

kj::Promise<void> FulfillerServer::reject(RejectContext context) {
  requireUnsettled();
  kj::StringPtr reason = context.getParams().getReason();
  RS_REQUIRE(store.fail(promise, kj::str(RS_ERROR_WORD(REJECTED), ": ", reason)),
             NOT_FOUND, "the promise no longer exists");
  settled = true;
  return kj::READY_NOW;
}

}  // namespace refstore::server
