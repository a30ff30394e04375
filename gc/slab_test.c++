// Unit tests for gc/slab.h (Slab) and gc/slot_index.h (SlotIndex), the two containers behind
// ObjectTable's per-object memory budget.

#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <unordered_map>
#include <utility>
#include <vector>

#include "gc/slab.h"
#include "gc/slot_index.h"

using namespace refstore::gc;

namespace {

struct Record {
  uint64_t key = 0;
  uint64_t payload = 0;
};

// A small chunk size, so tests cross chunk boundaries with few records.
using SmallSlab = Slab<Record, 64>;

}  // namespace

TEST_CASE("Slab: allocated records are found by slot and stay put until freed") {
  SmallSlab slab;
  std::vector<std::pair<uint32_t, Record*>> made;
  for (uint64_t i = 0; i < 200; ++i) {
    auto a = slab.allocate();
    CHECK(a.value->key == 0);  // fresh
    a.value->key = i;
    made.emplace_back(a.slot, a.value);
  }
  CHECK(slab.size() == 200);
  std::set<uint32_t> slots;
  for (uint64_t i = 0; i < made.size(); ++i) {
    CHECK(slots.insert(made[i].first).second);      // distinct slots
    CHECK(slab.get(made[i].first) == made[i].second);  // same address as when allocated
    CHECK(slab.get(made[i].first)->key == i);
  }
  slab.free(made[5].first);
  CHECK(slab.get(made[5].first) == nullptr);
  CHECK(slab.size() == 199);
  CHECK(slab.get(made[6].first) == made[6].second);
  CHECK(slab.get(1u << 30) == nullptr);  // far out of range
}

TEST_CASE("Slab: a freed slot is reused, lowest chunk with room first, with a new generation") {
  SmallSlab slab;
  std::vector<SmallSlab::Allocated> made;
  for (int i = 0; i < 130; ++i) made.push_back(slab.allocate());  // chunks 0, 1 full; 2 started
  slab.free(made[100].slot);  // chunk 1
  slab.free(made[3].slot);    // chunk 0
  auto again = slab.allocate();
  CHECK(again.slot == made[3].slot);  // lowest chunk first
  CHECK(again.generation != made[3].generation);
  auto next = slab.allocate();
  CHECK(next.slot == made[100].slot);
  CHECK(next.generation != made[100].generation);
}

TEST_CASE("Slab: (slot, generation) never repeats, even after the chunk's memory was released") {
  SmallSlab slab;
  std::set<std::pair<uint32_t, uint32_t>> seen;
  for (int round = 0; round < 50; ++round) {
    std::vector<uint32_t> slots;
    for (int i = 0; i < 150; ++i) {
      auto a = slab.allocate();
      CHECK(seen.emplace(a.slot, a.generation).second);
      slots.push_back(a.slot);
    }
    for (uint32_t s : slots) slab.free(s);  // every chunk empties: storage released or spared
    CHECK(slab.size() == 0);
  }
}

TEST_CASE("Slab: a slot whose generations run out is retired; the chunk's other slots go on") {
  Slab<Record, 64, /*kGenerationLimit=*/100> slab;
  std::set<std::pair<uint32_t, uint32_t>> seen;
  // One record at a time: the lowest usable slot is taken every time.
  for (int i = 0; i < 100; i++) {
    auto a = slab.allocate();
    CHECK(a.slot == 0);
    CHECK(a.generation == uint32_t(i));
    CHECK(seen.emplace(a.slot, a.generation).second);
    slab.free(a.slot);
  }
  auto next = slab.allocate();  // slot 0 is retired
  CHECK(next.slot == 1);
  CHECK(next.generation == 0);
  CHECK(slab.get(0) == nullptr);
  slab.free(next.slot);
  // Use up every slot of chunk 0: then the next record goes to chunk 1, and chunk 0, holding
  // nothing, has given its storage back (chunk 1 took it as the spare).
  int allocations = 101;
  for (;;) {
    auto a = slab.allocate();
    if (a.slot >= 64) {
      CHECK(a.slot == 64);
      CHECK(a.generation == 0);
      break;
    }
    CHECK(seen.emplace(a.slot, a.generation).second);
    slab.free(a.slot);
    allocations++;
  }
  CHECK(allocations == 64 * 100);
  CHECK(slab.chunksInMemory() == 1);
}

