// The example's values: arrays of UInt64 with f(seed, count)[i] = seed * i.
#pragma once

#include <stdint.h>
#include <string.h>

namespace refstore::pipeline {

inline void fillF(uint8_t* out, uint64_t seed, uint64_t count) {
  for (uint64_t i = 0; i < count; i++) {
    uint64_t v = seed * i;
    memcpy(out + i * 8, &v, 8);  // memcpy: shared memory need not be 8-byte aligned
  }
}

inline void addInto(uint8_t* out, const uint8_t* a, const uint8_t* b, uint64_t count) {
  for (uint64_t i = 0; i < count; i++) {
    uint64_t x, y;
    memcpy(&x, a + i * 8, 8);
    memcpy(&y, b + i * 8, 8);
    x += y;
    memcpy(out + i * 8, &x, 8);
  }
}

// True if `sum` is f(seedA) + f(seedB).
inline bool checkSum(const uint8_t* sum, uint64_t seedA, uint64_t seedB, uint64_t count) {
  for (uint64_t i = 0; i < count; i++) {
    uint64_t v;
    memcpy(&v, sum + i * 8, 8);
    if (v != (seedA + seedB) * i) return false;
  }
  return true;
}

}  // namespace refstore::pipeline
