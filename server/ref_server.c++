#include "server/ref_server.h"

#include "server/errors.h"

namespace refstore::server {

RefServer::RefServer(ObjectStore& store, gc::ObjectId id, gc::HolderId holder,
                     gc::ClientId client, bool sharedMemory)
    : store(store), id(id), holder(holder), client(client), sharedMemory(sharedMemory) {}

RefServer::~RefServer() noexcept(false) { store.removeHolder(holder); }

kj::Promise<void> RefServer::info(InfoContext context) {
  store.record(id);  // NOT_FOUND if it is gone
  return store.whenHashed(id).then([this, context]() mutable {
    fillObjectInfo(context.getResults().initInfo(), store.record(id));
  });
}

kj::Promise<void> RefServer::whenReady(WhenReadyContext context) {
  return store.whenReady(id)
      .then([this]() { return store.whenHashed(store.resolve(id)); })
      .then([this, context]() mutable {
        // Report the readable object (an alias reports its target's size and hash).
        fillObjectInfo(context.getResults().initInfo(), store.record(store.resolve(id)));
      });
}

kj::Promise<void> RefServer::read(ReadContext context) {
  return store.whenReady(id).then([this]() {
    return store.ensureResident(store.resolve(id));
  }).then([this, context]() mutable {
    auto params = context.getParams();
    gc::ObjectId owner = store.resolve(id);
    auto& object = store.record(owner);
    uint64_t offset = params.getOffset(), length = params.getLength();
    RS_REQUIRE(offset <= object.size, OUT_OF_RANGE, "offset ", offset, " is beyond the object's ",
               object.size, " bytes");
    RS_REQUIRE(length <= proto::MAX_CHUNK_BYTES, TOO_LARGE, "read length ", length,
               " exceeds the chunk limit of ", proto::MAX_CHUNK_BYTES, " bytes");
    length = kj::min(length, object.size - offset);
    context.getResults().setData(store.bytes(owner).slice(offset, offset + length));
  });
}

kj::Promise<void> RefServer::view(ViewContext context) {
  RS_REQUIRE(sharedMemory, FAILED_PRECONDITION,
             "this connection has no shared memory (TCP): use read() instead");
  return store.whenReady(id).then([this]() {
    return store.ensureResident(store.resolve(id));
  }).then([this, context]() mutable {
    // Same turn as ensureResident: nothing can spill it before the View pins it.
    gc::ObjectId owner = store.resolve(id);
    auto results = context.getResults();
    results.setView(kj::heap<ViewServer>(store, owner));
    fillPlacement(results.initPlacement(), store, owner, /*writable=*/false);
  });
}

kj::Promise<void> RefServer::share(ShareContext context) {
  auto params = context.getParams();
  context.getResults().setToken(store.share(id, params.getTtlSeconds(), params.getUses()));
  return kj::READY_NOW;
}

kj::Promise<void> RefServer::children(ChildrenContext context) {
  auto kids = store.table().childrenOf(store.resolve(id));
  auto out = context.getResults().initChildren(kids.size());
  for (size_t i = 0; i < kids.size(); i++) {
    out.set(i, newRef(store, kids[i], store.addHolder(kids[i], client), client));
  }
  return kj::READY_NOW;
}

kj::Promise<void> RefServer::saveAs(SaveAsContext context) {
  store.addName(id, context.getParams().getName());
  return kj::READY_NOW;
}

ViewServer::ViewServer(ObjectStore& store, gc::ObjectId owner): store(store), owner(owner) {
  store.pin(owner);
}

ViewServer::~ViewServer() noexcept(false) { store.unpin(owner); }

kj::Promise<void> ViewServer::placement(PlacementContext context) {
  fillPlacement(context.getResults().initPlacement(), store, owner, /*writable=*/false);
  return kj::READY_NOW;
}

proto::Ref::Client newRef(ObjectStore& store, gc::ObjectId id, gc::HolderId holder,
                          gc::ClientId client) {
  return store.refServers.add(
      kj::heap<RefServer>(store, id, holder, client, store.client(client).sharedMemory));
}

}  // namespace refstore::server
