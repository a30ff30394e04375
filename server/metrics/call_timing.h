// Request latency per method (refstore_request_duration_seconds{method="Store.put"}), measured
// on the wire: from the moment the RPC system reads a Call message to the moment it hands the
// matching Return to the transport.
//
// Why on the wire: it needs no line in any capability server (StoreServer, RefServer, ...), it
// covers every method of every interface the same way, including calls that wait (a create
// queued for memory, a whenReady on a promise) and calls pipelined on results not returned yet,
// and it costs nothing when --metrics is off, because the transport is only wrapped when it is
// on. It sees what the RPC system sees: Cap'n Proto's own dispatch and result building count,
// the client's network time does not.
//
// How: each connection's capnp::MessageStream is wrapped (Listener::wrapTransports). Messages are
// classified by peeking at their first words (rpc_header.h), not parsed. An incoming Call records (start time, the method's histogram) under its question id; the outgoing Return
// with that answer id observes the elapsed time. Question ids are small integers the client
// reuses (capnp hands out the lowest free one), so the records are a vector indexed by id; calls
// with ids of kMaxTrackedQuestions or more (that many calls in flight on one connection) are
// not timed, which bounds the memory a client can make us spend. Calls to interfaces outside
// the schema (none today) are not timed either.
#pragma once

#include <capnp/serialize-async.h>
#include <kj/vector.h>

#include "server/metrics/registry.h"

namespace refstore::server::metrics {

class CallTiming {
 public:
  static constexpr uint32_t kMaxTrackedQuestions = 4096;

  // Registers one histogram per method of every interface in schema/refstore.capnp, so every
  // series exists (at zero) from the first scrape.
  explicit CallTiming(Registry& registry);
  KJ_DISALLOW_COPY(CallTiming);

  // A transport that forwards to `inner` (which must outlive it) and times the calls on it.
  kj::Own<capnp::MessageStream> wrap(capnp::MessageStream& inner);

  // The histogram of a method, or null if the interface or method is not in the schema.
  Histogram* find(uint64_t interfaceId, uint16_t methodId) const;

  // The histogram of "Interface.method" (for tests), or null.
  Histogram* find(kj::StringPtr qualifiedName) const;

 private:
  struct Interface {
    uint64_t id;
    kj::String name;
    kj::Array<Histogram*> methods;  // by method ordinal
    kj::Array<kj::String> methodNames;
  };
  kj::Vector<Interface> interfaces;
};

}  // namespace refstore::server::metrics
