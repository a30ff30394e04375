// The `Segment` capability: carries one shared-memory segment's file descriptor to a client
// through Cap'n Proto fd passing (Capability::Server::getFd).
#pragma once

#include <kj/function.h>
#include <kj/io.h>

#include "schema/refstore.capnp.h"
#include "server/shm/segment.h"

namespace refstore::server {

// How many Segment capabilities one connection holds, against its limit. Each costs the daemon
// a file descriptor, and a client could otherwise pile up thousands (Segment.reattach, or a
// View on each of many large values in dedicated segments) until the daemon could accept no
// connection at all. Shared by the connection's SegmentServers, which count themselves in and
// out, so it outlives the connection's registry entry if a capability does.
class SegmentCapBudget final: public kj::Refcounted {
 public:
  explicit SegmentCapBudget(uint32_t limit): limit(limit) {}
  // Counts one more capability in; throws RESOURCE_EXHAUSTED at the limit.
  void take();
  void give() { --live; }
  uint32_t count() const { return live; }

 private:
  uint32_t live = 0;
  uint32_t limit;
};

class SegmentServer final: public proto::Segment::Server {
 public:
  // Keeps its own duplicate of the descriptor: the allocator may release a dedicated segment
  // while a client still holds this capability, and the client must still be able to map it.
  // Readers get the O_RDONLY descriptor, so their mappings can never be made writable.
  // `onDestroy` (optional) runs when the last reference (the client's) is released. Counts
  // itself in `budget` (throwing RESOURCE_EXHAUSTED if it is spent) until destroyed.
  SegmentServer(const shm::Segment& segment, bool writable,
                kj::Maybe<kj::Function<void(SegmentServer*)>> onDestroy,
                kj::Own<SegmentCapBudget> budget);
  // The same from a descriptor (duplicated) and the segment's id and size.
  SegmentServer(int segmentFd, uint32_t id, uint64_t size, bool writable,
                kj::Own<SegmentCapBudget> budget);
  ~SegmentServer() noexcept(false);

  // The descriptor is attached only the first time the capability is written into a message:
  // Cap'n Proto sends the same export again as the same import, and the client's import keeps
  // the descriptor it came with. Once the client releases it, this server is destroyed and the
  // next placement makes a new one.
  kj::Maybe<int> getFd() override;
  kj::Promise<void> info(InfoContext context) override;
  // A fresh, uncached capability for the same segment, its fd attached (see the schema).
  kj::Promise<void> reattach(ReattachContext context) override;

  // A new reference to this capability (for reuse while the client holds it).
  proto::Segment::Client self() { return thisCap(); }

 private:
  kj::Own<SegmentCapBudget> budget;  // first: counted in before the fd is duplicated
  kj::AutoCloseFd fd;
  uint32_t id;
  uint64_t size;
  bool writable;
  bool fdSent = false;
  kj::Maybe<kj::Function<void(SegmentServer*)>> onDestroy;
};

}  // namespace refstore::server
