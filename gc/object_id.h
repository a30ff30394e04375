// ObjectId: the 128-bit name of one object, unique across daemons and restarts.
//
// Why two halves: `hi` is the origin epoch (a random 64-bit value chosen each time a daemon
// starts) and `lo` is that daemon's counter, starting at 1. A counter alone would repeat after a
// restart and collide with ids still printed in share tokens or held by other hosts; a random
// epoch makes that practically impossible while keeping ids cheap to mint and compare. Ids are
// never reused, so a stale id can only ever mean "gone", never "some other object".
//
// Pure standard C++: this header is shared by gc/, server/ and client/.

#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace refstore::gc {

struct ObjectId {
  uint64_t hi = 0;  // origin epoch of the daemon that created the object
  uint64_t lo = 0;  // that daemon's counter; 0 is never issued, so {x, 0} means "no object"
};

inline bool operator==(ObjectId a, ObjectId b) { return a.hi == b.hi && a.lo == b.lo; }
inline bool operator!=(ObjectId a, ObjectId b) { return !(a == b); }
// Ordering is (hi, lo) lexicographic, so ids from one daemon sort in creation order and
// listings are stable and readable.
inline bool operator<(ObjectId a, ObjectId b) { return a.hi != b.hi ? a.hi < b.hi : a.lo < b.lo; }
inline bool operator>(ObjectId a, ObjectId b) { return b < a; }
inline bool operator<=(ObjectId a, ObjectId b) { return !(b < a); }
inline bool operator>=(ObjectId a, ObjectId b) { return !(a < b); }

// Hash functor for unordered containers. Both halves are mixed: within one daemon only `lo`
// varies (sequentially), and across daemons only `hi` may differ, so neither half alone is a
// good hash. Uses the splitmix64 finalizer, which spreads sequential counters well.
struct ObjectIdHash {
  static uint64_t mix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
  }
  size_t operator()(ObjectId id) const { return static_cast<size_t>(mix(id.lo ^ mix(id.hi))); }
};

// The canonical printable form: 32 lowercase hex digits, `hi` then `lo`, zero-padded. Fixed
// width so ids line up in logs and so tokens have a predictable layout.
inline std::string toHex(ObjectId id) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out(32, '0');
  for (int i = 0; i < 16; ++i) {
    out[15 - i] = kDigits[(id.hi >> (4 * i)) & 0xf];
    out[31 - i] = kDigits[(id.lo >> (4 * i)) & 0xf];
  }
  return out;
}

// Inverse of toHex. Accepts exactly 32 hex digits (either case, since people retype ids; no
// prefix, no whitespace). Returns false and leaves *out untouched on any malformed input, so
// callers can parse straight into a live variable.
inline bool parseHex(std::string_view text, ObjectId* out) {
  if (text.size() != 32) return false;
  uint64_t halves[2] = {0, 0};
  for (size_t i = 0; i < 32; ++i) {
    char c = text[i];
    uint64_t v;
    if (c >= '0' && c <= '9') {
      v = static_cast<uint64_t>(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      v = static_cast<uint64_t>(c - 'a' + 10);
    } else if (c >= 'A' && c <= 'F') {
      v = static_cast<uint64_t>(c - 'A' + 10);
    } else {
      return false;
    }
    halves[i / 16] = (halves[i / 16] << 4) | v;
  }
  out->hi = halves[0];
  out->lo = halves[1];
  return true;
}

}  // namespace refstore::gc
