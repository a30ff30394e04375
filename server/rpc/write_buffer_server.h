// The `WriteBuffer` capability: a reserved object being written. It owns the object's writer
// holder until `seal` hands it to the new Ref; destroyed unsealed, it releases the holder and
// the reservation is freed (an aborted write loses nothing else).
#pragma once

#include "server/rpc/services.h"

namespace refstore::server {

class WriteBufferServer final: public proto::WriteBuffer::Server {
 public:
  WriteBufferServer(RpcServices& services, gc::ObjectTable::Created created,
                    gc::ClientId client);
  ~WriteBufferServer() noexcept(false);

  kj::Promise<void> write(WriteContext context) override;
  kj::Promise<void> seal(SealContext context) override;

 private:
  RpcServices& services;
  ObjectStore& store;
  gc::ObjectId id;
  kj::Maybe<gc::HolderId> writer;  // null once sealed (the Ref owns it then)
  gc::ClientId client;
  bool sealing = false;            // a seal is waiting for its children to be adopted
};

}  // namespace refstore::server
