// The three facts call timing needs from a Cap'n Proto RPC message (is it a Call or a Return,
// its question/answer id, and a Call's interface and method), read straight from the words of
// its first segment.
//
// Why not capnp's reader: a MessageReader with bounds and traversal checks costs ~300
// instructions per message before the RPC system reads the same message again, and a request
// is several messages (call, finish, releases); on the hot path this was most of what timing
// calls cost (BENCHMARKS.md method: callgrind, put+view pairs). The fields read here are fixed
// by rpc.capnp, which is frozen wire protocol: Message's union tag is its first 16 bits and
// every member is pointer 0; Call.questionId is bits 0-31, methodId 32-47, interfaceId the
// second word; Return.answerId bits 0-31 (see capnp/rpc.capnp.h). Every pointer and offset is
// bounds-checked against the segment; anything unusual (far pointers, a message split across
// segments at its root, truncation) reads as OTHER and is simply not timed.
#pragma once

#include <capnp/common.h>
#include <kj/common.h>

#include <stdint.h>

namespace refstore::server::metrics {

struct RpcHeader {
  enum class Kind { OTHER, CALL, RETURN };
  Kind kind = Kind::OTHER;
  uint32_t id = 0;           // Call.questionId or Return.answerId
  uint64_t interfaceId = 0;  // a Call's
  uint16_t methodId = 0;     // a Call's
};

RpcHeader peekRpcHeader(kj::ArrayPtr<const capnp::word> firstSegment);

}  // namespace refstore::server::metrics
