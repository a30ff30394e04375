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
  static uint64_t key(gc::ObjectId id) { return id.lo; }  // one daemon: ids differ in `lo`
  kj::HashMap<uint64_t, kj::Vector<kj::Own<kj::PromiseFulfiller<void>>>> waiting;
  kj::HashMap<uint64_t, kj::String> failures;
};

}  // namespace refstore::server
