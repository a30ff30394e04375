// ObjectStore: the daemon's state, independent of any connection.
//
// It joins the gc::ObjectTable (which objects exist and what keeps each alive), the
// shared-memory Allocator (where their bytes live), the waiters on futures, and the
// connected-client registry (who the holders are, for listings). Capability servers
// (server/*_server.h) are thin: they translate RPC calls into these methods and hold HolderIds
// whose release they report from their destructors. Everything here runs on the event loop.
#pragma once

#include <xxhash.h>

#include <deque>

#include <capnp/capability.h>
#include <kj/async.h>
#include <kj/function.h>
#include <kj/map.h>
#include <kj/string.h>
#include <kj/time.h>
#include <kj/timer.h>

#include <atomic>
#include <memory>
#include <vector>

#include "gc/object_table.h"
#include "schema/refstore.capnp.h"
#include "server/admission_queue.h"
#include "server/background_hasher.h"
#include "server/limits.h"
#include "server/promise_waiters.h"
#include "server/reply_budget.h"
#include "server/segment_server.h"
#include "server/shm/allocator.h"
#include "server/spill/spill_store.h"
#include "server/uv_loop.h"

namespace refstore::server {


// Who is on the other end of a connection.
struct ClientInfo {
  kj::String label;         // from Store.hello, "" until then
  int pid = 0;              // SO_PEERCRED, 0 if unknown (TCP)
  uint uid = 0;
  bool sharedMemory = false;          // Unix socket: may receive segment fds
  bool writableSharedMemory = false;  // and the same uid as the daemon
  // The shared segments' Segment capabilities this connection holds, by (segment id << 1 | writable): each is
  // sent with its fd once and then reused (ObjectStore::segmentCap). Entries remove themselves
  // when the client releases the capability.
  kj::HashMap<uint64_t, SegmentServer*> segmentCaps;
  // Every Segment capability of this connection, cached or not, counts against this.
  kj::Own<SegmentCapBudget> segmentCapBudget;
  // Large replies (copy-path reads) built for this connection and not yet written to it.
  kj::Own<ReplyBudget> replyBudget;
};

// A value's location in shared memory, as sent in `Placement`.
struct Location {
  uint32_t segmentId;
  uint64_t offset;
  uint64_t length;
  uint64_t segmentSize;
  bool dedicated;  // the segment holds only this object (see Placement.dedicated)
};

// How the store behaves under memory pressure (see DESIGN.md "Memory pressure").
struct MemoryPolicy {
  double highWatermark = 0.90;  // start spilling when shared memory (plus waiting requests)
  double lowWatermark = 0.70;   // passes high, and stop once it is back under low
  kj::Duration defaultWait = 30 * kj::SECONDS;  // deadline of a request that sets none
  // Requests at least this large that do not fit now go straight to a file-backed allocation
  // instead of waiting (0: capacity / 4).
  uint64_t fileBackedThreshold = 0;
};

class ObjectStore {
 public:
  ObjectStore(shm::Allocator& memory, kj::Timer& timer, uint64_t origin,
              MemoryPolicy policy = MemoryPolicy(), Limits limits = Limits());
  ~ObjectStore() noexcept(false);
  KJ_DISALLOW_COPY(ObjectStore);

  uint64_t origin() const { return originEpoch; }
  const Limits& limits() const { return bounds; }

  // --- clients -------------------------------------------------------------------------
  gc::ClientId addClient(ClientInfo info);
  void removeClient(gc::ClientId id);
  ClientInfo& client(gc::ClientId id);
  size_t clientCount() const { return clients.size(); }

  // Called after every successful allocation (the daemon refills its pre-faulted spare).
  void setAllocationListener(kj::Function<void()> listener) { afterAllocate = kj::mv(listener); }

  // Enables spilling to `spill` and file-backed allocations from `files` (both must outlive the
  // store). Without them, requests that do not fit just wait for memory to be freed.
  void enableDisk(SpillStore& spill, shm::Allocator& files);

  // Hashes large values on `hasher`'s thread once they have lived `delayMillis` (or when their
  // hash is needed, see kDefaultHashDelayMillis), instead of on the event loop before answering
  // seal; and checks values restored from disk on `pool`'s threads. Without it every hash is
  // computed inline.
  void enableBackgroundHashing(BackgroundHasher& hasher, UvLoop& pool,
                               uint64_t delayMillis = kDefaultHashDelayMillis) {
    backgroundHasher = hasher;
    hashPool = pool;
    hashDelayMillis = delayMillis;
  }

