#include "server/rpc/write_buffer_server.h"

#include "server/runtime/errors.h"
#include "server/rpc/adoption.h"
#include "server/rpc/ref_server.h"

namespace refstore::server {

WriteBufferServer::WriteBufferServer(RpcServices& services, gc::ObjectTable::Created created,
                                     gc::ClientId client)
    : services(services), store(services.store), id(created.id), writer(created.writer),
      client(client) {}

WriteBufferServer::~WriteBufferServer() noexcept(false) {
  KJ_IF_MAYBE(holder, writer) { store.removeHolder(*holder); }
}

kj::Promise<void> WriteBufferServer::write(WriteContext context) {
  RS_REQUIRE(writer != nullptr, FAILED_PRECONDITION, "buffer is already sealed");
  auto params = context.getParams();
  auto data = params.getData();
  uint64_t offset = params.getOffset();
  auto target = store.bytes(id);
  RS_REQUIRE(data.size() <= proto::MAX_CHUNK_BYTES, TOO_LARGE, "chunk of ", data.size(),
             " bytes exceeds the limit of ", proto::MAX_CHUNK_BYTES);
  RS_REQUIRE(offset <= target.size() && data.size() <= target.size() - offset, OUT_OF_RANGE,
             "write of ", data.size(), " bytes at offset ", offset, " overruns the ",
             target.size(), "-byte buffer");
  memcpy(target.begin() + offset, data.begin(), data.size());
  return kj::READY_NOW;
}

kj::Promise<void> WriteBufferServer::seal(SealContext context) {
  context.allowCancellation();
  RS_REQUIRE(writer != nullptr, FAILED_PRECONDITION, "buffer is already sealed");
  RS_REQUIRE(!sealing, FAILED_PRECONDITION,
             "another seal of this buffer is in progress (it waits for its children's Refs)");
  // Cleared however the seal ends: sealed, refused, or cancelled (the caller went away).
  sealing = true;
  auto sealingDone = kj::defer([this]() { sealing = false; });
  return adoptAll(services, context.getParams().getChildren(), client)
      .then([this, context](kj::Own<TemporaryHolds> children) mutable {
        KJ_IF_MAYBE(holder, writer) {
          store.seal(id, children->ids());
          gc::HolderId sealed = *holder;
          writer = nullptr;  // newRef takes it over, even if it fails
          context.getResults().setRef(newRef(services, sealed, client));
          return;
        }
        RS_FAIL(FAILED_PRECONDITION, "buffer is already sealed");
      })
      .attach(kj::mv(sealingDone));
}

}  // namespace refstore::server