TEST_CASE("Slab: freeing the records of a chunk whose slots are all retired releases it") {
  Slab<Record, 64, /*kGenerationLimit=*/1> slab;  // every slot retires at its first use
  std::vector<uint32_t> slots;
  for (int i = 0; i < 64; i++) slots.push_back(slab.allocate().slot);  // chunk 0 full
  for (uint32_t s : slots) {
    slab.free(s);
    CHECK(slab.get(s) == nullptr);
  }
  CHECK(slab.size() == 0);
  auto a = slab.allocate();
  CHECK(a.slot == 64);  // chunk 0 can never be used again
  auto b = slab.allocate();
  CHECK(b.slot == 65);
  CHECK(slab.chunksInMemory() == 1);
}

TEST_CASE("Slab: memory follows the live count, keeping one spare chunk") {
  SmallSlab slab;
  std::vector<uint32_t> slots;
  for (int i = 0; i < 64 * 10; ++i) slots.push_back(slab.allocate().slot);
  CHECK(slab.chunksInMemory() == 10);
  // Free all but one record per chunk: no chunk is empty, nothing can be released.
  for (size_t i = 0; i < slots.size(); ++i) {
    if (i % 64 != 0) slab.free(slots[i]);
  }
  CHECK(slab.chunksInMemory() == 10);
  // Empty chunks 1..9: one stays as the spare, the other eight are released.
  for (size_t c = 1; c < 10; ++c) slab.free(slots[c * 64]);
  CHECK(slab.size() == 1);
  CHECK(slab.chunksInMemory() == 2);
  // Chunk 0 has room, so new records go there, not into fresh memory.
  for (int i = 0; i < 63; ++i) slab.allocate();
  CHECK(slab.chunksInMemory() == 2);
  // The next chunk reuses the spare's storage.
  slab.allocate();
  CHECK(slab.chunksInMemory() == 2);
  slab.allocate();
  CHECK(slab.chunksInMemory() == 2);
}

TEST_CASE("Slab: a record created and freed over and over neither allocates nor leaks chunks") {
  SmallSlab slab;
  for (int i = 0; i < 10000; ++i) {
    auto a = slab.allocate();
    slab.free(a.slot);
  }
  CHECK(slab.size() == 0);
  CHECK(slab.chunksInMemory() == 1);  // the spare
}

TEST_CASE("Slab: forEach visits exactly the allocated slots, in slot order") {
  SmallSlab slab;
  std::vector<uint32_t> slots;
  for (uint64_t i = 0; i < 300; ++i) {
    auto a = slab.allocate();
    a.value->key = i;
    slots.push_back(a.slot);
  }
  std::set<uint32_t> live(slots.begin(), slots.end());
  for (size_t i = 0; i < slots.size(); i += 3) {
    slab.free(slots[i]);
    live.erase(slots[i]);
  }
  std::vector<uint32_t> visited;
  slab.forEach([&](uint32_t slot, Record& r) {
    CHECK(slab.get(slot) == &r);
    visited.push_back(slot);
  });
  CHECK(visited == std::vector<uint32_t>(live.begin(), live.end()));
}

// ---------------------------------------------------------------------------------------------
// SlotIndex

namespace {

// Keys live in "records" (a vector indexed by slot), as they do in ObjectTable's slab.
struct KeyedRecords {
  std::vector<uint64_t> keyAt;
  uint64_t operator()(uint32_t slot) const { return keyAt.at(slot); }
};

}  // namespace

TEST_CASE("SlotIndex: finds what was inserted and nothing else") {
  SlotIndex index;
  KeyedRecords keys;
  CHECK_FALSE(index.find(1, keys).has_value());  // empty
  for (uint64_t k = 1; k <= 1000; ++k) {
    keys.keyAt.push_back(k);
    index.insert(k, static_cast<uint32_t>(k - 1), keys);
  }
  CHECK(index.size() == 1000);
  for (uint64_t k = 1; k <= 1000; ++k) CHECK(index.find(k, keys) == k - 1);
  CHECK_FALSE(index.find(0, keys).has_value());
  CHECK_FALSE(index.find(1001, keys).has_value());
}

