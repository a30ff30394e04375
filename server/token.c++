#include "server/token.h"

#include <sys/random.h>

#include <kj/debug.h>
#include <kj/vector.h>

namespace refstore::server {
namespace {

const kj::StringPtr PREFIX_V1 = "rs1.";
const kj::StringPtr PREFIX = "rs2.";

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

// Offsets of each field in the fixed-width part of rs2 (and rs1, which has no lease field).
constexpr size_t ID_AT = 4, LEASE_AT = ID_AT + 32 + 1, EXPIRY_AT = LEASE_AT + 16 + 1,
                 SECRET_AT = EXPIRY_AT + 16 + 1;
constexpr size_t FIXED_LENGTH = SECRET_AT + 32;
constexpr size_t V1_EXPIRY_AT = ID_AT + 32 + 1, V1_SECRET_AT = V1_EXPIRY_AT + 16 + 1;
constexpr size_t V1_LENGTH = V1_SECRET_AT + 32;
constexpr size_t MAX_ADDRESS_LENGTH = 255;

bool parseSecret(kj::StringPtr text, size_t at, gc::Secret* out) {
  return parseHex64(text, at, &out->hi) && parseHex64(text, at + 16, &out->lo);
}

kj::Maybe<Token> parseV1(kj::StringPtr text) {
  if (text.size() != V1_LENGTH) return nullptr;
  if (text[V1_EXPIRY_AT - 1] != '.' || text[V1_SECRET_AT - 1] != '.') return nullptr;
  Token token;
  if (!parseHex64(text, ID_AT, &token.id.hi) || !parseHex64(text, ID_AT + 16, &token.id.lo) ||
      !parseHex64(text, V1_EXPIRY_AT, &token.expiresUnixSeconds) ||
      !parseSecret(text, V1_SECRET_AT, &token.secret)) {
    return nullptr;
  }
  return kj::mv(token);
}

}  // namespace

bool isValidTokenAddress(kj::StringPtr address) {
  if (address.size() == 0 || address.size() > MAX_ADDRESS_LENGTH) return false;
  for (char c: address) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == ':' || c == '[' || c == ']' || c == '_';
    if (!ok) return false;
  }
  KJ_IF_MAYBE(colon, address.findLast(':')) {
    if (*colon == 0 || *colon + 1 == address.size()) return false;
    for (char c: address.slice(*colon + 1)) {
      if (c < '0' || c > '9') return false;
    }
    return true;
  }
  return false;
}

kj::String formatToken(const Token& token) {
  KJ_REQUIRE(token.ownerAddress.size() == 0 || isValidTokenAddress(token.ownerAddress),
             "not a token address", token.ownerAddress);
  kj::Vector<char> out(FIXED_LENGTH + 2 + token.ownerAddress.size());
  out.addAll(PREFIX);
  appendHex64(out, token.id.hi);
  appendHex64(out, token.id.lo);
  out.add('.');
  appendHex64(out, token.lease);
  out.add('.');
  appendHex64(out, token.expiresUnixSeconds);
  out.add('.');
  appendHex64(out, token.secret.hi);
  appendHex64(out, token.secret.lo);
  if (token.ownerAddress.size() > 0) {
    out.add('@');
    out.addAll(token.ownerAddress);
  }
  out.add('\0');
  return kj::String(out.releaseAsArray());
}

kj::Maybe<Token> parseToken(kj::StringPtr text) {
  if (text.startsWith(PREFIX_V1)) return parseV1(text);
  if (!text.startsWith(PREFIX) || text.size() < FIXED_LENGTH) return nullptr;
  if (text[LEASE_AT - 1] != '.' || text[EXPIRY_AT - 1] != '.' || text[SECRET_AT - 1] != '.') {
    return nullptr;
  }
  Token token;
  if (!parseHex64(text, ID_AT, &token.id.hi) || !parseHex64(text, ID_AT + 16, &token.id.lo) ||
      !parseHex64(text, LEASE_AT, &token.lease) ||
      !parseHex64(text, EXPIRY_AT, &token.expiresUnixSeconds) ||
      !parseSecret(text, SECRET_AT, &token.secret)) {
    return nullptr;
  }
  if (text.size() > FIXED_LENGTH) {
    if (text[FIXED_LENGTH] != '@') return nullptr;
    kj::StringPtr address = text.slice(FIXED_LENGTH + 1);
    if (!isValidTokenAddress(address)) return nullptr;
    token.ownerAddress = kj::str(address);
  }
  return kj::mv(token);
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
