#include "tools/refctl/input.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "client/cpp/refstore_client.h"

namespace refstore::tools {

namespace {

[[noreturn]] void fail(const std::string& what) {
  throw Error(ErrorCode::IO, what + ": " + strerror(errno));
}

void writeAll(int fd, const uint8_t* data, size_t size, const std::string& name) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("cannot spool " + name + " to a temporary file");
    data += n;
    size -= n;
  }
}

// An unlinked file for spooling, on disk.
int temporaryFile() {
  const char* dir = getenv("TMPDIR");
  std::string directory = dir && *dir ? dir : "/var/tmp";
  int fd = open(directory.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd >= 0) return fd;
  // File systems without O_TMPFILE: create, then unlink at once.
  std::string path = directory + "/refctl-XXXXXX";
  fd = mkostemp(&path[0], O_CLOEXEC);
  if (fd < 0) fail("cannot create a temporary file in " + directory);
  unlink(path.c_str());
  return fd;
}

}  // namespace

Input::Input(const std::string& path): name(path == "-" ? "standard input" : path) {
  if (path == "-") {
    fd = STDIN_FILENO;
  } else {
    fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail("cannot open " + path);
    ownsFd = true;
  }
  struct stat info;
  if (fstat(fd, &info) < 0) fail("cannot stat " + name);
  if (S_ISREG(info.st_mode)) {
    off_t at = path == "-" ? lseek(fd, 0, SEEK_CUR) : 0;
    base = at < 0 ? 0 : uint64_t(at);
    length = uint64_t(info.st_size) > base ? info.st_size - base : 0;
    return;
  }
  if (S_ISDIR(info.st_mode)) throw Error(ErrorCode::IO, "cannot store " + name + ": a directory");
  spool(fd);
}

Input::~Input() {
  if (ownsFd && fd >= 0) close(fd);
}

void Input::spool(int from) {
  std::vector<uint8_t> chunk(1 << 20);
  int spoolFd = -1;
  for (;;) {
    ssize_t n = ::read(from, chunk.data(), chunk.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("cannot read " + name);
    if (n == 0) break;
    if (spoolFd < 0 && memory.size() + n > kSpoolInMemory) {
      spoolFd = temporaryFile();
      writeAll(spoolFd, memory.data(), memory.size(), name);
      std::vector<uint8_t>().swap(memory);
    }
    if (spoolFd >= 0) {
      writeAll(spoolFd, chunk.data(), n, name);
    } else {
      if (memory.capacity() < memory.size() + n) {
        memory.reserve(std::min<uint64_t>(std::max<uint64_t>(2 * memory.capacity(), 1 << 20),
                                          kSpoolInMemory));
      }
      memory.insert(memory.end(), chunk.data(), chunk.data() + n);
    }
    length += n;
  }
  if (ownsFd) close(fd);
  fd = spoolFd;
  ownsFd = spoolFd >= 0;
  base = 0;
}

void Input::read(uint64_t offset, uint8_t* out, size_t count) {
  if (fd < 0) {
    memcpy(out, memory.data() + offset, count);
    return;
  }
  while (count > 0) {
    ssize_t n = pread(fd, out, count, base + offset);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("cannot read " + name);
    if (n == 0) throw Error(ErrorCode::IO, name + " became shorter while it was read");
    out += n;
    offset += n;
    count -= n;
  }
}

}  // namespace refstore::tools
