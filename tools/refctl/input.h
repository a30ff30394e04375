// What `refctl put` stores: a file, or standard input ("-"), read piece by piece so a value
// larger than memory streams through refctl instead of being read whole.
#pragma once

#include <stdint.h>

#include <string>
#include <vector>

namespace refstore::tools {

class Input {
 public:
  // Input kept in memory before it goes to a temporary file (pipes only).
  static constexpr uint64_t kSpoolInMemory = 16 << 20;

  // A regular file (or stdin redirected from one) is read in place. A pipe or terminal, whose
  // size is only known at its end, is read to the end first: into memory up to kSpoolInMemory,
  // beyond that into an unlinked file in $TMPDIR (default /var/tmp, on disk where /tmp may
  // be memory). Throws refstore::Error (IO) naming the path on failure.
  explicit Input(const std::string& path);
  ~Input();
  Input(const Input&) = delete;
  Input& operator=(const Input&) = delete;

  uint64_t size() const { return length; }
  // Copies `count` bytes from `offset` into `out`.
  void read(uint64_t offset, uint8_t* out, size_t count);

 private:
  void spool(int from);

  std::string name;
  int fd = -1;
  bool ownsFd = false;
  uint64_t base = 0;  // where the value starts in `fd`
  uint64_t length = 0;
  std::vector<uint8_t> memory;  // a short pipe's bytes (then fd is -1)
};

}  // namespace refstore::tools
