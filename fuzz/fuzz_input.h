// FuzzInput: reads a fuzzer's bytes as a sequence of choices. Every read succeeds: past the end
// of the input it yields zeros (and empty byte ranges), so a harness never checks for the end
// except to stop its main loop, and a shorter input is always a prefix of a longer behaviour --
// which keeps libFuzzer's mutations (and its corpus minimisation) meaningful.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <kj/common.h>

namespace refstore::fuzz {

class FuzzInput {
 public:
  FuzzInput(const uint8_t* data, size_t size): data(data), size(size) {}

  bool empty() const { return position >= size; }
  size_t remaining() const { return empty() ? 0 : size - position; }

  uint8_t byte() { return empty() ? 0 : data[position++]; }
  bool flag() { return byte() & 1; }
  uint16_t u16() { return uint16_t(byte()) | uint16_t(byte()) << 8; }
  uint32_t u32() { return uint32_t(u16()) | uint32_t(u16()) << 16; }
  uint64_t u64() { return uint64_t(u32()) | uint64_t(u32()) << 32; }
  // A value in [0, bound) (0 if bound is 0), from as few bytes as the bound needs.
  uint64_t below(uint64_t bound) {
    if (bound <= 1) return 0;
    uint64_t value = bound <= 0x100 ? byte() : bound <= 0x10000 ? u16() : u64();
    return value % bound;
  }
  // Up to `count` of the next bytes (fewer at the end of the input).
  kj::ArrayPtr<const kj::byte> bytes(size_t count) {
    size_t n = kj::min(count, remaining());
    auto out = kj::arrayPtr(data + position, n);
    position += n;
    return out;
  }

 private:
  const uint8_t* data;
  size_t size;
  size_t position = 0;
};

}  // namespace refstore::fuzz
