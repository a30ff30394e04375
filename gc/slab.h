// Slab<T>: dense, chunked storage for millions of small fixed-size records, with stable addresses
// and slot numbers that can stand in for pointers.
//
// Why not a node container (std::unordered_map and friends): every node is its own heap block,
// rounded up to a malloc size class, plus a next pointer and a bucket slot. At a million gc
// records that overhead was ~40% of the daemon's memory per object. A slab stores records back
// to back in chunks of kChunkSlots, so a record costs sizeof(T) plus 4 bytes of generation and
// two bits.
//
// - Addresses are stable: chunks never move, so a T* stays valid until its slot is freed.
// - Slots are numbered (uint32_t), which lets callers link records to each other with 4-byte
//   indexes instead of 8-byte pointers, and encode a slot in an id.
// - Each allocation also gets a *generation*, counted per slot: (slot, generation) never
//   repeats for the life of the slab, so ids built from it are never reused either. A slot
//   whose generations reach kGenerationLimit is retired (never handed out again; it costs
//   sizeof(T), once per 2^31 reuses of one slot). Generations stay below 2^31 by default,
//   which leaves callers the top bit of a 32-bit field for a flag.
// - Memory follows the live count: allocation fills the lowest-numbered chunk with room, so live
//   records gather at the front, and a chunk whose last record is freed gives its storage back
//   (one empty chunk's storage is kept as a spare, so a table that oscillates around a chunk
//   boundary does not allocate and free a chunk per call). Only the per-slot generations stay:
//   4 bytes per slot the slab ever had at once.
// - free() never throws, so it is safe on reclamation paths.
//
// Not thread-safe (gc is owned by one event-loop thread). T must be default-constructible; a
// freed slot's T is not destroyed until its chunk's storage is, so T should be trivial.
#ifndef REFSTORE_GC_SLAB_H_
#define REFSTORE_GC_SLAB_H_

#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <stdexcept>
#include <vector>

namespace refstore::gc {

template <typename T, uint32_t kChunkSlots = 4096, uint32_t kGenerationLimit = 1u << 31>
class Slab {
  static_assert(kChunkSlots % 64 == 0, "slot bitmaps are whole 64-bit words");

 public:
  static constexpr uint32_t kMaxGeneration = kGenerationLimit - 1;

  struct Allocated {
    uint32_t slot;
    uint32_t generation;  // <= kMaxGeneration
    T* value;             // freshly value-initialized
  };

  Slab() = default;
  Slab(const Slab&) = delete;
  Slab& operator=(const Slab&) = delete;

  // A free slot, holding a fresh T. May throw std::bad_alloc (then no record was allocated,
  // though a new, empty chunk may remain), or std::length_error when no 32-bit slot number is
  // left.
  Allocated allocate() {
    uint32_t c = chunkWithRoom();
    Chunk& chunk = chunks_[c];
    if (!chunk.storage) chunk.storage = takeStorage();
    Storage& s = *chunk.storage;
    uint32_t offset = firstUsable(s, chunk);
    s.used[offset / 64] |= bit(offset);
    s.slots[offset] = T();
    ++chunk.live;
    ++size_;
    uint32_t generation = chunk.generations[offset]++;
    if (chunk.generations[offset] == kGenerationLimit) {
      chunk.retired[offset / 64] |= bit(offset);  // this was the slot's last generation
    }
    if (!hasRoom(chunk)) roomBits_[c / 64] &= ~bit(c);
    return Allocated{c * kChunkSlots + offset, generation, &s.slots[offset]};
  }

