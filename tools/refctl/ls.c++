// refctl ls: live objects, who holds them, and a summary line.
#include <stdio.h>
#include <stdlib.h>

#include <algorithm>
#include <vector>

#include "tools/refctl/command.h"
#include "tools/refctl/format.h"

namespace refstore::tools {

namespace {

enum class SortKey { NONE, SIZE, AGE, HOLDERS };

std::string jsonIds(const std::vector<ObjectId>& ids) {
  std::string out = "[";
  for (size_t i = 0; i < ids.size(); i++) out += (i ? ", \"" : "\"") + ids[i].hex() + "\"";
  return out + "]";
}

class LsCommand final: public Command {
 public:
  explicit LsCommand(Globals& globals): globals(globals) {}

  kj::MainFunc getMain() override {
    kj::MainBuilder builder(globals.context, "refctl ls",
                            "List live objects and who holds them, then a summary line. On a "
                            "terminal sizes and ages are for people; otherwise (or with --bytes) "
                            "in bytes and milliseconds.");
    output.addTo(builder, "A JSON array, one entry per object (with --watch: one per line).");
    watch.addTo(builder);
    return builder
        .addOption({"leaks"}, KJ_BIND_METHOD(*this, setLeaks),
                   "Only objects kept alive solely by clients that have held them longer than "
                   "--threshold (no name, token or parent keeps them).")
        .addOptionWithArg({"threshold"}, KJ_BIND_METHOD(*this, setThreshold), "<seconds>",
                          "Age that makes a sole hold a suspected leak (default 300).")
        .addOptionWithArg({"sort"}, KJ_BIND_METHOD(*this, setSort), "size|age|holders",
                          "Largest, oldest or most held first (default: the daemon's order).")
        .addOptionWithArg({"limit"}, KJ_BIND_METHOD(*this, setLimit), "<n>",
                          "Show at most N objects (the summary still counts all).")
        .callAfterParsing(KJ_BIND_METHOD(*this, run))
        .build();
  }

 private:
  kj::MainBuilder::Validity setLeaks() {
    leaksOnly = true;
    return true;
  }
  kj::MainBuilder::Validity setThreshold(kj::StringPtr text) {
    char* end;
    double value = strtod(text.cStr(), &end);
    if (*end != '\0' || value < 0) return "threshold must be a non-negative number of seconds";
    leakThresholdMs = value * 1000;
    return true;
  }
  kj::MainBuilder::Validity setSort(kj::StringPtr text) {
    if (text == "size") {
      sortKey = SortKey::SIZE;
    } else if (text == "age") {
      sortKey = SortKey::AGE;
    } else if (text == "holders") {
      sortKey = SortKey::HOLDERS;
    } else {
      return "--sort expects size, age or holders";
    }
    return true;
  }
  kj::MainBuilder::Validity setLimit(kj::StringPtr text) {
    char* end;
    unsigned long long value = strtoull(text.cStr(), &end, 10);
    if (*end != '\0' || text.size() == 0 || text[0] == '-') return "--limit expects a number";
    limit = value;
    return true;
  }

  bool isSuspectedLeak(const ObjectListing& o) const {
    if (o.holders.empty() || o.tokens > 0 || !o.names.empty() || !o.parents.empty()) return false;
    for (auto& holder: o.holders) {
      if (holder.heldMs < leakThresholdMs) return false;
    }
    return true;
  }

  kj::MainBuilder::Validity run() {
    return globals.guarded([&]() {
      Client client = globals.connect();
      watch.repeat("refctl ls", output, [&]() { report(client); });
    });
  }

  void report(Client& client) {
    std::vector<ObjectListing> objects;
    for (auto& o: client.list()) {
      if (!leaksOnly || isSuspectedLeak(o)) objects.push_back(std::move(o));
    }
    auto order = [&](auto key) {
      std::stable_sort(objects.begin(), objects.end(),
                       [&](const ObjectListing& a, const ObjectListing& b) { return key(a) > key(b); });
    };
    switch (sortKey) {
      case SortKey::NONE: break;
      case SortKey::SIZE: order([](const ObjectListing& o) { return o.info.size; }); break;
      case SortKey::AGE: order([](const ObjectListing& o) { return o.ageMs; }); break;
      case SortKey::HOLDERS: order([](const ObjectListing& o) { return o.holderCount; }); break;
    }
    size_t shown = std::min<uint64_t>(objects.size(), limit);
    if (output.json) {
      printJson(objects, shown);
      return;
    }
    printTable(objects, shown);
    printSummary(client, objects, shown);
  }

