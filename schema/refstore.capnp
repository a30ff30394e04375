# refstore wire protocol.
#
# refstored is a per-host object store for immutable values. A client `put`s (or `create`s
# and `seal`s) a value and receives a `Ref` capability. References ARE capabilities:
#
#   * Holding a Ref keeps the value alive. Each put/create/restore gives the caller its own
#     Ref; releasing it (dropping the capability, or closing/killing the connection) removes
#     that holder. When an object has no holder and no live share token, its memory is freed
#     in the same event-loop turn. Nobody frees anything by hand.
#   * Possession of a capability is the only authority. There is no get-by-id: object ids in
#     this schema are for display and diagnostics, never for access.
#   * A Ref can be passed to any other party that speaks Cap'n Proto (put `Ref` in your own
#     schema with `import "refstore.capnp"`), or turned into a printable share token with
#     `Ref.share` and back into a Ref with `Store.restore`, over any channel at all.
#
# Data paths. Clients connected over the daemon's Unix socket read and write values in shared
# memory: the bytes live in a few large memfd segments whose file descriptors travel as
# Cap'n Proto attached fds (`Segment` capabilities). A client maps each segment once and then
# reads a value as offset+length inside a mapping it already has; no payload crosses the
# socket. Clients without fd passing (TCP, or languages whose Cap'n Proto lacks it) use the
# copy path: `Store.put` / `WriteBuffer.write` / `Ref.read` in bounded chunks, same semantics.
# The copy path (`put`, `putMany`, `write`, `read`, `readMany`) works on every connection, from
# any Cap'n Proto implementation. A client on the Unix socket whose implementation cannot
# receive file descriptors says so in `Store.hello` (`noFileDescriptors`) and is then treated as
# a copy-path client.
#
# Releasing. Cap'n Proto implementations release a capability by sending `Release` when the
# application drops it; the daemon counts on that. Some do not (npm's capnp-es: its `close()` is
# empty, so a JavaScript client could only free memory by disconnecting): for them, `Ref.release`
# and `View.release` drop the daemon-side holder at once; later calls on it fail with
# FAILED_PRECONDITION.
#
# Errors. Every failure is a Cap'n Proto exception whose description starts with a stable
# code word followed by ": " and a human explanation, e.g.
#     refstore.NOT_FOUND: token unknown or expired
# The codes are the `ErrorCode` enum at the end of this file. Bad input gets an error and
# changes nothing.

# Bounds. refstored is shared by every framework on a host, so one client must never be able to
# freeze, starve or exhaust it for the others. Everything a client can make the daemon hold is
# either released by something the client controls, or bounded:
#   * Ref holders, Views (memory pins), WriteBuffers (reservations), Fulfillers, Segment
#     capabilities: each is a capability; dropping it, or closing the connection, releases it.
#     Segment capabilities also cost the daemon a file descriptor each, so a connection may hold
#     at most 1024 at once (RESOURCE_EXHAUSTED beyond).
#   * Promises: a Ref like any other; a promise nobody references is freed, fulfilled or not.
#   * Share tokens outlive their connection until used up or expired (ttl at most
#     maxTokenTtlSeconds), so they are counted: at most --max-tokens live in the daemon and
#     --max-tokens-per-client minted through one connection (RESOURCE_EXHAUSTED beyond).
#   * Names outlive their connection until `unname`: at most --max-names.
#   * Requests waiting for memory (create, put, putMany, fulfil): each connection's wait in a
#     line of their own and the lines take turns, so one client's backlog delays another's
#     request by at most one of its own; at most 131,072 per connection. A waiting request
#     ends at its deadline, and with its connection.
#   * Pending calls: cancelled when their connection closes (with whatever they held); and a
#     connection's calls in flight are capped by Cap'n Proto's flow limit (8M words of
#     requests), past which the daemon reads no more of that connection's requests.
#   * Incoming messages: at most 20 MiB each (64 KiB on a TCP connection until `hello` has
#     presented the cluster secret), memory growing with the bytes that arrive, never with what a
#     frame header claims; a peer that stops in the middle of a message for a minute
#     (--stall-timeout-ms) is disconnected, and a TCP peer that must authenticate has 10 s
#     (--hello-timeout-ms) to do so. Idle connections between messages are never closed.
#   * Replies a client does not read: past 64 MiB waiting to be written, the daemon builds no more
#     large replies for it and reads no more of its requests until it catches up.
#   * Connections: at most --max-clients; more are closed at once.
#   * Listings: `Store.list` and `Store.names` answer a page at a time (maxListPage rows), and a
#     row names at most maxListedPerObject holders, names, tokens, parents and children.
#   * Labels (`hello`'s clientName): at most maxLabelBytes.

