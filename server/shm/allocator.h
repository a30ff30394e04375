// Allocator: where the bytes of an object live.
//
// The store asks an Allocator for a region, tells the client "segment S, offset O, length L",
// and the client reads or writes it through its own mapping of segment S (mapped once, fd
// passed once). So every allocation must lie entirely inside ONE segment.
//
// This is an interface because the shared-memory arena (jemalloc_arena.h) is only the first
// implementation: later work adds file-backed allocations for objects larger than memory and
// spilling, which hand out the same kind of Allocation.
//
// Threading: an Allocator belongs to the daemon's event-loop thread; no method is thread-safe.

#pragma once

#include <cstddef>
#include <cstdint>

#include <kj/common.h>

#include "server/shm/segment.h"

namespace refstore::shm {

struct Allocation {
  uint8_t* ptr;        // the daemon's address of the first byte
  uint32_t segmentId;  // which segment a client must map
  uint64_t offset;     // ptr - segment base
  uint64_t size;       // usable size actually reserved (>= the size asked for)
};

class Allocator {
public:
  virtual ~Allocator() = default;

  // A region of at least `size` bytes (size > 0) inside one segment, or nullptr when it does not
  // fit right now (capacity reached, or no contiguous room). "Full" is never an exception: the
  // caller queues the request (backpressure). Exceptions mean real failures (e.g. the system
  // could not reserve shared memory).
  virtual kj::Maybe<Allocation> allocate(uint64_t size) = 0;

  // Gives back an Allocation returned by allocate() (ptr, segmentId and offset must match; size
  // is not trusted: the allocator knows what it reserved). Its memory is reused later.
  virtual void release(const Allocation& allocation) = 0;

  // True if the segment holds a single large allocation and is freed with it. Clients must not
  // keep such a segment mapped after they are done with that object (Placement.dedicated).
  virtual bool isDedicated(uint32_t segmentId) const = 0;

  // The segment with this id; throws if there is none (never created, or already gone).
  virtual const Segment& segment(uint32_t id) const = 0;

  virtual uint64_t bytesAllocated() const = 0;  // sum of usable sizes of live allocations
  virtual uint64_t capacity() const = 0;        // bytesAllocated() never exceeds this
  virtual uint64_t segmentBytes() const = 0;    // shared memory currently reserved in segments
  virtual size_t segmentCount() const = 0;
};

}  // namespace refstore::shm
