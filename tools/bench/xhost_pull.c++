// pull_1GiB_vs_raw_tcp, and pull throughput by size: host 0 owns a value (made in place); host 1
// restores a token of it and views it. That first view makes host 1's daemon pull the bytes
// over host 0's data port into its own shared memory and check them against the XXH3-128, once.
// Timed from restore to the View in hand (the restore's round trips, host 1 -> host 0 over the
// peer connection, are part of it; at 1 MiB and more they are a small part). Between
// repetitions host 1 drops its Ref and frees its copy, so every sample is a first read.
//
// Baselines on the same link, interleaved with the pulls: refbench's raw TCP copy of the same
// bytes from host 0 to a receiver on host 1 (raw_tcp.h: a new connection per copy, as
// each pull opens one; no hashing), and at the largest size iperf3 (one run per round).
#include <math.h>
#include <string.h>
#include <unistd.h>

#include <stdexcept>

#include "tools/bench/bytes.h"
#include "tools/bench/raw_tcp.h"
#include "tools/bench/timing.h"
#include "tools/bench/xhost.h"

namespace refbench {

double timePull(Xhost& x, const refstore::Ref& owned, uint64_t seed) {
  std::string token = owned.share(60, 1);
  double start = now(), seconds;
  {
    refstore::Ref ref = x.on(1).restore(token);
    refstore::View view = ref.view();
    seconds = now() - start;
    checkValue(view.data(), view.size(), seed, "pull");
  }
  x.waitNoProxies(1);
  return seconds;
}

void xhostPull(Xhost& x) {
  std::vector<uint64_t> sizes = x.ctx.quick() ? std::vector<uint64_t>{MiB, 16 * MiB, 256 * MiB}
                                              : sizeRange(MiB, GiB, 4);
  uint64_t largest = sizes.back();
  WarmBuffer source(largest);
  fillPattern(source.data(), largest, 31);
  RawTcpCopy raw(x.link(), /*toHost=*/1, /*readEveryByte=*/false);

  std::vector<std::string> columns = {"size_bytes", "size"};
  for (auto prefix: {"pull_ms", "raw_tcp_ms", "iperf3_ms"}) {
    for (auto& c: Table::summaryColumns(prefix)) columns.push_back(c);
  }
  for (auto c: {"pull_gbps", "raw_tcp_gbps", "iperf3_gbps", "pull_vs_raw_tcp"}) {
    columns.push_back(c);
  }
  Table& table = x.ctx.report.table("xhost_pull", columns);

  for (uint64_t size: sizes) {
    refstore::Ref owned = x.makeValue(0, size, 31);
    auto once = [&](const std::function<void()>& body) {
      // Small pulls take a millisecond or two: a sample is the median of a block of them.
      return size <= 4 * MiB ? blockMedian(8, body) : [&]() {
        double start = now();
        body();
        return now() - start;
      }();
    };
    auto pull = [&]() {
      // Small pulls take a millisecond or two: a sample is the median of a block of them.
      std::vector<double> block;
      for (int i = 0; i < (size <= 4 * MiB ? 8 : 1); i++) block.push_back(timePull(x, owned, 31));
      return summarize(block).median;
    };
    auto rawCopy = [&]() {
      return once([&]() {
        if (raw.copy(/*fromHost=*/0, source.data(), size) != size) {
          throw std::runtime_error("raw TCP copy: short");
        }
      });
    };
    std::vector<std::function<double()>> variants = {pull, rawCopy};
    bool withIperf = size == largest && access("/usr/bin/iperf3", X_OK) == 0;
    if (withIperf) {
      variants.push_back([&]() {
        double rate = RawTcpCopy::iperf3(x.link(), 0, 1, size);
        return rate > 0 ? size / rate : 0.0;
      });
    }
    auto samples = interleave(warmupFor(x.ctx, size), repsFor(x.ctx, size), variants);
    Summary pulled = summarize(samples[0]), copied = summarize(samples[1]);
    // Not measured (below the largest size, or no iperf3): null in the JSON, NaN in the CSV.
    Summary iperf = withIperf ? summarize(samples[2]) : Summary{NAN, NAN, NAN, NAN, NAN, 0};
    std::vector<Value> row = {size, sizeName(size)};
    Table::appendSummary(row, pulled, 1e3);
    Table::appendSummary(row, copied, 1e3);
    Table::appendSummary(row, iperf, 1e3);
    auto gbps = [&](const Summary& s) { return size / s.median * 1e-9; };  // NaN stays NaN
    row.push_back(gbps(pulled));
    row.push_back(gbps(copied));
    row.push_back(gbps(iperf));
    double ratio = copied.median / pulled.median;
    row.push_back(ratio);
    table.add(row);
    if (size == largest) {
      std::string label = sizeName(size);
      x.ctx.report.set("pull_" + label + "_vs_raw_tcp", ratio);
      x.ctx.report.set("pull_" + label + "_ms", pulled.median * 1e3);
      x.ctx.report.set("pull_" + label + "_raw_tcp_ms", copied.median * 1e3);
      if (withIperf) x.ctx.report.set("pull_" + label + "_vs_iperf3", iperf.median / pulled.median);
    }
    x.ctx.progress("xhost pull %s: %.1f ms (%.2f GB/s), raw TCP %.1f ms: %.2f", sizeName(size).c_str(),
                   pulled.median * 1e3, gbps(pulled), copied.median * 1e3, ratio);
  }
}

}  // namespace refbench
