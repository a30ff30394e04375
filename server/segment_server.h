// The `Segment` capability: carries one shared-memory segment's file descriptor to a client
// through Cap'n Proto fd passing (Capability::Server::getFd).
#pragma once

#include "schema/refstore.capnp.h"
#include "server/shm/segment.h"

namespace refstore::server {

class SegmentServer final: public proto::Segment::Server {
 public:
  // `segment` must outlive this server (segments live as long as the allocator).
  SegmentServer(const shm::Segment& segment, bool writable): segment(segment), writable(writable) {}

  // Readers get the O_RDONLY descriptor, so their mappings can never be made writable.
  kj::Maybe<int> getFd() override { return writable ? segment.fd() : segment.readOnlyFd(); }

  kj::Promise<void> info(InfoContext context) override {
    auto results = context.getResults();
    results.setId(segment.id());
    results.setSize(segment.size());
    results.setWritable(writable);
    return kj::READY_NOW;
  }

 private:
  const shm::Segment& segment;
  bool writable;
};

}  // namespace refstore::server
