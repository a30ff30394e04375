// Clocks and summaries. Every figure refbench reports is a median over repetitions, with its
// spread (quartiles and min/max), because this machine is shared and noisy: single samples and
// means are dominated by whoever else is running.
#pragma once

#include <cstddef>
#include <functional>
#include <vector>

namespace refbench {

// CLOCK_MONOTONIC in seconds: comparable across processes on this host.
double now();

struct Summary {
  double median = 0, p25 = 0, p75 = 0, min = 0, max = 0;
  size_t n = 0;
};
Summary summarize(std::vector<double> samples);

// Interleaved repetitions of competing variants (refstore and its baselines): every round runs
// each variant once, in a freshly shuffled order, and the first `warmup` rounds are discarded.
// Shuffling (rather than rotating a fixed cycle) varies what runs just before each variant:
// a variant that always followed another refstore variant would always find the daemon still
// busy-polling and be spared its ~0.1 ms wake-up. Background load on this shared machine drifts over
// seconds; interleaving makes the drift hit every variant alike, so their ratio stays fair.
// Each variant returns the seconds it measured itself (leaving set-up and clean-up out).
// Returns samples[variant][rep].
std::vector<std::vector<double>> interleave(int warmup, int reps,
                                            const std::vector<std::function<double()>>& variants);

// Median seconds of `calls` back-to-back calls of a fast operation (one sample per call).
double blockMedian(int calls, const std::function<void()>& once);

}  // namespace refbench
