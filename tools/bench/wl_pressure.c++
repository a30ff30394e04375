// Workload 7: under memory pressure. A client writes 3x the daemon's --memory in 4 MiB values,
// holding every Ref (so the daemon must spill least-recently-used values to disk to admit the
// rest), then reads every value back through zero-copy views (restoring the spilled ones,
// hash-verified). The baseline is what spilling ultimately is: raw sequential write(2) of the
// same bytes to a file in the same directory, then pread(2) back, both through the page cache
// like the spill files (no fsync on either side).
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <string>

#include "client/cpp/refstore_client.h"
#include "tools/bench/bytes.h"
#include "tools/bench/timing.h"
#include "tools/bench/workloads.h"

namespace refbench {
namespace {

constexpr uint64_t kValue = 4 * MiB;

// Sequential write of `total` bytes in kValue chunks to a fresh file, then sequential read back
// (checksumming, as the refstore side does). Returns {write seconds, read seconds}.
std::pair<double, double> rawDisk(const std::string& path, const uint8_t* chunk, uint64_t total,
                                  uint8_t* readBuffer) {
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error("cannot create " + path + ": " + strerror(errno));
  double t0 = now();
  for (uint64_t done = 0; done < total; done += kValue) {
    for (uint64_t off = 0; off < kValue;) {
      ssize_t n = pwrite(fd, chunk + off, kValue - off, done + off);
      if (n <= 0) throw std::runtime_error(std::string("write: ") + strerror(errno));
      off += n;
    }
  }
  double t1 = now();
  uint64_t sum = 0;
  for (uint64_t done = 0; done < total; done += kValue) {
    for (uint64_t off = 0; off < kValue;) {
      ssize_t n = pread(fd, readBuffer + off, kValue - off, done + off);
      if (n <= 0) throw std::runtime_error(std::string("read: ") + strerror(errno));
      off += n;
    }
    sum += checksum(readBuffer, kValue);
  }
  double t2 = now();
  close(fd);
  unlink(path.c_str());
  if (sum == 0) throw std::runtime_error("impossible checksum");
  return {t1 - t0, t2 - t1};
}

}  // namespace

void runPressure(Context& ctx) {
  std::string memory = ctx.quick() ? "64M" : "256M";
  uint64_t capacity = (ctx.quick() ? 64 : 256) * MiB;
  uint64_t total = 3 * capacity;
  Refstored daemon(ctx.refstoredBinary, ctx.tmp, "pressure", memory, ctx.options.refstoredArgs);
  refstore::Client client = refstore::Client::connect(daemon.socket());
  WarmBuffer chunk(kValue), readBuffer(kValue);
  fillPattern(chunk.data(), kValue, 3);
  uint64_t expected = checksum(chunk.data(), kValue) * (total / kValue);

  std::vector<double> refWrite, refRead, diskWrite, diskRead;
  uint64_t spills = 0, restores = 0;
  int warmup = ctx.quick() ? 0 : 1, reps = ctx.quick() ? 2 : 3;
  interleave(warmup, reps, {
      [&]() {
        double t0 = now();
        std::vector<refstore::Ref> refs;
        for (uint64_t done = 0; done < total; done += kValue) {
          refstore::WriteBuffer buffer = client.create(kValue, 120);
          memcpy(buffer.data(), chunk.data(), kValue);
          refs.push_back(buffer.seal());
        }
        double t1 = now();
        uint64_t sum = 0;
        for (auto& ref: refs) {
          refstore::View view = ref.view(120);
          sum += checksum(view.data(), view.size());
        }
        double t2 = now();
        if (sum != expected) throw std::runtime_error("pressure: read back wrong bytes");
        refWrite.push_back(t1 - t0);
        refRead.push_back(t2 - t1);
        refstore::Stats stats = client.stats();
        spills = stats.spillsTotal;
        restores = stats.restoresTotal;
        return t2 - t0;
      },
      [&]() {
        auto times = rawDisk(ctx.tmp.path() + "/raw-disk.dat", chunk.data(), total,
                             readBuffer.data());
        diskWrite.push_back(times.first);
        diskRead.push_back(times.second);
        return times.first + times.second;
      },
  });
  for (auto* samples: {&refWrite, &refRead, &diskWrite, &diskRead}) {
    samples->erase(samples->begin(), samples->begin() + warmup);
  }
  Summary rw = summarize(refWrite), rr = summarize(refRead), dw = summarize(diskWrite),
          dr = summarize(diskRead);
  std::vector<std::string> columns = {"total_bytes", "memory_bytes"};
  for (auto prefix: {"refstore_write_s", "refstore_read_s", "disk_write_s", "disk_read_s"}) {
    for (auto& c: Table::summaryColumns(prefix)) columns.push_back(c);
  }
  columns.push_back("spills_total");
  columns.push_back("restores_total");
  Table& table = ctx.report.table("pressure", columns);
  std::vector<Value> row = {total, capacity};
  Table::appendSummary(row, rw);
  Table::appendSummary(row, rr);
  Table::appendSummary(row, dw);
  Table::appendSummary(row, dr);
  row.push_back(spills);
  row.push_back(restores);
  table.add(row);

  ctx.report.set("pressure_write_vs_disk", dw.median / rw.median);
  ctx.report.set("pressure_read_vs_disk", dr.median / rr.median);
  ctx.report.set("pressure_write_gbps", total / rw.median * 1e-9);
  ctx.report.set("pressure_read_gbps", total / rr.median * 1e-9);
  ctx.report.set("pressure_total_over_memory", 3.0);
}

}  // namespace refbench
