// TicketBook: the owner's one-time tickets for its data port. A ticket names one object and
// lets one connection read its bytes once; it expires in seconds if unused. While a ticket is
// outstanding (and while its transfer runs) the object is pinned, so it stays in memory and
// alive. Tickets are 128-bit random secrets, compared by hash-map lookup of the whole secret:
// knowing part of one helps nothing, and they are the only authority on the data port.
#pragma once

#include <kj/async.h>
#include <kj/map.h>
#include <kj/timer.h>

#include "server/store/object_store.h"

namespace refstore::server::dataplane {

// A ticket as openPull and Relay.open carry it: 16 bytes, `hi` then `lo` (schema/peer.capnp).
constexpr size_t kTicketBytes = 16;
inline void writeTicket(gc::Secret ticket, kj::ArrayPtr<kj::byte> out) {
  KJ_REQUIRE(out.size() == kTicketBytes);
  memcpy(out.begin(), &ticket.hi, 8);
  memcpy(out.begin() + 8, &ticket.lo, 8);
}
// Null if `in` is not the size of a ticket.
inline kj::Maybe<gc::Secret> readTicket(kj::ArrayPtr<const kj::byte> in) {
  if (in.size() != kTicketBytes) return nullptr;
  gc::Secret ticket;
  memcpy(&ticket.hi, in.begin(), 8);
  memcpy(&ticket.lo, in.begin() + 8, 8);
  return ticket;
}

class TicketBook final: private kj::TaskSet::ErrorHandler {
 public:
  static constexpr size_t kMaxOutstanding = 4096;

  TicketBook(ObjectStore& store, kj::Timer& timer, kj::Duration lifetime = 10 * kj::SECONDS);
  ~TicketBook() noexcept(false);
  KJ_DISALLOW_COPY(TicketBook);

  // A ticket for the resident object `owner` (not an alias; or a proxy whose copy is here or
  // arriving, which this daemon relays), for daemon `peer`, pinning it
  // until the ticket is used up or expires. Throws RESOURCE_EXHAUSTED past kMaxOutstanding.
  gc::Secret issue(gc::ObjectId owner, gc::PeerId peer);

  // A transfer authorised by a ticket: the object stays pinned for as long as this lives.
  class Grant {
   public:
    Grant(ObjectStore& store, gc::ObjectId object, gc::PeerId peer)
        : object(object), peer(peer), store(store) {}
    ~Grant() noexcept(false) { store.unpin(object); }
    KJ_DISALLOW_COPY(Grant);
    const gc::ObjectId object;
    const gc::PeerId peer;  // who it was issued to

   private:
    ObjectStore& store;
  };
  // Uses up `ticket`: the grant for its object, or null if it is unknown, used or expired.
  kj::Maybe<kj::Own<Grant>> redeem(gc::Secret ticket);

  size_t outstanding() const { return tickets.size(); }

 private:
  struct Key {
    uint64_t hi, lo;
    bool operator==(const Key& other) const { return hi == other.hi && lo == other.lo; }
    unsigned int hashCode() const { return unsigned(hi ^ (hi >> 32) ^ lo); }
  };
  struct Entry {
    gc::ObjectId object;
    gc::PeerId peer;
    kj::TimePoint expiresAt;
  };
  void expireDue();
  // Arms the timer for the earliest expiry while tickets are outstanding: a ticket never used
  // (its reader gone between asking and connecting) must unpin its object when it expires,
  // whether or not more tickets are issued.
  void armSweep();
  void taskFailed(kj::Exception&& e) override;

  ObjectStore& store;
  kj::Timer& timer;
  kj::Duration lifetime;
  kj::HashMap<Key, Entry> tickets;
  bool sweepArmed = false;
  kj::TaskSet sweeps{*this};  // last: destroyed first, before what the sweep uses
};

}  // namespace refstore::server::dataplane
