// ObjectTable: the source of truth for which objects exist and what keeps each one alive.
//
// Every reference to an object is counted here, by source: Ref holders (one per capability the
// daemon handed out, tagged with the client that holds it) and share-token leases (a TTL and/or a
// use count). When the sum of all sources reaches zero the object is *dead*: it can never be
// referenced again. Its memory, though, may still be pinned by Views (zero-copy readers); a dead
// object is *reclaimed* -- removed from the table, with the reclaim callback telling the owner to
// free its memory -- as soon as it is both unreferenced and unpinned, synchronously, inside the
// call that made it so. There is no background collector and no polling: the caller drives every
// change (capability drops, lease timers) and learns about reclamation immediately.
//
// The table is deliberately pure: no clock (times are passed in), no I/O, no locking. It is meant
// to be owned by the single event-loop thread of the daemon. It is not thread-safe.
//
// Memory: the daemon targets <= 256 bytes per object at 1M objects, so per-object state is a
// fixed-size record plus one hash-map node; holders live in one table-wide map and are chained
// per object through that map (no per-object containers).

#ifndef REFSTORE_GC_OBJECT_TABLE_H_
#define REFSTORE_GC_OBJECT_TABLE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <unordered_map>
#include <utility>
#include <vector>

#include "gc/object_id.h"

namespace refstore::gc {

// Lifecycle state of an object's bytes. gc only stores it (and counts objects per state); the
// transitions beyond CREATING -> SEALED belong to later features (promises, spilling, remotes).
enum class ObjectState : uint8_t { CREATING, SEALED, PROMISED, FAILED, SPILLED, REMOTE };
inline constexpr size_t kNumObjectStates = 6;

// Lowercase name for logs and listings ("creating", "sealed", ...); "unknown" for values outside
// the enum, so a corrupted byte never crashes a diagnostic path.
const char* stateName(ObjectState state);

// Identifies one holder (one handed-out Ref). Never 0, so 0 can mean "refused"; never reused
// within a table, so removing a stale holder id is always a harmless no-op.
using HolderId = uint64_t;
// Who holds a reference (in practice a connection). Opaque to gc: only stored and reported.
using ClientId = uint64_t;
// Monotonic milliseconds supplied by the caller. The table never reads a clock, which keeps it
// deterministic and lets tests drive time.
using MonoMillis = uint64_t;

// The 128-bit secret of a share token. Compared in constant time (see secretEquals) so that
// response timing does not reveal how much of a guessed secret was right.
struct Secret {
  uint64_t hi = 0, lo = 0;
};

// Constant-time equality: no data-dependent branch before the single final comparison.
inline bool secretEquals(Secret a, Secret b) {
  uint64_t diff = (a.hi ^ b.hi) | (a.lo ^ b.lo);
  return diff == 0;
}

// Everything gc knows about one object. Fields are ordered to avoid padding (72 bytes), because
// one of these exists per object.
struct ObjectRecord {
  ObjectId id;
  uint64_t size = 0;                // bytes; live objects' sizes are summed into Stats::liveBytes
  uint64_t hashHi = 0, hashLo = 0;  // XXH3-128 of the bytes, set at seal (0 before)
  uint64_t userData = 0;            // opaque to gc: the server keeps its allocation handle here,
                                    // so the reclaim callback can free memory without a lookup
  MonoMillis createdAt = 0;
  // Per-source reference counts (see ObjectTable::refCount) and the memory pin count.
  // 32 bits suffice: each count is backed by a live capability or token costing far more than
  // 4 bytes of daemon memory, so 2^32 of them cannot exist.
  uint32_t holders = 0, leases = 0, pins = 0;
  ObjectState state = ObjectState::CREATING;
  // No references left but still pinned: no new holders, leases or pins are accepted, and the
  // memory waits for the last unpin. A reclaimed object is not in the table at all.
  bool dead = false;
};

enum class RedeemResult {
  OK,         // a holder was added for the caller
  NOT_FOUND,  // unknown/dead object, or no lease with that secret (indistinguishable on purpose)
  EXPIRED,    // the lease existed but its time was up; it has now been removed
};

class ObjectTable {
 public:
  // Invoked synchronously, exactly once per object, from inside the mutating call that made the
  // object unreferenced and unpinned. By then the object has already left the table (find()
  // returns null, stats() excludes it); the record passed is its final state (dead = true, all
  // counts 0), so the owner can free `size` bytes at `userData`.
  // The callback may read the table but MUST NOT mutate it (that would re-enter the mutation in
  // progress; a guard aborts the process if it tries) and should not throw.
  using ReclaimCallback = std::function<void(const ObjectRecord&)>;

