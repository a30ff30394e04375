// The `Fulfiller` capability: the write side of a promise. Exactly one settlement succeeds.
// Destroyed unsettled (dropped, or its process died), it breaks the promise so that readers
// fail promptly with BROKEN_PROMISE instead of waiting forever. It holds no reference: a
// promise nobody references any more is freed even while its Fulfiller lives.
#pragma once

#include "server/object_store.h"

namespace refstore::server {

class FulfillerServer final: public proto::Fulfiller::Server {
 public:
  FulfillerServer(ObjectStore& store, gc::ObjectId promise, gc::ClientId client);
  ~FulfillerServer() noexcept(false);

  kj::Promise<void> fulfill(FulfillContext context) override;
  kj::Promise<void> fulfillWith(FulfillWithContext context) override;
  kj::Promise<void> reject(RejectContext context) override;

 private:
  // UNSETTLED -> SETTLING while a fulfil waits (for memory, or for its Refs to be adopted) ->
  // SETTLED once the store has the outcome. A refused, failed or cancelled attempt goes back to
  // UNSETTLED and changes nothing: the caller may retry or reject, and dropping the Fulfiller
  // still breaks the promise.
  enum class State { UNSETTLED, SETTLING, SETTLED };
  // Marks an attempt in progress until destroyed; back to UNSETTLED unless settled() was called.
  class Attempt;
  kj::Own<Attempt> startAttempt();

  ObjectStore& store;
  gc::ObjectId promise;
  gc::ClientId client;
  State state = State::UNSETTLED;
};

}  // namespace refstore::server
