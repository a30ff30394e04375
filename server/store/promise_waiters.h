// Readers waiting for futures. A reader of a promised object (whenReady, read, view) parks a
// fulfiller here; settling the promise (fulfil, alias, reject, or its Fulfiller being dropped)
// wakes every reader of that object at once. Failure reasons are kept here too, so every later
// reader of a failed object gets the same `refstore.REJECTED: <reason>`.
#pragma once

#include <kj/async.h>
#include <kj/map.h>
#include <kj/string.h>
#include <kj/vector.h>

#include "gc/object_id.h"

namespace refstore::server {

class PromiseWaiters {
 public:
  // A promise that resolves when `id` settles (succeeds either way: the caller re-reads state).
  kj::Promise<void> wait(gc::ObjectId id);
  // Wakes everything waiting on `id`.
  void wake(gc::ObjectId id);

  // Records why `id` failed: the full exception text, e.g. "refstore.REJECTED: bad input".
  void setFailure(gc::ObjectId id, kj::String description);
  kj::StringPtr failure(gc::ObjectId id) const;  // "" if none recorded
  // The object is gone: forget its failure and wake (and so release) its waiters.
  void forget(gc::ObjectId id);

 private:
  // The whole id: a proxy's id is its owner's (another origin in `hi`), so a proxy and one of
  // this daemon's own objects can share `lo`, and one's failure or end must not touch the other.
  struct Key {
    uint64_t hi, lo;
    bool operator==(const Key& other) const { return hi == other.hi && lo == other.lo; }
    unsigned int hashCode() const { return unsigned(lo ^ (lo >> 32) ^ hi ^ (hi >> 32)); }
  };
  static Key key(gc::ObjectId id) { return Key{id.hi, id.lo}; }
  kj::HashMap<Key, kj::Vector<kj::Own<kj::PromiseFulfiller<void>>>> waiting;
  kj::HashMap<Key, kj::String> failures;
};

}  // namespace refstore::server
