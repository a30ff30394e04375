// ObjectStore: the daemon's state, independent of any connection.
//
// It joins the gc::ObjectTable (which objects exist and what keeps each alive), the
// shared-memory Allocator (where their bytes live), the waiters on futures, and the
// connected-client registry (who the holders are, for listings). Capability servers
// (server/*_server.h) are thin: they translate RPC calls into these methods and hold HolderIds
// whose release they report from their destructors. Everything here runs on the event loop.
#pragma once

#include <capnp/capability.h>
#include <kj/async.h>
#include <kj/function.h>
#include <kj/map.h>
#include <kj/string.h>
#include <kj/time.h>
#include <kj/timer.h>

#include <vector>

#include "gc/object_table.h"
#include "schema/refstore.capnp.h"
#include "server/promise_waiters.h"
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

  // Every Ref capability the daemon hands out is registered here, so a Ref that comes back as
  // a parameter (children, fulfillWith, adopt) can be recognised as one of ours.
  capnp::CapabilityServerSet<proto::Ref> refServers;

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
  // Hashes the bytes (XXH3-128) and seals with `children`. Throws FAILED_PRECONDITION if not
  // CREATING, NOT_FOUND if a child is gone, CYCLE if a child contains the object.
  void seal(gc::ObjectId id, const std::vector<gc::ObjectId>& children);
  // A new sealed object holding a copy of `data` and the given children.
  gc::ObjectTable::Created put(kj::ArrayPtr<const kj::byte> data,
                               const std::vector<gc::ObjectId>& children, gc::ClientId creator);

  // --- futures -------------------------------------------------------------------------
  gc::ObjectTable::Created promise(gc::ClientId creator);
  // Settle a promise; each wakes its readers. Throws FAILED_PRECONDITION if already settled,
  // NOT_FOUND if the promise or a child is gone, CYCLE for self-containment.
  void fulfill(gc::ObjectId promise, kj::ArrayPtr<const kj::byte> data,
               const std::vector<gc::ObjectId>& children);
  void fulfillWith(gc::ObjectId promise, gc::ObjectId target);
  // `description` is the whole error readers will get, e.g. "refstore.REJECTED: reason".
  // Returns false if the promise was already settled or gone (nothing changes).
  bool fail(gc::ObjectId promise, kj::String description);
  // Resolves once `id` (through aliases) is sealed; throws REJECTED/BROKEN_PROMISE if it failed.
  kj::Promise<void> whenReady(gc::ObjectId id);

  // --- access --------------------------------------------------------------------------
  const gc::ObjectRecord& record(gc::ObjectId id) const;  // throws NOT_FOUND if reclaimed
  // The object that owns `id`'s bytes (follows aliases).
  gc::ObjectId resolve(gc::ObjectId id) const { return objects.resolveAlias(id); }
  // The bytes of `id` (an object that owns bytes: resolve() aliases first).
  kj::ArrayPtr<kj::byte> bytes(gc::ObjectId id);
  Location location(gc::ObjectId id) const;

  gc::HolderId addHolder(gc::ObjectId id, gc::ClientId client);  // throws NOT_FOUND if dead
  void removeHolder(gc::HolderId holder);
  void pin(gc::ObjectId id);    // throws NOT_FOUND if dead
  void unpin(gc::ObjectId id);

  // --- names ---------------------------------------------------------------------------
  void addName(gc::ObjectId id, kj::StringPtr name);  // INVALID_ARGUMENT / ALREADY_EXISTS
  gc::ObjectId lookupName(kj::StringPtr name) const;  // NOT_FOUND
  void removeName(kj::StringPtr name);                // NOT_FOUND

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
  shm::Allocation allocate(uint64_t size);         // throws TOO_LARGE / OUT_OF_MEMORY
  void release(uint64_t packedLocation, uint64_t size);
  // After gc refused to attach `children` to `id`: throws the precise reason.
  [[noreturn]] void throwChildrenRefused(gc::ObjectId id,
                                         const std::vector<gc::ObjectId>& children) const;

  shm::Allocator& allocator;
  kj::Timer& timer;
  uint64_t originEpoch;
  kj::TimePoint startedAt;
  gc::ObjectTable objects;
  PromiseWaiters waiters;
  kj::HashMap<gc::ClientId, ClientInfo> clients;
  gc::ClientId nextClientId = 1;
  kj::HashMap<gc::HolderId, gc::MonoMillis> holderSince;  // for "who holds what, how long"

  kj::Maybe<gc::MonoMillis> leaseTimerAt;
  kj::Promise<void> leaseTimerTask = nullptr;

  kj::Maybe<kj::Function<void()>> afterAllocate;
  uint64_t putsTotal = 0;
  uint64_t reclaimedTotal = 0;
};

// Writes a record into the wire form (`ObjectInfo`); gc::ObjectState and proto::ObjectState
// list the states in the same order.
void fillObjectInfo(proto::ObjectInfo::Builder info, const gc::ObjectRecord& record);

// Writes where `id`'s bytes are (after resolving aliases), with the Segment capability carrying
// the fd (read-only unless `writable`).
void fillPlacement(proto::Placement::Builder placement, ObjectStore& store, gc::ObjectId id,
                   bool writable);

}  // namespace refstore::server