@0x94354fc2987ef65e;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("refstore::proto");

# ---------------------------------------------------------------------------------------------
# Plain data

struct ObjectId {
  # 128-bit object identity, never reused. Carries its origin so that ids from different
  # daemons (hosts) never collide.
  origin @0 :UInt64;   # random epoch chosen by the daemon that created the object, at its start
  serial @1 :UInt64;   # counter within that epoch, starting at 1
}

struct Hash128 {
  # XXH3-128 of the object's bytes, computed by the daemon when the object is sealed.
  high @0 :UInt64;
  low @1 :UInt64;
}

enum ObjectState {
  creating @0;   # reserved by `create`, being written; not readable yet
  sealed @1;     # immutable and readable
  promised @2;   # a future whose value does not exist yet (`Store.promise`)
  failed @3;     # a future that was rejected or broken
  spilled @4;    # sealed, bytes currently on disk (reserved for spilling)
  remote @5;     # sealed, bytes owned by another host's daemon (reserved for multi-host)
}

struct ObjectInfo {
  id @0 :ObjectId;
  size @1 :UInt64;        # length of the value in bytes
  hash @2 :Hash128;
  # XXH3-128 of the bytes; zero until sealed. Values over 1 MiB are hashed after sealing, on
  # a background thread, so a writer never waits for a pass over its value; and only once they
  # have lived 200 ms (refstored --hash-delay-ms), so that a value read and dropped at once
  # never costs one (the daemon itself needs the hash only to check a spilled value when it
  # comes back, and spilling hashes first). Ref.info starts the hash at once if needed and
  # waits for it; Ref.whenReady and listings (Store.list) may show zero meanwhile.
  state @3 :ObjectState;
}

struct Placement {
  # Where a value's bytes live in shared memory: `length` bytes at `offset` inside segment
  # `segmentId` of the daemon whose epoch is `origin`. `segment` carries the segment's file
  # descriptor (Cap'n Proto fd passing); a client keeps one mapping per (origin, segmentId)
  # and reuses it. For a shared (not dedicated) segment the daemon sends each connection one
  # Segment capability and attaches the fd only the first time: while the client holds that
  # capability, later placements name the same import, whose fd the client already has. So a
  # client keeps a shared segment's capability as long as its mapping. Dropping it is allowed:
  # the next placement then brings a new capability with the fd, except a placement already in
  # flight when it was dropped, whose capability arrives without an fd: `Segment.reattach` on
  # it gets one. A placement with segmentId 0 means "no shared memory for this connection": use
  # the copy path instead.
  origin @0 :UInt64;
  segmentId @1 :UInt32;
  offset @2 :UInt64;
  length @3 :UInt64;
  segmentSize @4 :UInt64;  # size of the whole segment (what to mmap)
  segment @5 :Segment;
  dedicated @6 :Bool;
  # The segment holds only this object (large values get a segment of their own). Do not cache
  # its mapping: unmap it when the View or WriteBuffer it was mapped for is dropped, or the
  # client's mapping would keep the memory alive after the daemon frees it. Every placement in
  # a dedicated segment carries a new Segment capability with its fd attached.
}

