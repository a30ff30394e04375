// A progress line with throughput for long transfers (`refctl put`/`get` of large values), drawn
// on stderr and only when stderr is a terminal: piped or redirected, refctl prints nothing extra.
#pragma once

#include <stdint.h>

#include <string>

namespace refstore::tools {

class Progress {
 public:
  // Transfers of at least this many bytes get a progress line.
  static constexpr uint64_t kMinimumBytes = 8 << 20;

  // `verb` names the transfer ("put", "get"). Draws nothing unless `enabled`, stderr is a
  // terminal and `total` >= kMinimumBytes.
  Progress(std::string verb, uint64_t total, bool enabled = true);
  ~Progress();  // finish() if not done (a failed transfer leaves its last line standing)

  // `done` bytes of the total so far; redraws at most ten times a second.
  void update(uint64_t done);
  // The final line: total, time and average rate, then a newline.
  void finish();

  bool drawing() const { return shown; }

 private:
  void draw(bool final);
  std::string verb;
  uint64_t total;
  uint64_t done = 0;
  bool shown;
  bool finished = false;
  double started;
  double lastDrawn = 0;
};

// One progress line (no newline): "put  [#####     ]  45%  450 MiB / 1.0 GiB  1.2 GiB/s".
std::string renderProgress(const std::string& verb, uint64_t done, uint64_t total,
                           double elapsedSeconds);
// The line left when a transfer is done: "put 1.0 GiB in 850 ms (1.2 GiB/s)".
std::string renderFinished(const std::string& verb, uint64_t total, double elapsedSeconds);

}  // namespace refstore::tools
