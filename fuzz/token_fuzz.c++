// Fuzzes share-token parsing (server/store/token.h), the first thing Store.restore does with a
// string any client may send. Properties:
//   - parseToken accepts exactly the canonical form: whatever it accepts as an rs2 token,
//     formatToken writes back byte for byte (so no two texts name the same token, and nothing
//     is lost); an rs1 token (refstored 0.1) parses with no lease and no address;
//   - any Token made from the input's bytes (with an owner address when the input's bytes
//     make a valid one) formats to text that parses back to it.
#include <stdint.h>
#include <string.h>

#include <kj/debug.h>

#include "fuzz/fuzz_input.h"
#include "server/store/token.h"

using refstore::fuzz::FuzzInput;
using refstore::server::Token;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The input as a token text (parseToken takes a NUL-terminated StringPtr: no NUL inside).
  kj::String text = kj::heapString(reinterpret_cast<const char*>(data), size);
  if (size > 0 && memchr(data, 0, size) == nullptr) {  // (data may be null when size is 0)
    KJ_IF_MAYBE(token, refstore::server::parseToken(text)) {
      if (text.startsWith("rs1.")) {
        KJ_ASSERT(token->lease == 0 && token->ownerAddress.size() == 0, text);
      } else {
        kj::String again = refstore::server::formatToken(*token);
        KJ_ASSERT(again == text, "parseToken accepted a non-canonical token", text, again);
      }
    }
  }

  // The input's bytes as a token's fields, and the rest as an owner address (if valid).
  FuzzInput input(data, size);
  Token token;
  token.id = {input.u64(), input.u64()};
  token.lease = input.u64();
  token.expiresUnixSeconds = input.u64();
  token.secret = {input.u64(), input.u64()};
  auto rest = input.bytes(input.remaining());
  kj::String address = kj::heapString(reinterpret_cast<const char*>(rest.begin()), rest.size());
  if (rest.size() > 0 && memchr(rest.begin(), 0, rest.size()) == nullptr &&
      refstore::server::isValidTokenAddress(address)) {
    token.ownerAddress = kj::mv(address);
  }
  kj::String formatted = refstore::server::formatToken(token);
  Token parsed = KJ_ASSERT_NONNULL(refstore::server::parseToken(formatted), formatted);
  KJ_ASSERT(parsed.id == token.id && parsed.lease == token.lease &&
                parsed.expiresUnixSeconds == token.expiresUnixSeconds &&
                parsed.secret.hi == token.secret.hi && parsed.secret.lo == token.secret.lo &&
                parsed.ownerAddress == token.ownerAddress,
            formatted);
  return 0;
}