struct Stats {
  # A snapshot of the daemon, for monitoring (`refctl stats --json`).
  objects @0 :UInt64;        # objects that exist (any state, including dead-but-pinned)
  bytesUsed @1 :UInt64;      # shared memory allocated to objects (allocator usable sizes)
  capacity @2 :UInt64;       # the --memory limit
  clients @3 :UInt32;        # open connections
  segments @4 :UInt32;       # shared-memory segments mapped
  segmentBytes @5 :UInt64;   # shared memory reserved in segments (>= bytesUsed)
  holders @6 :UInt64;        # live Ref capabilities (holders) across all objects
  tokens @7 :UInt64;         # live share tokens (leases)
  pinnedDead @8 :UInt64;     # objects with no references left, kept only by a View pin
  creating @9 :UInt64;       # objects by state ...
  sealed @10 :UInt64;
  uptimeMs @11 :UInt64;
  putsTotal @12 :UInt64;     # counters since start
  reclaimedTotal @13 :UInt64;
  promised @14 :UInt64;      # futures not yet fulfilled
  failed @15 :UInt64;        # rejected or broken futures still referenced
  names @16 :UInt64;         # name pins
  # Memory pressure (bytesUsed above is what is in shared memory):
  spilled @17 :UInt64;            # objects whose bytes are on disk now
  spilledBytes @18 :UInt64;       # their bytes
  spillFiles @19 :UInt64;         # files in the spill directory
  spillsTotal @20 :UInt64;        # spills since start, and their bytes
  spilledBytesTotal @21 :UInt64;
  restoresTotal @22 :UInt64;      # restores since start, and their bytes
  restoredBytesTotal @23 :UInt64;
  spillFailuresTotal @24 :UInt64; # spills that failed (e.g. OUT_OF_DISK); the object stayed
  fileBackedBytes @25 :UInt64;    # file-backed objects (larger than memory)
  queueLength @26 :UInt32;        # requests waiting for memory (prefetchesWaiting among them)
  oldestWaiterMs @27 :UInt64;     # how long the first of them has waited
  backgroundHashesTotal @28 :UInt64;
  # Values over 1 MiB hashed after sealing, since start (see ObjectInfo.hash). A large value is
  # hashed once it has lived 200 ms (--hash-delay-ms) or when its hash is needed (Ref.info,
  # spilling); one dropped before that is never hashed and not counted.
  lastReclaimMonoUs @29 :UInt64;
  # When the daemon last freed an object (reclaimedTotal advanced), on this host's
  # CLOCK_MONOTONIC in microseconds; 0 if it never has. Processes on the same host share that
  # clock, so a client can time "last reference dropped -> memory freed" without polling for it
  # (refbench's reclaim workload does).
  # Many hosts (see `Store.peer`):
  proxies @30 :UInt64;            # objects of other daemons used here (state remote)
  proxyBytes @31 :UInt64;         # bytes of their local copies
  remoteHolders @32 :UInt64;      # references other daemons hold on this daemon's objects
  detachedHolders @33 :UInt64;    # of those, held for a peer whose connection is down (grace)
  peers @34 :UInt32;              # peer connections up
  bytesPulledTotal @35 :UInt64;   # bytes received from owners for local copies, since start
  bytesServedTotal @36 :UInt64;   # bytes sent to other daemons' pulls (as owner or relay)
  pullsInFlight @37 :UInt32;      # pulls running now
  pullsTotal @38 :UInt64;         # pulls completed, since start
  ownerLost @39 :UInt64;          # proxies whose owner is gone (complete copies stay readable)
  prefetchesWaiting @40 :UInt32;
  # Of queueLength, copies for `Ref.prefetch` that nobody reads yet: they get memory only once
  # no other request waits for it.
  bytesRelayedTotal @41 :UInt64;
  # Bytes received for local copies from another reader's copy instead of from the owner (a
  # large value read on several hosts at once is relayed from reader to reader: peer.capnp),
  # since start. Counted as they arrive, so a copy that fails later has been counted too.
}

struct HolderInfo {
  clientId @0 :UInt64;   # the daemon's id for the holding connection
  label @1 :Text;        # what the client called itself in `Store.hello`, or ""
  pid @2 :Int32;         # peer pid from SO_PEERCRED (Unix socket), or 0
  heldMs @3 :UInt64;     # how long this holder has held the reference
  peerOrigin @4 :UInt64; # a remote holder: the holding daemon's origin (0 for local clients)
  detached @5 :Bool;     # a remote holder kept through its peer's disconnection (grace period)
}

struct ObjectListing {
  # One row of `Store.list` (`refctl ls`): diagnostics only, grants no access. Each list in a
  # row names at most `maxListedPerObject` entries (an object may have a million holders or
  # tokens); the counts say how many there are in all.
  info @0 :ObjectInfo;
  holders @1 :List(HolderInfo);      # the first holders (at most maxListedPerObject)
  tokens @2 :UInt32;     # live share tokens
  pins @3 :UInt32;       # live Views
  ageMs @4 :UInt64;      # time since creation
  dead @5 :Bool;         # unreferenced, kept only until the last View is dropped
  tokenExpiriesMs @6 :List(UInt64);  # the soonest-expiring live tokens: ms until each expires
  names @7 :List(Text);
  parents @8 :List(ObjectId);        # objects that contain this one
  children @9 :List(ObjectId);       # objects this one contains (an alias lists its target)
  oldestHoldMs @10 :UInt64;          # how long the longest-standing current holder has held it
  holderCount @11 :UInt32;           # holders in all (`holders` may list fewer)
  nameCount @12 :UInt32;             # names in all
  parentCount @13 :UInt32;           # parents in all
  childCount @14 :UInt32;            # children in all
  # Many hosts. On the owner, `holders` include remote holders (another daemon, one reference
  # for all its clients: peerOrigin is set); on other hosts, a proxy (state remote) says where
  # its owner is and whether its bytes are here.
  ownerAddress @15 :Text;            # a proxy's owner ("" for objects of this daemon)
  bytesLocal @16 :Bool;              # a proxy whose bytes are copied here
  ownerLost @17 :Bool;               # a proxy whose owner is gone
}

