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
  void requireUnsettled();

  ObjectStore& store;
  gc::ObjectId promise;
  gc::ClientId client;
  bool settled = false;  // or settling: a call is adopting its Refs
};

}  // namespace refstore::server
