// ObjectTable: the source of truth for which objects exist and what keeps each one alive.
//
// Every reference to an object is counted here, by source: Ref holders (one per capability the
// daemon handed out, tagged with the client that holds it), share-token leases (a TTL and/or a
// use count), names (explicit pins, the only manual part of memory management) and parents (a
// live container that lists the object as a child, or a live alias that resolves to it). When
// the sum of all sources reaches zero the object is *dead*: it can never be referenced again,
// and it at once releases the references it held on its own children (which may kill them in
// turn, iteratively -- never by recursion, so a 100,000-deep chain is fine). Its memory, though,
// may still be pinned by Views (zero-copy readers); a dead object is *reclaimed* -- removed from
// the table, with the reclaim callback telling the owner to free its memory -- as soon as it is
// both unreferenced and unpinned, synchronously, inside the call that made it so. There is no
// background collector and no polling: the caller drives every change (capability drops, lease
// timers) and learns about reclamation immediately.
//
// Futures: a promise is an object without bytes (PROMISED) that can be held, shared, named and
// nested like any other before its value exists. It is settled once: fulfilled with bytes
// (-> SEALED), fulfilled with another object (-> SEALED *alias*, sharing that object's bytes
// without a copy), or rejected (-> FAILED). A fulfilment that would make an object contain
// itself is refused, so the containment graph is always acyclic -- which is what lets plain
// reference counting (no tracing collector) free everything.
//
// The table is deliberately pure: no clock (times are passed in), no I/O, no locking. It is meant
// to be owned by the single event-loop thread of the daemon. It is not thread-safe.
//
// Memory: the daemon targets <= 256 bytes per object at 1M objects, and gc's share of that is
// what is left after Cap'n Proto's export of the Ref (~100-120 bytes) and the Ref itself. So
// per-object state is a 96-byte slot in a dense slab (slab.h) found through a 4-byte-per-bucket
// open-addressing index (slot_index.h). The slot includes the creator's holder, the only one
// most objects ever have; further holders are 32-byte slots in a second slab, chained per
// object by slot number. A holder id names its slot directly (no index). Rarely used data --
// children lists, alias targets, names -- lives in side maps that hold entries only for objects
// that have some. One object with its creator's holder costs ~111 heap bytes
// (object_table_test.c++ checks the budget); with std node containers it was ~205. Proxies and
// remote holders (many hosts) are found through side maps of their own, so local objects and
// holders pay nothing for them.

#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "gc/object_id.h"
#include "gc/slab.h"
#include "gc/slot_index.h"

