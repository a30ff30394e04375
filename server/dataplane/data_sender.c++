#include "server/dataplane/data_sender.h"

#include "third_party/fast_xxhash.h"

#include "server/dataplane/frames.h"
#include "server/runtime/log.h"
#include "server/runtime/yield_to_io.h"

namespace refstore::server::dataplane {

DataSender::DataSender(ObjectStore& store, TicketBook& tickets, kj::Timer& timer,
                       kj::Function<void(gc::PeerId, uint64_t)> onServed)
    : store(store), tickets(tickets), timer(timer), onServed(kj::mv(onServed)) {}

void DataSender::taskFailed(kj::Exception&& e) {
  logDebug("data transfer ended: ", e.getDescription());
}

kj::Promise<void> DataSender::serve(kj::ConnectionReceiver& receiver) {
  return kj::evalNow([&]() { return receiver.accept(); })
      .then(
          [this, &receiver](kj::Own<kj::AsyncIoStream> stream) {
            connections.add(handle(kj::mv(stream)));
            return serve(receiver);
          },
          [this, &receiver](kj::Exception&& e) {
            logWarning("data port: accept failed (", e.getDescription(), "); retrying");
            return timer.afterDelay(100 * kj::MILLISECONDS).then([this, &receiver]() {
              return serve(receiver);
            });
          });
}

kj::Promise<void> DataSender::whenSlotFree() {
  if (running < kMaxConcurrent) {
    running++;
    return kj::READY_NOW;
  }
  auto paf = kj::newPromiseAndFulfiller<void>();
  waiting.push_back(kj::mv(paf.fulfiller));
  return paf.promise.then([this]() { running++; });
}

kj::Promise<void> DataSender::handle(kj::Own<kj::AsyncIoStream> stream) {
  auto request = kj::heapArray<uint8_t>(kRequestBytes);
  auto read = stream->read(request.begin(), kRequestBytes)
                  .exclusiveJoin(timer.afterDelay(10 * kj::SECONDS).then([]() -> kj::Promise<void> {
                    return KJ_EXCEPTION(DISCONNECTED, "data port: no request within 10 s");
                  }));
  return read.then([this, stream = kj::mv(stream), request = kj::mv(request)]() mutable
                   -> kj::Promise<void> {
    Request parsed;
    if (!decode(request.begin(), &parsed)) {
      return KJ_EXCEPTION(FAILED, "data port: not a version-1 request");
    }
    kj::Own<TicketBook::Grant> grant;
    KJ_IF_MAYBE(g, tickets.redeem(parsed.ticket)) {
      grant = kj::mv(*g);
    } else {
      return KJ_EXCEPTION(FAILED, "data port: unknown, used or expired ticket");
    }
    uint64_t size = store.record(grant->object).size;
    if (parsed.offset > size || parsed.length > size - parsed.offset) {
      return KJ_EXCEPTION(FAILED, "data port: range outside the object");
    }
    uint64_t end = parsed.offset + parsed.length;
    auto& streamRef = *stream;
    return whenSlotFree()
        .then([this, &streamRef, grant = kj::mv(grant), offset = parsed.offset, end]() mutable {
          return sendChunks(streamRef, kj::mv(grant), offset, end);
        })
        .attach(kj::defer([this]() {
          running--;
          while (!waiting.empty()) {
            auto next = kj::mv(waiting.front());
            waiting.pop_front();
            if (next->isWaiting()) {
              next->fulfill();
              break;
            }
          }
        }))
        .attach(kj::mv(stream));
  });
}

kj::Promise<void> DataSender::sendChunks(kj::AsyncIoStream& stream,
                                         kj::Own<TicketBook::Grant> grant, uint64_t offset,
                                         uint64_t end) {
  if (offset >= end) {
    stream.shutdownWrite();
    return kj::READY_NOW;
  }
  uint32_t length = uint32_t(kj::min<uint64_t>(kChunkBytes, end - offset));
  return bytesUpTo(grant->object, offset + length)
      .then([this, &stream, grant = kj::mv(grant), offset, length, end](
                ArrivingBytes::Arrived arrived) mutable {
        gc::PeerId peer = grant->peer;
        return sendChunk(stream, peer, offset, arrived.bytes.slice(offset, offset + length))
            .attach(kj::mv(arrived.keep))
            .then([this, &stream, grant = kj::mv(grant), offset, length, end]() mutable {
              // Let the loop poll between chunks (heartbeats, other connections).
              return yieldToIo(timer).then([this, &stream, grant = kj::mv(grant), offset, length,
                                            end]() mutable {
                return sendChunks(stream, kj::mv(grant), offset + length, end);
              });
            });
      });
}

kj::Promise<ArrivingBytes::Arrived> DataSender::bytesUpTo(gc::ObjectId object, uint64_t end) {
  // The grant's pin keeps resident bytes in place for the whole transfer; a copy still
  // arriving is kept by `Arrived::keep`.
  const gc::ObjectRecord& record = store.record(object);
  if (record.state != gc::ObjectState::REMOTE || record.bytesLocal) {
    auto bytes = store.objectMemory().bytesOf(record).asConst();
    return ArrivingBytes::Arrived{bytes, kj::Own<void>()};
  }
  KJ_IF_MAYBE(copies, arriving) { return copies->whenArrived(object, end); }
  return KJ_EXCEPTION(FAILED, "data port: the object's bytes are not here");
}

kj::Promise<void> DataSender::sendChunk(kj::AsyncIoStream& stream, gc::PeerId peer,
                                        uint64_t offset, kj::ArrayPtr<const kj::byte> chunk) {
  uint32_t length = chunk.size();
  ChunkHeader header{offset, length, XXH3_64bits(chunk.begin(), length)};
  // The header and the list of pieces must outlive the write (a partial write keeps them).
  struct Frame {
    uint8_t header[kChunkHeaderBytes];
    kj::ArrayPtr<const kj::byte> pieces[2];
  };
  auto frame = kj::heap<Frame>();
  encode(header, frame->header);
  frame->pieces[0] = kj::arrayPtr(frame->header, kChunkHeaderBytes);
  frame->pieces[1] = chunk;
  auto written = stream.write(kj::arrayPtr(frame->pieces, 2)).attach(kj::mv(frame));
  return written.then([this, peer, length]() {
    served += length;
    onServed(peer, length);
  });
}

}  // namespace refstore::server::dataplane
