// Share tokens: the printable form of a reference, for handing a value to a party that does
// not speak Cap'n Proto with us (argv, HTTP, a message queue...).
//
// Format (all lowercase hex, '.'-separated, 86 characters, safe in shells and URLs):
//     rs1.<origin:16><serial:16>.<expiry:16>.<secret:32>
// `expiry` is the wall-clock Unix second at which the token stops working; it is carried in the
// token only so that an expired token can be reported as EXPIRED rather than NOT_FOUND. The
// authority is the 128-bit random `secret`, checked against the daemon's lease table; editing
// any field of a token just makes it NOT_FOUND.
#pragma once

#include <kj/common.h>
#include <kj/string.h>
#include "gc/object_id.h"
#include "gc/object_table.h"

namespace refstore::server {

struct Token {
  gc::ObjectId id;
  uint64_t expiresUnixSeconds;
  gc::Secret secret;
};

kj::String formatToken(const Token& token);

// Strict parse: exact length, prefix, separators and hex digits. nullptr if malformed.
kj::Maybe<Token> parseToken(kj::StringPtr text);

// 128 bits from the kernel's CSPRNG (getrandom), for token secrets and origin epochs.
gc::Secret randomSecret();

}  // namespace refstore::server
