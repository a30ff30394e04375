#include "server/segment_server.h"

#include <fcntl.h>

#include <errno.h>
#include <string.h>

#include <kj/debug.h>

#include "server/errors.h"

namespace refstore::server {

void SegmentCapBudget::take() {
  RS_REQUIRE(live < limit, RESOURCE_EXHAUSTED, "this connection holds ", limit,
             " Segment capabilities, the limit per connection: drop some (each costs the "
             "daemon a file descriptor)");
  ++live;
}

SegmentServer::SegmentServer(const shm::Segment& segment, bool writable,
                             kj::Maybe<kj::Function<void(SegmentServer*)>> onDestroy,
                             kj::Own<SegmentCapBudget> budget)
    : SegmentServer(writable ? segment.fd() : segment.readOnlyFd(), segment.id(), segment.size(),
                    writable, kj::mv(budget)) {
  this->onDestroy = kj::mv(onDestroy);
}

SegmentServer::SegmentServer(int segmentFd, uint32_t id, uint64_t size, bool writable,
                             kj::Own<SegmentCapBudget> budget)
    : budget(kj::mv(budget)), id(id), size(size), writable(writable) {
  this->budget->take();
  int copy = fcntl(segmentFd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) {
    int error = errno;
    this->budget->give();
    RS_FAIL(INTERNAL, "cannot duplicate a segment's file descriptor: ", strerror(error));
  }
  fd = kj::AutoCloseFd(copy);
}

kj::Promise<void> SegmentServer::reattach(ReattachContext context) {
  context.getResults().setSegment(
      kj::heap<SegmentServer>(fd.get(), id, size, writable, kj::addRef(*budget)));
  return kj::READY_NOW;
}

SegmentServer::~SegmentServer() noexcept(false) {
  budget->give();
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
