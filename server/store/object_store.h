// ObjectStore: the daemon's state, independent of any connection and of Cap'n Proto's RPC.
//
// It coordinates, as LevelDB's DBImpl does its VersionSet and TableCache:
//   - gc::ObjectTable (gc/): which objects exist and what keeps each alive;
//   - ObjectMemory: where their bytes live (shared memory, file-backed);
//   - MemoryAdmission: memory for new values, waiting fairly when there is none;
//   - Spiller: moving the least recently used values to disk and back (with a spill directory);
//   - HashScheduler: every value's XXH3-128, large ones hashed later in the background;
//   - TokenIssuer: share tokens and their expiry;
//   - PromiseWaiters: readers waiting for futures;
//   - ClientRegistry: who the holders are, for listings.
// Its own job is the objects' lifecycle -- create, seal, put, promises and their settlement,
// access to bytes, holders, pins and names -- and keeping those parts in step. The capability
// servers (server/rpc/) are thin: they translate calls into these methods and hold HolderIds
// whose release they report. Everything here runs on the event loop's thread.
#pragma once

#include <kj/async.h>
#include <kj/function.h>
#include <kj/string.h>
#include <kj/timer.h>

#include <vector>

#include "gc/object_table.h"
#include "server/spill/spill_store.h"
#include "server/store/client_registry.h"
#include "server/store/hash_scheduler.h"
#include "server/store/limits.h"
#include "server/store/memory_admission.h"
#include "server/store/object_memory.h"
#include "server/store/promise_waiters.h"
#include "server/store/proxy_door.h"
#include "server/store/spiller.h"
#include "server/store/store_stats.h"
#include "server/store/token_issuer.h"

namespace refstore::server {

class ObjectStore {
 public:
  struct Options {
    shm::Allocator& memory;  // shared memory
    kj::Timer& timer;
    uint64_t origin;         // this daemon's epoch: the high half of every object id
    MemoryPolicy policy = MemoryPolicy();
    Limits limits = Limits();
    // With both, values spill to `spill` under pressure and values larger than memory get
    // file-backed memory from `files` (both must outlive the store). Without, requests that do
    // not fit wait for memory to be freed.
    kj::Maybe<SpillStore&> spill = nullptr;
    kj::Maybe<shm::Allocator&> files = nullptr;
    HashScheduler::Options hashing = HashScheduler::Options();
    kj::Function<void()> afterAllocate = []() {};  // e.g. refill the pre-faulted spare
    // Other daemons' objects (many hosts): without it, this daemon makes no proxies.
    kj::Maybe<ProxyDoor&> proxies = nullptr;
    // Where other daemons reach this one (--advertise; "" if they cannot): tokens name it.
    kj::String advertise = kj::str();
  };
  explicit ObjectStore(Options options);
  ~ObjectStore() noexcept(false);
  KJ_DISALLOW_COPY(ObjectStore);

  uint64_t origin() const { return originEpoch; }
  const Limits& limits() const { return bounds; }
  ClientRegistry& clients() { return registry; }
  const ClientRegistry& clients() const { return registry; }
  const gc::ObjectTable& table() const { return objects; }
  const ObjectMemory& objectMemory() const { return memory; }  // segments, for placements
  const kj::Timer& clock() const { return timer; }

  // --- memory for new values (MemoryAdmission) -------------------------------------------
  kj::Promise<kj::Own<Reservation>> reserve(uint64_t size, kj::Duration timeout,
                                            gc::ClientId client) {
    return admission.reserve(size, timeout, client);
  }
  kj::Maybe<kj::Own<Reservation>> reserveNow(uint64_t size) { return admission.reserveNow(size); }
  // Memory for a proxy's local copy: never file-backed if it fits, prefetches behind everyone
  // (MemoryAdmission::reserveCopy).
  kj::Promise<kj::Own<Reservation>> reserveCopy(uint64_t size, Priority priority,
                                                kj::Maybe<kj::Promise<void>> promotion) {
    return admission.reserveCopy(size, priority, kj::mv(promotion));
  }
  kj::Promise<kj::Array<kj::Own<Reservation>>> reserveMany(kj::ArrayPtr<const uint64_t> sizes,
                                                           kj::Duration timeout,
                                                           gc::ClientId client) {
    return admission.reserveMany(sizes, timeout, client);
  }

  // --- objects -----------------------------------------------------------------------------
  // A new object in state CREATING over `memory`, held by the returned writer holder.
  gc::ObjectTable::Created create(kj::Own<Reservation> memory, uint64_t size,
                                  gc::ClientId creator);
  // Seals with `children` and hashes the bytes (HashScheduler). Throws FAILED_PRECONDITION if
  // not CREATING, NOT_FOUND if a child is gone, CYCLE if a child contains the object.
  void seal(gc::ObjectId id, const std::vector<gc::ObjectId>& children);
  // A new sealed object holding a copy of `data` (in `memory`) and the given children.
  gc::ObjectTable::Created put(kj::Own<Reservation> memory, kj::ArrayPtr<const kj::byte> data,
                               const std::vector<gc::ObjectId>& children, gc::ClientId creator);

