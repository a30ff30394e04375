// The handoff consumer process (see roles.h). It uses the public C++ client, exactly as an
// application would: restore the token, take a zero-copy View, read the bytes.
#include <hiredis/hiredis.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <stdexcept>

#include "client/cpp/refstore_client.h"
#include "tools/bench/bytes.h"
#include "tools/bench/roles.h"

namespace refbench {

std::string readLine() {
  std::string line;
  if (!std::getline(std::cin, line)) return "";
  return line;
}

void writeLine(const std::string& line) {
  std::cout << line << std::endl;
}

int runConsumer(const std::vector<std::string>& args) {
  if (args.size() != 2) {
    throw std::runtime_error("consumer <refstore socket> <redis socket, or tcp:IP:PORT>");
  }
  refstore::Client client = refstore::Client::connect(args[0]);
  const std::string& where = args[1];
  redisContext* redis = nullptr;
  if (where.rfind("tcp:", 0) == 0) {  // a Redis on another host, across the link
    size_t colon = where.rfind(':');
    redis = redisConnect(where.substr(4, colon - 4).c_str(), std::stoi(where.substr(colon + 1)));
  } else {
    redis = redisConnectUnix(where.c_str());
  }
  if (redis == nullptr || redis->err) throw std::runtime_error("consumer: cannot connect to Redis");
  writeLine("ready");
  for (std::string line = readLine(); !line.empty(); line = readLine()) {
    size_t space = line.find(' ');
    std::string command = line.substr(0, space), argument = line.substr(space + 1);
    // The answer goes out before the value is released: releasing (unmapping, freeing) is not
    // part of receiving it, for refstore and Redis alike.
    if (command == "refstore") {
      // One round trip: the view is pipelined on the restore (no Ref is kept; the View pins).
      refstore::View view = client.restoreView(argument);
      writeLine(std::to_string(checksum(view.data(), view.size())));
    } else if (command == "redis") {
      auto reply = static_cast<redisReply*>(
          redisCommand(redis, "GET %b", argument.data(), argument.size()));
      if (reply == nullptr || reply->type != REDIS_REPLY_STRING) {
        throw std::runtime_error("consumer: Redis GET failed");
      }
      writeLine(std::to_string(checksum(reinterpret_cast<const uint8_t*>(reply->str), reply->len)));
      freeReplyObject(reply);
    } else {
      throw std::runtime_error("consumer: unknown command " + command);
    }
  }
  redisFree(redis);
  return 0;
}

}  // namespace refbench
