#include "server/peer/relay_offers.h"

namespace refstore::server {

void RelayOffers::forgetExpired(kj::TimePoint now) {
  while (!offers.empty() && (offers.front().expires <= now || offers.front().relay == nullptr)) {
    offers.pop_front();
  }
}

void RelayOffers::offer(gc::ObjectId object, gc::ObjectId heldAs, gc::PeerId peer,
                        peer::Relay::Client relay, kj::TimePoint now) {
  forgetExpired(now);
  for (auto& offer: offers) {
    if (offer.object == object && offer.peer == peer) offer.relay = nullptr;
  }
  if (offers.size() >= kMaxOffers) offers.pop_front();
  offers.push_back(Offer{object, heldAs, peer, now + kLifetime, kj::mv(relay)});
}

kj::Maybe<peer::Relay::Client> RelayOffers::take(gc::ObjectId object, gc::PeerId reader,
                                                 kj::TimePoint now, HoldCheck holds) {
  forgetExpired(now);
  // The oldest first: the copy furthest along.
  for (auto& offer: offers) {
    if (offer.object != object || offer.peer == reader || offer.expires <= now) continue;
    KJ_IF_MAYBE(relay, offer.relay) {
      if (!holds(offer.peer, offer.heldAs)) {
        offer.relay = nullptr;  // gone for good
        continue;
      }
      auto taken = kj::mv(*relay);
      offer.relay = nullptr;
      return kj::mv(taken);
    }
  }
  return nullptr;
}

}  // namespace refstore::server
