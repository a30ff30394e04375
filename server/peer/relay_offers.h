// RelayOffers: the owner's list of readers offering their copies of its objects to other
// readers (schema/peer.capnp, Relay). When several hosts read a large value at once, the owner
// sends it once and points each later reader at one that came before, so the readers form a
// chain and every link carries the value once (a broadcast costs about one pull, not one per
// host). Pure bookkeeping: the data port and the remote module do the moving.
//
// Bounded: an offer is good for kLifetime and then forgotten; at most kMaxOffers are kept (the
// oldest go first). Each relay is handed to one reader only: a relay serving two would carry
// the value twice on its own link.
#pragma once

#include <deque>

#include <kj/function.h>
#include <kj/time.h>

#include "gc/object_table.h"
#include "schema/peer.capnp.h"

namespace refstore::server {

class RelayOffers {
 public:
  static constexpr size_t kMaxOffers = 4096;
  static constexpr kj::Duration kLifetime = 60 * kj::SECONDS;
  // Smaller values come from the owner: below this, the extra round trips through a relay (ask
  // the owner, then the relay, then connect) cost more than the owner's send.
  static constexpr uint64_t kMinBytes = 8u << 20;

  // `peer` offers its copy of `object` (arriving or complete), which it holds through a
  // reference on `heldAs` (`object` or an alias of it). Replaces an earlier offer of the same
  // peer for the same object.
  void offer(gc::ObjectId object, gc::ObjectId heldAs, gc::PeerId peer, peer::Relay::Client relay,
             kj::TimePoint now);

  // A relay of `object` for `reader`: one offered within kLifetime, by another peer that still
  // `holds(peer, heldAs)` (a reader that let go of the object has dropped its copy too), that
  // serves nobody yet (it serves `reader` from now on). Null if there is none: the owner serves.
  using HoldCheck = kj::FunctionParam<bool(gc::PeerId peer, gc::ObjectId heldAs)>;
  kj::Maybe<peer::Relay::Client> take(gc::ObjectId object, gc::PeerId reader, kj::TimePoint now,
                                      HoldCheck holds);

  size_t size() const { return offers.size(); }

 private:
  struct Offer {
    gc::ObjectId object, heldAs;
    gc::PeerId peer;
    kj::TimePoint expires;
    kj::Maybe<peer::Relay::Client> relay;  // null once taken or replaced
  };
  void forgetExpired(kj::TimePoint now);

  std::deque<Offer> offers;  // oldest first (every offer has the same lifetime)
};

}  // namespace refstore::server
