// Turning Ref capabilities that arrive as parameters (children, Fulfiller.fulfillWith,
// Store.adopt) back into objects of this daemon.
//
// A Ref the daemon handed out comes back as the daemon's own RefHook (recognised by its brand,
// see ownRefObject). Cap'n Proto 0.9 is Level 1, though: a Ref passed from A to B and
// then from B to the daemon arrives as a proxy through B and A. For those the daemon asks the
// Ref itself, through the proxy chain, to mint a single-use share token, and redeems it: only
// someone who really holds the Ref can make that token, so capability discipline holds.
#pragma once

#include <vector>

#include "schema/refstore.capnp.h"
#include "server/rpc/services.h"
#include "server/store/object_store.h"

namespace refstore::server {

// Redeems a share token for `client`: a holder on this daemon's object, or -- for a token of
// another daemon -- on the local proxy of its object (RemoteGateway::restore).
kj::Promise<HeldObject> restoreToken(RpcServices& services, kj::StringPtr token,
                                     gc::ClientId client);

// Resolves `ref` to an object here and gives `client` a new holder on it: one of this daemon's
// own Refs directly; any other Ref (a proxy through other processes, or another daemon's Ref)
// by minting a single-use token through it and redeeming that (restoreToken), which proves the
// caller holds it. Fails with INVALID_ARGUMENT if `ref` cannot share.
kj::Promise<HeldObject> adoptRef(RpcServices& services, proto::Ref::Client ref,
                                 gc::ClientId client);

// One holder taken for an operation still in progress, released on destruction unless kept.
// Several holders taken at once (joinPromises) are each held in one, so that if one fails, or
// the call is cancelled because its client went away, those already taken are released: as
// plain HeldObjects they would be dropped with the join and stay forever.
class HolderGuard {
 public:
  HolderGuard(ObjectStore& store, HeldObject held): store(store), held(held) {}
  ~HolderGuard() noexcept(false);
  KJ_DISALLOW_COPY(HolderGuard);
  // Hands the holder over: the caller releases it from now on.
  HeldObject keep() {
    kept = true;
    return held;
  }

 private:
  ObjectStore& store;
  HeldObject held;
  bool kept = false;
};

// Holders taken while an operation that lists objects (children) completes; released on
// destruction, after the operation has added its own references.
class TemporaryHolds {
 public:
  TemporaryHolds(ObjectStore& store, kj::Array<HeldObject> held);
  ~TemporaryHolds() noexcept(false);
  KJ_DISALLOW_COPY(TemporaryHolds);
  std::vector<gc::ObjectId> ids() const;

 private:
  ObjectStore& store;
  kj::Array<HeldObject> held;
};

// adoptRef for each of `refs` (in order).
kj::Promise<kj::Own<TemporaryHolds>> adoptAll(RpcServices& services,
                                             capnp::List<proto::Ref>::Reader refs,
                                             gc::ClientId client);

}  // namespace refstore::server
