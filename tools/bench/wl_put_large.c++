// Workload 1: large put. create + write in place + seal of 1 MiB .. 1 GiB (quick: .. 64 MiB),
// against memcpy of the same bytes between two warm private buffers.
//
// The application's value starts in a warm private buffer in both cases; refstore's put is
// create (one round trip; maps the segment the first time), memcpy into the shared memory it
// returned, and seal (one round trip; values over 1 MiB are hashed afterwards on the daemon's pool). The phases are
// timed separately too, so the table says where the time goes. Between repetitions the Ref is
// dropped and a stats() round trip makes sure the daemon has finished freeing it before the next
// put starts (the free is not part of a put).
#include <string.h>
#include <sys/resource.h>

#include "client/cpp/refstore_client.h"
#include "tools/bench/bytes.h"
#include "tools/bench/timing.h"
#include "tools/bench/workloads.h"

namespace refbench {
namespace {

// Minor page faults of this thread so far: a write into shared memory that is not yet mapped in
// this process faults once per 4 KiB page, which is what separates a put from a memcpy.
double minorFaults() {
  struct rusage usage;
  getrusage(RUSAGE_THREAD, &usage);
  return double(usage.ru_minflt);
}

}  // namespace

void runPutLarge(Context& ctx) {
  uint64_t largest = ctx.quick() ? 64 * MiB : GiB;
  WarmBuffer source(largest), destination(largest);
  fillPattern(source.data(), largest, 7);
  refstore::Client client = refstore::Client::connect(ctx.daemon->socket());

  std::vector<std::string> columns = {"size_bytes", "size"};
  for (auto prefix: {"memcpy_ms", "put_ms"}) {
    for (auto& c: Table::summaryColumns(prefix)) columns.push_back(c);
  }
  for (auto c: {"create_ms_median", "write_ms_median", "seal_ms_median",
                "write_page_faults_median", "memcpy_gbps_median",
                "put_gbps_median", "put_vs_memcpy"}) {
    columns.push_back(c);
  }
  Table& table = ctx.report.table("put_large", columns);

  double worst = 1e300;
  uint64_t worstSize = 0;
  double atLargest = 0;
  for (uint64_t size: sizeRange(MiB, largest, 4)) {
    // Phases of each put (warm-up rounds included until trimmed below).
    std::vector<double> create, write, seal, faults;
    int warmup = warmupFor(ctx, size);
    auto samples = interleave(warmup, repsFor(ctx, size), {
        [&]() {
          double t0 = now();
          memcpy(destination.data(), source.data(), size);
          return now() - t0;
        },
        [&]() {
          double t0 = now();
          refstore::WriteBuffer buffer = client.create(size);
          double t1 = now(), faultsBefore = minorFaults();
          memcpy(buffer.data(), source.data(), size);
          double t2 = now();
          faults.push_back(minorFaults() - faultsBefore);
          refstore::Ref ref = buffer.seal();
          double t3 = now();
          create.push_back(t1 - t0);
          write.push_back(t2 - t1);
          seal.push_back(t3 - t2);
          { refstore::Ref drop = std::move(ref); }
          client.stats();  // the daemon has processed the release (and freed the memory)
          return t3 - t0;
        },
    });
    auto& copy = samples[0];
    auto& total = samples[1];
    for (auto* phase: {&create, &write, &seal, &faults}) phase->erase(phase->begin(), phase->begin() + warmup);
    Summary copyS = summarize(copy), putS = summarize(total);
    double ratio = copyS.median / putS.median;
    std::vector<Value> row = {size, sizeName(size)};
    Table::appendSummary(row, copyS, 1e3);
    Table::appendSummary(row, putS, 1e3);
    row.push_back(summarize(create).median * 1e3);
    row.push_back(summarize(write).median * 1e3);
    row.push_back(summarize(seal).median * 1e3);
    row.push_back(summarize(faults).median);
    row.push_back(size / copyS.median * 1e-9);
    row.push_back(size / putS.median * 1e-9);
    row.push_back(ratio);
    table.add(row);
    if (ratio < worst) {
      worst = ratio;
      worstSize = size;
    }
    atLargest = ratio;
  }
  ctx.report.set("put_large_vs_memcpy", atLargest);
  ctx.report.set("put_large_largest_size", sizeName(largest));
  ctx.report.set("put_large_vs_memcpy_min", worst);
  ctx.report.set("put_large_vs_memcpy_min_size", sizeName(worstSize));
}

}  // namespace refbench
