// TokenIssuer: share tokens, the printable form of a reference (token.h). Minting one adds a
// lease on the object in the gc table; redeeming one adds a holder; one timer, armed at the
// earliest expiry, removes expired leases -- in bounded slices per event-loop turn, so that a
// million tokens expiring at once never stall the loop. Tokens outlive the connection that
// minted them, so their number is bounded (Limits::maxTokens, maxTokensPerClient).
#pragma once

#include <kj/async.h>
#include <kj/string.h>
#include <kj/timer.h>

#include "gc/object_table.h"
#include "server/store/limits.h"

namespace refstore::server {

class TokenIssuer {
 public:
  // Leases expired per event-loop turn; the rest go in the next turns.
  static constexpr size_t kExpirySlice = 10000;

  // `advertise`: where other daemons reach this one ("" if they cannot): tokens carry it.
  TokenIssuer(gc::ObjectTable& objects, kj::Timer& timer, uint64_t origin, const Limits& limits,
              kj::StringPtr advertise);
  KJ_DISALLOW_COPY(TokenIssuer);

  // A token for `id` minted by `client`. Throws INVALID_ARGUMENT (bad ttl), NOT_FOUND (object
  // gone), RESOURCE_EXHAUSTED (too many live tokens in the daemon or from this client).
  kj::String share(gc::ObjectId id, uint32_t ttlSeconds, uint32_t uses, gc::ClientId client);
  // The object and a new holder for `client`. Throws MALFORMED / EXPIRED / NOT_FOUND /
  // WRONG_STORE.
  std::pair<gc::ObjectId, gc::HolderId> redeem(kj::StringPtr token, gc::ClientId client);

 private:
  void armTimer();
  kj::Promise<void> timerLoop();
  kj::Promise<void> expireDue();  // one slice, then the next slice or the timer

  gc::ObjectTable& objects;
  kj::Timer& timer;
  const uint64_t origin;
  const Limits& limits;
  kj::String advertise;
  kj::Maybe<gc::MonoMillis> timerAt;
  kj::Promise<void> timerTask = nullptr;
};

}  // namespace refstore::server
