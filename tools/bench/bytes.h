// The bytes every workload moves: a cheap deterministic pattern, a checksum that reads every
// byte, the adder's kernel, and warm private buffers.
//
// All three kernels work on 64-bit words and vectorise, so they run near memory bandwidth and
// cost the same in every variant of a workload (refstore or baseline): differences between
// variants are then transport, copies, page faults and round trips, not arithmetic.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace refbench {

// Word i of value `seed` is seed * K + i * K' (any process can regenerate or verify it).
// `size` need not be a multiple of 8; the tail bytes are filled too.
void fillPattern(uint8_t* data, size_t size, uint64_t seed);
// Sum of the 64-bit words (tail bytes added individually): touches every byte once.
uint64_t checksum(const uint8_t* data, size_t size);
// out = a + b, word by word (tail bytes byte by byte). checksum(out) == checksum(a) + checksum(b)
// for the word part, which lets the driver verify a pipeline's result.
void addWords(uint8_t* out, const uint8_t* a, const uint8_t* b, size_t size);

// Private memory that is already faulted in (every page written once), so measurements that use
// it as a source or destination never pay first-touch page faults: "warm memory".
class WarmBuffer {
 public:
  WarmBuffer() = default;
  explicit WarmBuffer(size_t size);
  WarmBuffer(WarmBuffer&& other) noexcept;
  WarmBuffer& operator=(WarmBuffer&& other) noexcept;
  WarmBuffer(const WarmBuffer&) = delete;
  ~WarmBuffer();

  uint8_t* data() { return base; }
  const uint8_t* data() const { return base; }
  size_t size() const { return length; }
  // Grows (re-mapping, warm) when smaller than `size`; keeps the memory otherwise.
  void ensure(size_t size);

 private:
  uint8_t* base = nullptr;
  size_t length = 0;
};

// "1KiB", "64MiB", "1GiB" (sizes are powers of two here).
std::string sizeName(uint64_t size);

}  // namespace refbench
