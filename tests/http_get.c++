#include "tests/http_get.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

namespace refstore::testing {

namespace {

// Reads more into `buffer`; false at end of stream. Aborts after 20 s of silence.
bool readMore(int fd, std::string& buffer) {
  struct pollfd ready = {fd, POLLIN, 0};
  if (poll(&ready, 1, 20000) != 1) {
    fprintf(stderr, "httpGet: no answer within 20 s\n");
    abort();
  }
  char chunk[65536];
  ssize_t n = read(fd, chunk, sizeof(chunk));
  if (n <= 0) return false;
  buffer.append(chunk, n);
  return true;
}

// The value of header `name` (case-insensitive) in `head`, or "".
std::string header(const std::string& head, const char* name) {
  size_t at = 0;
  while ((at = head.find("\r\n", at)) != std::string::npos) {
    at += 2;
    size_t colon = head.find(':', at);
    size_t end = head.find("\r\n", at);
    if (colon == std::string::npos || colon > end) continue;
    if (colon - at == strlen(name) && strncasecmp(head.c_str() + at, name, colon - at) == 0) {
      size_t value = head.find_first_not_of(' ', colon + 1);
      return head.substr(value, end - value);
    }
  }
  return "";
}

}  // namespace

HttpResponse httpGet(int port, const std::string& path) {
  HttpResponse response;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in address = {};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    close(fd);
    return response;
  }
  std::string request = "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  if (write(fd, request.data(), request.size()) != ssize_t(request.size())) abort();
  std::string buffer;
  size_t headEnd;
  while ((headEnd = buffer.find("\r\n\r\n")) == std::string::npos) {
    if (!readMore(fd, buffer)) {
      close(fd);
      return response;
    }
  }
  std::string head = buffer.substr(0, headEnd + 2);
  response.status = atoi(head.c_str() + head.find(' ') + 1);
  response.contentType = header(head, "Content-Type");
  size_t length = strtoull(header(head, "Content-Length").c_str(), nullptr, 10);
  response.body = buffer.substr(headEnd + 4);
  while (response.body.size() < length && readMore(fd, response.body)) {
  }
  close(fd);
  return response;
}

}  // namespace refstore::testing