  // --- futures -----------------------------------------------------------------------------
  gc::ObjectTable::Created promise(gc::ClientId creator);
  // Settle a promise; each wakes its readers. Throws FAILED_PRECONDITION if already settled,
  // NOT_FOUND if the promise or a child is gone, CYCLE for self-containment.
  void fulfill(gc::ObjectId promise, kj::Own<Reservation> memory,
               kj::ArrayPtr<const kj::byte> data, const std::vector<gc::ObjectId>& children);
  void fulfillWith(gc::ObjectId promise, gc::ObjectId target);
  // `description` is the whole error readers will get, e.g. "refstore.REJECTED: reason".
  // Returns false if the promise was already settled or gone (nothing changes).
  bool fail(gc::ObjectId promise, kj::String description);
  // Resolves once `id` (through aliases) is sealed; throws REJECTED/BROKEN_PROMISE if it failed.
  kj::Promise<void> whenReady(gc::ObjectId id);
  // Whether whenReady(id) and then ensureResident(resolve(id)) would both resolve at once.
  // Throws NOT_FOUND if it is gone.
  bool readableNow(gc::ObjectId id) const;

  // --- access ------------------------------------------------------------------------------
  const gc::ObjectRecord& record(gc::ObjectId id) const;  // throws NOT_FOUND if reclaimed
  // The object that owns `id`'s bytes (follows aliases).
  gc::ObjectId resolve(gc::ObjectId id) const { return objects.resolveAlias(id); }
  // Brings a spilled object back into memory (CORRUPTED if its hash does not match); resolves
  // at once for objects in memory. Use bytes() in the same turn as it resolves.
  kj::Promise<void> ensureResident(gc::ObjectId id);
  // A proxy kept only by a View's pin is held again (gc: ObjectTable::reviveProxy).
  void reviveProxy(gc::ObjectId id);
  // The same ahead of any read (Ref.prefetch): a proxy's copy from its owner waits for memory
  // behind every ordinary request (creates, puts, readers' copies) until a reader wants it. A
  // spilled value comes back as for a reader.
  kj::Promise<void> prefetch(gc::ObjectId id);
  // The bytes of `id` (owns bytes, resident: resolve() and ensureResident() first). Marks it
  // recently used.
  kj::ArrayPtr<kj::byte> bytes(gc::ObjectId id);
  Location location(gc::ObjectId id) const;
  // Resolves once `owner`'s hash is recorded (HashScheduler::whenHashed).
  kj::Promise<void> whenHashed(gc::ObjectId owner) { return hashes.whenHashed(owner); }
  // Whether background work needs a core the event loop would take (busy polling pauses).
  bool threadsNeedCpu() const { return hashes.cancelledHashesRunning(); }
  HashScheduler& hashing() { return hashes; }

  // --- references ----------------------------------------------------------------------------
  gc::HolderId addHolder(gc::ObjectId id, gc::ClientId client);  // throws NOT_FOUND if dead
  void removeHolder(gc::HolderId holder);
  void pin(gc::ObjectId id);  // throws NOT_FOUND if dead
  void unpin(gc::ObjectId id);  // the last pin gone, spilling is reconsidered for waiters
  void addName(gc::ObjectId id, kj::StringPtr name);  // INVALID_ARGUMENT, ALREADY_EXISTS, ...
  gc::ObjectId lookupName(kj::StringPtr name) const;  // NOT_FOUND
  void removeName(kj::StringPtr name);                // NOT_FOUND
  kj::String share(gc::ObjectId id, uint32_t ttlSeconds, uint32_t uses, gc::ClientId client) {
    return tokens.share(id, ttlSeconds, uses, client);
  }
  // A token redeemed: the object and a new holder for `client` (TokenIssuer::redeem).
  std::pair<gc::ObjectId, gc::HolderId> restore(kj::StringPtr token, gc::ClientId client) {
    return tokens.redeem(token, client);
  }

  // --- other daemons' objects (many hosts) ---------------------------------------------------
  // A proxy of `ownerId` held by `creator` (gc::ObjectTable::createProxy). Throws
  // FAILED_PRECONDITION if one exists already (use addHolder on it).
  gc::ObjectTable::Created createProxy(gc::ObjectId ownerId, gc::ClientId creator);
  void setProxyInfo(gc::ObjectId proxy, uint64_t size, uint64_t hashHi, uint64_t hashLo);
  // The proxy's bytes arrived in `memory` (checked against the owner's hash).
  void storeProxyBytes(gc::ObjectId proxy, kj::Own<Reservation> memory, uint64_t size,
                       uint64_t hashHi, uint64_t hashLo);
  // Remote holders, on the owner's side (gc::ObjectTable: markRemote and what follows).
  gc::ObjectTable& remoteHolds() { return objects; }

  // --- introspection -----------------------------------------------------------------------
  StoreStats stats() const;

 private:
  kj::Promise<void> bringHere(gc::ObjectId id, ProxyDoor::Wanted wanted);
  void reclaim(const gc::ObjectRecord& record);  // gc callback: give the memory back
  // After gc refused to attach `children` to `id`: throws the precise reason.
  [[noreturn]] void throwChildrenRefused(gc::ObjectId id,
                                         const std::vector<gc::ObjectId>& children) const;

  // Declaration order is construction order: each part is built from those above it.
  const uint64_t originEpoch;
  const Limits bounds;
  kj::Timer& timer;
  const kj::TimePoint startedAt;
  ObjectMemory memory;
  gc::ObjectTable objects;
  ClientRegistry registry;
  PromiseWaiters waiters;
  HashScheduler hashes;
  MemoryAdmission admission;
  kj::Maybe<kj::Own<Spiller>> spiller;  // with a spill directory
  kj::Maybe<ProxyDoor&> proxies;
  TokenIssuer tokens;
  uint64_t reclaimedTotal = 0;
  uint64_t lastReclaimMonoUs = 0;  // Stats.lastReclaimMonoUs
};

}  // namespace refstore::server
