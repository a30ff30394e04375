// The `Store` capability: the bootstrap of every connection. One instance per connection, so
// it knows who is calling (ClientId, uid, transport) and what that connection may receive.
#pragma once

#include <kj/function.h>

#include "server/object_store.h"

namespace refstore::server {

class StoreServer final: public proto::Store::Server {
 public:
  // `requiredSecret`: if non-null, every method but hello fails with UNAUTHENTICATED until
  // hello presents this secret (TCP listeners with a cluster secret); `onAuthenticated` then
  // runs once (the connection lifts its limits for unauthenticated peers).
  StoreServer(ObjectStore& store, gc::ClientId client, kj::Maybe<kj::StringPtr> requiredSecret,
              kj::Function<void()> onAuthenticated = []() {});

  kj::Promise<void> hello(HelloContext context) override;
  kj::Promise<void> put(PutContext context) override;
  kj::Promise<void> create(CreateContext context) override;
  kj::Promise<void> restore(RestoreContext context) override;
  kj::Promise<void> stats(StatsContext context) override;
  kj::Promise<void> list(ListContext context) override;
  kj::Promise<void> promise(PromiseContext context) override;
  kj::Promise<void> lookup(LookupContext context) override;
  kj::Promise<void> unname(UnnameContext context) override;
  kj::Promise<void> names(NamesContext context) override;
  kj::Promise<void> adopt(AdoptContext context) override;
  kj::Promise<void> putMany(PutManyContext context) override;
  kj::Promise<void> readMany(ReadManyContext context) override;

 private:
  void requireAuthenticated();
  // readMany's last step: pins the values, brings spilled ones back, copies them into the
  // reply, and charges it to `turn` (a large reply's place in the connection's budget).
  kj::Promise<void> readValues(ReadManyContext context, std::vector<gc::ObjectId> owners,
                               kj::Maybe<kj::Own<ReplyBudget::Turn>> turn);
  ClientInfo& info() { return store.client(client); }

  ObjectStore& store;
  gc::ClientId client;
  kj::Maybe<kj::StringPtr> requiredSecret;
  kj::Function<void()> onAuthenticated;
  bool authenticated;
};

}  // namespace refstore::server