  void printJson(const std::vector<ObjectListing>& objects, size_t shown) {
    printf("[");
    for (size_t i = 0; i < shown; i++) {
      auto& o = objects[i];
      printf("%s{\"id\": \"%s\", \"size\": %llu, \"state\": \"%s\", \"dead\": %s, "
             "\"holders\": [", i ? ", " : "", o.info.id.hex().c_str(),
             (unsigned long long)o.info.size, o.info.state.c_str(), o.dead ? "true" : "false");
      for (size_t h = 0; h < o.holders.size(); h++) {
        printf("%s{\"client\": %llu, \"label\": %s, \"pid\": %d, \"held_ms\": %llu}",
               h ? ", " : "", (unsigned long long)o.holders[h].clientId,
               jsonString(o.holders[h].label).c_str(), o.holders[h].pid,
               (unsigned long long)o.holders[h].heldMs);
      }
      printf("], \"tokens\": [");
      for (size_t t = 0; t < o.tokenExpiriesMs.size(); t++) {
        printf("%s{\"expires_in_ms\": %llu}", t ? ", " : "",
               (unsigned long long)o.tokenExpiriesMs[t]);
      }
      printf("], \"names\": [");
      for (size_t n = 0; n < o.names.size(); n++) {
        printf("%s%s", n ? ", " : "", jsonString(o.names[n]).c_str());
      }
      printf("], \"parents\": %s, \"children\": %s, \"pins\": %u, \"age_ms\": %llu}",
             jsonIds(o.parents).c_str(), jsonIds(o.children).c_str(), o.pins,
             (unsigned long long)o.ageMs);
    }
    printf("]\n");
  }

  void printTable(const std::vector<ObjectListing>& objects, size_t shown) {
    bool human = output.human();
    auto size = [&](uint64_t bytes) { return human ? formatBytes(bytes) : std::to_string(bytes); };
    auto age = [&](uint64_t ms) { return human ? formatMillis(ms) : std::to_string(ms) + "ms"; };
    printf("%-32s %10s %-9s %10s %6s %4s  %-24s %s\n", "ID", "SIZE", "STATE", "AGE", "TOKENS",
           "PINS", "NAMES", "HELD BY");
    for (size_t i = 0; i < shown; i++) {
      auto& o = objects[i];
      std::string heldBy, names;
      for (auto& h: o.holders) {
        if (!heldBy.empty()) heldBy += ", ";
        heldBy += (h.label.empty() ? "?" : h.label) + "[" + std::to_string(h.pid) + "] " +
                  age(h.heldMs);
      }
      for (auto& n: o.names) names += (names.empty() ? "" : ",") + n;
      if (!o.parents.empty()) {
        heldBy += (heldBy.empty() ? "" : ", ") + std::to_string(o.parents.size()) + " parent(s)";
      }
      printf("%-32s %10s %-9s %10s %6u %4u  %-24s %s\n", o.info.id.hex().c_str(),
             size(o.info.size).c_str(), o.dead ? "dead" : o.info.state.c_str(),
             age(o.ageMs).c_str(), o.tokens, o.pins, names.c_str(), heldBy.c_str());
    }
  }

  // "3 objects, 1.2 GiB, 18% of capacity, 0 spilled" (with --limit: "(2 shown)").
  void printSummary(Client& client, const std::vector<ObjectListing>& objects, size_t shown) {
    uint64_t bytes = 0, spilled = 0;
    for (auto& o: objects) {
      bytes += o.info.size;
      if (o.info.state == "spilled") spilled++;
    }
    std::string line = std::to_string(objects.size()) +
                       (leaksOnly ? " suspected leak" : " object") +
                       (objects.size() == 1 ? "" : "s");
    if (shown < objects.size()) line += " (" + std::to_string(shown) + " shown)";
    line += ", " + (output.human() ? formatBytes(bytes) : std::to_string(bytes) + " bytes");
    if (!leaksOnly) {
      // Of every object, so the daemon's own figure: shared memory in use against --memory.
      Stats stats = client.stats();
      line += ", " + formatShare(stats.bytesUsed, stats.capacity) + " of capacity";
    }
    line += ", " + std::to_string(spilled) + " spilled";
    printf("%s\n", line.c_str());
  }

  Globals& globals;
  OutputOptions output;
  WatchOptions watch;
  bool leaksOnly = false;
  uint64_t leakThresholdMs = 300000;
  SortKey sortKey = SortKey::NONE;
  uint64_t limit = UINT64_MAX;
};

}  // namespace

std::unique_ptr<Command> newLsCommand(Globals& globals) {
  return std::make_unique<LsCommand>(globals);
}

}  // namespace refstore::tools