namespace refstore::gc {

// Lifecycle state of an object's bytes. gc drives CREATING -> SEALED (seal) and
// PROMISED -> SEALED | FAILED (fulfill, fulfillWith, reject); the other transitions belong to
// later features (spilling, remotes), for which gc only stores the state and counts per state.
enum class ObjectState : uint8_t { CREATING, SEALED, PROMISED, FAILED, SPILLED, REMOTE };
inline constexpr size_t kNumObjectStates = 6;

// Lowercase name for logs and listings ("creating", "sealed", ...); "unknown" for values outside
// the enum, so a corrupted byte never crashes a diagnostic path.
const char* stateName(ObjectState state);

// Identifies one holder (one handed-out Ref). Never 0, so 0 can mean "refused"; never reused
// within a table, so removing a stale holder id is always a harmless no-op.
using HolderId = uint64_t;
// Identifies one share-token lease (addLease). Never 0; never reused within a table, so a stale
// or forged id is simply not found. Not secret: a token carries it, next to the secret that
// is the authority, so that redemption finds its lease in O(1).
using LeaseId = uint64_t;
// Another daemon (host), named by its origin epoch: the high half of the ids of the objects it
// owns. Opaque to gc.
using PeerId = uint64_t;
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

// Everything gc knows about one object. Fields are ordered to avoid padding (80 bytes), because
// one of these exists per object (see ObjectTable::Slot).
struct ObjectRecord {
  ObjectId id;
  uint64_t size = 0;                // bytes; live objects' sizes are summed into Stats::liveBytes.
                                    // 0 for objects without bytes of their own (see ownsBytes),
                                    // except proxies: theirs is the owner's (setProxyInfo)
  uint64_t hashHi = 0, hashLo = 0;  // XXH3-128 of the bytes, set at seal/fulfill (0 before, and
                                    // always 0 for promises, aliases and failed objects)
  uint64_t userData = 0;            // opaque to gc: the server keeps its allocation handle here,
                                    // so the reclaim callback can free memory without a lookup.
                                    // Always 0 for objects without bytes of their own
  MonoMillis createdAt = 0;
  // Per-source reference counts (see ObjectTable::refCount) and the memory pin count.
  // 32 bits suffice: each count is backed by a live capability, token, name or child listing
  // costing at least 8 (usually far more) bytes of daemon memory, so 2^32 cannot exist.
  uint32_t holders = 0, leases = 0, pins = 0;
  uint32_t names = 0;    // names pinning the object (ObjectTable::addName)
  uint32_t parents = 0;  // one per listing as a child by a live container (duplicates count
                         // each time) plus one per live alias whose direct target this is
  ObjectState state = ObjectState::CREATING;
  // No references left but still pinned: no new holders, leases, names, pins or parents are
  // accepted, and the memory waits for the last unpin. A reclaimed object is not in the table.
  bool dead = false;
  // Fulfilled by fulfillWith: state SEALED but no bytes of its own; the bytes are those of
  // ObjectTable::resolveAlias(id). Stays set in the record passed to the reclaim callback.
  bool alias = false;
  // A proxy (state REMOTE, see ObjectTable::createProxy) whose bytes are in local memory: a
  // secondary copy, at `userData`. Always false for other objects.
  bool bytesLocal = false;
};

enum class RedeemResult {
  OK,         // a holder was added for the caller
  NOT_FOUND,  // unknown/dead object, or no lease with that secret (indistinguishable on purpose)
  EXPIRED,    // the lease existed but its time was up; it has now been removed
};

enum class NameResult {
  OK,
  DUPLICATE,  // addName: the name is already taken (by this or another object)
  NOT_FOUND,  // addName: unknown or dead object; removeName: no such name
};

class ObjectTable {
 public:
  // Invoked synchronously, exactly once per object, from inside the mutating call that made the
  // object unreferenced and unpinned. By then the object has already left the table (find()
  // returns null, stats() excludes it); the record passed is its final state (dead = true, all
  // counts 0), so the owner can free `size` bytes at `userData` -- but only if
  // ownsBytes(record): a promise never fulfilled (state PROMISED), a rejected one (FAILED) and
  // an alias (SEALED with alias = true) have no bytes of their own, and size = userData = 0.
  // (userData 0 alone cannot tell, since 0 may be a valid handle for the server.)
  //
  // One call can reclaim many objects: a dying container releases its children, which may die
  // too. They are reported breadth-first -- a container before the children it kept alive,
  // siblings in declaration order (a child listed twice dies at its last listing) -- and each
  // is already out of the table when reported; other members of the same cascade may still be
  // found, dead, until their own turn.
  //
  // The callback may read the table but MUST NOT mutate it (that would re-enter the mutation in
  // progress; a guard aborts the process if it tries) and should not throw. If it does throw,
  // the table still finishes the mutation -- every other object due is reclaimed and reported,
  // so nothing leaks -- and then the first exception propagates to the caller.
  using ReclaimCallback = std::function<void(const ObjectRecord&)>;

  // `originEpoch` becomes ObjectId::hi of every object created here (see object_id.h).
  // `onReclaim` may be empty if the owner does not need notification.
  ObjectTable(uint64_t originEpoch, ReclaimCallback onReclaim);
  // Destroying the table does NOT invoke the callback for remaining objects: at shutdown the
  // owner releases its memory wholesale.
  ~ObjectTable() = default;
  ObjectTable(const ObjectTable&) = delete;
  ObjectTable& operator=(const ObjectTable&) = delete;

  // A new object in CREATING state with one holder -- the writer, held by `client` -- so the
  // object is never unreferenced between creation and the caller wrapping it in a Ref.
  // (createSealed with children can be refused: then id is {0, 0} and writer is 0.)
  struct Created {
    ObjectId id;
    HolderId writer;
  };
  Created create(uint64_t size, uint64_t userData, ClientId creator, MonoMillis now);
  // Same, for objects put whole: SEALED immediately with the given hash, one holder, and the
  // given children (see seal). Refused (writer 0, nothing changed, no id used) if any child is
  // unknown or dead. A new object cannot close a cycle: nothing contains it yet.
  Created createSealed(uint64_t size, uint64_t hashHi, uint64_t hashLo, uint64_t userData,
                       ClientId creator, MonoMillis now,
                       const std::vector<ObjectId>& children = {});
  // A new promise: state PROMISED, size 0, userData 0, one holder (the creator's Ref; `writer`
  // in the result). Everything that works on a live object works on it before it is settled:
  // holders, leases, names, pins, being listed as a child or as an alias target. Settle it with
  // fulfill, fulfillWith or reject. A promise whose references all go is reclaimed whether or
  // not it was ever settled (the reclaim callback then sees state PROMISED).
  Created createPromise(ClientId creator, MonoMillis now);

