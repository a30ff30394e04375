// Fuzzes share-token parsing (server/token.h), the first thing Store.restore does with a
// string any client may send. Properties:
//   - parseToken accepts exactly the canonical form: whatever it accepts, formatToken writes
//     back byte for byte (so no two texts name the same token, and nothing is lost);
//   - any Token made from the input's bytes formats to 86 characters that parse back to it.
#include <stdint.h>
#include <string.h>

#include <kj/debug.h>

#include "fuzz/fuzz_input.h"
#include "server/token.h"

using refstore::fuzz::FuzzInput;
using refstore::server::Token;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The input as a token text (parseToken takes a NUL-terminated StringPtr: no NUL inside).
  kj::String text = kj::heapString(reinterpret_cast<const char*>(data), size);
  if (memchr(data, 0, size) == nullptr) {
    KJ_IF_MAYBE(token, refstore::server::parseToken(text)) {
      kj::String again = refstore::server::formatToken(*token);
      KJ_ASSERT(again == text, "parseToken accepted a non-canonical token", text, again);
    }
  }

  // The input's bytes as a token's fields.
  FuzzInput input(data, size);
  Token token{{input.u64(), input.u64()}, input.u64(), {input.u64(), input.u64()}};
  kj::String formatted = refstore::server::formatToken(token);
  KJ_ASSERT(formatted.size() == 86, formatted);
  Token parsed = KJ_ASSERT_NONNULL(refstore::server::parseToken(formatted), formatted);
  KJ_ASSERT(parsed.id == token.id && parsed.expiresUnixSeconds == token.expiresUnixSeconds &&
                parsed.secret.hi == token.secret.hi && parsed.secret.lo == token.secret.lo,
            formatted);
  return 0;
}
