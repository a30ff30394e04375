// DataReceiver: the reader's side of the data plane. It connects to an owner's data port,
// presents a ticket, and reads the value's bytes straight into their final place (a reservation
// of local shared memory), checking each chunk against its XXH3-64 and folding it into the
// whole value's XXH3-128, which the caller compares with the owner's hash at the end. A broken
// transfer leaves `reached` at the end of the last good chunk, so that the next attempt (with a
// new ticket) resumes from there instead of starting over.
#pragma once

#include "third_party/fast_xxhash.h"

#include <kj/async-io.h>
#include <kj/vector.h>

#include "gc/object_table.h"

namespace kj {
class TlsContext;
}

namespace refstore::server::dataplane {

// One value being received, across attempts.
class Reception {
 public:
  explicit Reception(kj::ArrayPtr<kj::byte> into);
  ~Reception();
  KJ_DISALLOW_COPY(Reception);

  kj::ArrayPtr<kj::byte> destination() const { return into; }
  uint64_t reached() const { return done; }    // bytes [0, reached) arrived and checked
  bool complete() const { return done == into.size(); }
  // The XXH3-128 of everything received (complete() first).
  XXH128_hash_t hash() const { return XXH3_128bits_digest(good); }

  // A chunk arrives in pieces, each hashed while it is hot in cache: startChunk(), then
  // receivedPiece() for consecutive pieces from reached(); then the chunk is checked against the
  // owner's hash, and either accepted (acceptChunk) or its bytes are not counted (the next
  // startChunk forgets them).
  void startChunk();
  void receivedPiece(const kj::byte* piece, size_t length);
  uint64_t chunkHash() const { return XXH3_64bits_digest(chunk); }
  void acceptChunk(uint64_t length);

  // Resolves once [0, end) has arrived and been checked; fails (the fulfiller is dropped) if
  // this reception is dropped first. For relaying a copy while it arrives.
  kj::Promise<void> whenReached(uint64_t end);

 private:
  struct Waiter {
    uint64_t end;
    kj::Own<kj::PromiseFulfiller<void>> fulfiller;
  };
  kj::ArrayPtr<kj::byte> into;
  uint64_t done = 0;
  kj::Vector<Waiter> waiters;  // relays waiting for bytes past `done` (one per transfer)
  XXH3_state_t* good;     // the XXH3-128 of [0, reached)
  XXH3_state_t* pending;  // ... and of the pieces of the chunk being received
  XXH3_state_t* chunk;    // the XXH3-64 of the chunk being received
};

class DataReceiver {
 public:
  // A transfer that sends nothing for this long is abandoned (DISCONNECTED).
  static constexpr auto kStallTimeout = 30 * kj::SECONDS;

  // With `tls`, transfers run over TLS (the owner's certificate checked against its CA).
  DataReceiver(kj::Network& network, kj::Timer& timer, kj::Maybe<kj::TlsContext&> tls = nullptr)
      : network(network), timer(timer), tls(tls) {}
  KJ_DISALLOW_COPY(DataReceiver);

  // One attempt: connects to `address` (host:port), presents `ticket` for the rest of
  // `reception` and reads it. Resolves once it is complete; fails with DISCONNECTED if the
  // connection breaks or stalls, FAILED if the owner refuses the ticket, or with a description
  // starting "refstore.CORRUPTED" if a chunk fails its check (`reception.reached()` says how far
  // it got in every case).
  kj::Promise<void> attempt(kj::StringPtr address, gc::Secret ticket, Reception& reception);

  uint64_t bytesReceived() const { return received; }

 private:
  kj::Promise<void> readChunks(kj::AsyncIoStream& stream, Reception& reception);
  kj::Promise<void> readPieces(kj::AsyncIoStream& stream, Reception& reception,
                               uint64_t offset, uint64_t end);
  template <typename T>
  kj::Promise<T> withinStallTimeout(kj::Promise<T> promise);

  kj::Network& network;
  kj::Timer& timer;
  kj::Maybe<kj::TlsContext&> tls;
  uint64_t received = 0;
};

}  // namespace refstore::server::dataplane