  // CREATING -> SEALED, recording the content hash and the children the object contains.
  // Each listed child gains one parent reference (a child listed twice gains two), held until
  // this object dies -- its reference count reaching zero, not its reclamation: a dead object
  // that Views still pin is logically gone and contains nothing. childrenOf lists them.
  // Returns false and changes nothing if the object is unknown, dead (nobody could ever read
  // it) or not CREATING (sealing is one-shot: sealed bytes are immutable), if any child is
  // unknown or dead, or if a child is (or contains) the object itself.
  bool seal(ObjectId id, uint64_t hashHi, uint64_t hashLo,
            const std::vector<ObjectId>& children = {});

  // PROMISED -> SEALED with bytes the server has allocated (`size` bytes at `userData`), their
  // hash, and children as in seal. Returns false and changes nothing if `promise` is unknown,
  // dead or not PROMISED (settling is one-shot), if a child is unknown or dead, or if a child
  // is or contains the promise (a value cannot contain itself). The refusals can be told apart
  // with find(): promise state, then children's liveness; otherwise it was a cycle.
  bool fulfill(ObjectId promise, uint64_t size, uint64_t userData, uint64_t hashHi,
               uint64_t hashLo, const std::vector<ObjectId>& children = {});
  // PROMISED -> SEALED as an *alias* of `target`: no bytes are copied; the promise takes one
  // parent reference on `target` (so the target lives at least as long as the alias), sets
  // ObjectRecord::alias, and keeps size = userData = hash = 0. `target` may be in any live
  // state, including still PROMISED or itself an alias: readers call resolveAlias and then wait
  // on (or read, or fail with) the object it returns -- an alias is settled for good, but its
  // value is only as ready as the end of its chain. Returns false and changes nothing if
  // `promise` is unknown, dead or not PROMISED, if `target` is unknown or dead, or if `target`
  // is or contains (through children or aliases) the promise itself.
  bool fulfillWith(ObjectId promise, ObjectId target);
  // PROMISED -> FAILED (the reason is the server's to keep). Also how a promise whose fulfiller
  // was dropped unfulfilled is broken. A failed object has no bytes and stays until its
  // references go, like any other. Returns false and changes nothing if `promise` is unknown,
  // dead or not PROMISED.
  bool reject(ObjectId promise);

  // SEALED -> SPILLED (`spilled`) or back, recording where the bytes now are (`userData`: the
  // server's packed location, in memory or on disk). Spilling changes where an immutable value
  // lives, never its identity, references or hash. Returns false and changes nothing unless the
  // object is live, owns its bytes (not an alias) and is in the `from` state. The reclaim
  // callback tells the two apart by state (SPILLED: free the disk copy).
  bool setSpilled(ObjectId id, bool spilled, uint64_t userData);

  // Records the content hash of a SEALED or SPILLED object that owns its bytes, for servers
  // that hash large values after sealing them (off the caller's critical path). Returns false
  // and changes nothing if the object is unknown, dead, an alias or in another state.
  bool setHash(ObjectId id, uint64_t hashHi, uint64_t hashLo);

  // Follows alias links (iteratively; chains may be arbitrarily long) from `id` to the first
  // object that is not an alias -- the one whose state says whether the value is there yet and
  // which owns the bytes. Returns `id` itself if it is not an alias (or unknown: the caller's
  // find() then reports it gone). A dead alias has released its link and resolves to itself.
  ObjectId resolveAlias(ObjectId id) const;
  // The direct target of a live alias; nullopt for anything else.
  std::optional<ObjectId> aliasTarget(ObjectId id) const;
  // The children a live object declared, in declaration order, duplicates included; empty for
  // objects without children and for dead ones (they released them). Cost: O(children).
  std::vector<ObjectId> childrenOf(ObjectId id) const;
  // Who holds parent references on `id`: every live container listing it (once per listing)
  // and every live alias targeting it, sorted by id. Its size equals find(id)->parents.
  // For diagnostics ("why is this alive?"): there is no reverse index, so the cost is
  // O(child listings + aliases in the whole table).
  std::vector<ObjectId> parentsOf(ObjectId id) const;

  // Names: explicit pins, each keeping one reference on its object until removeName. An object
  // may have several names; a name names one object. gc imposes no syntax (the server
  // validates names). addName refuses a taken name (DUPLICATE, even by the same object) and an
  // unknown or dead object (NOT_FOUND, checked first); both change nothing.
  NameResult addName(ObjectId id, std::string name);
  // Drops the pin, which may kill (and reclaim) the object and cascade to its children.
  // NOT_FOUND if no such name.
  NameResult removeName(const std::string& name);
  // The object a name pins (always live: a named object cannot die), or nullopt.
  std::optional<ObjectId> lookupName(const std::string& name) const;
  // An object's names, sorted. Cost: O(its names).
  std::vector<std::string> namesOf(ObjectId id) const;
  // Every (name, object), sorted by name.
  std::vector<std::pair<std::string, ObjectId>> listNames() const;
  // One page of that: up to `limit` names after `after` ("" for the first page), sorted; sets
  // *more if names follow the last one returned. Cost: O(log names + limit).
  std::vector<std::pair<std::string, ObjectId>> listNames(const std::string& after, size_t limit,
                                                          bool* more) const;