# ---------------------------------------------------------------------------------------------
# Capabilities

interface Store {
  # The bootstrap capability of every connection to refstored.

  hello @0 (clientName :Text, secret :Data, noFileDescriptors :Bool) -> (version :Text, origin :UInt64, sharedMemory :Bool, writableSharedMemory :Bool);
  # Optional introduction. `clientName` labels this connection in listings (`refctl ls`; at most
  # maxLabelBytes). `secret` authenticates a TCP connection to a daemon started with a cluster
  # secret; until a correct secret is presented every other method fails with
  # `refstore.UNAUTHENTICATED`. Unix-socket connections need no secret. `noFileDescriptors`: this
  # client's Cap'n Proto cannot receive file descriptors (the kernel would silently drop the
  # Segment fds of shared-memory placements), so the connection gets copy-path placements
  # (segmentId 0) and `Ref.view` refuses it, as on TCP; it applies to Refs obtained after the
  # call, so say it first. Returns the daemon version, its origin epoch, and whether this
  # connection receives shared-memory placements for reading (`sharedMemory`: Unix socket) and
  # for writing (`writableSharedMemory`: additionally the same uid as the daemon, because a
  # writable segment is never shared across uids).

  put @1 (data :Data, children :List(Ref), timeoutMs :UInt32) -> (ref :Ref);
  # Store `data` as a new sealed object and return its Ref (copy path; for small values or
  # clients without shared memory). `children` (optional) are nested references: the new object
  # keeps them alive until it is itself freed, and `Ref.children` hands them out again. This is
  # how a dataset made of partitions becomes one reference.
  # Errors: INVALID_ARGUMENT (empty, or a child is not a refstore Ref), TOO_LARGE (bigger than
  # `maxInlineBytes`: use `create`), OUT_OF_MEMORY (still no room at the deadline, see
  # `create`), NOT_FOUND (a child no longer exists).

  create @2 (size :UInt64, timeoutMs :UInt32) -> (buffer :WriteBuffer, placement :Placement);
  # Reserve `size` bytes for a new object. On a connection with writable shared memory the
  # placement names a writable segment: write the bytes in place, then `buffer.seal()`. On other
  # connections the placement has segmentId 0; send the bytes with `buffer.write` instead.
  # Dropping the buffer before `seal` aborts the object and frees the space.
  # Admission control: a request that does not fit waits, first come first served, while the
  # daemon spills least-recently-used objects to disk or other clients drop references; it
  # fails with OUT_OF_MEMORY only when `timeoutMs` passes (0: the daemon's default, 30 s).
  # Values larger than the whole capacity, and large ones that do not fit now, get a
  # file-backed allocation in the spill directory instead (mapped zero-copy just the same).
  # Errors: INVALID_ARGUMENT (size 0), TOO_LARGE (bigger than the capacity and no spill
  # directory), OUT_OF_MEMORY (deadline passed), OUT_OF_DISK (file-backed space unavailable).

  restore @3 (token :Text) -> (ref :Ref);
  # Turn a share token (from `Ref.share`) into a new Ref held by the caller. A token minted by
  # another daemon names that daemon (`@host:port`): this daemon dials it (once: one connection
  # per pair of daemons), restores the token there and returns a Ref to a local proxy of the
  # object, whose bytes are copied here when first read. Restoring several tokens of the same
  # object makes one proxy and holds one remote reference on the owner.
  # Errors: MALFORMED (not a refstore token), EXPIRED (its time-to-live has passed),
  # NOT_FOUND (unknown, forged, used up, or its object is gone: the owner answered),
  # WRONG_STORE (minted by another daemon and naming no address to reach it, or by a daemon
  # that has since restarted), UNREACHABLE (its owner cannot be reached).
  # A consumer that wants the bytes calls `view` on the returned ref without waiting (promise
  # pipelining): restore + view in one round trip, as the C++ client's `restoreView` does.

  stats @4 () -> (stats :Stats);
  # Counters describing the daemon right now.

  list @5 (cursor :UInt64, limit :UInt32) -> (objects :List(ObjectListing), nextCursor :UInt64);
  # Objects with their holders, for diagnostics (`refctl ls`), a page at a time so that a
  # listing always fits in a message whatever the number of objects: call with cursor 0, then
  # with each answer's `nextCursor` until it is 0. `limit`: rows per page (0: 1000; at most
  # maxListPage). Objects created or freed while paging may or may not appear. Grants no access.

