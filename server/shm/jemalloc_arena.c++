// JemallocArena: a jemalloc arena whose extent hooks carve extents out of memfd Segments.
// The header explains the design; this file explains the jemalloc 5.3 behaviour it relies on.
//
// How jemalloc 5.3 gets memory from the hooks (src/extent.c, src/pac.c; opt.retain is on by
// default on 64-bit Linux):
//   * A request that no cached extent satisfies "grows": jemalloc asks the alloc hook for a
//     size from a growing series (2 MiB, 2.5 MiB, 3 MiB, ... one size class per call, capped by
//     arena.<i>.retain_grow_limit), splits what it needs off and keeps the rest as "retained".
//     If that alloc fails it retries once with the exact size (ecache_alloc_grow).
//   * Every extent returned by the alloc hook is a "head": jemalloc never coalesces free memory
//     across two hook allocations, whatever the merge hook says. So the fewer and larger the hook
//     allocations, the better free space coalesces. We therefore set retain_grow_limit to the
//     segment size and "prime" the series with one allocation of almost a segment: from then on
//     every grow is exactly one whole segment, i.e. each normal segment is ONE head, and free
//     space anywhere inside a segment can coalesce. (Priming is only an optimization; without it
//     the arena still works, with more, smaller heads.)
//   * Freed extents go to the "dirty" cache and, after dirty_decay_ms, through the purge path:
//     dalloc, else decommit, else purge_forced, else purge_lazy, then into "retained" (where they
//     stay committed, since we refuse decommit/purge). We set dirty_decay_ms = muzzy_decay_ms = 0
//     rather than -1, so every freed extent goes straight to "retained": coalesced eagerly with
//     its neighbours and reusable for any request (address-ordered first fit), still resident.
//     With -1 freed extents stay "dirty", and jemalloc only reuses a dirty extent for requests of
//     at least 1/64 of its size (opt.lg_extent_max_active_fit = 6): the churn test's all-small
//     workload then needed 5 segments instead of 4 at 256 MiB capacity (1088 vs 1024 MiB at
//     1 GiB), because the big free block left by priming was never used for slabs; the other
//     workloads fragmented the same either way. The price of 0 is a few refused hook calls per
//     freed extent (cheap), and it has one more benefit: dalloc sees every freed extent, which is
//     how a dedicated segment is returned to the system as soon as its object is freed.
//   * Large allocations are padded by one page when opt.cache_oblivious (default on): a large
//     allocation of usable size U occupies an extent of U + 4 KiB.

#include "server/shm/jemalloc_arena.h"

#include <errno.h>
#include <jemalloc/jemalloc.h>
#include <string.h>

#include <kj/debug.h>
#include <kj/string.h>

