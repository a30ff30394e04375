#include "server/metrics/store_figures.h"

#include <capnp/message.h>

namespace refstore::server::metrics {

namespace {

// Where a value's bytes are (refstore_value_bytes{location}).
const Label kSharedMemory[] = {{"location", "shared_memory"}};
const Label kFileBacked[] = {{"location", "file_backed"}};
const Label kSpilled[] = {{"location", "spilled"}};

// Objects by state (refstore_objects{state}); the states of ObjectState in the schema.
const Label kCreating[] = {{"state", "creating"}};
const Label kSealed[] = {{"state", "sealed"}};
const Label kPromised[] = {{"state", "promised"}};
const Label kFailed[] = {{"state", "failed"}};
const Label kSpilledState[] = {{"state", "spilled"}};
const Label kRemote[] = {{"state", "remote"}};

constexpr const char* kObjectsHelp =
    "Objects that exist (including dead ones a View still pins), by state: creating (being "
    "written), sealed (readable, in memory or file-backed), promised, failed, spilled (bytes on "
    "disk), remote (another host owns the bytes).";
constexpr const char* kValueBytesHelp =
    "Bytes of values by where they are: shared_memory (allocated in segments), file_backed "
    "(values larger than memory, mapped from files), spilled (moved to the spill directory).";

class StoreFigures {
 public:
  StoreFigures(Registry& registry, StatsSource fill)
      : fill(kj::mv(fill)),
        uptime(registry.gauge("refstore_uptime_seconds", "Time since refstored started.")),
        capacity(registry.gauge("refstore_memory_capacity_bytes",
                                "Shared-memory capacity (--memory).")),
        sharedMemoryBytes(registry.gauge("refstore_value_bytes", kValueBytesHelp, kSharedMemory)),
        fileBackedBytes(registry.gauge("refstore_value_bytes", kValueBytesHelp, kFileBacked)),
        spilledBytes(registry.gauge("refstore_value_bytes", kValueBytesHelp, kSpilled)),
        segments(registry.gauge("refstore_segments", "Shared-memory segments mapped.")),
        segmentBytes(registry.gauge("refstore_segment_bytes",
                                    "Shared memory reserved in segments (at least what values "
                                    "use).")),
        creating(registry.gauge("refstore_objects", kObjectsHelp, kCreating)),
        sealed(registry.gauge("refstore_objects", kObjectsHelp, kSealed)),
        promised(registry.gauge("refstore_objects", kObjectsHelp, kPromised)),
        failed(registry.gauge("refstore_objects", kObjectsHelp, kFailed)),
        spilled(registry.gauge("refstore_objects", kObjectsHelp, kSpilledState)),
        remote(registry.gauge("refstore_objects", kObjectsHelp, kRemote)),
        deadPinned(registry.gauge("refstore_objects_dead_pinned",
                                  "Objects with no references left, kept only until their last "
                                  "View is dropped.")),
        holders(registry.gauge("refstore_holders",
                               "Live Ref capabilities (holders) across all objects.")),
        tokens(registry.gauge("refstore_tokens", "Live share tokens.")),
        names(registry.gauge("refstore_names", "Name pins.")),
        clients(registry.gauge("refstore_clients", "Open client connections.")),
        puts(registry.counter("refstore_puts_total",
                              "Values given memory since start (put, putMany, create, and "
                              "fulfilled promises).")),
        reclaims(registry.counter("refstore_reclaims_total",
                                  "Objects freed since start (their last reference was "
                                  "dropped).")),
        spills(registry.counter("refstore_spills_total", "Values spilled to disk since start.")),
        spillBytes(registry.counter("refstore_spilled_bytes_total",
                                    "Bytes spilled to disk since start.")),
        restores(registry.counter("refstore_restores_total",
                                  "Spilled values brought back into memory since start.")),
        restoreBytes(registry.counter("refstore_restored_bytes_total",
                                      "Bytes brought back from disk since start.")),
        spillFailures(registry.counter("refstore_spill_failures_total",
                                       "Spills that failed (e.g. a full disk); the value stayed "
                                       "in memory.")),
        spillFiles(registry.gauge("refstore_spill_files", "Files in the spill directory.")),
        queueLength(registry.gauge("refstore_admission_queue_length",
                                   "Requests waiting for memory.")),
        oldestWait(registry.gauge("refstore_admission_oldest_wait_seconds",
                                  "How long the first request waiting for memory has waited (0 "
                                  "when none waits).")),
        backgroundHashes(registry.counter("refstore_background_hashes_total",
                                          "Values over 1 MiB hashed after sealing, since "
                                          "start.")) {}

  void refresh() {
    capnp::MallocMessageBuilder message;
    auto builder = message.initRoot<proto::Stats>();
    fill(builder);
    auto stats = builder.asReader();
    uptime.set(stats.getUptimeMs() / 1e3);
    capacity.set(stats.getCapacity());
    sharedMemoryBytes.set(stats.getBytesUsed());
    fileBackedBytes.set(stats.getFileBackedBytes());
    spilledBytes.set(stats.getSpilledBytes());
    segments.set(stats.getSegments());
    segmentBytes.set(stats.getSegmentBytes());
    creating.set(stats.getCreating());
    sealed.set(stats.getSealed());
    promised.set(stats.getPromised());
    failed.set(stats.getFailed());
    spilled.set(stats.getSpilled());
    // Stats counts every object but lists only the local states: the rest are remote.
    uint64_t local = stats.getCreating() + stats.getSealed() + stats.getPromised() +
                     stats.getFailed() + stats.getSpilled();
    remote.set(stats.getObjects() > local ? stats.getObjects() - local : 0);
    deadPinned.set(stats.getPinnedDead());
    holders.set(stats.getHolders());
    tokens.set(stats.getTokens());
    names.set(stats.getNames());
    clients.set(stats.getClients());
    puts.set(stats.getPutsTotal());
    reclaims.set(stats.getReclaimedTotal());
    spills.set(stats.getSpillsTotal());
    spillBytes.set(stats.getSpilledBytesTotal());
    restores.set(stats.getRestoresTotal());
    restoreBytes.set(stats.getRestoredBytesTotal());
    spillFailures.set(stats.getSpillFailuresTotal());
    spillFiles.set(stats.getSpillFiles());
    queueLength.set(stats.getQueueLength());
    oldestWait.set(stats.getOldestWaiterMs() / 1e3);
    backgroundHashes.set(stats.getBackgroundHashesTotal());
  }

 private:
  StatsSource fill;
  Gauge &uptime, &capacity, &sharedMemoryBytes, &fileBackedBytes, &spilledBytes, &segments,
      &segmentBytes, &creating, &sealed, &promised, &failed, &spilled, &remote, &deadPinned,
      &holders, &tokens, &names, &clients;
  Counter &puts, &reclaims, &spills, &spillBytes, &restores, &restoreBytes, &spillFailures;
  Gauge &spillFiles, &queueLength, &oldestWait;
  Counter& backgroundHashes;
};

}  // namespace

void registerStoreFigures(Registry& registry, StatsSource fill, kj::StringPtr version) {
  Label versionLabel[] = {{"version", version}};
  registry.gauge("refstore_build_info", "Always 1; the label says which refstored this is.",
                 versionLabel)
      .set(1);
  auto figures = kj::heap<StoreFigures>(registry, kj::mv(fill));
  registry.onCollect([figures = kj::mv(figures)]() mutable { figures->refresh(); });
}

}  // namespace refstore::server::metrics