  // --- objects -------------------------------------------------------------------------
  // Memory for `size` bytes for `client`: now if it fits; else after waiting in the admission
  // queue (while spilling makes room) until `timeout` (0: the policy's default); else
  // OUT_OF_MEMORY. Objects larger than the capacity, or large ones that do not fit now, get
  // file-backed memory when disk is enabled. Throws INVALID_ARGUMENT (0 bytes), TOO_LARGE (can
  // never fit), RESOURCE_EXHAUSTED (the client has too many requests waiting).
  kj::Promise<kj::Own<Reservation>> reserve(uint64_t size, kj::Duration timeout,
                                            gc::ClientId client);
  // Shared memory at once, when reserve() would grant it without waiting for anything (it
  // starts with this); null otherwise (then call reserve()). For the request paths: a promise
  // costs several heap allocations and event-loop turns even when it is ready.
  kj::Maybe<kj::Own<Reservation>> reserveNow(uint64_t size);
  // Memory for each of `sizes` (Store.putMany), all or nothing: TOO_LARGE at once if together
  // they can never fit (more than the capacity, and no disk); otherwise as reserve() for each,
  // failing as soon as one fails and releasing those already granted. Spilling is considered
  // once for the whole batch rather than once per value.
  kj::Promise<kj::Array<kj::Own<Reservation>>> reserveMany(kj::ArrayPtr<const uint64_t> sizes,
                                                           kj::Duration timeout,
                                                           gc::ClientId client);

  // A new object in state CREATING over `memory`, held by the returned writer holder.
  gc::ObjectTable::Created create(kj::Own<Reservation> memory, uint64_t size,
                                  gc::ClientId creator);
  // Seals with `children`, and hashes the bytes (XXH3-128): inline up to kHashInlineBytes,
  // else later on the background hasher (see kDefaultHashDelayMillis; the writer does not wait
  // for a pass over its value; the hash is only needed by info() and spilling: whenHashed()).
  // Throws FAILED_PRECONDITION if not CREATING, NOT_FOUND if a child is gone, CYCLE if a child
  // contains the object.
  void seal(gc::ObjectId id, const std::vector<gc::ObjectId>& children);
  // A new sealed object holding a copy of `data` (in `memory`) and the given children.
  gc::ObjectTable::Created put(kj::Own<Reservation> memory, kj::ArrayPtr<const kj::byte> data,
                               const std::vector<gc::ObjectId>& children, gc::ClientId creator);

  // --- futures -------------------------------------------------------------------------
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
  // Whether whenReady(id) and then ensureResident(resolve(id)) would both resolve at once: the
  // object is readable and its bytes are in memory now. Throws NOT_FOUND if it is gone.
  bool readableNow(gc::ObjectId id) const;
  // Resolves once the sealed object `owner` (not an alias) has its hash recorded, starting a
  // deferred hash at once. Also resolves, with the hash still zero, if the value died, its hash
  // was cancelled, or hashing failed (logged). Throws if the hash cannot be started.
  kj::Promise<void> whenHashed(gc::ObjectId owner);
  // Resolves once every background hash cancelled because its value died has stopped and
  // unpinned that value (freeing it); null if there are none.
  kj::Maybe<kj::Promise<void>> whenCancelledHashesStop();
  // Whether a cancelled background hash is still running: its value's memory is freed only
  // when the hashing thread notices, so the event loop should not busy-poll and take its core.
  bool cancelledHashesRunning() const;
  // Values up to this size are hashed on the event loop (~0.1 ms at XXH3's ~10 GB/s); larger
  // ones on the background hasher, when enabled.
  static constexpr uint64_t kHashInlineBytes = 1 << 20;
  // Larger values are hashed once they have lived this long (--hash-delay-ms), or earlier when
  // someone needs the hash (info, spilling). Most large values in a data pipeline are read and
  // dropped within milliseconds of sealing, and a pass over each of them took a core and memory
  // bandwidth from the very readers it raced (refprobe's 64 MiB handoff on 2 cores: seal to
  // reading every byte 7.4-10.1 ms with an immediate hash, 5.2 without). A value that dies
  // before its turn is never hashed; one that lives is hashed in the background as before.
  static constexpr uint64_t kDefaultHashDelayMillis = 200;

