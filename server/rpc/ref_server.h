// The `Ref` capability: one holder of one object.
//
// Each Ref the daemon hands out is a RefHook, a bare capnp::ClientHook, rather than the usual
// Capability::Server wrapped in Cap'n Proto's LocalClient. LocalClient carries machinery Ref
// never uses (path shortening, a streaming-call queue and a kj::Maybe<kj::Exception> of ~400
// bytes): at ~500 bytes per capability it was more than half of the daemon's memory per live
// object. A RefHook is just the gc holder id (32 bytes with its vtable and refcount); the
// object and the client it stands for are looked up in the gc table, which records them per
// holder anyway. It counts its own references rather than deriving from kj::Refcounted, whose
// second vtable pointer and padding would put it in the next (48-byte) allocation class. A
// call to it builds a short-lived RefServer inside an ordinary LocalClient, which dispatches
// that one call and is freed when the call completes.
//
// Release: the RefHook's destructor removes the holder from the gc table (which may free the
// object in the same turn). Cap'n Proto destroys the hook when the last reference to it goes:
// the client dropped the capability, or its connection went away.
#pragma once

#include "server/rpc/services.h"

namespace refstore::server {

class RefHook final: public capnp::ClientHook {
 public:
  // A new hook with one reference, taking over `holder` (already registered in the gc table).
  static kj::Own<RefHook> make(RpcServices& services, gc::HolderId holder, bool sharedMemory);

  RpcServices& services;
  gc::HolderId holder;      // 0 once released (Ref.release)
  const bool sharedMemory;  // the holding connection can receive segment fds

  // One more reference to this hook (kj::addRef's counterpart, for the typed pointer).
  kj::Own<RefHook> addRefHook();

  // The object held and the connection holding it (Refs this one makes go there too). Throws
  // FAILED_PRECONDITION once released.
  gc::ObjectTable::HolderInfo held() const;
  // Removes the holder now (Ref.release); later calls fail. Idempotent.
  void release();

  // capnp::ClientHook. A Ref is always settled (never a promise) and has no fd of its own.
  capnp::Request<capnp::AnyPointer, capnp::AnyPointer> newCall(
      uint64_t interfaceId, uint16_t methodId, kj::Maybe<capnp::MessageSize> sizeHint) override;
  VoidPromiseAndPipeline call(uint64_t interfaceId, uint16_t methodId,
                              kj::Own<capnp::CallContextHook>&& context) override;
  kj::Maybe<capnp::ClientHook&> getResolved() override { return nullptr; }
  kj::Maybe<kj::Promise<kj::Own<capnp::ClientHook>>> whenMoreResolved() override {
    return nullptr;
  }
  kj::Own<capnp::ClientHook> addRef() override { return addRefHook(); }
  const void* getBrand() override { return &kBrand; }
  kj::Maybe<int> getFd() override { return nullptr; }

  // The RefHook behind `hook` if it is one of this daemon's Refs (brand check), else null.
  static kj::Maybe<RefHook&> from(capnp::ClientHook& hook);

 private:
  static const int kBrand;  // its address identifies RefHooks; the value is irrelevant

  // The Disposer of every kj::Own<RefHook>: drops one reference, and the hook with the last.
  class Releaser;
  static const Releaser kReleaser;

  RefHook(RpcServices& services, gc::HolderId holder, bool sharedMemory);
  ~RefHook() noexcept(false);  // removes the holder from the gc table

  uint32_t refcount = 1;

  // A LocalClient around a fresh RefServer that shares this hook: used for exactly one call.
  kj::Own<capnp::ClientHook> dispatcher();
};

// Serves the methods of one call to a Ref (see RefHook). Holds a reference to the RefHook, so
// the holder stays alive until the call completes even if the client drops the Ref meanwhile.
class RefServer final: public proto::Ref::Server {
 public:
  explicit RefServer(kj::Own<RefHook> ref);

  kj::Promise<void> info(InfoContext context) override;
  kj::Promise<void> read(ReadContext context) override;
  kj::Promise<void> view(ViewContext context) override;
  kj::Promise<void> prefetch(PrefetchContext context) override;
  kj::Promise<void> share(ShareContext context) override;
  kj::Promise<void> whenReady(WhenReadyContext context) override;
  kj::Promise<void> children(ChildrenContext context) override;
  kj::Promise<void> saveAs(SaveAsContext context) override;
  kj::Promise<void> release(ReleaseContext context) override;

 private:
  // Runs `answer()` in a turn in which the value is readable and in memory (waiting for a
  // promise, restoring a spilled value first); throws, or rejects, as ObjectStore::whenReady and
  // ensureResident do. A template, not a kj::Function: that would allocate on every call.
  template <typename Answer>
  kj::Promise<void> whenReadable(Answer answer);

  kj::Own<RefHook> ref;
  ObjectStore& store;
  gc::ObjectId id;  // looked up once per call; {0, 0} if the Ref was released
};

// The `View` capability: a pin on the memory of the object that owns the bytes (an alias pins
// its target); destroying it unpins.
class ViewServer final: public proto::View::Server {
 public:
  // `client`: the connection the View is returned to (its placements are for that client).
  ViewServer(RpcServices& services, gc::ObjectId owner, gc::ClientId client);  // pins
  ~ViewServer() noexcept(false);                       // unpins

  kj::Promise<void> placement(PlacementContext context) override;
  kj::Promise<void> release(ReleaseContext context) override;

 private:
  RpcServices& services;
  ObjectStore& store;
  gc::ObjectId owner;
  gc::ClientId client;
  bool pinned = true;  // until released (View.release) or destroyed
};

// Makes a Ref capability (a RefHook) for a fresh holder held by `client`. It takes the holder
// over, also when it fails: if `client`'s connection has closed meanwhile (the call outlived
// it, RpcServices::requireOpen), the holder is released and this throws DISCONNECTED.
proto::Ref::Client newRef(RpcServices& services, gc::HolderId holder, gc::ClientId client);

// The object behind `ref` if it is one of this daemon's own Refs, once `ref` has resolved as
// far as it will (a Ref pipelined from another call's result is a promise until that call
// returns); null for a capability hosted anywhere else, or broken.
kj::Promise<kj::Maybe<gc::ObjectId>> ownRefObject(capnp::Capability::Client ref);

}  // namespace refstore::server