  promise @6 () -> (ref :Ref, fulfiller :Fulfiller);
  # A future: returns at once a Ref to an object that does not exist yet (state `promised`) and
  # the Fulfiller that will provide it. The Ref can be shared, restored, nested, named and passed
  # around before the value exists; readers wait with `Ref.whenReady` (and `read`/`view` wait
  # by themselves). A promise whose every reference is gone is freed even if never fulfilled.

  lookup @7 (name :Text) -> (ref :Ref);
  # A new Ref to the object pinned under `name` (see `Ref.saveAs`). Errors: NOT_FOUND,
  # INVALID_ARGUMENT (not a valid name).

  unname @8 (name :Text) -> ();
  # Removes the name pin; the object is freed if nothing else references it. Errors: NOT_FOUND.

  names @9 (after :Text, limit :UInt32) -> (names :List(NameBinding), more :Bool);
  # Names and the objects they pin (for `refctl ls` and operators), in name order, a page at a
  # time: the names after `after` ("" for the first page), at most `limit` (0: 1000; at most
  # maxListPage); `more` says whether names follow the last one returned (pass it as `after`).

  adopt @10 (ref :Ref) -> (ref :Ref);
  # Re-homes a Ref received from another party (which may be a proxy through that party's
  # connection, Cap'n Proto being Level 1) onto a direct capability on this connection, so the
  # party it came through may exit without breaking it. The daemon proves the caller holds the
  # Ref by minting a single-use token through it, then redeems it here.
  # Errors: INVALID_ARGUMENT (not a Ref of this daemon), NOT_FOUND (object gone).

  putMany @11 (values :List(Data), timeoutMs :UInt32) -> (refs :List(Ref));
  # `put` for many small values in one call: `refs[i]` holds a copy of `values[i]`. One message
  # each way instead of one call per value, which is what bounds small-value throughput (each
  # call costs the daemon more CPU than copying a small value). All or nothing: if any value
  # cannot be stored, none is (an empty value is reported by its index). At most
  # `maxBatchValues` values, totalling at most `maxInlineBytes`. No children (use `put`).
  # Errors: INVALID_ARGUMENT (an empty value), TOO_LARGE (too many values or bytes, or more
  # than the store's whole memory when it has no spill directory), OUT_OF_MEMORY (as `put`; the
  # values already granted memory are released at once).

  peer @13 (origin :UInt64, address :Text) -> (service :Capability);
  # Daemons only: turns this connection into a peer connection between two refstored daemons
  # (see "Many hosts" in DESIGN.md). `origin` is the calling daemon's epoch and `address` where
  # it can be reached (its --advertise address). Returns this daemon's `PeerService`
  # (schema/peer.capnp). From then on every Ref this connection obtains counts on this daemon's
  # objects as one remote holder labelled with the peer; if the connection breaks, those holds
  # are kept for a grace period (--peer-grace-ms) in which the peer may take them back
  # (`PeerService.reattach`) from a new connection with the same origin. The caller must have
  # presented the cluster secret where one is required. Errors: UNAUTHENTICATED,
  # INVALID_ARGUMENT (origin 0 or this daemon's own, a bad address), FAILED_PRECONDITION (this
  # connection is already a peer connection, or a Unix-socket one).

  peers @14 () -> (peers :List(PeerInfo));
  # The connections to other daemons (`refctl peers`), for diagnostics.

  readMany @12 (refs :List(Ref)) -> (values :List(Data));
  # The copy path for many small values in one call: `values[i]` is the whole value of
  # `refs[i]` (waiting for promises first, like `Ref.read`). The Refs may have come through
  # other parties. At most `maxBatchValues` Refs, their values totalling at most
  # `maxInlineBytes`. The first failure is reported at once, even while other Refs in the batch
  # are still unsettled promises. Errors: INVALID_ARGUMENT (not a Ref of this daemon), NOT_FOUND
  # (an object is gone), TOO_LARGE (too many Refs or bytes: read the large ones with `Ref.read`
  # or `Ref.view`), REJECTED, BROKEN_PROMISE, OUT_OF_MEMORY (spilled values that cannot all be
  # back in memory at once).
}

