// Slab<T>: dense, chunked storage for millions of small fixed-size records, with stable addresses
// and slot numbers that can stand in for pointers.
//
// Why not a node container (std::unordered_map and friends): every node is its own heap block,
// rounded up to a malloc size class, plus a next pointer and a bucket slot. At a million gc
// records that overhead was ~40% of the daemon's memory per object. A slab stores records back
// to back in chunks of kChunkSlots, so a record costs exactly sizeof(T) plus one bit.
//
// - Addresses are stable: chunks never move, so a T* stays valid until its slot is freed.
// - Slots are numbered (uint32_t), which lets callers link records to each other with 4-byte
//   indexes instead of 8-byte pointers, and encode a slot in an id.
// - Each allocation also gets a *generation*, unique per slot for the life of the slab (a
//   per-chunk counter; a chunk whose counter reaches kGenerationLimit is retired, never
//   reused). (slot, generation) therefore never repeats, so ids built from it are never reused
//   either. Generations stay below 2^31 by default, which leaves callers the top bit of a
//   32-bit field for a flag.
// - Memory follows the live count: allocation fills the lowest-numbered chunk with room, so live
//   records gather at the front, and a chunk whose last record is freed gives its storage back
//   (one empty chunk is kept as a spare, so a table that oscillates around a chunk boundary does
//   not allocate and free a chunk per call).
//
// Not thread-safe (gc is owned by one event-loop thread). T must be default-constructible; a
// freed slot's T is not destroyed until its chunk's storage is, so T should be trivial.
#ifndef REFSTORE_GC_SLAB_H_
#define REFSTORE_GC_SLAB_H_

#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <set>
#include <stdexcept>
#include <vector>

namespace refstore::gc {

template <typename T, uint32_t kChunkSlots = 4096, uint32_t kGenerationLimit = 1u << 31>
class Slab {
  static_assert(kChunkSlots % 64 == 0, "slot bitmaps are whole 64-bit words");

 public:
  struct Allocated {
    uint32_t slot;
    uint32_t generation;
    T* value;  // freshly value-initialized
  };

  Slab() = default;
  Slab(const Slab&) = delete;
  Slab& operator=(const Slab&) = delete;

  // A free slot, holding a fresh T. May throw std::bad_alloc (nothing changes then), or
  // std::length_error once 2^32 slots would be needed.
  Allocated allocate() {
    uint32_t c = chunkWithRoom();
    Chunk& chunk = chunks_[c];
    if (!chunk.storage) chunk.storage = takeStorage();
    Storage& s = *chunk.storage;
    uint32_t offset = firstFree(s);
    s.used[offset / 64] |= uint64_t{1} << (offset % 64);
    s.slots[offset] = T();
    ++chunk.live;
    ++size_;
    uint32_t generation = chunk.nextGeneration++;
    if (chunk.nextGeneration == kGenerationLimit || chunk.live == kChunkSlots) {
      withRoom_.erase(c);  // full, or retired: its generations are used up
    }
    return Allocated{c * kChunkSlots + offset, generation, &s.slots[offset]};
  }

  // Frees an allocated slot (precondition: get(slot) != null).
  void free(uint32_t slot) {
    uint32_t c = slot / kChunkSlots, offset = slot % kChunkSlots;
    Chunk& chunk = chunks_[c];
    chunk.storage->used[offset / 64] &= ~(uint64_t{1} << (offset % 64));
    --size_;
    if (chunk.live-- == kChunkSlots && chunk.nextGeneration != kGenerationLimit) {
      withRoom_.insert(c);
    }
    if (chunk.live == 0) {
      // Keep one empty chunk's storage for the next chunk that needs some; free the rest.
      if (!spare_) {
        spare_ = std::move(chunk.storage);
      } else {
        chunk.storage.reset();
      }
    }
  }

  // The record in `slot`, or null if the slot is not allocated (or out of range). The slab
  // hands out mutable records from const methods on purpose: it is the record store, and a
  // const Slab only means its *set of slots* does not change.
  T* get(uint32_t slot) const {
    uint32_t c = slot / kChunkSlots, offset = slot % kChunkSlots;
    if (c >= chunks_.size() || !chunks_[c].storage) return nullptr;
    Storage& s = *chunks_[c].storage;
    if ((s.used[offset / 64] >> (offset % 64) & 1) == 0) return nullptr;
    return &s.slots[offset];
  }

  // Allocated slots.
  size_t size() const { return size_; }
  // Chunks whose storage is allocated, the spare included (for tests and diagnostics: memory is
  // about (this * kChunkSlots * sizeof(T))).
  size_t chunksInMemory() const {
    size_t n = spare_ ? 1 : 0;
    for (const Chunk& c : chunks_) n += c.storage ? 1 : 0;
    return n;
  }

  // Calls fn(slot, T&) for every allocated slot, in slot order. fn must not allocate or free.
  template <typename Fn>
  void forEach(Fn&& fn) const {
    for (uint32_t c = 0; c < chunks_.size(); ++c) {
      if (!chunks_[c].storage) continue;
      Storage& s = *chunks_[c].storage;
      for (uint32_t w = 0; w < kWords; ++w) {
        for (uint64_t bits = s.used[w]; bits != 0; bits &= bits - 1) {
          uint32_t offset = w * 64 + static_cast<uint32_t>(__builtin_ctzll(bits));
          fn(c * kChunkSlots + offset, s.slots[offset]);
        }
      }
    }
  }

 private:
  static constexpr uint32_t kWords = kChunkSlots / 64;

  struct Storage {
    T slots[kChunkSlots];
    uint64_t used[kWords] = {};  // bit per slot: allocated
  };
  struct Chunk {
    std::unique_ptr<Storage> storage;  // null while the chunk holds no records
    uint32_t live = 0;
    uint32_t nextGeneration = 0;  // survives the storage: generations never repeat per slot
  };

  uint32_t chunkWithRoom() {
    if (!withRoom_.empty()) return *withRoom_.begin();
    if (chunks_.size() >= std::numeric_limits<uint32_t>::max() / kChunkSlots) {
      throw std::length_error("refstore::gc::Slab: out of 32-bit slot numbers");
    }
    uint32_t c = static_cast<uint32_t>(chunks_.size());
    chunks_.emplace_back();
    withRoom_.insert(c);  // if this throws, the new chunk is merely never used
    return c;
  }

  std::unique_ptr<Storage> takeStorage() {
    if (spare_) return std::move(spare_);  // its bitmap is clear: all its slots were freed
    return std::unique_ptr<Storage>(new Storage);
  }

  static uint32_t firstFree(const Storage& s) {
    for (uint32_t w = 0;; ++w) {  // the chunk has room, so some word has a clear bit
      if (~s.used[w] != 0) return w * 64 + static_cast<uint32_t>(__builtin_ctzll(~s.used[w]));
    }
  }

  std::vector<Chunk> chunks_;
  std::set<uint32_t> withRoom_;  // chunks neither full nor retired, lowest first
  std::unique_ptr<Storage> spare_;
  size_t size_ = 0;
};

}  // namespace refstore::gc

#endif  // REFSTORE_GC_SLAB_H_
