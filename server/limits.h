// The bounds on what clients can make refstored hold (issue 21: one client must never freeze,
// starve or leak the daemon for the others). Everything a client can make the daemon keep is
// either tied to a capability it can drop (Refs, Views, WriteBuffers, Fulfillers, Segments,
// pending calls, and everything of a connection when it closes) or bounded here. The schema's
// "Bounds" section explains each one to clients; refstored's flags set the configurable ones.
#pragma once

#include <kj/time.h>

#include <cstdint>

namespace refstore::server {

struct Limits {
  // Share tokens outlive the connection that minted them (until used up or expired), so they
  // are bounded in number: in the whole daemon, and per connection (so that one runaway loop
  // cannot take every token from the others). A lease costs ~80 bytes of daemon memory.
  uint64_t maxTokens = uint64_t(1) << 22;           // --max-tokens
  uint64_t maxTokensPerClient = uint64_t(1) << 20;  // live tokens minted through one connection
  // Names outlive connections too (until unnamed).
  uint64_t maxNames = uint64_t(1) << 20;            // --max-names
  // Requests waiting for memory (create, put, fulfil, and each value of a putMany) per
  // connection: two full putMany batches. Beyond it a request fails at once with
  // RESOURCE_EXHAUSTED instead of queueing. (Fairness between clients does not depend on it:
  // the admission queue serves connections in turn.)
  uint32_t maxWaitingPerClient = 1 << 17;
  // Segment capabilities (each holds a file descriptor in the daemon) per connection: shared
  // segments are cached per connection; dedicated ones and Segment.reattach make new ones.
  uint32_t maxSegmentCapsPerClient = 1024;
  // Open connections; the daemon also raises its file-descriptor limit to the hard limit.
  uint32_t maxClients = 4096;                       // --max-clients
  // Incoming messages: the largest a connection may send (the biggest legitimate one is a
  // 16 MiB put, putMany or write plus framing), and the largest before an unauthenticated TCP
  // connection has presented the cluster secret. Memory for a message grows with the bytes
  // actually received, never with what its header claims.
  uint64_t maxMessageBytes = uint64_t(20) << 20;
  uint64_t maxUnauthenticatedMessageBytes = uint64_t(64) << 10;
  // An unauthenticated TCP connection must present the secret within this long.
  kj::Duration helloTimeout = 10 * kj::SECONDS;
  // A connection that starts a message and sends none of the rest for this long is closed.
  kj::Duration stalledMessageTimeout = 60 * kj::SECONDS;
  // Replies waiting to be written to a client that does not read them: past this, the daemon
  // stops reading that connection's requests until the client catches up.
  uint64_t maxUnsentBytes = uint64_t(64) << 20;
  // Calls in progress per connection, in words of their request messages (capnp's flow limit):
  // past it the daemon reads no more requests from that connection until some complete.
  uint64_t maxCallWords = uint64_t(8) << 20;  // 64 MiB
};

}  // namespace refstore::server
