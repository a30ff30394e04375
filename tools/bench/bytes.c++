#include "tools/bench/bytes.h"

#include <string.h>
#include <sys/mman.h>

#include <cstdio>
#include <new>
#include <string>

namespace refbench {

void fillPattern(uint8_t* data, size_t size, uint64_t seed) {
  const uint64_t base = seed * 0x9E3779B97F4A7C15ull;
  const uint64_t step = 0xD6E8FEB86659FD93ull;
  size_t words = size / 8;
  uint64_t* w = reinterpret_cast<uint64_t*>(data);
  for (size_t i = 0; i < words; i++) w[i] = base + i * step;
  for (size_t i = words * 8; i < size; i++) data[i] = uint8_t(seed + i);
}

uint64_t checksum(const uint8_t* data, size_t size) {
  size_t words = size / 8;
  const uint64_t* w = reinterpret_cast<const uint64_t*>(data);
  // Four accumulators: independent chains so the loop is bandwidth-bound, not latency-bound.
  uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  size_t i = 0;
  for (; i + 4 <= words; i += 4) {
    s0 += w[i];
    s1 += w[i + 1];
    s2 += w[i + 2];
    s3 += w[i + 3];
  }
  for (; i < words; i++) s0 += w[i];
  uint64_t sum = s0 + s1 + s2 + s3;
  for (size_t b = words * 8; b < size; b++) sum += data[b];
  return sum;
}

void addWords(uint8_t* out, const uint8_t* a, const uint8_t* b, size_t size) {
  size_t words = size / 8;
  uint64_t* o = reinterpret_cast<uint64_t*>(out);
  const uint64_t* x = reinterpret_cast<const uint64_t*>(a);
  const uint64_t* y = reinterpret_cast<const uint64_t*>(b);
  for (size_t i = 0; i < words; i++) o[i] = x[i] + y[i];
  for (size_t i = words * 8; i < size; i++) out[i] = uint8_t(a[i] + b[i]);
}

WarmBuffer::WarmBuffer(size_t size) { ensure(size); }

WarmBuffer::WarmBuffer(WarmBuffer&& other) noexcept: base(other.base), length(other.length) {
  other.base = nullptr;
  other.length = 0;
}

WarmBuffer& WarmBuffer::operator=(WarmBuffer&& other) noexcept {
  if (this != &other) {
    this->~WarmBuffer();
    new (this) WarmBuffer(std::move(other));
  }
  return *this;
}

WarmBuffer::~WarmBuffer() {
  if (base != nullptr) munmap(base, length);
}

void WarmBuffer::ensure(size_t size) {
  if (size <= length) return;
  if (base != nullptr) munmap(base, length);
  base = nullptr;
  length = 0;
  // MAP_POPULATE faults every page in now; the memset makes sure they are really written
  // (private anonymous pages could otherwise still be the shared zero page).
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
                 -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  base = static_cast<uint8_t*>(p);
  length = size;
  memset(base, 1, size);
}

std::string sizeName(uint64_t size) {
  char text[32];
  if (size >= (1ull << 30) && size % (1ull << 30) == 0) {
    snprintf(text, sizeof(text), "%lluGiB", (unsigned long long)(size >> 30));
  } else if (size >= (1ull << 20) && size % (1ull << 20) == 0) {
    snprintf(text, sizeof(text), "%lluMiB", (unsigned long long)(size >> 20));
  } else if (size >= 1024 && size % 1024 == 0) {
    snprintf(text, sizeof(text), "%lluKiB", (unsigned long long)(size >> 10));
  } else {
    snprintf(text, sizeof(text), "%lluB", (unsigned long long)size);
  }
  return text;
}

}  // namespace refbench
