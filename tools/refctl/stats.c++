// refctl stats: the daemon's counters.
#include <stdio.h>

#include <vector>

#include "tools/refctl/command.h"
#include "tools/refctl/format.h"

namespace refstore::tools {

namespace {

enum class Kind { COUNT, BYTES, MILLIS, MONO_MICROS };

struct Field {
  const char* key;  // in JSON and raw output
  Kind kind;
  uint64_t value;
};

std::vector<Field> fieldsOf(const Stats& s) {
  // `clients` includes this refctl connection.
  return {
      {"objects", Kind::COUNT, s.objects},
      {"bytes_used", Kind::BYTES, s.bytesUsed},
      {"capacity", Kind::BYTES, s.capacity},
      {"clients", Kind::COUNT, s.clients},
      {"segments", Kind::COUNT, s.segments},
      {"segment_bytes", Kind::BYTES, s.segmentBytes},
      {"holders", Kind::COUNT, s.holders},
      {"tokens", Kind::COUNT, s.tokens},
      {"pinned_dead", Kind::COUNT, s.pinnedDead},
      {"creating", Kind::COUNT, s.creating},
      {"sealed", Kind::COUNT, s.sealed},
      {"uptime_ms", Kind::MILLIS, s.uptimeMs},
      {"puts_total", Kind::COUNT, s.putsTotal},
      {"reclaimed_total", Kind::COUNT, s.reclaimedTotal},
      {"promised", Kind::COUNT, s.promised},
      {"failed", Kind::COUNT, s.failed},
      {"names", Kind::COUNT, s.names},
      {"bytes_in_memory", Kind::BYTES, s.bytesUsed},
      {"spilled", Kind::COUNT, s.spilled},
      {"bytes_spilled", Kind::BYTES, s.spilledBytes},
      {"spill_files", Kind::COUNT, s.spillFiles},
      {"spills_total", Kind::COUNT, s.spillsTotal},
      {"spilled_bytes_total", Kind::BYTES, s.spilledBytesTotal},
      {"restores_total", Kind::COUNT, s.restoresTotal},
      {"restored_bytes_total", Kind::BYTES, s.restoredBytesTotal},
      {"spill_failures_total", Kind::COUNT, s.spillFailuresTotal},
      {"file_backed_bytes", Kind::BYTES, s.fileBackedBytes},
      {"queue_length", Kind::COUNT, s.queueLength},
      {"oldest_waiter_ms", Kind::MILLIS, s.oldestWaiterMs},
      {"background_hashes_total", Kind::COUNT, s.backgroundHashesTotal},
      {"last_reclaim_mono_us", Kind::MONO_MICROS, s.lastReclaimMonoUs},
      {"proxies", Kind::COUNT, s.proxies},
      {"proxy_bytes", Kind::BYTES, s.proxyBytes},
      {"remote_holders", Kind::COUNT, s.remoteHolders},
      {"detached_holders", Kind::COUNT, s.detachedHolders},
      {"peers", Kind::COUNT, s.peers},
      {"pulls_in_flight", Kind::COUNT, s.pullsInFlight},
      {"bytes_pulled_total", Kind::BYTES, s.bytesPulledTotal},
      {"bytes_served_total", Kind::BYTES, s.bytesServedTotal},
      {"pulls_total", Kind::COUNT, s.pullsTotal},
      {"owner_lost", Kind::COUNT, s.ownerLost},
      {"prefetches_waiting", Kind::COUNT, s.prefetchesWaiting},
      {"bytes_relayed_total", Kind::BYTES, s.bytesRelayedTotal},
  };
}

class StatsCommand final: public Command {
 public:
  explicit StatsCommand(Globals& globals): globals(globals) {}

  kj::MainFunc getMain() override {
    kj::MainBuilder builder(globals.context, "refctl stats",
                            "Print the daemon's counters: on a terminal with sizes and times "
                            "for people, otherwise (or with --bytes) in bytes and milliseconds.");
    output.addTo(builder, "One JSON object (with --watch: one per line).");
    watch.addTo(builder);
    return builder.callAfterParsing(KJ_BIND_METHOD(*this, run)).build();
  }

 private:
  kj::MainBuilder::Validity run() {
    return globals.guarded([&]() {
      Client client = globals.connect();
      watch.repeat("refctl stats", output, [&]() { print(client.stats()); });
    });
  }

  void print(const Stats& stats) {
    auto fields = fieldsOf(stats);
    if (output.json) {
      printf("{");
      for (size_t i = 0; i < fields.size(); i++) {
        printf("%s\"%s\": %llu", i ? ", " : "", fields[i].key,
               (unsigned long long)fields[i].value);
      }
      printf("}\n");
      return;
    }
    if (!output.human()) {
      for (auto& field: fields) {
        printf("%-16s %llu\n", field.key, (unsigned long long)field.value);
      }
      return;
    }
    for (auto& field: fields) {
      std::string key = field.key, value;
      switch (field.kind) {
        case Kind::COUNT: value = std::to_string(field.value); break;
        case Kind::BYTES: value = formatBytes(field.value); break;
        case Kind::MILLIS:
          key = key.substr(0, key.size() - 3);  // without "_ms": the value carries its unit
          value = formatMillis(field.value);
          break;
        case Kind::MONO_MICROS: continue;  // a clock reading, for programs (see the schema)
      }
      if (key == "bytes_in_memory") continue;  // the same figure as bytes_used
      printf("%-24s %s\n", key.c_str(), value.c_str());
    }
  }

  Globals& globals;
  OutputOptions output;
  WatchOptions watch;
};

}  // namespace

std::unique_ptr<Command> newStatsCommand(Globals& globals) {
  return std::make_unique<StatsCommand>(globals);
}

}  // namespace refstore::tools
