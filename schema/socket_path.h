// Where refstored listens by default, shared by the daemon, the clients and refctl so that
// `refstored` and `refctl` with no options find each other.
#pragma once

#include <string>

namespace refstore {

// $REFSTORE_SOCKET if set; else $XDG_RUNTIME_DIR/refstored.sock; else
// /tmp/refstore-<uid>/refstored.sock (the daemon creates that directory with mode 0700).
std::string defaultSocketPath();

}  // namespace refstore
