// CopyRelay: the Relay capability (schema/peer.capnp) this daemon offers for its copy of one of
// another daemon's objects, through the owner, to other readers of it. It names the object only:
// whether there is still a copy to relay is asked when a reader opens it.
#pragma once

#include "schema/peer.capnp.h"
#include "gc/object_table.h"

namespace refstore::server {

// What a CopyRelay needs of the remote module.
class CopySource {
 public:
  virtual ~CopySource() noexcept(false) = default;
  // A ticket on this daemon's data port for its copy of `object` (complete or arriving), for
  // daemon `reader`; NOT_FOUND if there is none.
  virtual gc::Secret relayTicket(gc::ObjectId object, gc::PeerId reader) = 0;
  virtual kj::StringPtr dataAddress() = 0;
};

class CopyRelay final: public peer::Relay::Server {
 public:
  CopyRelay(CopySource& source, gc::ObjectId object): source(source), object(object) {}

  kj::Promise<void> open(OpenContext context) override;

 private:
  CopySource& source;
  gc::ObjectId object;
};

}  // namespace refstore::server
