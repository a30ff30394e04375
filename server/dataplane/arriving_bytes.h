// ArrivingBytes: what the data port asks for the bytes of an object it is serving that are not
// in this daemon's memory yet -- a copy of another daemon's object still arriving here, which
// this daemon relays to another reader chunk by chunk (schema/peer.capnp, Relay). The remote
// module implements it; the data port knows only this interface.
#pragma once

#include <kj/async.h>

#include "gc/object_table.h"

namespace refstore::server::dataplane {

class ArrivingBytes {
 public:
  virtual ~ArrivingBytes() noexcept(false) = default;

  struct Arrived {
    kj::ArrayPtr<const kj::byte> bytes;  // the whole value's place; [0, end) arrived and checked
    kj::Own<void> keep;                  // keeps `bytes` mapped while it lives
  };
  // Resolves once the bytes [0, end) of `object`, whose copy is arriving here, have arrived and
  // been checked (the caller serves complete copies from the store). Fails if the copy fails or
  // is dropped before it gets there, or if there is no copy arriving.
  virtual kj::Promise<Arrived> whenArrived(gc::ObjectId object, uint64_t end) = 0;
};

}  // namespace refstore::server::dataplane
