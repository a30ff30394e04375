// The workloads, one file each (wl_*.c++). Each measures refstore and its baselines in the same
// run, adds a table to the report and sets its headline keys (see BENCHMARKS.md).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "tools/bench/context.h"
#include "tools/bench/processes.h"

namespace refbench {

void runTransfer(Context& ctx);   // memcpy, raw Unix socket, loopback TCP by size
void runPutLarge(Context& ctx);   // 1. create + write in place + seal vs memcpy
void runView(Context& ctx);       // 2. view latency by size, vs echo; held-View reads
void runSmallOps(Context& ctx);   // 3. small put+get ops/s vs Redis, 1 and 8 clients, pipelined
void runHandoff(Context& ctx);    // 4. producer -> consumer process vs Redis and by-value RPC
void runPipeline(Context& ctx);   // 5. a = f(); b = f(); c = add(a, b), by ref vs by value
void runScale(Context& ctx);      // 6. put rate and daemon bytes per live object up to 1M
void runReclaim(Context& ctx);    // 6. last drop / SIGKILL -> memory freed
void runPressure(Context& ctx);   // 7. 3x-memory workload (spilling) vs raw sequential disk I/O
void runXhost(Context& ctx);      // 8. many hosts: pulls, handoffs, fan-out... (xhost.h)

// A connection to a `socket-sink` helper (wl_transfer.c++): the raw-socket baseline.
class RawTransfer {
 public:
  RawTransfer(Context& ctx, bool tcp);
  ~RawTransfer();
  // Sends `size` bytes; returns once the sink has read them all (its checksum).
  uint64_t send(const uint8_t* data, uint64_t size);

 private:
  Child sink;
  int fd = -1;
};

// Seconds of one call of `once`, moving `bytes` bytes: for fast cases (under 1 MiB) the median
// of a block of calls, so a sample is not one noisy microsecond reading.
double sampleOnce(uint64_t bytes, const std::function<void()>& once);
// Rates (bytes / second) from per-repetition seconds.
std::vector<double> toRates(const std::vector<double>& seconds, uint64_t bytes);

// Sizes from `from` to `to` (inclusive), multiplying by `step`.
std::vector<uint64_t> sizeRange(uint64_t from, uint64_t to, uint64_t step);

constexpr uint64_t KiB = 1024, MiB = 1024 * KiB, GiB = 1024 * MiB;

// Repetitions for one case of `bytes` bytes: fewer for the slowest (GiB) cases, so a full run
// stays within minutes. Never fewer than 3 (a median needs them).
int repsFor(const Context& ctx, uint64_t bytes);
int warmupFor(const Context& ctx, uint64_t bytes);

}  // namespace refbench
