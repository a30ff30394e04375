#include "server/dataplane/data_receiver.h"

#include <kj/compat/tls.h>

#include "server/dataplane/frames.h"
#include "server/runtime/errors.h"

namespace refstore::server::dataplane {

Reception::Reception(kj::ArrayPtr<kj::byte> into): into(into), whole(XXH3_createState()) {
  KJ_ASSERT(whole != nullptr);
  XXH3_128bits_reset(whole);
}

Reception::~Reception() { XXH3_freeState(whole); }

void Reception::advance(uint64_t length) {
  XXH3_128bits_update(whole, into.begin() + done, length);
  done += length;
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
            chunk.length > kChunkBytes || chunk.length > remaining) {
          return KJ_EXCEPTION(FAILED, "the owner's data port sent a chunk out of place");
        }
        kj::byte* into = reception.destination().begin() + reception.reached();
        return withinStallTimeout(stream.tryRead(into, chunk.length, chunk.length))
            .then([this, &stream, &reception, chunk, into](size_t got) -> kj::Promise<void> {
              if (got < chunk.length) {
                return KJ_EXCEPTION(DISCONNECTED, "the owner's data port closed mid-chunk",
                                    reception.reached());
              }
              received += got;
              if (XXH3_64bits(into, chunk.length) != chunk.hash) {
                return KJ_EXCEPTION(FAILED, kj::str(RS_ERROR_WORD(CORRUPTED),
                                                    ": a chunk at offset ", chunk.offset,
                                                    " does not match its XXH3-64"));
              }
              reception.advance(chunk.length);
              return readChunks(stream, reception);
            });
      });
}

}  // namespace refstore::server::dataplane
