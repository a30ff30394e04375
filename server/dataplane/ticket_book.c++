#include "server/dataplane/ticket_book.h"

#include "server/runtime/errors.h"
#include "server/runtime/log.h"
#include "server/store/token.h"

namespace refstore::server::dataplane {

TicketBook::TicketBook(ObjectStore& store, kj::Timer& timer, kj::Duration lifetime)
    : store(store), timer(timer), lifetime(lifetime) {}

TicketBook::~TicketBook() noexcept(false) {
  for (auto& entry: tickets) store.unpin(entry.value.object);
}

void TicketBook::expireDue() {
  kj::TimePoint now = timer.now();
  kj::Vector<Key> due;
  for (auto& entry: tickets) {
    if (entry.value.expiresAt <= now) due.add(entry.key);
  }
  for (auto& key: due) {
    KJ_IF_MAYBE(entry, tickets.find(key)) { store.unpin(entry->object); }
    tickets.erase(key);
  }
}

gc::Secret TicketBook::issue(gc::ObjectId owner, gc::PeerId peer) {
  // Expired tickets go when new ones are made: a bounded sweep (at most kMaxOutstanding).
  if (tickets.size() >= kMaxOutstanding / 2) expireDue();
  RS_REQUIRE(tickets.size() < kMaxOutstanding, RESOURCE_EXHAUSTED, kMaxOutstanding,
             " transfer tickets are outstanding, the limit: retry when transfers finish");
  store.pin(owner);
  gc::Secret secret = randomSecret();
  tickets.insert(Key{secret.hi, secret.lo}, Entry{owner, peer, timer.now() + lifetime});
  armSweep();
  return secret;
}

void TicketBook::armSweep() {
  if (sweepArmed || tickets.size() == 0) return;
  kj::TimePoint earliest = tickets.begin()->value.expiresAt;
  for (auto& entry: tickets) earliest = kj::min(earliest, entry.value.expiresAt);
  sweepArmed = true;
  sweeps.add(timer.atTime(earliest).then([this]() {
    sweepArmed = false;
    expireDue();
    armSweep();
  }));
}

void TicketBook::taskFailed(kj::Exception&& e) {
  logError("transfer ticket sweep failed: ", e.getDescription());
}

kj::Maybe<kj::Own<TicketBook::Grant>> TicketBook::redeem(gc::Secret ticket) {
  Key key{ticket.hi, ticket.lo};
  KJ_IF_MAYBE(entry, tickets.find(key)) {
    Entry found = *entry;
    tickets.erase(key);  // single use, valid or not
    if (found.expiresAt <= timer.now()) {
      store.unpin(found.object);
      return nullptr;
    }
    return kj::heap<Grant>(store, found.object, found.peer);  // takes over the ticket's pin
  }
  return nullptr;
}

}  // namespace refstore::server::dataplane
