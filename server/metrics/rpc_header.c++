#include "server/metrics/rpc_header.h"

#include <string.h>

namespace refstore::server::metrics {

namespace {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "Cap'n Proto's wire format is little-endian; this reads it in place");

constexpr uint16_t kCall = 2;    // capnp::rpc::Message::CALL
constexpr uint16_t kReturn = 3;  // capnp::rpc::Message::RETURN

// A struct's sections inside the segment.
struct Struct {
  const uint8_t* data = nullptr;
  size_t dataBytes = 0;
  size_t firstPointer = 0;  // word index of its pointer section
  size_t pointerCount = 0;
};

// Follows the struct pointer at word `at`; false if it is null, not a struct pointer in this
// segment (far, list, capability), or points outside the segment.
bool structAt(kj::ArrayPtr<const capnp::word> segment, size_t at, Struct& out) {
  if (at >= segment.size()) return false;
  uint64_t pointer;
  memcpy(&pointer, &segment[at], sizeof(pointer));
  if (pointer == 0 || (pointer & 3) != 0) return false;
  int64_t offset = int32_t(uint32_t(pointer)) >> 2;  // signed, in words, from the next word
  uint64_t dataWords = uint16_t(pointer >> 32), pointerWords = uint16_t(pointer >> 48);
  int64_t start = int64_t(at) + 1 + offset;
  if (start < 0 || uint64_t(start) + dataWords + pointerWords > segment.size()) return false;
  out.data = reinterpret_cast<const uint8_t*>(segment.begin() + start);
  out.dataBytes = dataWords * sizeof(capnp::word);
  out.firstPointer = start + dataWords;
  out.pointerCount = pointerWords;
  return true;
}

// A data field at `byteOffset`; fields past the struct's data section read as 0 (their default),
// as in capnp.
template <typename T>
T field(const Struct& s, size_t byteOffset) {
  T value = 0;
  if (byteOffset + sizeof(T) <= s.dataBytes) memcpy(&value, s.data + byteOffset, sizeof(T));
  return value;
}

}  // namespace

RpcHeader peekRpcHeader(kj::ArrayPtr<const capnp::word> segment) {
  RpcHeader header;
  Struct message, body;
  if (!structAt(segment, 0, message)) return header;
  uint16_t which = field<uint16_t>(message, 0);
  if (which != kCall && which != kReturn) return header;
  if (message.pointerCount < 1 || !structAt(segment, message.firstPointer, body)) return header;
  header.id = field<uint32_t>(body, 0);
  if (which == kCall) {
    header.kind = RpcHeader::Kind::CALL;
    header.methodId = field<uint16_t>(body, 4);
    header.interfaceId = field<uint64_t>(body, 8);
  } else {
    header.kind = RpcHeader::Kind::RETURN;
  }
  return header;
}

}  // namespace refstore::server::metrics
