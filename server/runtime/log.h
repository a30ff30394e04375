// Minimal structured logging to stderr: refstored runs in the foreground (systemd or a
// terminal collects stderr), so one line per event with a timestamp is all it needs.
#pragma once

#include <kj/string.h>

namespace refstore::server {

enum class LogLevel { DEBUG, INFO, WARNING, ERROR };

// Lines below this level are dropped (set from --verbose / --quiet).
void setLogLevel(LogLevel level);

// Writes "<UTC time> refstored[<pid>] <LEVEL> <message>" atomically (one write(2)).
void logLine(LogLevel level, kj::StringPtr message);

template <typename... Params>
void logInfo(Params&&... params) { logLine(LogLevel::INFO, kj::str(kj::fwd<Params>(params)...)); }
template <typename... Params>
void logWarning(Params&&... params) { logLine(LogLevel::WARNING, kj::str(kj::fwd<Params>(params)...)); }
template <typename... Params>
void logError(Params&&... params) { logLine(LogLevel::ERROR, kj::str(kj::fwd<Params>(params)...)); }
template <typename... Params>
void logDebug(Params&&... params) { logLine(LogLevel::DEBUG, kj::str(kj::fwd<Params>(params)...)); }

}  // namespace refstore::server
