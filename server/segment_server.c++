#include "server/segment_server.h"

#include <fcntl.h>

#include <kj/debug.h>

namespace refstore::server {

SegmentServer::SegmentServer(const shm::Segment& segment, bool writable)
    : id(segment.id()), size(segment.size()), writable(writable) {
  int copy;
  KJ_SYSCALL(copy = fcntl(writable ? segment.fd() : segment.readOnlyFd(), F_DUPFD_CLOEXEC, 0));
  fd = kj::AutoCloseFd(copy);
}

kj::Promise<void> SegmentServer::info(InfoContext context) {
  auto results = context.getResults();
  results.setId(id);
  results.setSize(size);
  results.setWritable(writable);
  return kj::READY_NOW;
}

}  // namespace refstore::server