struct PeerInfo {
  # One connection to another daemon (`Store.peers`).
  origin @0 :UInt64;          # the other daemon's epoch
  address @1 :Text;           # where it is reached
  state @2 :Text;             # "connecting", "up" or "down"
  outgoing @3 :Bool;          # this daemon dialed it
  heldByPeer @4 :UInt64;      # remote holders it has on this daemon's objects (detached included)
  heldFromPeer @5 :UInt64;    # proxies here of its objects
  bytesPulled @6 :UInt64;     # bytes copied from it, since start
  bytesServed @7 :UInt64;     # bytes copied to it, since start
  lastHeardMs @8 :UInt64;     # since anything was last heard from it
}

struct NameBinding {
  name @0 :Text;
  id @1 :ObjectId;
}

interface Fulfiller {
  # The write side of a promise (`Store.promise`). Exactly one of the methods below succeeds;
  # afterwards every call fails with FAILED_PRECONDITION. Dropping the Fulfiller before that
  # breaks the promise: waiters and later readers get `refstore.BROKEN_PROMISE`.

  fulfill @0 (data :Data, children :List(Ref)) -> ();
  # Provide the value inline (at most `maxInlineBytes`), with optional nested children.
  # Errors: as `Store.put`, plus CYCLE (a child contains this promise).

  fulfillWith @1 (ref :Ref) -> ();
  # Make the promise an alias of another object (no copy): readers of the promise read `ref`'s
  # bytes. For large values: `create` + write + `seal`, then `fulfillWith`. `ref` may itself be
  # a promise; the alias is ready when it is. Errors: CYCLE (`ref` is or contains this promise).

  reject @2 (reason :Text) -> ();
  # Fail the promise: every waiter and later reader gets `refstore.REJECTED: <reason>`.
}

interface WriteBuffer {
  # A reserved, not yet sealed object. Dropping it before `seal` aborts the object.

  write @0 (offset :UInt64, data :Data) -> stream;
  # Copy path: write `data` at `offset` of the reservation (at most `maxChunkBytes` per call).
  # Errors: OUT_OF_RANGE (beyond the reserved size), TOO_LARGE (chunk too big),
  # FAILED_PRECONDITION (already sealed).

  seal @1 (children :List(Ref)) -> (ref :Ref);
  # Make the object immutable and return a Ref to it; its XXH3-128 hash is computed now or,
  # above 1 MiB, in the background (see ObjectInfo.hash). The buffer's hold on the object
  # passes to the returned Ref. `children` as in `Store.put`.
  # Errors: FAILED_PRECONDITION (already sealed), NOT_FOUND (a child is gone).
  # A producer handing the value on calls `share` on the returned ref without waiting (promise
  # pipelining): seal + share in one round trip, as the C++ client's `sealAndShare` does.
}

interface Ref {
  # A reference to one immutable object. Holding it keeps the object alive.

  info @0 () -> (info :ObjectInfo);
  # Id, size, hash and state.

  read @1 (offset :UInt64, length :UInt64) -> (data :Data);
  # Copy path: up to `length` bytes (at most `maxChunkBytes`) starting at `offset`. Reading at
  # exactly the end returns empty data. A promise is waited for first. Errors: OUT_OF_RANGE
  # (offset beyond the end), TOO_LARGE (length over the chunk limit), REJECTED, BROKEN_PROMISE.

  view @2 () -> (view :View, placement :Placement);
  # Zero-copy read: pins the object's memory for as long as `view` is held and says where the
  # bytes are (read-only segment). Dropping the View unpins. A View pins memory independently
  # of Refs: the value stays mapped even if every Ref is dropped meanwhile. A promise is waited
  # for first. Errors: FAILED_PRECONDITION (this connection has no shared memory), REJECTED,
  # BROKEN_PROMISE.

  share @3 (ttlSeconds :UInt32, uses :UInt32) -> (token :Text);
  # Mint a printable token that any party can pass over any channel and `Store.restore`.
  # The token keeps the object alive until it expires (`ttlSeconds`, 1 .. maxTokenTtlSeconds)
  # or has been restored `uses` times (0 = unlimited within the ttl). Tokens carry a 128-bit
  # random secret and are unguessable. Errors: INVALID_ARGUMENT (ttl 0 or too long).

  whenReady @4 () -> (info :ObjectInfo);
  # Resolves when the object is readable (immediately unless it is a promise). It does not wait
  # for a large value's hash (`info.hash` may be zero: see ObjectInfo.hash; `info` waits). Errors:
  # REJECTED (the fulfiller rejected it, with its reason), BROKEN_PROMISE (the fulfiller was
  # dropped or its process died unfulfilled).

  children @5 () -> (children :List(Ref));
  # New Refs to the nested references declared when the object was sealed or fulfilled.