  // --- access --------------------------------------------------------------------------
  const gc::ObjectRecord& record(gc::ObjectId id) const;  // throws NOT_FOUND if reclaimed
  // The object that owns `id`'s bytes (follows aliases).
  gc::ObjectId resolve(gc::ObjectId id) const { return objects.resolveAlias(id); }
  // Brings a spilled object back into memory (verifying its hash: CORRUPTED on mismatch);
  // resolves at once for objects already in memory. Call in the same turn as using bytes().
  kj::Promise<void> ensureResident(gc::ObjectId id);
  // The bytes of `id` (an object that owns bytes and is resident: resolve() aliases and
  // ensureResident() first). Marks it recently used (spilling takes the least recently used).
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
  // A token for `id` minted by `client`. Throws INVALID_ARGUMENT (bad ttl), NOT_FOUND (object
  // gone), RESOURCE_EXHAUSTED (too many live tokens in the daemon or from this client).
  kj::String share(gc::ObjectId id, uint32_t ttlSeconds, uint32_t uses, gc::ClientId client);
  // Returns the object and a new holder for `client`. Throws MALFORMED / EXPIRED / NOT_FOUND /
  // WRONG_STORE.
  std::pair<gc::ObjectId, gc::HolderId> restore(kj::StringPtr token, gc::ClientId client);

  // --- segments ------------------------------------------------------------------------
  // The capability carrying a segment's fd (read-only or read-write) to `client`. A shared
  // segment has one per connection, sent with its fd the first time only: Cap'n Proto reuses
  // the export while the client holds it, and the client keeps it with its mapping, so later
  // placements in that segment cost no fd passing and no Release. A dedicated segment gets a
  // fresh one per placement (its fd always attached): it may be freed and its mapping dropped.
  proto::Segment::Client segmentCap(uint32_t segmentId, bool writable, gc::ClientId client);

  // --- introspection -------------------------------------------------------------------
  void fillStats(proto::Stats::Builder stats) const;
  void fillMemoryStats(proto::Stats::Builder stats) const;  // spill, disk and queue figures
  void fillListing(capnp::List<proto::ObjectListing>::Builder out,
                   kj::ArrayPtr<const gc::ObjectRecord* const> records) const;
  kj::Array<const gc::ObjectRecord*> allRecords() const;
  const gc::ObjectTable& table() const { return objects; }

 private:
  gc::MonoMillis nowMillis() const;
  void reclaim(const gc::ObjectRecord& record);  // gc callback: give the memory back
  void armLeaseTimer();                            // one timer at the earliest token expiry
  kj::Promise<void> leaseTimerLoop();
  kj::Promise<void> expireDueLeases();  // one slice, then the next slice or the timer
  // Leases expired per event-loop turn: a million tokens expiring at once must not stall the
  // loop (other clients, signals); the rest go in the next turns.
  static constexpr size_t kLeaseExpirySlice = 10000;
  // reserve(), starting spills for the new demand only if `spillNow` (reserveMany starts them
  // once for its whole batch).
  kj::Promise<kj::Own<Reservation>> reserve(uint64_t size, kj::Duration timeout,
                                            gc::ClientId client, bool spillNow);
  kj::Maybe<kj::Own<Reservation>> tryReserveNow(uint64_t size);  // shared memory, no waiting
  // reserveNow(), starting spills only if `spillNow`.
  kj::Maybe<kj::Own<Reservation>> reserveNow(uint64_t size, bool spillNow);
  kj::Own<Reservation> reserveFileBacked(uint64_t size);          // throws OUT_OF_DISK
  shm::Allocator& allocatorFor(uint32_t segmentId) const;
  // The memory of a resident object that owns bytes (no "recently used" mark, unlike bytes()).
  kj::ArrayPtr<kj::byte> memoryOf(const gc::ObjectRecord& object) const;
  void release(uint64_t packedLocation, uint64_t size);
  void schedulePump();   // serve the admission queue soon (not from inside gc callbacks)
  void pumpQueue();
  void maybeSpill();     // start spilling if above the high watermark
  void startSpill(gc::ObjectId id);
  void finishSpill(gc::ObjectId id, SpillLocation where);
  kj::Promise<void> restore(gc::ObjectId id);
  // Whether a value of `size` bytes is hashed on the event loop (small, or no background
  // hashing enabled).
  bool hashesInline(uint64_t size) const;
  // XXH3-128 of `data` someone is waiting for (a restore's check): inline when hashesInline,
  // else on the pool. The caller keeps `data` alive and in place until it resolves.
  kj::Promise<XXH128_hash_t> hashOf(kj::ArrayPtr<const kj::byte> data);
  // Records the hash of the just-sealed `id`: now (small values), or queues it to be hashed on
  // the background hasher after hashDelayMillis.
  void recordHash(gc::ObjectId id);
  kj::Promise<void> hashQueueLoop();           // one timer at the earliest queued hash
  // Whether `object` still waits for its deferred hash (none recorded, none running, alive).
  bool awaitsHash(const gc::ObjectRecord& object) const;
  void startDeferredHash(gc::ObjectId id);     // if it awaitsHash: start it now
  // Hashes `id` on the background hasher, pinned meanwhile so that it is neither freed nor
  // spilled while that thread reads it.
  void startBackgroundHash(gc::ObjectId id);
  // Tells the hashing thread to stop hashing values that have since died (their pins then go).
  void cancelDeadHashes();
  // After gc refused to attach `children` to `id`: throws the precise reason.
  [[noreturn]] void throwChildrenRefused(gc::ObjectId id,
                                         const std::vector<gc::ObjectId>& children) const;

