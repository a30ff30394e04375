// Keeps one pre-faulted spare segment ready so that allocations almost never wait for fresh
// shared memory. Faulting in fresh shm pages is slow on this platform (~0.3-1.6 GB/s, see
// DESIGN.md), so it happens on libuv's threadpool, ahead of demand, and the finished segment is
// handed to the allocator on the event-loop thread.
#pragma once

#include "server/shm/jemalloc_arena.h"
#include "server/runtime/uv_loop.h"

namespace refstore::server {

class SegmentPrefaulter {
 public:
  SegmentPrefaulter(UvLoop& uv, shm::JemallocArena& arena): uv(uv), arena(arena) {}

  // Starts building a spare if the arena wants one and none is being built. Cheap; call after
  // every allocation.
  void refill();

 private:
  struct TaskErrors: kj::TaskSet::ErrorHandler {
    void taskFailed(kj::Exception&& e) override;
  } errors;
  UvLoop& uv;
  shm::JemallocArena& arena;
  bool building = false;
  kj::TaskSet tasks{errors};
};

}  // namespace refstore::server
