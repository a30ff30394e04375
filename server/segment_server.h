// The `Segment` capability: carries one shared-memory segment's file descriptor to a client
// through Cap'n Proto fd passing (Capability::Server::getFd).
#pragma once

#include <kj/io.h>

#include "schema/refstore.capnp.h"
#include "server/shm/segment.h"

namespace refstore::server {

class SegmentServer final: public proto::Segment::Server {
 public:
  // Keeps its own duplicate of the descriptor: the allocator may release a dedicated segment
  // while a client still holds this capability, and the client must still be able to map it.
  // Readers get the O_RDONLY descriptor, so their mappings can never be made writable.
  SegmentServer(const shm::Segment& segment, bool writable);

  kj::Maybe<int> getFd() override { return fd.get(); }
  kj::Promise<void> info(InfoContext context) override;

 private:
  kj::AutoCloseFd fd;
  uint32_t id;
  uint64_t size;
  bool writable;
};

}  // namespace refstore::server
