// CopyRelay: the Relay capability (schema/peer.capnp) this daemon offers for its copy of one of
// another daemon's objects, through the owner, to other readers of it. It names one copy (the
// object and the copy's number here), not the object: a copy made later, after this one was
// dropped, began after the readers this one was offered to, and serving them from it could make
// two copies wait for each other. Whether the copy is still here is asked when a reader opens it.
#pragma once

#include "schema/peer.capnp.h"
#include "gc/object_table.h"

namespace refstore::server {

// What a CopyRelay needs of the remote module.
class CopySource {
 public:
  virtual ~CopySource() noexcept(false) = default;
  // A ticket on this daemon's data port for copy number `copy` of `object` (complete or
  // arriving), for daemon `reader`; NOT_FOUND if that copy is not here.
  virtual gc::Secret relayTicket(gc::ObjectId object, uint64_t copy, gc::PeerId reader) = 0;
  virtual kj::StringPtr dataAddress() = 0;
};

class CopyRelay final: public peer::Relay::Server {
 public:
  CopyRelay(CopySource& source, gc::ObjectId object, uint64_t copy)
      : source(source), object(object), copy(copy) {}

  kj::Promise<void> open(OpenContext context) override;

 private:
  CopySource& source;
  gc::ObjectId object;
  uint64_t copy;
};

}  // namespace refstore::server
