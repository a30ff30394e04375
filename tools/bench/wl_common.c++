// Repetition policy shared by the workloads.
#include "tools/bench/timing.h"
#include "tools/bench/workloads.h"

namespace refbench {

int repsFor(const Context& ctx, uint64_t bytes) {
  // A 1 GiB repetition takes about a second; 3 of them give a median and keep a full run short.
  if (bytes >= GiB) return std::min(ctx.reps, 3);
  if (bytes >= 256 * MiB) return std::min(ctx.reps, 5);
  return ctx.reps;
}

int warmupFor(const Context& ctx, uint64_t bytes) {
  return bytes >= 256 * MiB ? 1 : ctx.warmup;
}

double sampleOnce(uint64_t bytes, const std::function<void()>& once) {
  if (bytes < MiB) return blockMedian(bytes < 64 * KiB ? 64 : 16, once);
  double start = now();
  once();
  return now() - start;
}

std::vector<double> toRates(const std::vector<double>& seconds, uint64_t bytes) {
  std::vector<double> out;
  for (double s: seconds) out.push_back(bytes / s);
  return out;
}

std::vector<uint64_t> sizeRange(uint64_t from, uint64_t to, uint64_t step) {
  std::vector<uint64_t> out;
  for (uint64_t size = from; size <= to; size *= step) out.push_back(size);
  return out;
}

}  // namespace refbench
