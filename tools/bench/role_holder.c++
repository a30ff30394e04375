// A client that holds values and then dies without releasing them (refbench SIGKILLs it), to
// measure how soon the daemon notices the dead connection and frees the memory.
#include <vector>

#include "client/cpp/refstore_client.h"
#include "tools/bench/bytes.h"
#include "tools/bench/roles.h"

namespace refbench {

int runHolder(const std::vector<std::string>& args) {
  if (args.size() != 3) throw std::runtime_error("holder <refstore socket> <size> <count>");
  refstore::Client client = refstore::Client::connect(args[0]);
  uint64_t size = std::stoull(args[1]), count = std::stoull(args[2]);
  std::vector<refstore::Ref> held;
  for (uint64_t i = 0; i < count; i++) {
    refstore::WriteBuffer buffer = client.create(size);
    fillPattern(buffer.data(), size, i);
    held.push_back(buffer.seal());
  }
  writeLine("ready");
  readLine();  // blocks until killed (or refbench closes our stdin)
  return 0;
}

}  // namespace refbench
