// SlotIndex: finds a record's Slab slot from its 64-bit key, at 5-11 bytes per record.
//
// An open-addressing hash table (linear probing, backward-shift deletion, no tombstones) whose
// buckets hold only a slot number. Keys are not stored: the caller passes `keyOf(slot)`, which
// reads the key from the record itself. Compared with std::unordered_map<uint64_t, uint32_t>
// (a 24-byte node rounded up to 32 by malloc, plus a bucket pointer) this saves ~30 bytes per
// gc object, which is what the daemon's memory budget per object is about.
//
// Keys are hashed with Fibonacci hashing (multiply by 2^64/phi, keep the top bits), which
// spreads the sequential ids gc mints evenly over the buckets. The table doubles above 3/4 full
// (so a growing table is 3/8 to 3/4 full: 5.3-10.7 bytes per record) and halves below 1/8, so
// memory follows the live count (up to 32 bytes per record just before it shrinks).
//
// Records whose key is wider than 64 bits (a proxy's 128-bit id) are indexed by a 64-bit hash
// of it, which need not be unique: findIf tells them apart by looking at the record, and
// eraseSlot removes one by its slot. For those, `keyOf` everywhere returns a record's hash.
#pragma once

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <new>
#include <optional>
#include <utility>
#include <vector>

namespace refstore::gc {

class SlotIndex {
 public:
  // The slot whose record has `key`, if any. keyOf: uint64_t(uint32_t slot).
  template <typename KeyOf>
  std::optional<uint32_t> find(uint64_t key, const KeyOf& keyOf) const {
    return findIf(key, [&](uint32_t slot) { return keyOf(slot) == key; });
  }

  // The slot among those whose records hash to `hash` for which `matches(slot)` is true, if
  // any. matches: bool(uint32_t slot).
  template <typename Matches>
  std::optional<uint32_t> findIf(uint64_t hash, const Matches& matches) const {
    if (size_ == 0) return std::nullopt;
    for (size_t i = home(hash);; i = next(i)) {
      uint32_t b = buckets_[i];
      if (b == kEmpty) return std::nullopt;
      if (matches(b - 1)) return b - 1;
    }
  }

  // Adds `key` -> `slot`; `key` must not be present (unless it is a hash: see above), nor
  // `slot`. May throw std::bad_alloc when growing, in which case nothing changed.
  template <typename KeyOf>
  void insert(uint64_t key, uint32_t slot, const KeyOf& keyOf) {
    if ((size_ + 1) * 4 > buckets_.size() * 3) {
      rehash(buckets_.empty() ? kMinBuckets : buckets_.size() * 2, keyOf);
    }
    place(key, slot);
    ++size_;
  }

  // Removes `key`, which must be present. Never throws (shrinking is skipped if it cannot
  // allocate), so it is safe on reclamation paths.
  template <typename KeyOf>
  void erase(uint64_t key, const KeyOf& keyOf) {
    size_t hole = home(key);
    while (keyOf(buckets_[hole] - 1) != key) hole = next(hole);
    removeAt(hole, keyOf);
  }

  // Removes `slot`, which must be present and whose record hashes to `hash`. Never throws.
  template <typename KeyOf>
  void eraseSlot(uint64_t hash, uint32_t slot, const KeyOf& keyOf) {
    size_t hole = home(hash);
    while (buckets_[hole] != slot + 1) hole = next(hole);
    removeAt(hole, keyOf);
  }

  size_t size() const { return size_; }

 private:
  static constexpr uint32_t kEmpty = 0;  // buckets hold slot + 1
  static constexpr size_t kMinBuckets = 64;

  template <typename KeyOf>
  void removeAt(size_t hole, const KeyOf& keyOf) {
    // Backward shift: pull later members of the probe run into the hole, so lookups never need
    // tombstones. An entry may move to the hole only if its home is not cyclically in
    // (hole, j] -- otherwise the move would put it before its home.
    for (size_t j = next(hole); buckets_[j] != kEmpty; j = next(j)) {
      size_t h = home(keyOf(buckets_[j] - 1));
      bool stays = hole < j ? (hole < h && h <= j) : (hole < h || h <= j);
      if (!stays) {
        buckets_[hole] = buckets_[j];
        hole = j;
      }
    }
    buckets_[hole] = kEmpty;
    --size_;
    if (buckets_.size() > kMinBuckets && size_ * 8 < buckets_.size()) {
      try {
        rehash(buckets_.size() / 2, keyOf);
      } catch (const std::bad_alloc&) {
        // Keep the larger table: correct, only less compact.
      }
    }
  }

  size_t home(uint64_t key) const {
    return static_cast<size_t>((key * 0x9E3779B97F4A7C15ull) >> shift_);
  }
  size_t next(size_t i) const { return (i + 1) & (buckets_.size() - 1); }

  void place(uint64_t key, uint32_t slot) {
    size_t i = home(key);
    while (buckets_[i] != kEmpty) i = next(i);
    buckets_[i] = slot + 1;
  }

  template <typename KeyOf>
  void rehash(size_t count, const KeyOf& keyOf) {
    assert((count & (count - 1)) == 0 && count * 3 >= size_ * 4);
    std::vector<uint32_t> old(count, kEmpty);  // the only allocation: a throw changes nothing
    old.swap(buckets_);
    shift_ = 64 - static_cast<unsigned>(__builtin_ctzll(count));
    for (uint32_t b : old) {
      if (b != kEmpty) place(keyOf(b - 1), b - 1);
    }
  }

  std::vector<uint32_t> buckets_;  // size 0 or a power of two
  unsigned shift_ = 64;
  size_t size_ = 0;
};

}  // namespace refstore::gc
