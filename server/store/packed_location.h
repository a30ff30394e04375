// Where an object's bytes are, packed into gc::ObjectRecord::userData (64 bits): a segment or
// spill-file id in the top 24 bits and an offset in the low 40 (1 TiB per segment or file).
// The object's state says which: SPILLED means a spill file, anything else a segment.
#pragma once

#include <stdint.h>

#include <kj/debug.h>

namespace refstore::server {

constexpr int kPackedOffsetBits = 40;

inline uint64_t packLocation(uint32_t id, uint64_t offset) {
  KJ_ASSERT(offset < (uint64_t(1) << kPackedOffsetBits) && id < (1u << 24));
  return (uint64_t(id) << kPackedOffsetBits) | offset;
}
inline uint32_t segmentOf(uint64_t packed) { return packed >> kPackedOffsetBits; }
inline uint64_t offsetOf(uint64_t packed) {
  return packed & ((uint64_t(1) << kPackedOffsetBits) - 1);
}

}  // namespace refstore::server
