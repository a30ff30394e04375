// JemallocArena: the shared-memory Allocator. A private jemalloc arena whose extent hooks carve
// extents out of Segments, so objects are allocated with jemalloc's size classes, slabs and
// extent reuse, but always inside memory that clients can map.
//
// How jemalloc's extent hooks are used (see jemalloc_arena.c++ for the details and the jemalloc
// 5.3 behaviour each decision relies on):
//   alloc         hands out fresh, never-used memory: a whole new segment for big requests
//                 (after priming, jemalloc asks for exactly one segment at a time), otherwise
//                 bump-allocated from a segment's unused tail. Refuses beyond the budget.
//   dalloc        refuses (memory stays with jemalloc as "retained" and is reused), except an
//                 extent that is an entire dedicated (oversized) segment: that segment goes idle
//                 (below), or is freed.
//   destroy       nothing; segments are freed by ~JemallocArena after the arena is destroyed.
//   commit        always succeeds: segment memory is always committed.
//   decommit,     refuse: memory stays resident and mapped. Punching holes would return pages to
//   purge_*       the kernel and make the next touch fault (slow) or SIGBUS (if tmpfs is full).
//   split         allowed (a piece of a segment is still inside that segment).
//   merge         allowed only for adjacent extents of the same segment: an allocation must never
//                 straddle two segments, because clients map segments individually.
// Idle dedicated segments: a large value's segment costs ~0.8 s per GiB to create and fault in,
// and workloads that put large values tend to put them again at the same size. So a freed
// dedicated segment is kept (at most kMaxIdleDedicated of them, resident, counted in the
// budget) and handed out again, same id, for the next extent of exactly its size: no creation,
// and clients that cached its mapping write straight into warm pages. Idle segments are freed
// first whenever a new segment needs the budget.
// This is deliberately the opposite of Plasma's failed attempt (an alloc-only hook over one
// fixed mapping, so freed extents were never reused): here every hook is implemented and reuse of
// retained extents is tested.
//
// Budget: the arena never reserves more than segmentBudget() bytes of segments. The logical
// capacity (sum of usable sizes) is a separate, smaller limit enforced by allocate(); the
// difference (the slack, see budgetFor() in the .c++) absorbs what the usable sizes do not count:
// partly-filled slabs, the cache-oblivious page jemalloc adds to every large allocation, and
// free space split into pieces too small for the next request.
//
// Metadata: in jemalloc 5.3 an arena's metadata (base blocks: extent records, bins, rtree
// leaves) comes from the hooks the arena was CREATED with. There is no opt.metadata_use_hooks and
// no mallctl to choose (arena_config_t.metadata_use_hooks exists internally, but "arenas.create"
// always uses its default, true). So the arena is created with jemalloc's default hooks and the
// segment hooks are installed afterwards with "arena.<i>.extent_hooks", which replaces only the
// data hooks: the base keeps the default hooks it was created with. Result: no jemalloc metadata
// lives in shared memory (tested), so a client mapping a segment, even read-write, can never
// corrupt the allocator, and every segment byte is available for objects.
//
// Oversized objects (> segmentSize) get a segment of their own, exactly the size of their
// extent, which is destroyed (its id retired: segment(id) throws) as soon as the object is
// released, so the budget is not held by memory only an object of that exact size could reuse.
// Clients that mapped it must drop their mapping. Both are synchronous: measured here, creating
// costs ~0.85 ms per MiB (64 MiB: ~60 ms, 1 GiB: ~0.9 s) and destroying ~0.3 ms per MiB.
//
// Pre-faulting: creating a 64 MiB segment costs ~60 ms on the development machine, so the arena
// keeps one spare segment. The daemon asks wantsSpare(), reserves an id, runs Segment::create()
// on a threadpool thread and hands the result to adoptSpare() on the event-loop thread. The alloc
// hook uses the spare when present, otherwise creates a segment synchronously.
//
// Threading: everything (including the hooks, which run inside mallocx/dallocx called from
// allocate/release) happens on the owning thread. jemalloc background threads must stay off (the
// default), since they could run hooks concurrently.

#pragma once

#include <cstddef>
#include <cstdint>
#include <map>

#include <vector>

#include <kj/common.h>
#include <kj/exception.h>
#include <kj/memory.h>

#include "server/shm/allocator.h"
#include "server/shm/segment.h"

namespace refstore::shm {

class JemallocArena final: public Allocator {
public:
  struct Options {
    uint64_t capacity;                     // logical limit on bytesAllocated()
    uint64_t segmentSize = 64ull << 20;    // power of two >= 4 MiB; clamped down to fit the budget
  };

  // Counters of hook activity, for tests and metrics.
  struct HookStats {
    uint64_t allocCalls = 0;       // alloc hook invocations
    uint64_t allocRefused = 0;     // ... that returned NULL (budget, new_addr, rounded request)
    uint64_t allocBytes = 0;       // bytes handed to jemalloc by alloc (never handed back)
    uint64_t spareUsed = 0;        // segments taken from the spare instead of created
    uint64_t segmentsCreated = 0;  // segments created synchronously inside the hook
    uint64_t dallocCalls = 0;
    uint64_t segmentsReleased = 0; // dedicated segments freed (idle ones evicted, or not kept)
    uint64_t segmentsIdled = 0;    // dedicated segments kept idle when their extent was freed
    uint64_t segmentsReused = 0;   // idle dedicated segments handed out again
    uint64_t destroyCalls = 0;
    uint64_t commitCalls = 0;
    uint64_t decommitCalls = 0;    // all refused
    uint64_t purgeCalls = 0;       // lazy + forced, all refused
    uint64_t splitCalls = 0;
    uint64_t mergeCalls = 0;
    uint64_t mergeRefused = 0;     // merges across segments (or of unknown memory) refused
  };

