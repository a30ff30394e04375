// What every refctl command shares: the connection to refstored, error reporting, and how
// output is written (human-readable on a terminal, raw numbers otherwise, or JSON).
#pragma once

#include <kj/debug.h>
#include <kj/main.h>

#include <functional>
#include <memory>
#include <new>
#include <string>

#include "client/cpp/refstore_client.h"

namespace refstore::tools {

struct Globals {
  kj::ProcessContext& context;
  std::string socket;  // --socket; "" = refstored's default

  Client connect() const;

  // Runs a command body; a client error becomes "refctl: <message>" and exit status 1.
  template <typename Body>
  kj::MainBuilder::Validity guarded(Body&& body) {
    try {
      body();
      fflush(stdout);  // KJ_MAIN exits with _exit(), which does not flush stdio
      return true;
    } catch (const Error& e) {
      fflush(stdout);
      context.exitError(kj::str("refctl: ", e.what()));
    } catch (const std::bad_alloc&) {
      fflush(stdout);
      context.exitError("refctl: out of memory");
    }
    KJ_UNREACHABLE;
  }
};

// --json and --bytes, for commands that print figures.
struct OutputOptions {
  bool json = false;
  bool rawBytes = false;
  // Sizes and durations for people: on a terminal, unless --bytes or --json.
  bool human() const;
  kj::MainBuilder& addTo(kj::MainBuilder& builder, const char* jsonHelp);
};

// --watch SECONDS and --count N: repeat a report like `redis-cli -i`.
struct WatchOptions {
  double intervalSeconds = 0;  // 0: once
  uint64_t count = 0;          // 0: until interrupted
  kj::MainBuilder& addTo(kj::MainBuilder& builder);
  // Runs `report` once, or repeatedly. On a terminal each report replaces the last (the screen
  // is cleared and a header line names the command and time); otherwise reports follow each
  // other, JSON ones one per line.
  void repeat(const std::string& title, const OutputOptions& output,
              const std::function<void()>& report) const;
};

// One refctl subcommand.
class Command {
 public:
  virtual ~Command() = default;
  virtual kj::MainFunc getMain() = 0;
};

std::unique_ptr<Command> newPutCommand(Globals& globals);
std::unique_ptr<Command> newGetCommand(Globals& globals, bool cat);
std::unique_ptr<Command> newStatsCommand(Globals& globals);
std::unique_ptr<Command> newLsCommand(Globals& globals);
std::unique_ptr<Command> newUnnameCommand(Globals& globals);

}  // namespace refstore::tools