  shm::Allocator& allocator;  // shared memory
  kj::Maybe<shm::Allocator&> files;
  kj::Maybe<SpillStore&> spill;
  MemoryPolicy policy;
  Limits bounds;
  AdmissionQueue queue;
  struct ErrorLogger: kj::TaskSet::ErrorHandler {
    void taskFailed(kj::Exception&& e) override;
  } errorLogger;
  kj::TaskSet background{errorLogger};  // pumps, spills, restores
  bool pumpScheduled = false;
  bool spilling = false;     // between the high and the low watermark (for logs)
  uint64_t spillInFlightBytes = 0;
  kj::HashMap<uint64_t, kj::ForkedPromise<void>> restoring;  // by id.lo
  struct HashInProgress {
    gc::ObjectId id;
    kj::ForkedPromise<void> done;
    std::shared_ptr<std::atomic<bool>> cancelled;  // read by the hashing thread
  };
  kj::HashMap<uint64_t, HashInProgress> hashing;  // by id.lo: hashes in progress
  struct QueuedHash {
    gc::MonoMillis due;
    gc::ObjectId id;
  };
  std::deque<QueuedHash> hashQueue;  // by due time; entries no longer awaitsHash are skipped
  bool hashQueueArmed = false;       // hashQueueTask is waiting for the front's due time
  kj::Promise<void> hashQueueTask = nullptr;
  uint64_t backgroundHashesTotal = 0;
  uint64_t hashDelayMillis = kDefaultHashDelayMillis;
  kj::Maybe<BackgroundHasher&> backgroundHasher;
  kj::Maybe<UvLoop&> hashPool;
  kj::HashMap<uint64_t, gc::MonoMillis> lastUsed;             // by id.lo; absent: createdAt
  struct Counters {
    uint64_t spills = 0, spilledBytes = 0, restores = 0, restoredBytes = 0, spillFailures = 0;
  } counters;
  kj::Timer& timer;
  uint64_t originEpoch;
  kj::TimePoint startedAt;
  gc::ObjectTable objects;
  PromiseWaiters waiters;
  kj::HashMap<gc::ClientId, ClientInfo> clients;
  gc::ClientId nextClientId = 1;

  kj::Maybe<gc::MonoMillis> leaseTimerAt;
  kj::Promise<void> leaseTimerTask = nullptr;

  kj::Maybe<kj::Function<void()>> afterAllocate;
  uint64_t putsTotal = 0;
  uint64_t reclaimedTotal = 0;
  uint64_t lastReclaimMonoUs = 0;  // Stats.lastReclaimMonoUs
};

// Writes a record into the wire form (`ObjectInfo`); gc::ObjectState and proto::ObjectState
// list the states in the same order.
void fillObjectInfo(proto::ObjectInfo::Builder info, const gc::ObjectRecord& record);

// Writes where `id`'s bytes are (after resolving aliases), for `client`, with the Segment
// capability carrying the fd (read-only unless `writable`).
void fillPlacement(proto::Placement::Builder placement, ObjectStore& store, gc::ObjectId id,
                   bool writable, gc::ClientId client);

}  // namespace refstore::server
