#include "server/store/token_issuer.h"

#include <time.h>

#include "schema/refstore.capnp.h"
#include "server/runtime/errors.h"
#include "server/runtime/log.h"
#include "server/store/store_clock.h"
#include "server/store/token.h"

namespace refstore::server {
namespace {

uint64_t unixSecondsNow() {
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  return now.tv_sec;
}

}  // namespace

TokenIssuer::TokenIssuer(gc::ObjectTable& objects, kj::Timer& timer, uint64_t origin,
                         const Limits& limits, kj::StringPtr advertise)
    : objects(objects), timer(timer), origin(origin), limits(limits),
      advertise(kj::str(advertise)) {}

kj::String TokenIssuer::share(gc::ObjectId id, uint32_t ttlSeconds, uint32_t uses,
                              gc::ClientId client) {
  RS_REQUIRE(ttlSeconds >= 1 && ttlSeconds <= proto::MAX_TOKEN_TTL_SECONDS, INVALID_ARGUMENT,
             "ttlSeconds must be between 1 and ", proto::MAX_TOKEN_TTL_SECONDS, ", got ",
             ttlSeconds);
  RS_REQUIRE(objects.stats().leases < limits.maxTokens, RESOURCE_EXHAUSTED, "the daemon holds ",
             limits.maxTokens, " live share tokens, its limit (--max-tokens): let some expire "
             "or be used up");
  RS_REQUIRE(objects.leasesMintedBy(client) < limits.maxTokensPerClient, RESOURCE_EXHAUSTED,
             "this connection has minted ", limits.maxTokensPerClient,
             " live share tokens, the limit per connection: let some expire or be used up");
  // Any referenced object can be shared, promises included (a reader waits for the value).
  Token token;
  token.id = id;
  token.expiresUnixSeconds = unixSecondsNow() + ttlSeconds;
  token.secret = randomSecret();
  token.ownerAddress = kj::str(advertise);
  gc::MonoMillis expiresAt = monoMillis(timer) + uint64_t(ttlSeconds) * 1000;
  token.lease = objects.addLease(id, token.secret, expiresAt, uses, client);
  RS_REQUIRE(token.lease != 0, NOT_FOUND, "object ", gc::toHex(id).c_str(),
             " no longer exists");
  armTimer();
  return formatToken(token);
}

std::pair<gc::ObjectId, gc::HolderId> TokenIssuer::redeem(kj::StringPtr text,
                                                          gc::ClientId client) {
  Token token;
  KJ_IF_MAYBE(parsed, parseToken(text)) {
    token = kj::mv(*parsed);
  } else {
    RS_FAIL(MALFORMED,
            "not a refstore token (expected rs2.<32 hex>.<16 hex>.<16 hex>.<32 hex>[@host:port])");
  }
  RS_REQUIRE(token.id.hi == origin, WRONG_STORE, "token was minted by another refstored (",
             kj::hex(token.id.hi), "), this one is ", kj::hex(origin));
  // The lease's own expiry is checked by the redemption, so the answer does not depend on when
  // the timer last ran.
  gc::HolderId holder = 0;
  switch (objects.redeemLease(token.lease, token.id, token.secret, monoMillis(timer), client,
                              &holder)) {
    case gc::RedeemResult::OK:
      armTimer();
      return {token.id, holder};
    case gc::RedeemResult::EXPIRED:
      RS_FAIL(EXPIRED, "token expired");
    case gc::RedeemResult::NOT_FOUND:
      break;
  }
  RS_REQUIRE(token.expiresUnixSeconds > unixSecondsNow(), EXPIRED, "token expired");
  RS_FAIL(NOT_FOUND, "token unknown, used up, or its object is gone");
}

kj::Promise<void> TokenIssuer::expireDue() {
  size_t expired = objects.expireLeases(monoMillis(timer), kExpirySlice);
  if (expired > 0) logDebug("expired ", expired, " share token(s)");
  if (expired == kExpirySlice) {
    // More may be due: go on in a later turn, after whatever else the loop has to do.
    return kj::evalLater([this]() { return expireDue(); });
  }
  return timerLoop();
}

void TokenIssuer::armTimer() {
  auto next = objects.nextLeaseExpiry();
  KJ_IF_MAYBE(armed, timerAt) {
    if (next && *armed == *next) return;  // already waiting for exactly that moment
  }
  if (!next && timerAt == nullptr) return;
  timerTask = timerLoop().eagerlyEvaluate(
      [](kj::Exception&& e) { logError("lease timer failed: ", e.getDescription()); });
}

kj::Promise<void> TokenIssuer::timerLoop() {
  // A chain rather than re-arming from inside the callback: replacing timerTask from its own
  // continuation would destroy the running promise.
  auto next = objects.nextLeaseExpiry();
  if (!next) {
    timerAt = nullptr;
    return kj::NEVER_DONE;
  }
  timerAt = *next;
  return timer.atTime(kj::origin<kj::TimePoint>() + *next * kj::MILLISECONDS).then([this]() {
    return expireDue();
  });
}

}  // namespace refstore::server
