// The data port's byte layout (schema/peer.capnp documents it): a fixed 48-byte request, then
// chunks each led by a 24-byte header. Little-endian, as every host refstore runs on.
#pragma once

#include <cstdint>
#include <cstring>

#include "gc/object_table.h"

namespace refstore::server::dataplane {

constexpr uint32_t kRequestMagic = 0x50445352;  // "RSDP"
constexpr uint32_t kVersion = 1;
constexpr size_t kRequestBytes = 48;
constexpr size_t kChunkHeaderBytes = 24;
// Bytes per chunk the owner sends: each is checked on its own, so a broken transfer resumes from
// the last good one. 1 MiB: large enough that headers and per-chunk turns are negligible, small
// enough that the owner's hash pass leaves the chunk in cache for the socket copy that follows
// (hashing then copying 4 MiB chunks of cold memory ran at 4.3 GB/s here, DRAM speed for each).
constexpr uint32_t kChunkBytes = 1u << 20;
// The largest chunk a reader accepts (owners of older versions sent 4 MiB).
constexpr uint32_t kMaxChunkBytes = 4u << 20;
// The reader receives a chunk in pieces of this size and hashes each one while it is still in
// the L2 cache the socket copy just wrote it to: copying then hashing in 256 KiB pieces ran at
// 6.4 GB/s here, against 4.3 GB/s for whole 4 MiB chunks.
constexpr uint32_t kReceivePieceBytes = 256u << 10;

struct Request {
  gc::Secret ticket;
  uint64_t offset = 0;
  uint64_t length = 0;
};

struct ChunkHeader {
  uint64_t offset = 0;
  uint32_t length = 0;
  uint64_t hash = 0;  // XXH3-64 of the chunk's bytes
};

inline void encode(const Request& request, uint8_t* out) {
  uint32_t words[2] = {kRequestMagic, kVersion};
  memcpy(out, words, 8);
  memcpy(out + 8, &request.ticket.hi, 8);
  memcpy(out + 16, &request.ticket.lo, 8);
  memcpy(out + 24, &request.offset, 8);
  memcpy(out + 32, &request.length, 8);
  memset(out + 40, 0, 8);
}

// False if the bytes are not a version-1 request.
inline bool decode(const uint8_t* in, Request* request) {
  uint32_t words[2];
  memcpy(words, in, 8);
  if (words[0] != kRequestMagic || words[1] != kVersion) return false;
  memcpy(&request->ticket.hi, in + 8, 8);
  memcpy(&request->ticket.lo, in + 16, 8);
  memcpy(&request->offset, in + 24, 8);
  memcpy(&request->length, in + 32, 8);
  return true;
}

inline void encode(const ChunkHeader& header, uint8_t* out) {
  memcpy(out, &header.offset, 8);
  memcpy(out + 8, &header.length, 4);
  memcpy(out + 12, &header.hash, 8);
  memset(out + 20, 0, 4);
}

inline void decode(const uint8_t* in, ChunkHeader* header) {
  memcpy(&header->offset, in, 8);
  memcpy(&header->length, in + 8, 4);
  memcpy(&header->hash, in + 12, 8);
}

}  // namespace refstore::server::dataplane
