#include "server/ref_server.h"

#include "server/errors.h"

namespace refstore::server {

RefServer::RefServer(ObjectStore& store, gc::ObjectId id, gc::HolderId holder, bool sharedMemory)
    : store(store), id(id), holder(holder), sharedMemory(sharedMemory) {}

RefServer::~RefServer() noexcept(false) { store.removeHolder(holder); }

kj::Promise<void> RefServer::info(InfoContext context) {
  fillObjectInfo(context.getResults().initInfo(), store.record(id));
  return kj::READY_NOW;
}

kj::Promise<void> RefServer::read(ReadContext context) {
  auto params = context.getParams();
  auto& object = store.record(id);
  RS_REQUIRE(object.state == gc::ObjectState::SEALED, FAILED_PRECONDITION,
             "object is ", gc::stateName(object.state), ", not sealed");
  uint64_t offset = params.getOffset(), length = params.getLength();
  RS_REQUIRE(offset <= object.size, OUT_OF_RANGE, "offset ", offset, " is beyond the object's ",
             object.size, " bytes");
  RS_REQUIRE(length <= proto::MAX_CHUNK_BYTES, TOO_LARGE, "read length ", length,
             " exceeds the chunk limit of ", proto::MAX_CHUNK_BYTES, " bytes");
  length = kj::min(length, object.size - offset);
  context.getResults().setData(store.bytes(id).slice(offset, offset + length));
  return kj::READY_NOW;
}

kj::Promise<void> RefServer::view(ViewContext context) {
  auto& object = store.record(id);
  RS_REQUIRE(object.state == gc::ObjectState::SEALED, FAILED_PRECONDITION,
             "object is ", gc::stateName(object.state), ", not sealed");
  RS_REQUIRE(sharedMemory, FAILED_PRECONDITION,
             "this connection has no shared memory (TCP): use read() instead");
  auto results = context.getResults();
  results.setView(kj::heap<ViewServer>(store, id));
  fillPlacement(results.initPlacement(), store, id, /*writable=*/false);
  return kj::READY_NOW;
}

kj::Promise<void> RefServer::share(ShareContext context) {
  auto params = context.getParams();
  context.getResults().setToken(store.share(id, params.getTtlSeconds(), params.getUses()));
  return kj::READY_NOW;
}

ViewServer::ViewServer(ObjectStore& store, gc::ObjectId id): store(store), id(id) {
  store.pin(id);
}

ViewServer::~ViewServer() noexcept(false) { store.unpin(id); }

kj::Promise<void> ViewServer::placement(PlacementContext context) {
  fillPlacement(context.getResults().initPlacement(), store, id, /*writable=*/false);
  return kj::READY_NOW;
}

proto::Ref::Client newRef(ObjectStore& store, gc::ObjectId id, gc::HolderId holder,
                          bool sharedMemory) {
  return kj::heap<RefServer>(store, id, holder, sharedMemory);
}

}  // namespace refstore::server
