#include "server/dataplane/data_receiver.h"

#include <kj/compat/tls.h>

#include "server/dataplane/frames.h"
#include "server/runtime/errors.h"
#include "server/runtime/yield_to_io.h"

namespace refstore::server::dataplane {

Reception::Reception(kj::ArrayPtr<kj::byte> into)
    : into(into), good(XXH3_createState()), pending(XXH3_createState()),
      chunk(XXH3_createState()) {
  KJ_ASSERT(good != nullptr && pending != nullptr && chunk != nullptr);
  XXH3_128bits_reset(good);
}

Reception::~Reception() {
  XXH3_freeState(good);
  XXH3_freeState(pending);
  XXH3_freeState(chunk);
}

void Reception::startChunk() {
  XXH3_copyState(pending, good);
  XXH3_64bits_reset(chunk);
}

void Reception::receivedPiece(const kj::byte* piece, size_t length) {
  XXH3_64bits_update(chunk, piece, length);
  XXH3_128bits_update(pending, piece, length);
}

void Reception::acceptChunk(uint64_t length) {
  XXH3_copyState(good, pending);
  done += length;
  if (waiters.empty()) return;
  kj::Vector<Waiter> stillWaiting;
  for (auto& waiter: waiters) {
    if (waiter.end <= done) {
      waiter.fulfiller->fulfill();
    } else if (waiter.fulfiller->isWaiting()) {
      stillWaiting.add(kj::mv(waiter));
    }
  }
  waiters = kj::mv(stillWaiting);
}

kj::Promise<void> Reception::whenReached(uint64_t end) {
  if (end <= done) return kj::READY_NOW;
  auto paf = kj::newPromiseAndFulfiller<void>();
  waiters.add(Waiter{end, kj::mv(paf.fulfiller)});
  return kj::mv(paf.promise);
}

template <typename T>
kj::Promise<T> DataReceiver::withinStallTimeout(kj::Promise<T> promise) {
  return promise.exclusiveJoin(timer.afterDelay(kStallTimeout).then([]() -> kj::Promise<T> {
    return KJ_EXCEPTION(DISCONNECTED, "the owner's data port sent nothing for 30 s");
  }));
}

kj::Promise<void> DataReceiver::attempt(kj::StringPtr address, gc::Secret ticket,
                                        Reception& reception) {
  if (reception.complete()) return kj::READY_NOW;
  auto connected = network.parseAddress(address).then(
      [](kj::Own<kj::NetworkAddress> target) { return target->connect(); });
  KJ_IF_MAYBE(context, tls) {
    kj::String host = kj::str(address.slice(0, KJ_ASSERT_NONNULL(address.findLast(':'))));
    connected = connected.then([context, host = kj::mv(host)](kj::Own<kj::AsyncIoStream> raw) {
      return context->wrapClient(kj::mv(raw), host);
    });
  }
  return withinStallTimeout(kj::mv(connected))
      .then([this, ticket, &reception](kj::Own<kj::AsyncIoStream> stream) {
        Request request;
        request.ticket = ticket;
        request.offset = reception.reached();
        request.length = reception.destination().size() - reception.reached();
        auto encoded = kj::heapArray<uint8_t>(kRequestBytes);
        encode(request, encoded.begin());
        auto& streamRef = *stream;
        auto sent = streamRef.write(encoded.begin(), encoded.size()).attach(kj::mv(encoded));
        return sent.then([this, &streamRef, &reception]() { return readChunks(streamRef, reception); })
            .attach(kj::mv(stream));
      });
}

kj::Promise<void> DataReceiver::readChunks(kj::AsyncIoStream& stream, Reception& reception) {
  if (reception.complete()) return kj::READY_NOW;
  auto header = kj::heapArray<uint8_t>(kChunkHeaderBytes);
  auto read = stream.tryRead(header.begin(), kChunkHeaderBytes, kChunkHeaderBytes);
  return withinStallTimeout(kj::mv(read))
      .then([this, &stream, &reception, header = kj::mv(header)](size_t n) mutable
            -> kj::Promise<void> {
        if (n < kChunkHeaderBytes) {
          return KJ_EXCEPTION(DISCONNECTED, "the owner's data port closed the transfer early",
                              reception.reached());
        }
        ChunkHeader chunk;
        decode(header.begin(), &chunk);
        uint64_t remaining = reception.destination().size() - reception.reached();
        if (chunk.offset != reception.reached() || chunk.length == 0 ||
            chunk.length > kMaxChunkBytes || chunk.length > remaining) {
          return KJ_EXCEPTION(FAILED, "the owner's data port sent a chunk out of place");
        }
        reception.startChunk();
        uint64_t start = reception.reached(), end = start + chunk.length;
        return readPieces(stream, reception, start, end)
            .then([this, &stream, &reception, chunk]() -> kj::Promise<void> {
              if (reception.chunkHash() != chunk.hash) {
                return KJ_EXCEPTION(FAILED, kj::str(RS_ERROR_WORD(CORRUPTED),
                                                    ": a chunk at offset ", chunk.offset,
                                                    " does not match its XXH3-64"));
              }
              reception.acceptChunk(chunk.length);
              // Let the loop poll between chunks (heartbeats, other connections).
              return yieldToIo(timer).then(
                  [this, &stream, &reception]() { return readChunks(stream, reception); });
            });
      });
}

kj::Promise<void> DataReceiver::readPieces(kj::AsyncIoStream& stream, Reception& reception,
                                           uint64_t offset, uint64_t end) {
  if (offset == end) return kj::READY_NOW;
  kj::byte* into = reception.destination().begin() + offset;
  size_t length = kj::min<uint64_t>(kReceivePieceBytes, end - offset);
  return withinStallTimeout(stream.tryRead(into, length, length))
      .then([this, &stream, &reception, into, offset, length, end](size_t got)
                -> kj::Promise<void> {
        if (got < length) {
          return KJ_EXCEPTION(DISCONNECTED, "the owner's data port closed mid-chunk",
                              reception.reached());
        }
        received += got;
        reception.receivedPiece(into, got);
        return readPieces(stream, reception, offset + got, end);
      });
}

}  // namespace refstore::server::dataplane