  // Adds a holder held by `client` since `now` to a live object. Returns its id, or 0 if the
  // object is unknown or dead (a dead object must not come back to life).
  HolderId addHolder(ObjectId id, ClientId client, MonoMillis now);
  // Removes a holder; reclaims the object if that was its last reference and it is unpinned.
  // Returns false with no effect for an unknown holder (including 0 and already-removed ids), so
  // capability destructors and connection teardown may both call it safely.
  bool removeHolder(HolderId holder);

  // Adds a share-token lease: a reference that lasts until `expiresAt` (expired by
  // expireLeases or discovered by redeemLease) or until `uses` redemptions (0 = unlimited).
  // `minter` is who made it (counted by leasesMintedBy while the lease lives). Returns its id,
  // or 0 if the object is unknown, dead or a proxy. Cost: O(log leases).
  LeaseId addLease(ObjectId id, Secret secret, MonoMillis expiresAt, uint32_t uses,
                   ClientId minter = 0);
  // Live leases made by `minter` (for per-client bounds). O(1).
  uint64_t leasesMintedBy(ClientId minter) const;
  // Redeems lease `lease`, which must be on object `id` and carry `secret` (constant-time
  // compare):
  //  - no such live lease, another object's, a wrong secret, or the object dead: NOT_FOUND, no
  //    effect (the cases are indistinguishable on purpose);
  //  - lease expiry <= now: EXPIRED, and the lease is removed (which may reclaim the object);
  //  - otherwise OK: a holder for `client` is added and stored in *holderOut, then one use is
  //    consumed (removing the lease on its last use). The holder is added first, so using up the
  //    last lease can never reclaim the object the caller is being handed.
  // `holderOut` must not be null; it is set to 0 unless the result is OK. Cost: O(log leases),
  // whatever the number of leases on the object.
  RedeemResult redeemLease(LeaseId lease, ObjectId id, Secret secret, MonoMillis now,
                           ClientId client, HolderId* holderOut);
  // Removes leases whose expiry <= now, soonest first, at most `limit` of them, reclaiming
  // objects that were only kept alive by them. Returns how many were removed; when that is
  // `limit`, more may be due (the server expires in bounded slices so that a million tokens
  // expiring at once never stall its event loop). Cost: O(removed * log leases).
  size_t expireLeases(MonoMillis now, size_t limit = SIZE_MAX);
  // Earliest expiry among all leases (nullopt if none), so the server can arm exactly one timer
  // and call expireLeases when it fires, instead of polling. O(1).
  std::optional<MonoMillis> nextLeaseExpiry() const;
  // Expiry times of the live leases on `id`, soonest first, at most `limit` of them (for "who
  // holds what" listings). Cost: O(leases of this object).
  std::vector<MonoMillis> leaseExpiriesOf(ObjectId id, size_t limit = SIZE_MAX) const;

  // ---- Many hosts ----
  //
  // Proxies: this daemon's stand-ins for objects owned by another daemon (DESIGN.md "Many
  // hosts"). A proxy has the owner's ObjectId -- whose `hi` is the owner's epoch, never this
  // table's -- and state REMOTE for its whole life. It takes holders, names, pins and parent
  // references (as a child of a local object, or an alias target) like any object, and dies and
  // is reclaimed the same way; it takes no leases (a proxied object's tokens are minted by its
  // owner). Its bytes are either not here, or a secondary copy in local memory (`bytesLocal`,
  // at `userData`). The reclaim callback sees it with state REMOTE; ownsBytes says whether it
  // had a local copy to free.
  //
  // A new proxy for `ownerId` held by `creator` (its writer holder in the result). Refused
  // (writer 0, nothing changed) if `ownerId` is this table's own (hi == epoch) or not an id
  // (lo == 0), or a proxy for it is already in the table (live or dead-pinned: one proxy per
  // object per daemon). The proxy starts with size, hash and userData 0 and no local bytes.
  Created createProxy(ObjectId ownerId, ClientId creator, MonoMillis now);
  // Records that a live proxy's bytes are now in local memory (`size` bytes at `userData`,
  // with the owner's hash; `size` replaces the proxy's in Stats::liveBytes too). False, nothing
  // changed, unless `id` is a live proxy without local bytes.
  bool setProxyBytes(ObjectId id, uint64_t size, uint64_t userData, uint64_t hashHi,
                     uint64_t hashLo);
  // Forgets a live proxy's local copy (evicted under memory pressure; read again from the
  // owner when next needed). False unless `id` is a live, unpinned proxy with local bytes. The
  // caller frees the memory at the old userData; the record keeps the size and hash (the
  // owner's) and its userData becomes 0.
  bool clearProxyBytes(ObjectId id);
  // Brings back a dead proxy still pinned by a View (no reference left, not yet reclaimed), so
  // that a new reference to the same remote object can be held on it: one proxy per object,
  // and this one still holds the owner's reference. A proxy has no local links to restore (a
  // dead object's were released; a proxy's children live on its owner). False, nothing changed,
  // unless `id` is a dead proxy.
  bool reviveProxy(ObjectId id);
  // Sets a live proxy's size and hash as its owner reports them (known before the bytes are).
  // False, nothing changed, unless `id` is a live proxy; one with local bytes only accepts the
  // size and hash it has (its copy was verified against them), so a repeated report is harmless.
  bool setProxyInfo(ObjectId id, uint64_t size, uint64_t hashHi, uint64_t hashLo);

