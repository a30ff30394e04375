// Share tokens: the printable form of a reference, for handing a value to a party that does
// not speak Cap'n Proto with us (argv, HTTP, a message queue...).
//
// Format (lowercase hex fields, '.'-separated, safe in shells and URLs):
//     rs2.<origin:16><serial:16>.<lease:16>.<expiry:16>.<secret:32>[@<host>:<port>]
// `origin`+`serial` is the object's id, `lease` names the lease the token redeems (so that
// redemption finds it in O(1), however many tokens the object has), `expiry` is the wall-clock
// Unix second at which the token stops working (carried only so that an expired token can be
// reported as EXPIRED rather than NOT_FOUND), and the optional address after '@' is where the
// daemon that owns the object can be reached (its --advertise address; an IPv6 host is in
// brackets). The authority is the 128-bit random `secret`, checked in constant time against
// the lease; editing any field of a token just makes it NOT_FOUND.
//
// The single-host format of refstored 0.1, rs1.<origin+serial>.<expiry>.<secret>, is still
// parsed so that such a token gets a clear answer; it names no lease, so no current daemon
// redeems it.
#pragma once

#include <kj/common.h>
#include <kj/string.h>
#include "gc/object_id.h"
#include "gc/object_table.h"

namespace refstore::server {

struct Token {
  gc::ObjectId id;
  gc::LeaseId lease = 0;  // 0 in an rs1 token
  uint64_t expiresUnixSeconds = 0;
  gc::Secret secret;
  kj::String ownerAddress;  // "host:port", or "" when the token does not say
};

// The printable token. `ownerAddress` must be "" or a "host:port" of printable characters
// without spaces, '@' or '.'-free constraints: see isValidTokenAddress.
kj::String formatToken(const Token& token);

// Strict parse: prefix, exact field lengths, separators and hex digits, and a well-formed
// address if any. nullptr if malformed.
kj::Maybe<Token> parseToken(kj::StringPtr text);

// Whether `address` may follow '@' in a token: "host:port", 1..255 characters, each
// alphanumeric or one of ".-:[]_", with a non-empty host and a decimal port.
bool isValidTokenAddress(kj::StringPtr address);

// 128 bits from the kernel's CSPRNG (getrandom), for token secrets and origin epochs.
gc::Secret randomSecret();

}  // namespace refstore::server
