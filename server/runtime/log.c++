#include "server/runtime/log.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

namespace refstore::server {
namespace {
LogLevel minimumLevel = LogLevel::INFO;

const char* levelName(LogLevel level) {
  switch (level) {
    case LogLevel::DEBUG: return "DEBUG";
    case LogLevel::INFO: return "INFO";
    case LogLevel::WARNING: return "WARNING";
    case LogLevel::ERROR: return "ERROR";
  }
  return "?";
}
}  // namespace

void setLogLevel(LogLevel level) { minimumLevel = level; }

void logLine(LogLevel level, kj::StringPtr message) {
  if (level < minimumLevel) return;
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  struct tm utc;
  gmtime_r(&now.tv_sec, &utc);
  char prefix[96];
  int n = snprintf(prefix, sizeof(prefix), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ refstored[%d] %s ",
                   utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min,
                   utc.tm_sec, now.tv_nsec / 1000000, (int)getpid(), levelName(level));
  // One write(2) per line so concurrent writers (tests, systemd) never interleave a line.
  auto line = kj::str(kj::StringPtr(prefix, n), message, "\n");
  ssize_t ignored = write(STDERR_FILENO, line.begin(), line.size());
  (void)ignored;
}

}  // namespace refstore::server