  saveAs @6 (name :Text) -> ();
  # Pin the object under `name` (1..256 printable ASCII characters, no spaces) until
  # `Store.unname`: names are the only manual part of memory management.
  # Errors: ALREADY_EXISTS (name taken), INVALID_ARGUMENT (bad name).

  release @7 () -> ();
  # Drops this holder at once, as releasing the capability would: for Cap'n Proto
  # implementations that never send `Release` (see "Releasing" at the top). Every later call on
  # this Ref fails with FAILED_PRECONDITION; a second release does nothing. Refs of the same
  # object held elsewhere are unaffected.

  prefetch @8 () -> ();
  # Brings the bytes into this daemon's memory ahead of a read, and resolves once they are
  # there: another host's object (a proxy, see "Many hosts") is copied from its owner now, as
  # its first `view`/`read` would (once per host, however many readers and prefetches wait); a
  # spilled value is read back from disk (as for a read); a promise is waited for first.
  # Everything else goes first: when memory is short, a prefetch's copy waits behind every other
  # request for memory on this daemon -- creates, puts, values read back from disk, copies that
  # readers wait for -- including those that arrive after it, until a reader wants that very
  # value (from then on it is a reader's copy). Between prefetches, clients take turns as for
  # creates. A prefetch that gets no memory before the default deadline (30 s) fails with
  # OUT_OF_MEMORY and its copy is dropped; the next read copies the value again. Copies of other
  # hosts' values are never file-backed while they fit in memory: under pressure other such
  # copies are dropped first (their owners keep the values), then values are spilled. The caller
  # need not wait for the answer: the copy goes on if this call is cancelled, and it is dropped
  # with the last reference to the value. Errors: as `read` (REJECTED, BROKEN_PROMISE), and
  # OWNER_LOST, CORRUPTED, OUT_OF_MEMORY for a copy.
}

interface View {
  # A pin on an object's memory for zero-copy reading; see `Ref.view`. Holding it is the pin,
  # dropping it unpins.

  placement @0 () -> (placement :Placement);
  # Where the pinned bytes are (the same as returned by `Ref.view`). Errors: FAILED_PRECONDITION
  # (released).

  release @1 () -> ();
  # Unpins at once, as dropping the View would (see `Ref.release`); a second release does
  # nothing.
}

interface Segment {
  # A shared-memory segment. The capability carries the segment's memfd as an attached file
  # descriptor (Cap'n Proto `getFd()`, attached when the capability first reaches a connection:
  # see Placement); map it MAP_SHARED with the size from `info`. Readers receive a read-only
  # descriptor (PROT_WRITE mappings fail), so a sealed value cannot be changed through a
  # reader's mapping.

  info @0 () -> (id :UInt32, size :UInt64, writable :Bool);

  reattach @1 () -> (segment :Segment);
  # A new capability for the same segment with its fd attached. For a client whose import of
  # this capability arrived without an fd: that happens when it dropped the capability while a
  # placement naming it was already on its way (Cap'n Proto then builds a new import, and the
  # daemon attached the fd only the first time).
}

# ---------------------------------------------------------------------------------------------
# Limits

const maxInlineBytes :UInt64 = 16777216;
# Largest value `Store.put` accepts inline (16 MiB). Larger values use `create` (shared memory
# or chunked `write`), which keeps every message far below Cap'n Proto's 64 MiB traversal limit.

const maxObjectBytes :UInt64 = 1099511627776;
# Largest object (1 TiB). Larger requests fail with TOO_LARGE whatever the configuration.

const maxChunkBytes :UInt64 = 16777216;
# Largest `WriteBuffer.write` chunk and `Ref.read` length (16 MiB).

const maxBatchValues :UInt32 = 65536;
# Most values (or Refs) in one `Store.putMany` or `Store.readMany` call.

const maxTokenTtlSeconds :UInt32 = 2592000;
# Longest token time-to-live (30 days).

const maxListPage :UInt32 = 10000;
# Most rows one `Store.list` or `Store.names` call returns.

const maxListedPerObject :UInt32 = 32;
# Most holders, token expiries, names, parents and children one `ObjectListing` row names.

const maxLabelBytes :UInt32 = 256;
# Longest `Store.hello` clientName (a label for listings). Longer ones are INVALID_ARGUMENT.

# ---------------------------------------------------------------------------------------------
# Error codes

annotation summary(enumerant) :Text;
# A one-line description of an error code. schema/error_codes_gen copies it, with the code's
# number and name, into the generated header every client builds its tables from.

