#include "schema/socket_path.h"

#include <stdlib.h>
#include <unistd.h>

namespace refstore {

std::string defaultSocketPath() {
  if (const char* explicitPath = getenv("REFSTORE_SOCKET"); explicitPath && *explicitPath) {
    return explicitPath;
  }
  if (const char* runtime = getenv("XDG_RUNTIME_DIR"); runtime && *runtime) {
    return std::string(runtime) + "/refstored.sock";
  }
  return "/tmp/refstore-" + std::to_string(getuid()) + "/refstored.sock";
}

}  // namespace refstore
