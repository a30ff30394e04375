// DataSender: the owner's data port. Each connection presents one ticket (TicketBook) with the
// range it wants, and gets those bytes of the object in checked chunks (frames.h), sent straight
// from shared memory: no staging copy, no Cap'n Proto message. It serves this daemon's own
// objects and, as a relay (schema/peer.capnp), copies of other daemons' objects, which may
// still be arriving (ArrivingBytes): each chunk goes out once it is here. A connection with a
// bad request or ticket is closed at once; one that stalls is closed after a timeout. At most
// kMaxConcurrent transfers run at once (others wait their turn), which caps the bytes in flight.
#pragma once

#include <kj/async-io.h>

#include "server/dataplane/arriving_bytes.h"
#include "server/dataplane/ticket_book.h"

namespace refstore::server::dataplane {

class DataSender final: private kj::TaskSet::ErrorHandler {
 public:
  static constexpr size_t kMaxConcurrent = 16;

  // `onServed(peer, bytes)` counts what each peer was sent.
  DataSender(ObjectStore& store, TicketBook& tickets, kj::Timer& timer,
             kj::Function<void(gc::PeerId, uint64_t)> onServed);
  KJ_DISALLOW_COPY(DataSender);

  // Where the bytes of copies still arriving here come from, for relaying them (the remote
  // module; without it such an object's transfer fails).
  void setArrivingBytes(ArrivingBytes& copies) { arriving = copies; }

  // Serves connections from `receiver` until the promise is dropped.
  kj::Promise<void> serve(kj::ConnectionReceiver& receiver);

  uint64_t bytesServed() const { return served; }
  size_t transfers() const { return running; }

 private:
  void taskFailed(kj::Exception&& e) override;
  kj::Promise<void> handle(kj::Own<kj::AsyncIoStream> stream);
  kj::Promise<void> sendChunks(kj::AsyncIoStream& stream, kj::Own<TicketBook::Grant> grant,
                               uint64_t offset, uint64_t end);
  // The object's bytes, once [0, end) of them are here.
  kj::Promise<ArrivingBytes::Arrived> bytesUpTo(gc::ObjectId object, uint64_t end);
  kj::Promise<void> sendChunk(kj::AsyncIoStream& stream, gc::PeerId peer, uint64_t offset,
                              kj::ArrayPtr<const kj::byte> chunk);
  kj::Promise<void> whenSlotFree();

  ObjectStore& store;
  TicketBook& tickets;
  kj::Timer& timer;
  kj::Function<void(gc::PeerId, uint64_t)> onServed;
  kj::Maybe<ArrivingBytes&> arriving;
  uint64_t served = 0;
  size_t running = 0;
  std::deque<kj::Own<kj::PromiseFulfiller<void>>> waiting;  // for a transfer slot
  kj::TaskSet connections{*this};
};

}  // namespace refstore::server::dataplane
