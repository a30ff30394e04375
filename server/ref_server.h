// The `Ref` capability: one holder of one object. Its destructor is the release: Cap'n Proto
// destroys it when the client drops the capability or the connection goes away, and that
// removes the holder from the gc table (which may free the object in the same turn).
#pragma once

#include "server/object_store.h"

namespace refstore::server {

class RefServer final: public proto::Ref::Server {
 public:
  // Takes over `holder` (already registered in the table for `id`, held by `client`).
  RefServer(ObjectStore& store, gc::ObjectId id, gc::HolderId holder, gc::ClientId client,
            bool sharedMemory);
  ~RefServer() noexcept(false);

  gc::ObjectId objectId() const { return id; }

  kj::Promise<void> info(InfoContext context) override;
  kj::Promise<void> read(ReadContext context) override;
  kj::Promise<void> view(ViewContext context) override;
  kj::Promise<void> share(ShareContext context) override;
  kj::Promise<void> whenReady(WhenReadyContext context) override;
  kj::Promise<void> children(ChildrenContext context) override;
  kj::Promise<void> saveAs(SaveAsContext context) override;

 private:
  ObjectStore& store;
  gc::ObjectId id;
  gc::HolderId holder;
  gc::ClientId client;  // the connection this Ref was handed to (new Refs it makes go there too)
  bool sharedMemory;    // that connection can receive segment fds
};

// The `View` capability: a pin on the memory of the object that owns the bytes (an alias pins
// its target); destroying it unpins.
class ViewServer final: public proto::View::Server {
 public:
  ViewServer(ObjectStore& store, gc::ObjectId owner);  // pins
  ~ViewServer() noexcept(false);                       // unpins

  kj::Promise<void> placement(PlacementContext context) override;

 private:
  ObjectStore& store;
  gc::ObjectId owner;
};

// Makes (and registers, see ObjectStore::refServers) a Ref capability for a fresh holder.
proto::Ref::Client newRef(ObjectStore& store, gc::ObjectId id, gc::HolderId holder,
                          gc::ClientId client);

}  // namespace refstore::server