namespace refstore::shm {

namespace {

constexpr uint64_t kMinSegmentSize = 4ull << 20;

// Slack: how much more shared memory than capacity the arena may reserve in segments.
//
// The capacity check counts usable sizes, so size-class rounding is charged to capacity, not to
// the slack, and metadata is not in segments at all (see the header). What the slack must absorb
// is fragmentation: free space split into holes too small for the next request (first fit, the
// "fifty-percent rule": about one hole per two live blocks), partly-used slabs, and the one page
// jemalloc adds to each large allocation. Measured with the churn test's workload (random sizes
// 1 KiB..4 MiB in several distributions, 64 MiB segments, filled to 90% of capacity by usable size,
// then 20,000-40,000 random frees/allocations holding the fill level), the segments jemalloc
// needs, unconstrained, are:
//     capacity 256 MiB: 1.00x (all 1-16 KiB) .. 1.25x (most runs) .. 1.375x/1.5x (rare, bimodal)
//     capacity 512 MiB: 1.00x .. 1.25x
//     capacity   1 GiB: 1.00x .. 1.19x        (95% fill: up to 1.25x)
//     capacity   2 GiB: 0.97x .. 1.16x
// i.e. a proportional part (~12-19% at 90% fill) plus whole-segment granularity (jemalloc grows
// one segment at a time). With capacity/8 only (288 MiB for 256 MiB), 0.05%-1% of churn
// allocations failed; with the budget below no allocation failed in any run at 90% or 95% fill.
// So: 12.5% of capacity + two segments, the latter capped at 25% of capacity so that a small
// store does not reserve disproportionately more than it was given. The budget is a ceiling, not
// a reservation: segments are only created when jemalloc needs them.
uint64_t budgetFor(uint64_t capacity, uint64_t segmentSize) {
  return capacity + capacity / 8 + kj::min(2 * segmentSize, capacity / 4);
}

// dirty_decay_ms and muzzy_decay_ms for the arena; see the file comment.
constexpr ssize_t kDecayMs = 0;

template <typename T>
T readCtl(const char* name) {
  T value{};
  size_t size = sizeof(value);
  int error = mallctl(name, &value, &size, nullptr, 0);
  KJ_REQUIRE(error == 0, "refstore.INTERNAL: jemalloc mallctl read failed", name, strerror(error));
  return value;
}

template <typename T>
int writeCtl(const char* name, T value) {
  return mallctl(name, nullptr, nullptr, &value, sizeof(value));
}

bool isPowerOfTwo(uint64_t x) { return x != 0 && (x & (x - 1)) == 0; }

uint64_t alignUp(uint64_t x, uint64_t alignment) {
  return (x + alignment - 1) & ~(alignment - 1);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// The hook table. jemalloc passes the extent_hooks_t* it was given to every hook, so embedding it
// as the FIRST member of a standard-layout struct lets each hook recover its JemallocArena with a
// cast: several arenas can coexist, and no global state is needed.

struct JemallocArena::HookTable {
  extent_hooks_t hooks;   // must stay the first member
  JemallocArena* arena;

  static JemallocArena& from(extent_hooks_t* h) {
    return *reinterpret_cast<HookTable*>(h)->arena;
  }

  static void* alloc(extent_hooks_t* h, void* newAddr, size_t size, size_t alignment, bool* zero,
                     bool* commit, unsigned) {
    return from(h).hookAlloc(newAddr, size, alignment, zero, commit);
  }
  static bool dalloc(extent_hooks_t* h, void* addr, size_t size, bool, unsigned) {
    return from(h).hookDalloc(addr, size);
  }
  static void destroy(extent_hooks_t* h, void* addr, size_t size, bool, unsigned) {
    from(h).hookDestroy(addr, size);
  }
  // Segment memory is committed from creation to destruction, so a commit request is satisfied
  // by doing nothing (false = success).
  static bool commit(extent_hooks_t* h, void*, size_t, size_t, size_t, unsigned) {
    ++from(h).stats_.commitCalls;
    return false;
  }
  // Refuse (true = not done): memory stays committed and resident for reuse. Decommitting or
  // purging would mean punching holes in the memfd; the next touch would fault again (slow) or
  // SIGBUS if tmpfs filled up meanwhile, and readers' mappings would see pages vanish.
  static bool decommit(extent_hooks_t* h, void*, size_t, size_t, size_t, unsigned) {
    ++from(h).stats_.decommitCalls;
    return true;
  }
  static bool purge(extent_hooks_t* h, void*, size_t, size_t, size_t, unsigned) {
    ++from(h).stats_.purgeCalls;
    return true;
  }
  static bool split(extent_hooks_t* h, void* addr, size_t size, size_t, size_t, bool, unsigned) {
    return from(h).hookSplit(addr, size);
  }
  static bool merge(extent_hooks_t* h, void* addrA, size_t sizeA, void* addrB, size_t sizeB, bool,
                    unsigned) {
    return from(h).hookMerge(addrA, sizeA, addrB, sizeB);
  }
};

static_assert(offsetof(JemallocArena::HookTable, hooks) == 0,
              "extent_hooks_t must be the first member");

// ---------------------------------------------------------------------------------------------
// Construction and destruction

JemallocArena::JemallocArena(Options options)
    : capacity_(options.capacity), segmentSize_(options.segmentSize) {
  KJ_REQUIRE(capacity_ > 0, "refstore.INVALID_ARGUMENT: capacity must be positive");
  KJ_REQUIRE(isPowerOfTwo(segmentSize_) && segmentSize_ >= kMinSegmentSize,
             "refstore.INVALID_ARGUMENT: segment size must be a power of two >= 4 MiB",
             segmentSize_);
  // A power of two is one of jemalloc's page size classes, so retain_grow_limit = segmentSize is
  // exact and primed grows are exactly one segment.

  page_ = readCtl<size_t>("arenas.page");
  largePad_ = readCtl<bool>("opt.cache_oblivious") ? page_ : 0;
  if (!readCtl<bool>("opt.retain")) {
    KJ_LOG(WARNING, "jemalloc opt.retain is off; shared-memory arena will fragment more");
  }
  if (readCtl<bool>("opt.background_thread")) {
    // Background purging threads would run our hooks concurrently with the owning thread.
    // With decay 0 they have nothing to do for this arena, but say so loudly.
    KJ_LOG(WARNING, "jemalloc background threads are on; JemallocArena assumes they stay idle");
  }

  budget_ = budgetFor(capacity_, segmentSize_);
  // Small capacities: shrink the segment so that at least one fits the budget.
  while (segmentSize_ > budget_ && segmentSize_ > kMinSegmentSize) segmentSize_ /= 2;
  KJ_REQUIRE(segmentSize_ <= budget_,
             "refstore.INVALID_ARGUMENT: capacity too small for one 4 MiB segment", capacity_);

  // Create the arena with jemalloc's DEFAULT hooks, then switch the data hooks. In 5.3 the
  // arena's base (metadata) allocator keeps the hooks the arena was created with, so metadata
  // stays in ordinary private memory, never in a segment. (Creating it directly with our hooks
  // would put metadata in shared memory: 5.3 has no way to opt out at creation.)
  unsigned index = 0;
  size_t indexSize = sizeof(index);
  int error = mallctl("arenas.create", &index, &indexSize, nullptr, 0);
  KJ_REQUIRE(error == 0, "refstore.INTERNAL: jemalloc arenas.create failed", strerror(error));
  arenaIndex_ = index;
  arenaCreated_ = true;
  flags_ = MALLOCX_ARENA(arenaIndex_) | MALLOCX_TCACHE_NONE;

  KJ_ON_SCOPE_FAILURE({
    auto name = kj::str("arena.", arenaIndex_, ".destroy");
    mallctl(name.cStr(), nullptr, nullptr, nullptr, 0);
    arenaCreated_ = false;
  });

  hooks_ = kj::heap<HookTable>();
  memset(&hooks_->hooks, 0, sizeof(hooks_->hooks));
  hooks_->hooks.alloc = &HookTable::alloc;
  hooks_->hooks.dalloc = &HookTable::dalloc;
  hooks_->hooks.destroy = &HookTable::destroy;
  hooks_->hooks.commit = &HookTable::commit;
  hooks_->hooks.decommit = &HookTable::decommit;
  hooks_->hooks.purge_lazy = &HookTable::purge;
  hooks_->hooks.purge_forced = &HookTable::purge;
  hooks_->hooks.split = &HookTable::split;
  hooks_->hooks.merge = &HookTable::merge;
  hooks_->arena = this;

  auto ctl = [&](const char* leaf) { return kj::str("arena.", arenaIndex_, ".", leaf); };
  extent_hooks_t* newHooks = &hooks_->hooks;
  error = writeCtl(ctl("extent_hooks").cStr(), newHooks);
  KJ_REQUIRE(error == 0, "refstore.INTERNAL: installing jemalloc extent hooks failed",
             strerror(error));
  ssize_t decayMs = kDecayMs;
  error = writeCtl(ctl("dirty_decay_ms").cStr(), decayMs);
  KJ_REQUIRE(error == 0, "refstore.INTERNAL: setting dirty_decay_ms failed", strerror(error));
  error = writeCtl(ctl("muzzy_decay_ms").cStr(), decayMs);
  KJ_REQUIRE(error == 0, "refstore.INTERNAL: setting muzzy_decay_ms failed", strerror(error));
  size_t growLimit = segmentSize_;
  error = writeCtl(ctl("retain_grow_limit").cStr(), growLimit);
  KJ_REQUIRE(error == 0 || error == ENOENT,  // ENOENT: opt.retain off, nothing grows
             "refstore.INTERNAL: setting retain_grow_limit failed", strerror(error));
}

JemallocArena::~JemallocArena() noexcept {
  // Destroy the arena first: jemalloc frees whatever is still allocated, calls our dalloc/destroy
  // hooks for its extents and frees its metadata. Only then may the segments go away.
  if (arenaCreated_) {
    auto name = kj::str("arena.", arenaIndex_, ".destroy");
    int error = mallctl(name.cStr(), nullptr, nullptr, nullptr, 0);
    if (error != 0) {
      KJ_LOG(ERROR, "jemalloc arena destroy failed; leaking its segments", strerror(error));
      // Leak rather than unmap memory jemalloc may still touch.
      for (auto& entry: segments_) {
        new kj::Own<Segment>(kj::mv(entry.second.segment));  // deliberately never deleted
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Allocator

kj::Maybe<Allocation> JemallocArena::allocate(uint64_t size) {
  KJ_REQUIRE(size > 0, "refstore.INVALID_ARGUMENT: zero-size allocation");
  size_t usable = nallocx(size, flags_);  // 0 when beyond jemalloc's largest size class
  if (usable == 0 || usable > capacity_ - bytesAllocated_) return nullptr;

  if (!primed_) {
    prime();
    throwPendingError();
  }

  pendingExtent_ = alignUp(usable, page_) + largePad_;
  void* p = mallocx(size, flags_);
  pendingExtent_ = 0;
  if (p == nullptr) {
    throwPendingError();
    return nullptr;
  }

  SegmentRecord* record = findRecord(p);
  KJ_ASSERT(record != nullptr && record->segment->contains(p, usable),
            "jemalloc returned memory outside every segment");
  KJ_DASSERT(sallocx(p, flags_) == usable);
  bytesAllocated_ += usable;
  uint8_t* ptr = static_cast<uint8_t*>(p);
  return Allocation{ptr, record->segment->id(), uint64_t(ptr - record->segment->base()), usable};
}

void JemallocArena::release(const Allocation& allocation) {
  auto it = segments_.find(allocation.segmentId);
  KJ_REQUIRE(it != segments_.end() &&
                 it->second.segment->base() + allocation.offset == allocation.ptr,
             "refstore.INTERNAL: releasing an allocation this arena did not make",
             allocation.segmentId, allocation.offset);
  // Account by what jemalloc really reserved, so callers that only remember the size they asked
  // for (the object table does) cannot skew bytesAllocated().
  size_t usable = sallocx(allocation.ptr, flags_);
  KJ_ASSERT(usable <= bytesAllocated_);
  // May run hooks that free a dedicated segment (and invalidate `it`).
  dallocx(allocation.ptr, MALLOCX_TCACHE_NONE);
  bytesAllocated_ -= usable;
}

bool JemallocArena::isDedicated(uint32_t id) const {
  auto it = segments_.find(id);
  return it != segments_.end() && it->second.dedicated;
}

const Segment& JemallocArena::segment(uint32_t id) const {
  auto it = segments_.find(id);
  if (it != segments_.end()) return *it->second.segment;
  if (spare_.get() != nullptr && spare_->id() == id) return *spare_;
  KJ_FAIL_REQUIRE("refstore.NOT_FOUND: no shared-memory segment with this id", id);
}

size_t JemallocArena::segmentCount() const {
  return segments_.size() + idleDedicated_.size() + (spare_.get() != nullptr ? 1 : 0);
}

// ---------------------------------------------------------------------------------------------
// Spare segment

bool JemallocArena::wantsSpare() const {
  return spare_ == nullptr && segmentBytes_ + segmentSize_ <= budget_;
}

uint32_t JemallocArena::reserveSegmentId() {
  KJ_REQUIRE(nextSegmentId_ != 0, "refstore.INTERNAL: segment ids exhausted");
  return nextSegmentId_++;
}

void JemallocArena::adoptSpare(kj::Own<Segment> segment) {
  KJ_REQUIRE(segment->size() == segmentSize_, "spare segment has the wrong size",
             segment->size(), segmentSize_);
  KJ_REQUIRE(segment->id() != 0 && segment->id() < nextSegmentId_ &&
                 segments_.find(segment->id()) == segments_.end(),
             "spare segment id was not reserved by this arena or is in use", segment->id());
  // Meanwhile the hook may have created segments synchronously: only keep it if it still fits.
  if (spare_.get() != nullptr || segmentBytes_ + segment->size() > budget_) return;
  segmentBytes_ += segment->size();
  spare_ = kj::mv(segment);
}

// ---------------------------------------------------------------------------------------------
// Internals

void JemallocArena::prime() {
  // Push jemalloc's grow series straight to its limit (one whole segment): allocate the largest
  // size whose extent (usable size + cache-oblivious pad) still fits in one segment but needs more
  // than the size class below it, so the grow request is exactly segmentSize; then free it. Its
  // extent ends up retained, coalesced with the rest of the segment: one free segment-sized head.
  uint64_t primeSize = segmentSize_ - largePad_;
  if (nallocx(primeSize, flags_) + largePad_ > segmentSize_) {
    primeSize = segmentSize_ / 8 * 7;  // the size class just below a power of two
  }
  uint64_t before = stats_.allocCalls;
  void* p = mallocx(primeSize, flags_);
  if (p == nullptr) return;  // try again next time; pendingError_ (if any) is thrown by the caller
  dallocx(p, MALLOCX_TCACHE_NONE);
  primed_ = true;
  if (stats_.allocCalls != before + 1 || segments_.size() != 1 ||
      segments_.begin()->second.used != segmentSize_) {
    KJ_LOG(WARNING, "priming jemalloc's grow series did not take exactly one segment",
           stats_.allocCalls - before, segments_.size());
  }
}

const JemallocArena::SegmentRecord* JemallocArena::findRecord(const void* p) const {
  auto it = byAddress_.upper_bound(reinterpret_cast<uintptr_t>(p));
  if (it == byAddress_.begin()) return nullptr;
  --it;
  return it->second->segment->contains(p) ? it->second : nullptr;
}

JemallocArena::SegmentRecord* JemallocArena::findRecord(const void* p) {
  return const_cast<SegmentRecord*>(static_cast<const JemallocArena*>(this)->findRecord(p));
}

JemallocArena::SegmentRecord* JemallocArena::addSegment(kj::Own<Segment> segment,
                                                        bool dedicated) {
  uint32_t id = segment->id();
  uintptr_t base = reinterpret_cast<uintptr_t>(segment->base());
  auto& record = segments_[id];
  record = SegmentRecord{kj::mv(segment), 0, dedicated};
  byAddress_[base] = &record;
  return &record;
}

JemallocArena::SegmentRecord* JemallocArena::newSegment(uint64_t size, bool dedicated) {
  // The spare is exactly segmentSize_; use it when that is what is needed (no budget change:
  // it is already counted).
  if (spare_.get() != nullptr && size == spare_->size()) {
    ++stats_.spareUsed;
    return addSegment(kj::mv(spare_), dedicated);
  }
  evictIdleFor(size);
  if (segmentBytes_ + size > budget_ && spare_.get() != nullptr) {
    // The spare is only a cache of pre-faulted memory; give its budget to the real request.
    segmentBytes_ -= spare_->size();
    spare_ = nullptr;
  }
  if (segmentBytes_ + size > budget_) return nullptr;
  uint32_t id = reserveSegmentId();
  auto segment = Segment::create(id, size);  // may throw; caught by hookAlloc
  ++stats_.segmentsCreated;
  segmentBytes_ += size;
  return addSegment(kj::mv(segment), dedicated);
}

JemallocArena::SegmentRecord* JemallocArena::reuseIdle(uint64_t size) {
  for (auto it = idleDedicated_.begin(); it != idleDedicated_.end(); ++it) {
    if ((*it)->size() != size) continue;
    kj::Own<Segment> segment = kj::mv(*it);
    idleDedicated_.erase(it);
    ++stats_.segmentsReused;
    return addSegment(kj::mv(segment), /*dedicated=*/true);  // already counted in the budget
  }
  return nullptr;
}

void JemallocArena::evictIdleFor(uint64_t size) {
  while (!idleDedicated_.empty() && segmentBytes_ + size > budget_) {
    segmentBytes_ -= idleDedicated_.front()->size();
    idleDedicated_.erase(idleDedicated_.begin());  // unmaps and closes
    ++stats_.segmentsReleased;
  }
}

void JemallocArena::throwPendingError() {
  KJ_IF_MAYBE(e, pendingError_) {
    auto exception = kj::mv(*e);
    pendingError_ = nullptr;
    kj::throwFatalException(kj::mv(exception));
  }
}

// ---------------------------------------------------------------------------------------------
// Hooks

void* JemallocArena::hookAlloc(void* newAddr, size_t size, size_t alignment, bool* zero,
                               bool* commit) noexcept {
  ++stats_.allocCalls;
  if (alignment < page_) alignment = page_;
  // Everything handed out is fresh: never given to jemalloc before, zero since fallocate, and
  // committed (resident) for the segment's whole life.
  auto grant = [&](SegmentRecord* record, uint64_t offset) -> void* {
    record->used = offset + size;
    stats_.allocBytes += size;
    *zero = true;
    *commit = true;
    return record->segment->base() + offset;
  };
  auto refuse = [&]() -> void* {
    ++stats_.allocRefused;
    return nullptr;
  };
  if (size == 0 || size % page_ != 0) return refuse();

  // Only the unused tail of a segment is ours to give. A specific address (jemalloc wants to
  // extend an extent in place) can only be honoured if it is exactly the start of such a tail.
  // (With opt.retain jemalloc never asks, but the hook contract allows it.)
  auto fitInTail = [&](SegmentRecord& record, uintptr_t want) -> kj::Maybe<uint64_t> {
    uintptr_t base = reinterpret_cast<uintptr_t>(record.segment->base());
    uint64_t offset = alignUp(base + record.used, alignment) - base;
    if (want != 0 && base + offset != want) return nullptr;
    if (offset > record.segment->size() || size > record.segment->size() - offset) return nullptr;
    return offset;
  };

  if (newAddr != nullptr) {
    SegmentRecord* record = findRecord(newAddr);
    if (record == nullptr || record->dedicated) return refuse();
    KJ_IF_MAYBE(offset, fitInTail(*record, reinterpret_cast<uintptr_t>(newAddr))) {
      return grant(record, *offset);
    }
    return refuse();
  }

  try {
    uint64_t need = size + (alignment > page_ ? alignment - page_ : 0);
    if (size > segmentSize_ / 2) {
      // Large: a segment of its own, sized to fit (exactly one normal segment after priming,
      // which is the common case: jemalloc growing by a whole segment).
      if (size > segmentSize_ && pendingExtent_ != 0 && size > pendingExtent_) {
        // An oversized object, and jemalloc asked for more than it needs (its grow series
        // rounds up to the next size class, up to +25%). Refusing makes it retry with the exact
        // size, so the dedicated segment is exactly the object's extent and is freed with it.
        return refuse();
      }
      bool dedicated = need != segmentSize_;
      if (dedicated && alignment <= page_) {  // a segment's base is page-aligned only
        if (SegmentRecord* idle = reuseIdle(need)) {
          idle->used = size;
          stats_.allocBytes += size;
          *zero = false;  // it held an earlier value
          *commit = true;
          return idle->segment->base();
        }
      }
      SegmentRecord* record = newSegment(need, dedicated);
      if (record == nullptr) return refuse();
      KJ_IF_MAYBE(offset, fitInTail(*record, 0)) {
        return grant(record, *offset);
      }
      return refuse();  // unreachable: a fresh segment of `need` bytes fits
    }

    // Small (only after a whole-segment grow was refused for lack of budget, or before
    // priming): first fit in the unused tails, then a new segment (the spare, or as large as the
    // budget allows up to segmentSize).
    for (auto& entry: segments_) {
      if (entry.second.dedicated) continue;  // reserved for its one extent
      KJ_IF_MAYBE(offset, fitInTail(entry.second, 0)) {
        return grant(&entry.second, *offset);
      }
    }
    uint64_t room = budget_ > segmentBytes_ ? budget_ - segmentBytes_ : 0;
    uint64_t newSize = spare_.get() != nullptr ? segmentSize_
                                         : kj::min(segmentSize_, room / page_ * page_);
    if (newSize < need) return refuse();
    SegmentRecord* record = newSegment(newSize, false);
    if (record == nullptr) return refuse();
    KJ_IF_MAYBE(offset, fitInTail(*record, 0)) {
      return grant(record, *offset);
    }
    return refuse();
  } catch (kj::Exception& e) {
    // Segment creation failed (e.g. tmpfs full). jemalloc sees an ordinary allocation failure;
    // allocate() rethrows this once mallocx returns.
    pendingError_ = kj::mv(e);
    return refuse();
  } catch (std::exception& e) {
    pendingError_ = KJ_EXCEPTION(FAILED, "refstore.INTERNAL: creating a segment failed", e.what());
    return refuse();
  }
}

bool JemallocArena::hookDalloc(void* addr, size_t size) noexcept {
  ++stats_.dallocCalls;
  SegmentRecord* record = findRecord(addr);
  if (record != nullptr && record->dedicated && record->segment->base() == addr &&
      record->segment->size() == size) {
    // The whole of a dedicated segment is free. Keep it idle for the next value of its size
    // (see the header), the oldest idle one making room; jemalloc forgets the extent either way.
    uint32_t id = record->segment->id();
    byAddress_.erase(reinterpret_cast<uintptr_t>(record->segment->base()));
    idleDedicated_.push_back(kj::mv(record->segment));
    segments_.erase(id);
    ++stats_.segmentsIdled;
    if (idleDedicated_.size() > kMaxIdleDedicated) {
      segmentBytes_ -= idleDedicated_.front()->size();
      idleDedicated_.erase(idleDedicated_.begin());
      ++stats_.segmentsReleased;
    }
    return false;
  }
  // Anything else stays with jemalloc (as retained, committed) for reuse.
  return true;
}

void JemallocArena::hookDestroy(void* /*addr*/, size_t /*size*/) noexcept {
  // Only called while the arena is being destroyed; ~JemallocArena frees the segments after.
  ++stats_.destroyCalls;
}

bool JemallocArena::hookSplit(void* addr, size_t size) noexcept {
  ++stats_.splitCalls;
  // Both halves stay inside the segment the whole extent is in: always fine.
  SegmentRecord* record = findRecord(addr);
  return !(record != nullptr && record->segment->contains(addr, size));
}

bool JemallocArena::hookMerge(void* addrA, size_t sizeA, void* addrB, size_t sizeB) noexcept {
  ++stats_.mergeCalls;
  // Refuse (true) unless A and B are adjacent and in the same segment: the merged extent could
  // later hold one allocation, which must lie within a single segment.
  SegmentRecord* record = findRecord(addrA);
  bool ok = record != nullptr && static_cast<uint8_t*>(addrA) + sizeA == addrB &&
            record->segment->contains(addrA, sizeA + sizeB);
  if (!ok) ++stats_.mergeRefused;
  return !ok;
}

}  // namespace refstore::shm