  // Remote holders: holders held by another daemon on behalf of its proxy (on the owner's
  // side). One per proxy, whatever the number of references on that host. When the connection
  // to that daemon breaks, its remote holders are detached rather than removed: they still
  // count as references until a deadline (the grace period), and a peer that reconnects with
  // the same origin takes them back (reattach). Past the deadline they are removed.
  //
  // A remote holder stays a holder in every other respect (holdersOf, holderInfo, removeHolder,
  // which also forgets its remote state, whether attached or detached).
  //
  // Marks `holder` as held by `peer`. False if the holder is unknown (or a creator holder:
  // peers only ever restore) or already remote (a holder belongs to one peer for good).
  bool markRemote(HolderId holder, PeerId peer);
  // The peer's connection broke: every remote holder of `peer` is detached until `deadline`
  // (a holder already detached keeps its earlier deadline). Returns how many it detached (those
  // already detached not counted). Cost: O(its attached holders * log remote holders).
  size_t detachPeer(PeerId peer, MonoMillis deadline);
  // A detached holder of `peer` on `id`, attached again for `client` (the peer's new
  // connection): its id, or 0 if there is none. The holder keeps its `since`. (Should there be
  // several, which one is unspecified.) Cost: O(log remote holders).
  HolderId reattach(PeerId peer, ObjectId id, ClientId client);
  // Removes detached holders whose deadline <= now, soonest first, at most `limit` (reclaiming
  // what they alone kept alive). Returns how many.
  size_t expireDetached(MonoMillis now, size_t limit = SIZE_MAX);
  // Earliest deadline among detached holders (nullopt: none). O(1).
  std::optional<MonoMillis> nextDetachedExpiry() const;
  // The peer will never come back (it restarted with a new origin, or its grace is over):
  // removes its detached holders at once (its attached ones stay). Returns how many.
  size_t dropPeer(PeerId peer);
  // The peer whose remote holder this is (nullopt: a local holder, or unknown).
  std::optional<PeerId> remotePeerOf(HolderId holder) const;
  // Whether it is detached.
  bool isDetached(HolderId holder) const;
  // How many remote holders `peer` has (detached ones included).
  uint64_t remoteHoldersOf(PeerId peer) const;
  // Whether `peer` holds the live object `id` through an attached remote holder: it still
  // wants the object (the owner offers its copy to other readers only then). O(log).
  bool heldAttachedBy(PeerId peer, ObjectId id) const;

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
  // One page of a listing: up to `limit` objects from `cursor` on (0 for the first page), in a
  // stable order (their slots), appended to `out`. Returns the cursor of the next page, 0 after
  // the last. Objects added or removed between pages may or may not be seen; none is seen
  // twice, and an object present throughout is seen once. The pointers are valid until the
  // next mutating call. Cost: O(limit) plus the empty slots skipped.
  uint64_t listPage(uint64_t cursor, size_t limit, std::vector<const ObjectRecord*>* out) const;
  // Holders of one object as (HolderId, ClientId) pairs, for "who holds what" listings.
  // Unspecified order; empty for unknown or dead objects. Cost: O(holders of this object).
  std::vector<std::pair<HolderId, ClientId>> holdersOf(ObjectId id,
                                                       size_t limit = SIZE_MAX) const;
  // One live holder: the object it holds, the client holding it, and since when (the `now` of
  // create*, addHolder or redeemLease). nullopt for unknown or removed holders. Lets a holder
  // id alone stand for a Ref (the daemon keeps nothing else per Ref), and answers "held for
  // how long" in listings.
  struct HolderInfo {
    ObjectId object;
    ClientId client;
    MonoMillis since;
  };
  std::optional<HolderInfo> holderInfo(HolderId holder) const;
  // When the longest-standing live holder of `id` started holding it (nullopt: no holders).
  // Cost: O(holders of this object), no allocation.
  std::optional<MonoMillis> oldestHolderSince(ObjectId id) const;

