#include "server/segment_server.h"

#include <fcntl.h>

#include <kj/debug.h>

namespace refstore::server {

SegmentServer::SegmentServer(const shm::Segment& segment, bool writable,
                             kj::Maybe<kj::Function<void(SegmentServer*)>> onDestroy)
    : SegmentServer(writable ? segment.fd() : segment.readOnlyFd(), segment.id(), segment.size(),
                    writable) {
  this->onDestroy = kj::mv(onDestroy);
}

SegmentServer::SegmentServer(int segmentFd, uint32_t id, uint64_t size, bool writable)
    : id(id), size(size), writable(writable) {
  int copy;
  KJ_SYSCALL(copy = fcntl(segmentFd, F_DUPFD_CLOEXEC, 0));
  fd = kj::AutoCloseFd(copy);
}

kj::Promise<void> SegmentServer::reattach(ReattachContext context) {
  context.getResults().setSegment(kj::heap<SegmentServer>(fd.get(), id, size, writable));
  return kj::READY_NOW;
}

SegmentServer::~SegmentServer() noexcept(false) {
  KJ_IF_MAYBE(notify, onDestroy) { (*notify)(this); }
}

kj::Maybe<int> SegmentServer::getFd() {
  if (fdSent) return nullptr;
  fdSent = true;
  return fd.get();
}

kj::Promise<void> SegmentServer::info(InfoContext context) {
  auto results = context.getResults();
  results.setId(id);
  results.setSize(size);
  results.setWritable(writable);
  return kj::READY_NOW;
}

}  // namespace refstore::server
