// The `Ref` capability: one holder of one object. Its destructor is the release: Cap'n Proto
// destroys it when the client drops the capability or the connection goes away, and that
// removes the holder from the gc table (which may free the object in the same turn).
#pragma once

#include "server/object_store.h"

namespace refstore::server {

class RefServer final: public proto::Ref::Server {
 public:
  // Takes over `holder` (already registered in the table for `id`).
  RefServer(ObjectStore& store, gc::ObjectId id, gc::HolderId holder, bool sharedMemory);
  ~RefServer() noexcept(false);

  kj::Promise<void> info(InfoContext context) override;
  kj::Promise<void> read(ReadContext context) override;
  kj::Promise<void> view(ViewContext context) override;
  kj::Promise<void> share(ShareContext context) override;

 private:
  ObjectStore& store;
  gc::ObjectId id;
  gc::HolderId holder;
  bool sharedMemory;  // the holding connection can receive segment fds
};

// The `View` capability: a pin on an object's memory; destroying it unpins.
class ViewServer final: public proto::View::Server {
 public:
  ViewServer(ObjectStore& store, gc::ObjectId id);  // pins
  ~ViewServer() noexcept(false);                    // unpins

  kj::Promise<void> placement(PlacementContext context) override;

 private:
  ObjectStore& store;
  gc::ObjectId id;
};

// Makes a Ref capability for a fresh holder.
proto::Ref::Client newRef(ObjectStore& store, gc::ObjectId id, gc::HolderId holder,
                          bool sharedMemory);

}  // namespace refstore::server