  struct Stats {
    uint64_t objects;     // objects in the table (live + dead-pinned) == size()
    uint64_t liveBytes;   // sum of `size` over live (not dead) objects
    uint64_t deadPinned;  // dead objects still waiting for their last unpin
    uint64_t holders;     // holders across all objects
    uint64_t leases;      // leases across all objects
    uint64_t names;       // names across all objects
    uint64_t parentRefs;  // parent references (child listings + aliases) across all objects
    uint64_t proxies;         // proxies in the table (also counted in perState[REMOTE])
    uint64_t proxyBytes;      // bytes of proxies' local copies (dead-pinned ones included)
    uint64_t remoteHolders;   // holders held by other daemons (detached ones included)
    uint64_t detachedHolders; // remote holders whose peer's connection is down
    uint64_t perState[kNumObjectStates];  // objects in the table by ObjectState (sums to objects)
  };
  // O(1): every counter is maintained incrementally, so monitoring can poll it freely.
  Stats stats() const;
  // Objects in the table (live + dead-pinned).
  size_t size() const { return objects_.size(); }

  // The object's total reference count: the sum over every reference source (remote holders,
  // attached or detached, are holders); everything that decides liveness goes through this one
  // function.
  static uint64_t refCount(const ObjectRecord& r) {
    return uint64_t{r.holders} + r.leases + r.names + r.parents;
  }
  // Whether the record describes bytes the owner allocated (and must free on reclaim): false for
  // promises never fulfilled (PROMISED), rejected ones (FAILED) and aliases; true otherwise.
  static bool ownsBytes(const ObjectRecord& r) {
    if (r.state == ObjectState::REMOTE) return r.bytesLocal;
    return !r.alias && r.state != ObjectState::PROMISED && r.state != ObjectState::FAILED;
  }

 private:
  // Objects live in a Slab (dense chunks, stable addresses). Local objects (minted by create*,
  // id {epoch_, lo}) are found by `lo` through a SlotIndex: together ~110 bytes per object, the
  // 96-byte slot, its 4-byte generation (slab.h) and 5-11 bytes of index (4-byte buckets, 3/8 to
  // 3/4 full). (Until session 4 this was an unordered_set node of 96 bytes plus buckets, plus a
  // 64-byte holder node; see slab.h for why it changed.) Proxies have foreign ids, whose `lo`
  // may equal a local object's, and are found through proxiesById_ instead: a second SlotIndex,
  // on a hash of the whole id (proxyHash), ~8 bytes per proxy rather than a ~56-byte
  // unordered_map node and bucket.
  //
  // Internally (holder and lease links aside, which use slot numbers) an object is named by its
  // *key*, unique in the table: a local object's `lo` (below 2^63: a counter that would take
  // centuries to get there), or kProxyKey | slot number for a proxy. The side maps (children,
  // aliases, lease chains, names) store keys. A proxy's key is only reused after the proxy was
  // reclaimed, and by then no side map refers to it: whatever links to an object keeps it alive.
  //
  // The creator's holder -- the writer of create*, which for most objects is the only holder
  // they ever have -- lives inside the slot: it needs only its client and a flag, since its
  // start time is the object's createdAt. Every other holder is a Holder in holders_.
  struct Slot {
    ObjectRecord rec;
    uint32_t firstHolder = 0;  // head of this object's holder chain: holder slot + 1, 0 = none
    // The slot's generation (below 2^31, from objects_) in the low 31 bits, which makes the
    // creator holder's id; the top bit is set while that holder is live.
    uint32_t creator = 0;
    ClientId creatorClient = 0;
  };
  static_assert(sizeof(Slot) <= 96, "one Slot per object: keep it at 96 bytes");
  static constexpr uint32_t kCreatorLive = 1u << 31;

  // Every other handed-out holder (32 bytes), doubly linked with the other holders of the same
  // object so that removal is O(1) and holdersOf is O(holders of that object). A holder held by
  // a peer daemon has its `remote` bit set and its peer and attachment in remoteHolders_.
  //
  // Holders need no index: a HolderId names its storage directly. The low 32 bits are a slot
  // number + 1 (so never 0), bits 32-62 the slot's generation, which rejects ids of removed
  // holders whose slot was reused, and bit 63 says which slab: set for a creator holder (the
  // object's slot in objects_), clear for a Holder (its slot in holders_).
  struct Holder {
    uint32_t object;          // the held object's slot
    uint32_t generation : 31;  // of the holder slot when this holder was made
    uint32_t remote : 1;       // held by a peer: see remoteHolders_
    uint32_t prev = 0, next = 0;  // neighbours in the object's chain: holder slot + 1, 0 = none
    ClientId client;
    MonoMillis since;
  };
  static_assert(sizeof(Holder) <= 32, "one Holder per Ref: keep it at 32 bytes");
  // Generations below 2^31 leave Slot::creator's flag bit and HolderId's bit 63 free.
  static_assert(Slab<Slot>::kMaxGeneration < kCreatorLive &&
                    Slab<Holder>::kMaxGeneration < kCreatorLive,
                "slab generations must fit in 31 bits");

