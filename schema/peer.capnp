# The protocol between refstored daemons ("Many hosts" in DESIGN.md), apart from the clients'
# as Cap'n Proto keeps rpc.capnp apart from rpc-twoparty.capnp.
#
# Daemons reach each other over their TCP listeners with the clients' protocol: a daemon that
# needs another's object dials the owner's advertised address, presents the cluster secret
# (`Store.hello`), and introduces itself (`Store.peer`), which hands it the owner's PeerService.
# The connection is symmetric: the dialer serves its own Store as its bootstrap, so the owner
# can use it the same way. One connection per pair of daemons, opened on first need, reused by
# every reference that flows over it, closed when none does.
#
# References are capabilities across hosts too: a daemon holds exactly one owner's Ref per
# proxied object, whatever the number of its local references; dropping the last local one
# drops that Ref, which Cap'n Proto releases on the owner. Bytes do not travel in RPC messages
# (small values aside, see `openPull`): a reader pulls them over a separate TCP connection to the
# owner's data port, authorised by a one-time ticket, straight into local shared memory.

@0xc2d4b6f8a1e3c5d7;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("refstore::peer");

using Rs = import "/schema/refstore.capnp";

interface PeerService {
  heartbeat @0 () -> ();
  # Liveness. Each side calls the other's every --heartbeat-ms; a connection on which nothing
  # has been heard for a few of those (--peer-timeout-ms) is treated as broken, exactly as a
  # closed one.

  reattach @1 (ids :List(Rs.ObjectId)) -> (refs :List(Rs.Ref));
  # After a reconnection within the grace period: the calling daemon takes back the remote
  # holds its previous connection had on these objects. `refs[i]` is a new Ref for `ids[i]`, or
  # null if there was no such hold (it expired, or was never there).

  identify @2 (ref :Rs.Ref) -> (id :Rs.ObjectId, state :Rs.ObjectState, size :UInt64,
                                  hash :Rs.Hash128);
  # What a Ref of this daemon names, at once (whatever its state; size and hash may be zero for
  # promises and for values whose hash is not computed yet). For making proxies of Refs that
  # arrive as children. Errors: INVALID_ARGUMENT (not a Ref of this daemon).

  openPull @3 (ref :Rs.Ref, inlineUpTo :UInt64, relay :Relay, direct :Bool)
      -> (ticket :Data, dataAddress :Text, size :UInt64, hash :Rs.Hash128, inlineBytes :Data,
          from :Relay);
  # A one-time ticket to copy `ref`'s bytes from this daemon's data port `dataAddress`
  # (host:port). Waits for a promise to settle, for a spilled value to be back in memory, and for
  # the value's XXH3-128 hash (`hash`), which the copy must match. The ticket is single-use and
  # expires in seconds; it is the only authority on the data port.
  #
  # Small values come inline instead: if `size` is at most `inlineUpTo` and at most 64 KiB, the
  # answer carries the bytes in `inlineBytes` and no ticket (`ticket` is empty). For them a data
  # connection (connect, request, answer) would cost more round trips than the copy itself; the
  # reader checks them against `hash` all the same. This is the only place value bytes travel in
  # an RPC message, and it is bounded far below any message limit.
  #
  # Large values may come from another reader instead (a broadcast: the owner's link carries a
  # value once, not once per host). A reader offers its own copy as `relay` (null: it offers
  # none). For a value of at least 8 MiB, unless `direct` is set, the owner may answer with
  # `from`, another reader's Relay (offered within the last minute, serving nobody else yet, not
  # the caller's), and no ticket: the reader then asks `from` for a ticket on that reader's data
  # port. Each relay serves one other reader, so readers that come together form a chain, and
  # every link carries the value once. The copy is checked against `hash`, the owner's, as
  # always. If the relay fails (it dropped its copy, its daemon went away, the transfer broke),
  # the reader asks again with `direct` set and is served by the owner, resuming where the relay
  # left off; so does every later attempt of the same copy, which keeps relays from ever
  # waiting on each other. An offer goes with the reader's copy: the owner hands it out only
  # while that reader still holds the object, and at most 4096 offers are kept, each for a
  # minute. Relays are daemons of the cluster, trusted as owners are: the XXH3 checks catch
  # damage in flight, not a peer that lies.
  # Errors: as `Ref.read` (REJECTED, BROKEN_PROMISE, NOT_FOUND, ...), INVALID_ARGUMENT (not a Ref
  # of this daemon).

  restore @4 (token :Text, inlineUpTo :UInt64) -> (ref :Rs.Ref, state :Rs.ObjectState,
                                                    size :UInt64, hash :Rs.Hash128,
                                                    inlineBytes :Data);
  # `Store.restore` for a peer, with what `identify` would say of the object in the same answer
  # (state after following fulfilled promises; size and hash may be zero for promises and for
  # values whose hash is not computed yet), so that a proxy made from a token is settled and
  # described without a second round trip. And, like `openPull`, a small value's bytes: if the
  # object is a value in memory, already hashed, of at most `inlineUpTo` and 64 KiB, they come
  # in `inlineBytes` (empty otherwise), so that the usual restore-then-read of a small value
  # costs one round trip between the daemons. The reader keeps them only briefly (until the
  # first read, or a second) and within a small bound. Errors: as `Store.restore`.
}

interface Relay {
  # One reader's copy of another daemon's object, offered to other readers of it (through the
  # owner: `PeerService.openPull`'s `relay` and `from`). The copy may still be arriving: the
  # relay's data port sends each chunk as soon as it has arrived and been checked, so a chain of
  # readers moves a value at the speed of its slowest link, not the sum of them.

  open @0 (reader :UInt64) -> (ticket :Data, dataAddress :Text);
  # A one-time ticket for this copy on the relay's data port (as `openPull`'s), which pins the
  # copy until the ticket is used or expires and while its transfer runs. `reader` is the
  # asking daemon's origin, for the relay's per-peer figures. Errors: NOT_FOUND (the relay no
  # longer has the copy, nor is it copying it), RESOURCE_EXHAUSTED (too many tickets).
}

# The data port speaks no Cap'n Proto: a request of 48 bytes,
#     "RSDP" | version (UInt32 = 1) | ticket (16 bytes) | offset (UInt64) | length (UInt64)
# (little-endian), answered by the bytes [offset, offset + length) of the value in chunks, each
#     offset (UInt64) | length (UInt32) | XXH3-64 of the chunk (UInt64) | padding (UInt32) | bytes
# until `length` bytes have been sent, then the connection is closed. Owners send chunks of 1 MiB
# (the last one shorter); readers accept chunks of up to 4 MiB. A request with a bad,
# used or expired ticket is closed at once. A transfer that breaks is resumed from its last good
# chunk with a new ticket; the whole value is then checked against the hash openPull returned.
# A relay's data port speaks the same, and sends each chunk once it has arrived there.