  // `originEpoch` becomes ObjectId::hi of every object created here (see object_id.h).
  // `onReclaim` may be empty if the owner does not need notification.
  ObjectTable(uint64_t originEpoch, ReclaimCallback onReclaim);
  // Destroying the table does NOT invoke the callback for remaining objects: at shutdown the
  // owner releases its memory wholesale.
  ~ObjectTable() = default;
  ObjectTable(const ObjectTable&) = delete;
  ObjectTable& operator=(const ObjectTable&) = delete;

  // A new object in CREATING state with one holder -- the writer, held by `creator` -- so the
  // object is never unreferenced between creation and the caller wrapping it in a Ref.
  struct Created {
    ObjectId id;
    HolderId writer;
  };
  Created create(uint64_t size, uint64_t userData, ClientId creator, MonoMillis now);
  // Same, for objects put whole: SEALED immediately with the given hash, one holder.
  Created createSealed(uint64_t size, uint64_t hashHi, uint64_t hashLo, uint64_t userData,
                       ClientId creator, MonoMillis now);

  // CREATING -> SEALED, recording the content hash. Returns false and changes nothing if the
  // object is unknown, dead (nobody could ever read it) or not CREATING (sealing is one-shot:
  // sealed bytes are immutable).
  bool seal(ObjectId id, uint64_t hashHi, uint64_t hashLo);

  // Adds a holder held by `client` to a live object. Returns its id, or 0 if the object is
  // unknown or dead (a dead object must not come back to life).
  HolderId addHolder(ObjectId id, ClientId client);
  // Removes a holder; reclaims the object if that was its last reference and it is unpinned.
  // Returns false with no effect for an unknown holder (including 0 and already-removed ids), so
  // capability destructors and connection teardown may both call it safely.
  bool removeHolder(HolderId holder);

  // Adds a share-token lease: a reference that lasts until `expiresAt` (expired by
  // expireLeases or discovered by redeemLease) or until `uses` redemptions (0 = unlimited).
  // Returns false if the object is unknown or dead. Secrets should be random: if two leases on
  // one object share a secret, which of them a redemption consumes is unspecified.
  bool addLease(ObjectId id, Secret secret, MonoMillis expiresAt, uint32_t uses);
  // Redeems a lease on `id` whose secret matches (constant-time compare):
  //  - no such object/lease (or object dead): NOT_FOUND, no effect;
  //  - lease expiry <= now: EXPIRED, and the lease is removed (which may reclaim the object);
  //  - otherwise OK: a holder for `client` is added and stored in *holderOut, then one use is
  //    consumed (removing the lease on its last use). The holder is added first, so using up the
  //    last lease can never reclaim the object the caller is being handed.
  // `holderOut` must not be null; it is set to 0 unless the result is OK.
  RedeemResult redeemLease(ObjectId id, Secret secret, MonoMillis now, ClientId client,
                           HolderId* holderOut);
  // Removes every lease whose expiry <= now, reclaiming objects that were only kept alive by
  // them. Returns how many leases were removed. Cost: O(removed * log leases).
  size_t expireLeases(MonoMillis now);
  // Earliest expiry among all leases (nullopt if none), so the server can arm exactly one timer
  // and call expireLeases when it fires, instead of polling.
  std::optional<MonoMillis> nextLeaseExpiry() const;

  // Memory pins (one per View). Pinning needs a live object (a dead one is on its way out);
  // returns false otherwise. Pins do not count as references: an object whose references are
  // all gone becomes dead while pinned, and is reclaimed by the unpin that drops its last pin.
  bool pin(ObjectId id);
  // Returns false with no effect if the object is unknown or not pinned.
  bool unpin(ObjectId id);