  static constexpr HolderId kCreatorHolderBit = HolderId{1} << 63;
  static HolderId holderIdOf(uint32_t slot, uint32_t generation) {
    return (uint64_t{generation} << 32) | (uint64_t{slot} + 1);  // never 0
  }
  static HolderId creatorHolderIdOf(uint32_t objectSlot, uint32_t generation) {
    return kCreatorHolderBit | holderIdOf(objectSlot, generation);
  }
  // The live Holder `id` names, or null (0, removed, a creator holder, or never issued).
  Holder* findHolder(HolderId id) const;

  // One share-token lease (48 bytes), in a slab like holders: a LeaseId names its slot and
  // generation, so redemption and removal are O(1) plus the expiry heap's O(log n), whatever the
  // number of leases on one object (that was a linear scan, which made a million tokens on one
  // object take the daemon down for twenty minutes as they expired). The secret is never a
  // lookup key: finding a lease leaks nothing about it beyond the one constant-time compare.
  // Leases of one object are chained (for listings), the chain's head in leaseChains_.
  struct Lease {
    Secret secret;
    MonoMillis expiresAt;
    uint32_t object;      // the object's slot
    uint32_t generation;  // of this lease's slot when the lease was made
    uint32_t prev = 0, next = 0;  // neighbours in the object's chain: lease slot + 1, 0 = none
    uint32_t heapIndex;   // position in leaseHeap_
    uint32_t usesLeft;    // 0 = unlimited
    ClientId minter;
  };
  static_assert(sizeof(Lease) <= 56, "one Lease per token: keep it at 56 bytes");
  static LeaseId leaseIdOf(uint32_t slot, uint32_t generation) {
    return holderIdOf(slot, generation);
  }
  // The live Lease `id` names, and its slot; null if none.
  Lease* findLease(LeaseId id, uint32_t* slotOut) const;
  // The expiry heap: a 4-ary min-heap on expiry, each lease knowing its index. Entries carry
  // the expiry so that sifting compares within the heap's own array (a node's four children
  // share one cache line) and touches a lease only to record its new index when it moves; a
  // sift moves a hole rather than swapping, so that is one lease touched per level.
  struct HeapEntry {
    MonoMillis expiresAt;
    uint32_t slot;  // the lease's
  };
  static constexpr size_t kHeapArity = 4;
  // Puts `entry` at `index` and tells its lease.
  void heapPlace(size_t index, HeapEntry entry);
  // Moves `entry`, for the hole at `index`, up or down to where it belongs.
  void heapUp(size_t index, HeapEntry entry);
  void heapDown(size_t index, HeapEntry entry);

  // Sets busy_ for its lifetime (exception-safe, nestable); see checkNotBusy.
  class BusyScope;
  // Aborts if called from inside the reclaim callback or a forEach visitor.
  void checkNotBusy() const;

