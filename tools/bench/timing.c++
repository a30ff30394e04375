#include "tools/bench/timing.h"

#include <time.h>

#include <algorithm>
#include <numeric>
#include <random>

namespace refbench {

double now() {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

namespace {
// Linear interpolation between closest ranks (the usual "type 7" quantile).
double quantile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  double at = q * (sorted.size() - 1);
  size_t lo = size_t(at);
  size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (at - lo);
}
}  // namespace

Summary summarize(std::vector<double> samples) {
  Summary s;
  if (samples.empty()) return s;
  std::sort(samples.begin(), samples.end());
  s.n = samples.size();
  s.min = samples.front();
  s.max = samples.back();
  s.median = quantile(samples, 0.5);
  s.p25 = quantile(samples, 0.25);
  s.p75 = quantile(samples, 0.75);
  return s;
}

std::vector<std::vector<double>> interleave(int warmup, int reps,
                                            const std::vector<std::function<double()>>& variants) {
  size_t n = variants.size();
  std::vector<std::vector<double>> samples(n);
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::mt19937 random(12345);  // fixed: every run uses the same orders
  for (int round = -warmup; round < reps; round++) {
    std::shuffle(order.begin(), order.end(), random);
    for (size_t v: order) {
      double seconds = variants[v]();
      if (round >= 0) samples[v].push_back(seconds);
    }
  }
  return samples;
}

double blockMedian(int calls, const std::function<void()>& once) {
  std::vector<double> samples;
  samples.reserve(calls);
  for (int i = 0; i < calls; i++) {
    double start = now();
    once();
    samples.push_back(now() - start);
  }
  return summarize(samples).median;
}

}  // namespace refbench
