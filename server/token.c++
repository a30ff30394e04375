#include "server/token.h"

#include <sys/random.h>

#include <kj/debug.h>
#include <kj/vector.h>

namespace refstore::server {
namespace {

const kj::StringPtr PREFIX = "rs1.";

void appendHex64(kj::Vector<char>& out, uint64_t value) {
  static const char digits[] = "0123456789abcdef";
  for (int shift = 60; shift >= 0; shift -= 4) out.add(digits[(value >> shift) & 0xf]);
}

bool parseHex64(kj::StringPtr text, size_t at, uint64_t* out) {
  uint64_t value = 0;
  for (size_t i = at; i < at + 16; i++) {
    char c = text[i];
    int digit;
    if (c >= '0' && c <= '9') digit = c - '0';
    else if (c >= 'a' && c <= 'f') digit = c - 'a' + 10;
    else return false;
    value = (value << 4) | digit;
  }
  *out = value;
  return true;
}

// Offsets of each field in the fixed-width format.
constexpr size_t ID_AT = 4, EXPIRY_AT = ID_AT + 32 + 1, SECRET_AT = EXPIRY_AT + 16 + 1;
constexpr size_t TOKEN_LENGTH = SECRET_AT + 32;

}  // namespace

kj::String formatToken(const Token& token) {
  kj::Vector<char> out(TOKEN_LENGTH + 1);
  out.addAll(PREFIX);
  appendHex64(out, token.id.hi);
  appendHex64(out, token.id.lo);
  out.add('.');
  appendHex64(out, token.expiresUnixSeconds);
  out.add('.');
  appendHex64(out, token.secret.hi);
  appendHex64(out, token.secret.lo);
  out.add('\0');
  return kj::String(out.releaseAsArray());
}

kj::Maybe<Token> parseToken(kj::StringPtr text) {
  if (text.size() != TOKEN_LENGTH || !text.startsWith(PREFIX)) return nullptr;
  if (text[EXPIRY_AT - 1] != '.' || text[SECRET_AT - 1] != '.') return nullptr;
  Token token;
  if (!parseHex64(text, ID_AT, &token.id.hi) || !parseHex64(text, ID_AT + 16, &token.id.lo) ||
      !parseHex64(text, EXPIRY_AT, &token.expiresUnixSeconds) ||
      !parseHex64(text, SECRET_AT, &token.secret.hi) ||
      !parseHex64(text, SECRET_AT + 16, &token.secret.lo)) {
    return nullptr;
  }
  return token;
}

gc::Secret randomSecret() {
  uint64_t words[2];
  size_t filled = 0;
  while (filled < sizeof(words)) {
    ssize_t n = getrandom(reinterpret_cast<char*>(words) + filled, sizeof(words) - filled, 0);
    if (n < 0) {
      KJ_REQUIRE(errno == EINTR, "getrandom failed", strerror(errno));
      continue;
    }
    filled += n;
  }
  return gc::Secret{words[0], words[1]};
}

}  // namespace refstore::server