  // The record of an object in the table, live or dead-but-pinned (check ->dead); null if it
  // was never created here or has been reclaimed. Valid until the next mutating call.
  const ObjectRecord* find(ObjectId id) const;
  // Visits every object in the table (unspecified order). `fn` must not mutate the table
  // (guarded like the reclaim callback).
  void forEach(const std::function<void(const ObjectRecord&)>& fn) const;
  // Holders of one object as (HolderId, ClientId) pairs, for "who holds what" listings.
  // Unspecified order; empty for unknown or dead objects. Cost: O(holders of this object).
  std::vector<std::pair<HolderId, ClientId>> holdersOf(ObjectId id) const;

  struct Stats {
    uint64_t objects;     // objects in the table (live + dead-pinned) == size()
    uint64_t liveBytes;   // sum of `size` over live (not dead) objects
    uint64_t deadPinned;  // dead objects still waiting for their last unpin
    uint64_t holders;     // holders across all objects
    uint64_t leases;      // leases across all objects
    uint64_t perState[kNumObjectStates];  // objects in the table by ObjectState (sums to objects)
  };
  // O(1): every counter is maintained incrementally, so monitoring can poll it freely.
  Stats stats() const;
  // Objects in the table (live + dead-pinned).
  size_t size() const { return objects_.size(); }

  // The object's total reference count: the sum over every reference source. A future source
  // (names, containment parents, remote holders) is one more counter added here; everything
  // that decides liveness goes through this one function.
  static uint64_t refCount(const ObjectRecord& r) { return uint64_t{r.holders} + r.leases; }

 private:
  // Every object in this table was minted by create*, so its id is {epoch_, lo}; keying by `lo`
  // alone (and checking `hi` on lookup) keeps map nodes and holder entries 8 bytes smaller.
  struct Slot {
    ObjectRecord rec;
    HolderId firstHolder = 0;  // head of this object's holder chain (through holders_)
  };
  using SlotMap = std::unordered_map<uint64_t, Slot>;

  // One handed-out holder, doubly linked with the other holders of the same object so that
  // removal is O(1) and holdersOf is O(holders of that object).
  struct Holder {
    uint64_t objectLo;
    ClientId client;
    HolderId prev = 0, next = 0;
  };

  // Leases are ordered by expiry (expireLeases walks the front; nextLeaseExpiry reads it) and
  // indexed by object for redemption (the secret is never used as a lookup key, so finding a
  // lease leaks nothing about it beyond the constant-time compare).
  struct Lease {
    uint64_t objectLo;
    Secret secret;
    uint32_t usesLeft;  // 0 = unlimited
  };
  using LeaseMap = std::multimap<MonoMillis, Lease>;

  // Sets busy_ for its lifetime (exception-safe, nestable); see checkNotBusy.
  class BusyScope;
  // Aborts if called from inside the reclaim callback or a forEach visitor.
  void checkNotBusy() const;

  SlotMap::iterator lookup(ObjectId id);
  SlotMap::const_iterator lookup(ObjectId id) const;
  Created insert(ObjectRecord rec, ClientId creator);
  HolderId linkHolder(SlotMap::iterator it, ClientId client);
  void removeLease(LeaseMap::iterator lease);
  // Called after any reference source of `it` was decremented: marks the object dead when its
  // reference count reaches zero and reclaims it if it is also unpinned.
  void onRefDropped(SlotMap::iterator it);
  // Removes the object from the table, then invokes the callback with its final record.
  void reclaim(SlotMap::iterator it);

  const uint64_t epoch_;
  const ReclaimCallback onReclaim_;
  uint64_t nextObjectLo_ = 1;
  HolderId nextHolder_ = 1;
  mutable bool busy_ = false;

  SlotMap objects_;
  std::unordered_map<HolderId, Holder> holders_;
  LeaseMap leasesByExpiry_;
  std::unordered_multimap<uint64_t, LeaseMap::iterator> leasesByObject_;

  // Incremental counters behind stats() (the rest come from container sizes).
  uint64_t liveBytes_ = 0;
  uint64_t deadPinned_ = 0;
  uint64_t perState_[kNumObjectStates] = {};
};

}  // namespace refstore::gc

#endif  // REFSTORE_GC_OBJECT_TABLE_H_
