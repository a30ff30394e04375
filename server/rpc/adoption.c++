#include "server/rpc/adoption.h"

#include <kj/vector.h>

#include "server/runtime/errors.h"
#include "server/rpc/ref_server.h"

namespace refstore::server {

kj::Promise<HeldObject> restoreToken(RpcServices& services, kj::StringPtr text,
                                     gc::ClientId client) {
  ObjectStore& store = services.store;
  // A token of another daemon goes to its owner; anything else (this daemon's, or malformed)
  // is this store's to answer.
  KJ_IF_MAYBE(token, parseToken(text)) {
    if (token->id.hi != store.origin() && token->ownerAddress.size() > 0) {
      KJ_IF_MAYBE(remote, services.remote()) { return remote->restore(kj::mv(*token), client); }
    }
  }
  auto restored = store.restore(text, client);
  return HeldObject{restored.first, restored.second};
}

kj::Promise<HeldObject> adoptRef(RpcServices& services, proto::Ref::Client ref,
                                 gc::ClientId client) {
  auto local = ownRefObject(ref);
  return local.then([&services, ref = kj::mv(ref), client](
                        kj::Maybe<gc::ObjectId> own) mutable -> kj::Promise<HeldObject> {
    KJ_IF_MAYBE(id, own) {
      return HeldObject{*id, services.store.addHolder(*id, client)};
    }
    auto request = ref.shareRequest();
    request.setTtlSeconds(60);
    request.setUses(1);
    return request.send().then(
        [&services, client](capnp::Response<proto::Ref::ShareResults> response) {
          return restoreToken(services, response.getToken(), client);
        },
        [](kj::Exception&& e) -> kj::Promise<HeldObject> {
          RS_FAIL(INVALID_ARGUMENT, "not a Ref refstore can adopt: ", e.getDescription());
        });
  });
}

HolderGuard::~HolderGuard() noexcept(false) {
  if (!kept) store.removeHolder(held.holder);
}

TemporaryHolds::TemporaryHolds(ObjectStore& store, kj::Array<HeldObject> held)
    : store(store), held(kj::mv(held)) {}

TemporaryHolds::~TemporaryHolds() noexcept(false) {
  for (auto& object: held) store.removeHolder(object.holder);
}

std::vector<gc::ObjectId> TemporaryHolds::ids() const {
  std::vector<gc::ObjectId> out;
  for (auto& object: held) out.push_back(object.id);
  return out;
}

kj::Promise<kj::Own<TemporaryHolds>> adoptAll(RpcServices& services,
                                             capnp::List<proto::Ref>::Reader refs,
                                             gc::ClientId client) {
  ObjectStore& store = services.store;
  if (refs.size() == 0) return kj::heap<TemporaryHolds>(store, nullptr);
  auto adoptions = kj::heapArrayBuilder<kj::Promise<HeldObject>>(refs.size());
  for (auto ref: refs) adoptions.add(adoptRef(services, ref, client));
  // If one fails, or the call is cancelled, the holders the others took must still be
  // released: each is guarded until all are in, and failures are collected, not thrown, first.
  auto settled = kj::heapArrayBuilder<kj::Promise<kj::Maybe<kj::Own<HolderGuard>>>>(refs.size());
  auto firstError = kj::heap<kj::Maybe<kj::Exception>>();
  for (auto& adoption: adoptions) {
    settled.add(adoption.then(
        [&store](HeldObject held) -> kj::Maybe<kj::Own<HolderGuard>> {
          return kj::heap<HolderGuard>(store, held);
        },
        [error = firstError.get()](kj::Exception&& e) -> kj::Maybe<kj::Own<HolderGuard>> {
          if (*error == nullptr) *error = kj::mv(e);
          return nullptr;
        }));
  }
  return kj::joinPromises(settled.finish())
      .then([&store, firstError = kj::mv(firstError)](
                kj::Array<kj::Maybe<kj::Own<HolderGuard>>> results) mutable {
        // Every holder taken goes into `holds` before anything can throw, so a failed batch
        // releases the good Refs' holders when `holds` goes out of scope.
        kj::Vector<HeldObject> held(results.size());
        for (auto& result: results) {
          KJ_IF_MAYBE(guard, result) { held.add((*guard)->keep()); }
        }
        auto holds = kj::heap<TemporaryHolds>(store, held.releaseAsArray());
        KJ_IF_MAYBE(error, *firstError) { kj::throwFatalException(kj::mv(*error)); }
        return holds;
      });
}

}  // namespace refstore::server
