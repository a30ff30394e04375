#include "tools/refctl/progress.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "tools/refctl/format.h"

namespace refstore::tools {

namespace {

double now() {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

constexpr size_t kBarWidth = 24;

}  // namespace

std::string renderProgress(const std::string& verb, uint64_t done, uint64_t total,
                           double elapsedSeconds) {
  double fraction = total == 0 ? 1 : double(done) / total;
  if (fraction > 1) fraction = 1;
  size_t filled = size_t(fraction * kBarWidth);
  std::string bar = "[" + std::string(filled, '#') + std::string(kBarWidth - filled, ' ') + "]";
  char percent[8];
  snprintf(percent, sizeof(percent), "%3d%%", int(fraction * 100));
  std::string line = verb + " " + bar + " " + percent + "  " + formatBytes(done) + " / " +
                     formatBytes(total);
  if (elapsedSeconds > 0 && done > 0) {
    double rate = done / elapsedSeconds;
    line += "  " + formatRate(rate);
    if (done < total) line += "  ETA " + formatDuration((total - done) / rate);
  }
  return line;
}

std::string renderFinished(const std::string& verb, uint64_t total, double elapsedSeconds) {
  std::string line = verb + " " + formatBytes(total) + " in " + formatDuration(elapsedSeconds);
  if (elapsedSeconds > 0) line += " (" + formatRate(total / elapsedSeconds) + ")";
  return line;
}

Progress::Progress(std::string verb, uint64_t total, bool enabled)
    : verb(std::move(verb)),
      total(total),
      shown(enabled && total >= kMinimumBytes && isatty(STDERR_FILENO)),
      started(now()) {
  if (shown) draw(false);
}

Progress::~Progress() {
  if (shown && !finished) fprintf(stderr, "\n");
}

void Progress::update(uint64_t bytes) {
  done = bytes;
  if (!shown) return;
  double t = now();
  if (t - lastDrawn < 0.1) return;
  lastDrawn = t;
  draw(false);
}

void Progress::finish() {
  done = total;
  if (shown && !finished) draw(true);
  finished = true;
}

void Progress::draw(bool final) {
  double elapsed = now() - started;
  // \r and "erase to end of line": each line replaces the last.
  std::string line = final ? renderFinished(verb, total, elapsed)
                           : renderProgress(verb, done, total, elapsed);
  fprintf(stderr, "\r%s\x1b[K%s", line.c_str(), final ? "\n" : "");
  fflush(stderr);
}

}  // namespace refstore::tools
