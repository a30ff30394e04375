#include "tools/refctl/command.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

namespace refstore::tools {

Client Globals::connect() const {
  ConnectOptions options;
  options.address = socket;
  options.clientName = "refctl";
  return Client::connect(options);
}

bool OutputOptions::human() const { return !json && !rawBytes && isatty(STDOUT_FILENO); }

kj::MainBuilder& OutputOptions::addTo(kj::MainBuilder& builder, const char* jsonHelp) {
  return builder
      .addOption({"json"}, [this]() -> kj::MainBuilder::Validity {
        json = true;
        return true;
      }, jsonHelp)
      .addOption({"bytes"}, [this]() -> kj::MainBuilder::Validity {
        rawBytes = true;
        return true;
      }, "Sizes in bytes and times in milliseconds, as when output is not a terminal.");
}

kj::MainBuilder& WatchOptions::addTo(kj::MainBuilder& builder) {
  return builder
      .addOptionWithArg({"watch"}, [this](kj::StringPtr text) -> kj::MainBuilder::Validity {
        char* end;
        double value = strtod(text.cStr(), &end);
        if (*end != '\0' || !(value > 0)) return "--watch expects a positive number of seconds";
        intervalSeconds = value;
        return true;
      }, "<seconds>", "Repeat every this many seconds (fractions allowed) until interrupted.")
      .addOptionWithArg({"count"}, [this](kj::StringPtr text) -> kj::MainBuilder::Validity {
        char* end;
        unsigned long long value = strtoull(text.cStr(), &end, 10);
        if (*end != '\0' || value == 0 || text[0] == '-') return "--count expects a positive number";
        count = value;
        return true;
      }, "<n>", "With --watch: stop after this many reports.");
}

void WatchOptions::repeat(const std::string& title, const OutputOptions& output,
                          const std::function<void()>& report) const {
  if (intervalSeconds <= 0) {
    report();
    return;
  }
  bool terminal = isatty(STDOUT_FILENO) && !output.json;
  for (uint64_t n = 0; count == 0 || n < count; n++) {
    if (n > 0) {
      struct timespec pause;
      pause.tv_sec = time_t(intervalSeconds);
      pause.tv_nsec = long((intervalSeconds - pause.tv_sec) * 1e9);
      nanosleep(&pause, nullptr);
    }
    if (terminal) {
      char clock[16];
      time_t now = time(nullptr);
      strftime(clock, sizeof(clock), "%H:%M:%S", localtime(&now));
      // Home, clear: each report replaces the last, like watch(1).
      printf("\x1b[H\x1b[2J%s every %g s, %s (Ctrl-C stops)\n\n", title.c_str(), intervalSeconds,
             clock);
    } else if (n > 0 && !output.json) {
      printf("\n");
    }
    report();
    fflush(stdout);
  }
}

}  // namespace refstore::tools