TEST_CASE("SlotIndex: random inserts and erases agree with std::unordered_map through growth and "
          "shrinking") {
  // Random 64-bit keys collide in their home buckets often at 3/4 load, which exercises the
  // backward-shift deletion across wrapped probe runs; sequential keys exercise the common case.
  for (bool sequential : {false, true}) {
    std::mt19937_64 rng(sequential ? 7 : 11);
    SlotIndex index;
    KeyedRecords keys;
    std::unordered_map<uint64_t, uint32_t> want;
    std::vector<uint32_t> freeSlots;
    uint64_t nextKey = 1;
    for (int step = 0; step < 200000; ++step) {
      // Grow for the first half, shrink for the second.
      bool add = want.empty() || rng() % 100 < (step < 100000 ? 60u : 35u);
      if (add) {
        uint64_t key = sequential ? nextKey++ : rng() | 1;
        if (want.count(key)) continue;
        uint32_t slot;
        if (!freeSlots.empty()) {
          slot = freeSlots.back();
          freeSlots.pop_back();
          keys.keyAt[slot] = key;
        } else {
          slot = static_cast<uint32_t>(keys.keyAt.size());
          keys.keyAt.push_back(key);
        }
        index.insert(key, slot, keys);
        want.emplace(key, slot);
      } else {
        auto it = want.begin();
        std::advance(it, rng() % std::min<size_t>(want.size(), 16));
        index.erase(it->first, keys);
        freeSlots.push_back(it->second);
        want.erase(it);
      }
      if (step % 1000 == 0) {
        REQUIRE(index.size() == want.size());
        for (const auto& [key, slot] : want) REQUIRE(index.find(key, keys) == slot);
        for (int probe = 0; probe < 50; ++probe) {
          uint64_t absent = sequential ? nextKey + probe : (rng() & ~uint64_t{1});
          REQUIRE_FALSE(index.find(absent, keys).has_value());
        }
      }
    }
    for (const auto& [key, slot] : want) CHECK(index.find(key, keys) == slot);
  }
}

TEST_CASE("SlotIndex: records with colliding hashes are told apart by findIf, erased by slot") {
  // Wide keys (like a proxy's 128-bit id) indexed by a hash of them that is often the same:
  // here `id % 1024`, so that a probe run holds several records of the same hash. Random
  // inserts and erases through growth and shrinking, checked against std::unordered_map.
  std::mt19937_64 rng(13);
  SlotIndex index;
  std::vector<uint64_t> idAt;  // the record in each slot (its "wide key")
  auto hashOf = [](uint64_t id) { return id % 1024; };
  auto hashAt = [&](uint32_t slot) { return hashOf(idAt.at(slot)); };
  auto findId = [&](uint64_t id) {
    return index.findIf(hashOf(id), [&](uint32_t slot) { return idAt.at(slot) == id; });
  };
  std::unordered_map<uint64_t, uint32_t> want;
  std::vector<uint32_t> freeSlots;
  for (int step = 0; step < 40000; ++step) {
    bool add = want.empty() || rng() % 100 < (step < 20000 ? 60u : 35u);
    if (add) {
      uint64_t id = rng() % 100000 + 1;
      if (want.count(id)) continue;
      uint32_t slot;
      if (!freeSlots.empty()) {
        slot = freeSlots.back();
        freeSlots.pop_back();
        idAt[slot] = id;
      } else {
        slot = static_cast<uint32_t>(idAt.size());
        idAt.push_back(id);
      }
      index.insert(hashOf(id), slot, hashAt);
      want.emplace(id, slot);
    } else {
      auto it = want.begin();
      std::advance(it, rng() % std::min<size_t>(want.size(), 16));
      index.eraseSlot(hashOf(it->first), it->second, hashAt);
      freeSlots.push_back(it->second);
      want.erase(it);
    }
    if (step % 500 == 0) {
      REQUIRE(index.size() == want.size());
      for (const auto& [id, slot] : want) REQUIRE(findId(id) == slot);
      for (int probe = 0; probe < 20; ++probe) {
        uint64_t absent = 100001 + rng() % 1000;  // same hashes as present ids, never present
        REQUIRE_FALSE(findId(absent).has_value());
      }
    }
  }
  for (const auto& [id, slot] : want) CHECK(findId(id) == slot);
}