enum ErrorCode {
  # The one list of error codes. The daemon's exceptions describe a failure as
  # "refstore.<NAME>: <explanation>", NAME being the code's name in UPPER_SNAKE_CASE (notFound ->
  # NOT_FOUND); the C++ client's `refstore::ErrorCode` and the C client's `REFSTORE_E_<NAME>` use
  # the same numbers, generated from this enum, so a new code is added here and nowhere else.
  # Codes marked "client" are never sent by the daemon: client libraries report them for failures
  # on their side. Numbers are stable: add new codes at the end.
  #
  # Some Cap'n Proto implementations prefix a remote exception's description (Rust's capnp-rpc
  # adds "remote exception: "): search the description for the "refstore.<NAME>" word rather
  # than assume it starts the string.

  ok @0 $summary("success (never sent)");

  invalidArgument @1 $summary("a parameter is outside its documented domain");
  # A parameter is out of its documented domain (zero size, bad ttl, a label too long, ...).

  tooLarge @2 $summary("a size exceeds a hard limit");
  # A size exceeds a hard limit (the whole capacity, an inline or chunk limit). Retrying the same
  # request can never succeed.

  outOfMemory @3 $summary("the store has no room right now");
  # The request fits the capacity in principle but not in the memory free right now.

  notFound @4 $summary("token unknown, used up, or object gone");
  # A token is unknown, forged, used up, or its object no longer exists.

  expired @5 $summary("token past its time-to-live");
  # A token's time-to-live has passed.

  malformed @6 $summary("not a refstore token");
  # A token is not syntactically a refstore token.

  wrongStore @7 $summary("token minted by another daemon");
  # A token was minted by a different daemon (another origin epoch).

  outOfRange @8 $summary("offset/length outside the object");
  # An offset/length lies outside the object.

  failedPrecondition @9 $summary("wrong state, e.g. sealing twice");
  # The object is not in a state that allows the call (e.g. reading before seal, sealing twice).

  unauthenticated @10 $summary("the listener needs the cluster secret");
  # A TCP connection to a daemon with a cluster secret has not presented it (`Store.hello`).

  internal @11 $summary("daemon-side failure");
  # A bug or an operating-system failure inside the daemon; the description says which.

  disconnected @12 $summary("daemon unreachable or gone (client)");
  # Client: the connection to the daemon could not be made or was lost.

  io @13 $summary("a local system call failed (client)");
  # Client: a system call on the client's side failed (mmap, connect, ...).

  misuse @14 $summary("the API was misused (client)");
  # Client: a NULL handle or out-parameter, a handle used from another thread or in a forked
  # child, ... The call did nothing.

  rejected @15 $summary("a promise was rejected (the message has the reason)");
  # The promise was rejected by its fulfiller; the reason follows.

  brokenPromise @16 $summary("a promise's fulfiller went away unfulfilled");
  # The promise's Fulfiller was dropped (or its process died) before fulfilling it.

  cycle @17 $summary("an object would contain itself");
  # A fulfilment or seal would make an object contain itself (directly or through nested refs).

  alreadyExists @18 $summary("a name is taken");
  # A name is already taken.

  timeout @19 $summary("a client-side wait ran out (client)");
  # Client: a wait with a deadline on the client's side ran out (the daemon is unaffected).

  outOfDisk @20 $summary("the spill directory's disk is full");
  # The spill directory's disk is full (or over its quota/file-size limit): a spill or a
  # file-backed allocation could not be written. Nothing was lost; the value stays where it was.

  corrupted @21 $summary("bytes failed their hash check");
  # Bytes read back from disk do not match the object's XXH3-128 hash (or are missing). The
  # object cannot be restored; it is never returned silently wrong.

  resourceExhausted @22 $summary("a per-client or per-daemon limit is reached");
  # A bound on what one client (or all of them) may make the daemon hold is reached: live share
  # tokens, names, requests waiting for memory, Segment capabilities, connections. Nothing
  # changed; release some (drop Refs, let tokens expire, unname) and retry. The description names
  # the limit and its value. See "Bounds" at the top of this file.

  ownerLost @23 $summary("the daemon that owns the object is gone");
  # The object belongs to another daemon (host), which has died, restarted or been cut off past
  # its grace period. What needs the owner -- copying bytes not yet copied here, a promise not
  # yet settled, `share` -- fails; a complete local copy stays readable for as long as it is held.

  unreachable @24 $summary("the daemon named by a token cannot be reached");
  # A token names another daemon, which does not answer at its address (distinct from NOT_FOUND,
  # which means the owner answered that the token is unknown).
}
