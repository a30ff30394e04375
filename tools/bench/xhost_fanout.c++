// xhost_fanout_4_readers: four `consumer` processes on host 1 read the same 64 MiB value owned
// by host 0, all at once (a token for four restores; each restores, views and reads every
// byte). A value crosses the link at most once per host that reads it: host 1's stats must show
// one transfer of the value's size however many readers wait. The key is that count (bytes
// pulled / value size, median over repetitions: 1 is right); the table also has the time until
// the last reader answers, against one reader alone (interleaved).
#include <stdexcept>

#include "tools/bench/bytes.h"
#include "tools/bench/timing.h"
#include "tools/bench/xhost.h"

namespace refbench {

void xhostFanout(Xhost& x) {
  const uint64_t size = 64 * MiB;
  const size_t readers = 4;
  refstore::Ref owned = x.makeValue(0, size, 61);
  uint64_t want = [&]() {
    refstore::View view = owned.view();
    return checksum(view.data(), size);
  }();
  std::vector<Child> consumers;
  for (size_t i = 0; i < readers; i++) {
    consumers.push_back(startConsumer(x, 1));
  }

  std::vector<double> transfers, pulls;  // per repetition of the four readers
  auto readAll = [&](size_t count) {
    std::string token = owned.share(60, count);
    refstore::Stats before = x.on(1).stats();
    double start = now();
    for (size_t i = 0; i < count; i++) consumers[i].send("refstore " + token);
    for (size_t i = 0; i < count; i++) {
      if (std::stoull(consumers[i].receive()) != want) {
        throw std::runtime_error("xhost fan-out: wrong checksum");
      }
    }
    double seconds = now() - start;
    refstore::Stats after = x.on(1).stats();
    if (count == readers) {
      transfers.push_back(double(after.bytesPulledTotal - before.bytesPulledTotal) / size);
      pulls.push_back(double(after.pullsTotal - before.pullsTotal));
    }
    x.waitNoProxies(1);
    return seconds;
  };
  auto samples = interleave(warmupFor(x.ctx, size), repsFor(x.ctx, size),
                            {[&]() { return readAll(readers); }, [&]() { return readAll(1); }});
  for (auto& consumer: consumers) consumer.send("");
  // Warm-up rounds added counts too: keep the measured ones (the last `reps`).
  size_t reps = samples[0].size();
  transfers.erase(transfers.begin(), transfers.end() - reps);
  pulls.erase(pulls.begin(), pulls.end() - reps);
  Summary four = summarize(samples[0]), one = summarize(samples[1]);
  Summary moved = summarize(transfers), pullCount = summarize(pulls);

  std::vector<std::string> columns = {"size_bytes", "readers"};
  for (auto& c: Table::summaryColumns("readers_ms")) columns.push_back(c);
  for (auto& c: Table::summaryColumns("one_reader_ms")) columns.push_back(c);
  for (auto c: {"transfers_median", "transfers_max", "pulls_median", "pulls_max"}) {
    columns.push_back(c);
  }
  Table& table = x.ctx.report.table("xhost_fanout", columns);
  std::vector<Value> row = {size, uint64_t(readers)};
  Table::appendSummary(row, four, 1e3);
  Table::appendSummary(row, one, 1e3);
  row.push_back(moved.median);
  row.push_back(moved.max);
  row.push_back(pullCount.median);
  row.push_back(pullCount.max);
  table.add(row);
  x.ctx.report.set("xhost_fanout_4_readers", moved.median);
  x.ctx.report.set("xhost_fanout_4_readers_max", moved.max);
  x.ctx.report.set("xhost_fanout_4_readers_ms", four.median * 1e3);
  x.ctx.report.set("xhost_fanout_1_reader_ms", one.median * 1e3);
  x.ctx.progress("xhost fan-out 64MiB to %zu readers: %.2f transfers (max %.2f), %.1f ms; "
                 "one reader %.1f ms", readers, moved.median, moved.max, four.median * 1e3,
                 one.median * 1e3);
}

}  // namespace refbench