  // A found object: its slot number (what holders link to) and its record. Converts to false
  // when nothing was found.
  struct SlotRef {
    uint32_t number = 0;
    Slot* slot = nullptr;
    explicit operator bool() const { return slot != nullptr; }
    Slot* operator->() const { return slot; }
  };
  SlotRef lookup(ObjectId id) const;
  // The object with internal key `key` (see above), or a null ref.
  SlotRef findKey(uint64_t key) const;
  static constexpr uint64_t kProxyKey = uint64_t{1} << 63;
  bool isProxy(const ObjectRecord& r) const { return r.id.hi != epoch_; }
  uint64_t keyOf(SlotRef it) const {
    return isProxy(it->rec) ? kProxyKey | it.number : it->rec.id.lo;
  }
  // The id of the object with key `key`, which must be in the table.
  ObjectId idOfKey(uint64_t key) const;
  // Like lookup, but only live (not dead) objects.
  SlotRef lookupLive(ObjectId id) const;
  SlotRef atSlot(uint32_t number) const { return SlotRef{number, objects_.get(number)}; }
  // The object whose live creator holder `id` is, or a null ref.
  SlotRef findCreatorHolder(HolderId id) const;
  // Reads a local object's `lo` from its slot, for objectsByLo_ (which stores slots only).
  auto loOf() const {
    return [this](uint32_t number) { return objects_.get(number)->rec.id.lo; };
  }
  // A proxy's place in proxiesById_ (not unique: lookups compare the whole id).
  static uint64_t proxyHash(ObjectId id) { return ObjectIdHash{}(id); }
  auto proxyHashOf() const {
    return [this](uint32_t number) { return proxyHash(objects_.get(number)->rec.id); };
  }
  // Adds an object held by `creator`: a local one (rec.id is assigned) or, for a REMOTE record,
  // a proxy with the id in rec.id.
  Created insert(ObjectRecord rec, ClientId creator);
  HolderId linkHolder(uint32_t objectSlot, ClientId client, MonoMillis now);
  // Removes the Holder in `slot` (its remote state, if any, included), then drops its reference
  // (which may reclaim the object).
  void unlinkHolder(uint32_t slot);
  // Unlinks and frees a lease, then drops its reference (which may reclaim the object).
  void removeLease(uint32_t slot);
  // Resolves a child list to keys; false if any child is unknown or dead.
  bool liveChildren(const std::vector<ObjectId>& children, std::vector<uint64_t>* out) const;
  // Whether `self` is among `from` or reachable from them over child and alias links: adding
  // links self -> from would then close a cycle. Iterative DFS.
  bool wouldContainItself(uint64_t self, const std::vector<uint64_t>& from) const;
  // Records `kids` as children of the object `parentKey` and takes their parent references.
  void linkChildren(uint64_t parentKey, std::vector<uint64_t> kids);
  // Called after any reference source of `it` was decremented: if its reference count reached
  // zero, marks it dead, releases its children and alias target -- killing, iteratively, those
  // left unreferenced -- and reclaims every object of the cascade that is unpinned.
  void onRefDropped(SlotRef it);
  // Marks an object whose count reached zero dead (accounting only).
  void markDead(ObjectRecord& r);
  // Drops the parent reference on `childKey` held by a container or alias that died; queues the
  // child if that killed it.
  void dropParentRef(uint64_t childKey, std::vector<uint64_t>* dying);
  // Removes the object from the table, then invokes the callback with its final record. An
  // exception from the callback is stored in *error (the first one wins), not thrown, so a
  // cascade always completes.
  void reclaim(SlotRef it, std::exception_ptr* error);

  const uint64_t epoch_;
  const ReclaimCallback onReclaim_;
  uint64_t nextObjectLo_ = 1;
  mutable bool busy_ = false;

  Slab<Slot> objects_;
  SlotIndex objectsByLo_;  // local object's lo -> slot in objects_
  SlotIndex proxiesById_;  // a proxy's (owner's) id -> slot in objects_, by proxyHash
  Slab<Holder> holders_;
  Slab<Lease> leases_;
  std::vector<HeapEntry> leaseHeap_;                       // soonest expiry first
  std::unordered_map<uint64_t, uint32_t> leaseChains_;     // object key -> first lease slot + 1
  std::unordered_map<ClientId, uint64_t> leasesByMinter_;  // live leases per minter (none: absent)
  // Side maps, holding entries only for the (few) objects concerned, and only while they live:
  // a dying object's entries are erased when it releases its links.
  std::unordered_map<uint64_t, std::vector<uint64_t>> children_;  // container key -> child keys
  std::unordered_map<uint64_t, uint64_t> aliases_;                // alias key -> target key
  std::map<std::string, uint64_t, std::less<>> names_;            // name -> object key (sorted)
  // object key -> its names (views of names_'s keys, which std::map keeps in place)
  std::unordered_multimap<uint64_t, std::string_view> namesByObject_;

  // Remote holders, in side maps so that other holders pay nothing for them. A remote holder's
  // state costs ~142 heap bytes on top of its Holder, ~64 more while detached (std node
  // containers; there is at most one per object per peer, so this has not been compacted).
  struct RemoteHolder {
    PeerId peer;
    MonoMillis deadline = 0;  // while detached
    bool detached = false;
  };
  std::unordered_map<uint32_t, RemoteHolder> remoteHolders_;  // holder slot -> its peer
  // Every remote holder as (peer, detached, object key, holder slot), so that a peer's attached
  // holders, its detached ones, and its detached ones on one object are each one range:
  // detachPeer, dropPeer and reattach never scan other peers' holders or an object's chain.
  struct PeerHolder {
    PeerId peer;
    bool detached;
    uint64_t object;
    uint32_t holder;
    bool operator<(const PeerHolder& o) const {
      return std::tie(peer, detached, object, holder) <
             std::tie(o.peer, o.detached, o.object, o.holder);
    }
  };
  std::set<PeerHolder> remoteByPeer_;
  std::set<std::pair<MonoMillis, uint32_t>> detachedByDeadline_;  // (deadline, holder slot)

  // Incremental counters behind stats() (the rest come from container sizes).
  uint64_t parentRefs_ = 0;
  uint64_t creatorHolders_ = 0;  // live creator holders (the others are holders_.size())
  uint64_t liveBytes_ = 0;
  uint64_t proxyBytes_ = 0;
  uint64_t deadPinned_ = 0;
  uint64_t perState_[kNumObjectStates] = {};
};

}  // namespace refstore::gc
