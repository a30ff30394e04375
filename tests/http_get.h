// Test support: one blocking HTTP/1.1 GET over a real TCP connection, for the metrics endpoint.
#pragma once

#include <string>

namespace refstore::testing {

struct HttpResponse {
  int status = 0;           // 0: no response (connection refused or closed)
  std::string contentType;
  std::string body;
};

// GET http://127.0.0.1:<port><path>; reads exactly Content-Length bytes of body (the server may
// keep the connection open). Fails the test process (abort) after 20 s without an answer.
HttpResponse httpGet(int port, const std::string& path);

}  // namespace refstore::testing