  // Frees an allocated slot (precondition: get(slot) != null). Never throws.
  void free(uint32_t slot) noexcept {
    uint32_t c = slot / kChunkSlots, offset = slot % kChunkSlots;
    Chunk& chunk = chunks_[c];
    chunk.storage->used[offset / 64] &= ~bit(offset);
    --chunk.live;
    --size_;
    if ((chunk.retired[offset / 64] & bit(offset)) != 0) ++chunk.retiredFree;
    if (hasRoom(chunk)) {
      roomBits_[c / 64] |= bit(c);  // sized when the chunk was added: no allocation here
      if (c < lowestWithRoom_) lowestWithRoom_ = c;
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
    if ((s.used[offset / 64] & bit(offset)) == 0) return nullptr;
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
    visitFrom(0, [&](uint32_t slot, T& value) {
      fn(slot, value);
      return true;
    });
  }

  // Visits live slots numbered `start` or more, in slot order, while `fn(slot, value)` returns
  // true. Returns the slot at which `fn` returned false (not consumed), or kEnd if it visited
  // all of them. For paging through a slab without copying it.
  static constexpr uint64_t kEnd = UINT64_MAX;
  template <typename Fn>
  uint64_t visitFrom(uint64_t start, Fn&& fn) const {
    for (uint64_t c = start / kChunkSlots; c < chunks_.size(); ++c) {
      if (!chunks_[c].storage) continue;
      Storage& s = *chunks_[c].storage;
      for (uint32_t w = 0; w < kWords; ++w) {
        for (uint64_t bits = s.used[w]; bits != 0; bits &= bits - 1) {
          uint32_t offset = w * 64 + static_cast<uint32_t>(__builtin_ctzll(bits));
          uint64_t slot = c * kChunkSlots + offset;
          if (slot < start) continue;
          if (!fn(static_cast<uint32_t>(slot), s.slots[offset])) return slot;
        }
      }
    }
    return kEnd;
  }

 private:
  static constexpr uint32_t kWords = kChunkSlots / 64;
  static constexpr uint32_t kMaxChunks = std::numeric_limits<uint32_t>::max() / kChunkSlots;

  static constexpr uint64_t bit(uint32_t i) { return uint64_t{1} << (i % 64); }

  struct Storage {
    T slots[kChunkSlots];
    uint64_t used[kWords] = {};  // bit per slot: allocated
  };
  struct Chunk {
    std::unique_ptr<Storage> storage;  // null while the chunk holds no records
    // Per slot, the generation its next allocation gets. Kept when the storage goes, so that
    // generations never repeat.
    std::unique_ptr<uint32_t[]> generations;
    uint64_t retired[kWords] = {};  // bit per slot: its generations are used up
    uint32_t live = 0;              // allocated slots
    uint32_t retiredFree = 0;       // retired slots not allocated: never usable again
  };

  static bool hasRoom(const Chunk& chunk) { return chunk.live + chunk.retiredFree < kChunkSlots; }

  uint32_t chunkWithRoom() {
    for (size_t w = lowestWithRoom_ / 64; w < roomBits_.size(); ++w) {
      if (roomBits_[w] != 0) {
        lowestWithRoom_ = static_cast<uint32_t>(w * 64 + __builtin_ctzll(roomBits_[w]));
        return lowestWithRoom_;
      }
    }
    if (chunks_.size() >= kMaxChunks) {
      throw std::length_error("refstore::gc::Slab: out of 32-bit slot numbers");
    }
    // Every allocation a new chunk needs happens here, before anything refers to it.
    auto generations = std::make_unique<uint32_t[]>(kChunkSlots);  // zeroed
    if (chunks_.size() % 64 == 0) roomBits_.push_back(0);
    chunks_.emplace_back();
    uint32_t c = static_cast<uint32_t>(chunks_.size() - 1);
    chunks_[c].generations = std::move(generations);
    roomBits_[c / 64] |= bit(c);
    lowestWithRoom_ = c;
    return c;
  }

  std::unique_ptr<Storage> takeStorage() {
    if (spare_) return std::move(spare_);  // its bitmap is clear: all its slots were freed
    return std::unique_ptr<Storage>(new Storage);
  }

  // The first slot of `chunk` neither allocated nor retired (the chunk has room).
  static uint32_t firstUsable(const Storage& s, const Chunk& chunk) {
    for (uint32_t w = 0;; ++w) {
      uint64_t taken = s.used[w] | chunk.retired[w];
      if (~taken != 0) return w * 64 + static_cast<uint32_t>(__builtin_ctzll(~taken));
    }
  }

  std::vector<Chunk> chunks_;
  std::vector<uint64_t> roomBits_;  // bit per chunk: it has a usable free slot
  uint32_t lowestWithRoom_ = 0;     // no chunk below this one has room
  std::unique_ptr<Storage> spare_;
  size_t size_ = 0;
};

}  // namespace refstore::gc

#endif  // REFSTORE_GC_SLAB_H_
