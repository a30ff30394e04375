// ObjectStore: the daemon's state, independent of any connection.
//
// It joins three things: the gc::ObjectTable (which objects exist and what keeps each alive),
// the shared-memory Allocator (where their bytes live), and the connected-client registry
// (who the holders are, for listings). Capability servers (server/*_server.h) are thin:
// they translate RPC calls into these methods and hold HolderIds whose release they report
// from their destructors. Everything here runs on the event-loop thread.
#pragma once

#include <kj/async.h>
#include <kj/function.h>
#include <kj/map.h>
#include <kj/string.h>
#include <kj/time.h>
#include <kj/timer.h>

#include "gc/object_table.h"
#include "schema/refstore.capnp.h"
#include "server/shm/allocator.h"

namespace refstore::server {

// Who is on the other end of a connection.
struct ClientInfo {
  kj::String label;         // from Store.hello, "" until then
  int pid = 0;              // SO_PEERCRED, 0 if unknown (TCP)
  uint uid = 0;
  bool sharedMemory = false;          // Unix socket: may receive segment fds
  bool writableSharedMemory = false;  // and the same uid as the daemon
};

// A value's location in shared memory, as sent in `Placement`.
struct Location {
  uint32_t segmentId;
  uint64_t offset;
  uint64_t length;
  uint64_t segmentSize;
  bool dedicated;  // the segment holds only this object (see Placement.dedicated)
};

class ObjectStore {
 public:
  ObjectStore(shm::Allocator& allocator, kj::Timer& timer, uint64_t origin);
  ~ObjectStore() noexcept(false);
  KJ_DISALLOW_COPY(ObjectStore);

  uint64_t origin() const { return originEpoch; }

  // --- clients -------------------------------------------------------------------------
  gc::ClientId addClient(ClientInfo info);
  void removeClient(gc::ClientId id);
  ClientInfo& client(gc::ClientId id);
  size_t clientCount() const { return clients.size(); }

  // Called after every successful allocation (the daemon refills its pre-faulted spare).
  void setAllocationListener(kj::Function<void()> listener) { afterAllocate = kj::mv(listener); }

  // --- objects -------------------------------------------------------------------------
  // Reserves `size` bytes in state CREATING, held by the returned writer holder.
  // Throws INVALID_ARGUMENT / TOO_LARGE / OUT_OF_MEMORY.
  gc::ObjectTable::Created create(uint64_t size, gc::ClientId creator);
  // Hashes the bytes (XXH3-128) and seals. Throws FAILED_PRECONDITION if not CREATING.
  void seal(gc::ObjectId id);
  // A new sealed object holding a copy of `data`, held by the returned holder.
  gc::ObjectTable::Created put(kj::ArrayPtr<const kj::byte> data, gc::ClientId creator);

  const gc::ObjectRecord& record(gc::ObjectId id) const;  // throws NOT_FOUND if reclaimed
  kj::ArrayPtr<kj::byte> bytes(gc::ObjectId id);           // the object's memory
  Location location(gc::ObjectId id) const;

  gc::HolderId addHolder(gc::ObjectId id, gc::ClientId client);  // throws NOT_FOUND if dead
  void removeHolder(gc::HolderId holder);
  void pin(gc::ObjectId id);    // throws NOT_FOUND if dead
  void unpin(gc::ObjectId id);

  // --- tokens --------------------------------------------------------------------------
  kj::String share(gc::ObjectId id, uint32_t ttlSeconds, uint32_t uses);
  // Returns the object and a new holder for `client`. Throws MALFORMED / EXPIRED / NOT_FOUND /
  // WRONG_STORE.
  std::pair<gc::ObjectId, gc::HolderId> restore(kj::StringPtr token, gc::ClientId client);

  // --- segments ------------------------------------------------------------------------
  // A capability carrying a segment's fd (read-only or read-write).
  proto::Segment::Client segmentCap(uint32_t segmentId, bool writable);

  // --- introspection -------------------------------------------------------------------
  void fillStats(proto::Stats::Builder stats) const;
  void fillListing(capnp::List<proto::ObjectListing>::Builder out,
                   kj::ArrayPtr<const gc::ObjectRecord* const> records) const;
  kj::Array<const gc::ObjectRecord*> allRecords() const;
  const gc::ObjectTable& table() const { return objects; }

 private:
  gc::MonoMillis nowMillis() const;
  void reclaim(const gc::ObjectRecord& record);  // gc callback: give the memory back
  void armLeaseTimer();                            // one timer at the earliest token expiry
  kj::Promise<void> leaseTimerLoop();

  shm::Allocator& allocator;
  kj::Timer& timer;
  uint64_t originEpoch;
  kj::TimePoint startedAt;
  gc::ObjectTable objects;
  kj::HashMap<gc::ClientId, ClientInfo> clients;
  gc::ClientId nextClientId = 1;

  kj::Maybe<gc::MonoMillis> leaseTimerAt;
  kj::Promise<void> leaseTimerTask = nullptr;

  kj::Maybe<kj::Function<void()>> afterAllocate;
  uint64_t putsTotal = 0;
  uint64_t reclaimedTotal = 0;
};

// Writes a record into the wire form (`ObjectInfo`); gc::ObjectState and proto::ObjectState
// list the states in the same order.
void fillObjectInfo(proto::ObjectInfo::Builder info, const gc::ObjectRecord& record);

// Writes where `id`'s bytes are, with the Segment capability carrying the fd (read-only unless
// `writable`).
void fillPlacement(proto::Placement::Builder placement, ObjectStore& store, gc::ObjectId id,
                   bool writable);

}  // namespace refstore::server