  explicit JemallocArena(Options options);
  ~JemallocArena() noexcept;
  KJ_DISALLOW_COPY(JemallocArena);

  // Allocator ------------------------------------------------------------------------------
  // allocate(): nullptr when bytesAllocated() + usable size would exceed capacity(), or when
  // jemalloc cannot place it within the segment budget. Throws (refstore.OUT_OF_MEMORY /
  // refstore.INTERNAL) only if creating a segment failed at the operating-system level.
  kj::Maybe<Allocation> allocate(uint64_t size) override;
  void release(const Allocation& allocation) override;
  bool isDedicated(uint32_t segmentId) const override;
  const Segment& segment(uint32_t id) const override;  // includes the spare
  uint64_t bytesAllocated() const override { return bytesAllocated_; }
  uint64_t capacity() const override { return capacity_; }
  // Both include the spare and idle dedicated segments.
  uint64_t segmentBytes() const override { return segmentBytes_; }
  size_t segmentCount() const override;
  size_t idleSegmentCount() const { return idleDedicated_.size(); }
  static constexpr size_t kMaxIdleDedicated = 2;

  // Spare segment (pre-faulting ahead of demand) ----------------------------------------------
  // True when no spare is held and one more segmentSize() segment fits the budget. The caller
  // keeps at most one creation in flight.
  bool wantsSpare() const;
  // A fresh id (small integers from 1, never reused) for a segment the caller will create.
  uint32_t reserveSegmentId();
  // Takes a segment made by Segment::create(reserveSegmentId(), segmentSize()). If a spare is
  // already held or the budget no longer has room, the segment is simply dropped (freed).
  void adoptSpare(kj::Own<Segment> segment);
  bool hasSpare() const { return spare_.get() != nullptr; }

  // Introspection ---------------------------------------------------------------------------
  uint64_t segmentSize() const { return segmentSize_; }      // effective (after clamping)
  uint64_t segmentBudget() const { return budget_; }         // segmentBytes() never exceeds it
  unsigned arenaIndex() const { return arenaIndex_; }
  const HookStats& hookStats() const { return stats_; }

  struct HookTable;  // extent_hooks_t + back pointer; defined in the .c++

private:
  struct SegmentRecord {
    kj::Own<Segment> segment;
    uint64_t used;    // bytes from the base already handed to jemalloc (bump pointer)
    bool dedicated;   // made for one large extent (not segmentSize); freed when it is dalloc'ed
  };

  uint64_t capacity_;
  uint64_t segmentSize_;
  uint64_t budget_;
  size_t page_;
  size_t largePad_;            // extra page jemalloc adds to large extents (opt.cache_oblivious)
  unsigned arenaIndex_ = 0;
  bool arenaCreated_ = false;
  bool primed_ = false;
  int flags_ = 0;              // MALLOCX_ARENA(arenaIndex_) | MALLOCX_TCACHE_NONE

  uint64_t bytesAllocated_ = 0;
  uint64_t segmentBytes_ = 0;
  uint32_t nextSegmentId_ = 1;

  std::map<uint32_t, SegmentRecord> segments_;         // by id (the spare is not in here)
  std::map<uintptr_t, SegmentRecord*> byAddress_;      // by base address, for pointer lookups
  kj::Own<Segment> spare_;
  std::vector<kj::Own<Segment>> idleDedicated_;        // freed dedicated segments, oldest first

  // Set by allocate() around mallocx: the exact extent size the current request needs, so the
  // alloc hook can refuse jemalloc's rounded-up first attempt for an oversized object (see
  // hookAlloc). 0 when unknown.
  uint64_t pendingExtent_ = 0;
  // An exception thrown while creating a segment inside a hook (hooks cannot throw through C).
  kj::Maybe<kj::Exception> pendingError_;

  HookStats stats_;
  kj::Own<HookTable> hooks_;

  void prime();
  const SegmentRecord* findRecord(const void* p) const;
  SegmentRecord* findRecord(const void* p);
  SegmentRecord* addSegment(kj::Own<Segment> segment, bool dedicated);
  SegmentRecord* newSegment(uint64_t size, bool dedicated);
  // Takes an idle dedicated segment of exactly `size` bytes back into use, if there is one.
  SegmentRecord* reuseIdle(uint64_t size);
  // Frees idle segments, oldest first, until `size` more bytes fit the budget (or none is left).
  void evictIdleFor(uint64_t size);
  void throwPendingError();

  // Hook implementations, called through HookTable's C trampolines (HookTable is nested, so it
  // may call them). Never throw: jemalloc is C.
  void* hookAlloc(void* newAddr, size_t size, size_t alignment, bool* zero, bool* commit) noexcept;
  bool hookDalloc(void* addr, size_t size) noexcept;
  void hookDestroy(void* addr, size_t size) noexcept;
  bool hookSplit(void* addr, size_t size) noexcept;
  bool hookMerge(void* addrA, size_t sizeA, void* addrB, size_t sizeB) noexcept;
};

}  // namespace refstore::shm
