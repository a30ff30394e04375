// Store.putMany and Store.readMany (many small values per call) through the C++ client, against
// a real refstored over its Unix socket.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <unistd.h>

#include <functional>
#include <future>
#include <thread>
#include <string>
#include <vector>

#include "client/cpp/refstore_client.h"
#include "tests/daemon.h"

using namespace refstore;
using refstore::testing::Daemon;

namespace {

ErrorCode codeOf(const std::function<void()>& body) {
  try {
    body();
  } catch (const Error& e) {
    return e.code();
  }
  FAIL("expected an Error");
  return ErrorCode::INTERNAL;
}

std::string messageOf(const std::function<void()>& body) {
  try {
    body();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::string text(const std::vector<uint8_t>& bytes) {
  return std::string(bytes.begin(), bytes.end());
}

}  // namespace

TEST_CASE("putMany stores each value under its own Ref; readMany reads them back in order") {
  Daemon daemon;
  Client client = Client::connect(daemon.socket());
  std::vector<std::string> texts;
  for (int i = 0; i < 100; i++) texts.push_back("value " + std::to_string(i * 7919));
  std::vector<Bytes> values;
  for (auto& t: texts) values.push_back(Bytes{t.data(), t.size()});
  uint64_t before = client.stats().objects;
  std::vector<Ref> refs = client.putMany(values);
  REQUIRE(refs.size() == texts.size());
  CHECK(client.stats().objects == before + texts.size());
  for (size_t i = 0; i < refs.size(); i++) {
    CHECK(text(refs[i].readAll()) == texts[i]);  // each Ref is its own value
  }
  std::vector<const Ref*> reversed;
  for (size_t i = refs.size(); i-- > 0;) reversed.push_back(&refs[i]);
  auto read = client.readMany(reversed);
  REQUIRE(read.size() == texts.size());
  for (size_t i = 0; i < read.size(); i++) CHECK(text(read[i]) == texts[texts.size() - 1 - i]);
  // The Refs are independent: dropping some frees exactly those.
  refs.erase(refs.begin(), refs.begin() + 40);
  CHECK(client.stats().objects == before + 60);
  CHECK(text(refs[0].readAll()) == texts[40]);
  refs.clear();
  CHECK(client.stats().objects == before);
  // Empty batches are fine.
  CHECK(client.putMany({}).empty());
  CHECK(client.readMany({}).empty());
}

TEST_CASE("putMany is all or nothing: an empty value, too many values or bytes store nothing") {
  Daemon daemon;
  Client client = Client::connect(daemon.socket());
  Stats start = client.stats();
  std::string a = "a", c = "c";
  std::vector<Bytes> withEmpty = {{a.data(), 1}, {c.data(), 0}, {c.data(), 1}};
  CHECK(codeOf([&] { client.putMany(withEmpty); }) == ErrorCode::INVALID_ARGUMENT);
  CHECK(messageOf([&] { client.putMany(withEmpty); }).find("value 1") != std::string::npos);

  std::vector<uint8_t> big(9 << 20, 1);  // two of them exceed the 16 MiB per call
  std::vector<Bytes> tooBig = {{big.data(), big.size()}, {big.data(), big.size()}};
  CHECK(codeOf([&] { client.putMany(tooBig); }) == ErrorCode::TOO_LARGE);

  std::vector<Bytes> tooMany(65537, Bytes{a.data(), 1});
  CHECK(codeOf([&] { client.putMany(tooMany); }) == ErrorCode::TOO_LARGE);

  Stats after = client.stats();
  CHECK(after.objects == start.objects);
  CHECK(after.bytesUsed == start.bytesUsed);
  // The limits themselves are allowed.
  std::vector<Bytes> many(65536, Bytes{a.data(), 1});
  CHECK(client.putMany(many).size() == 65536);
  CHECK(client.stats().objects == start.objects);  // and all freed again
}

TEST_CASE("putMany larger than memory fails at once; one that must wait gives back what it got") {
  Daemon daemon("8M", {"--no-spill"});
  Client client = Client::connect(daemon.socket());
  std::vector<uint8_t> chunk(3 << 20, 2);
  Stats start = client.stats();
  // 12 MiB can never fit in 8 MiB: refused without waiting for the timeout.
  std::vector<Bytes> tooMuch(4, Bytes{chunk.data(), chunk.size()});
  CHECK(codeOf([&] { client.putMany(tooMuch, /*timeoutSeconds=*/60); }) == ErrorCode::TOO_LARGE);
  // 2 x 3 MiB would fit an empty store, but 4 MiB are held: the first value's memory is granted,
  // the second waits, times out, and the first is released too.
  std::vector<uint8_t> held(4 << 20, 1);
  Ref holder = client.put(held.data(), held.size());
  Stats holding = client.stats();
  std::vector<Bytes> two(2, Bytes{chunk.data(), chunk.size()});
  CHECK(codeOf([&] { client.putMany(two, /*timeoutSeconds=*/0.3); }) ==
        ErrorCode::OUT_OF_MEMORY);
  Stats after = client.stats();
  CHECK(after.objects == holding.objects);
  CHECK(after.bytesUsed == holding.bytesUsed);
  { Ref gone = std::move(holder); }
  CHECK(client.putMany(two).size() == 2);  // once there is room, the same batch goes in
  // Dropped at once; values over 1 MiB stay until their background hash notices and stops.
  CHECK(refstore::testing::eventually([&] { return client.stats().objects == start.objects; }));
}

TEST_CASE("readMany waits for promises and reports failures; refuses oversized batches") {
  Daemon daemon;
  Client client = Client::connect(daemon.socket());
  Ref ready = client.put("ready", 5);
  // A promise fulfilled by another client, on another thread, once readMany has been sent.
  std::promise<std::string> token;
  std::promise<void> go;
  std::thread fulfilling([&]() {
    Client other = Client::connect(daemon.socket());
    Promise later = other.promise();
    token.set_value(later.ref.share(60, 1));
    go.get_future().wait();
    usleep(100 * 1000);  // let the main thread's readMany reach the daemon
    later.fulfiller.fulfill("later", 5);
  });
  Ref later = client.restore(token.get_future().get());
  CHECK(later.info().state == "promised");
  go.set_value();
  auto values = client.readMany({&ready, &later});
  fulfilling.join();
  REQUIRE(values.size() == 2);
  CHECK(text(values[0]) == "ready");
  CHECK(text(values[1]) == "later");

  // One failure is reported at once, even while another Ref in the batch is never settled.
  Promise rejected = client.promise();
  Promise never = client.promise();
  rejected.fulfiller.reject("no value today");
  CHECK(codeOf([&] { client.readMany({&never.ref, &ready, &rejected.ref}); }) ==
        ErrorCode::REJECTED);

  std::vector<uint8_t> big(9 << 20, 3);
  Ref first = client.put(big.data(), big.size());
  Ref second = client.put(big.data(), big.size());
  CHECK(codeOf([&] { client.readMany({&first, &second}); }) == ErrorCode::TOO_LARGE);
  CHECK(client.readMany({&first})[0].size() == big.size());  // one alone is fine
}

TEST_CASE("readMany reads Refs that came from another client's connection") {
  Daemon daemon;
  Client producer = Client::connect(daemon.socket());
  Client consumer = Client::connect(daemon.socket());
  std::string x = "from the producer";
  std::vector<Ref> made = producer.putMany({Bytes{x.data(), x.size()}});
  // A token carries the Ref to the consumer's own connection.
  Ref mine = consumer.restore(made[0].share(60, 1));
  auto values = consumer.readMany({&mine});
  CHECK(text(values.at(0)) == x);
}

TEST_CASE("readMany brings spilled values back and returns them all") {
  Daemon daemon("16M");  // with a spill directory
  Client client = Client::connect(daemon.socket());
  std::vector<Ref> refs;
  std::vector<std::vector<uint8_t>> want;
  for (int i = 0; i < 10; i++) {  // 20 MiB into 16 MiB: the oldest values go to disk
    want.emplace_back(2 << 20, uint8_t(i + 1));
    refs.push_back(client.put(want.back().data(), want.back().size()));
  }
  REQUIRE(refstore::testing::eventually([&] { return client.stats().spilled > 0; }));
  std::vector<const Ref*> first;
  for (int i = 0; i < 6; i++) first.push_back(&refs[i]);  // 12 MiB, the spilled ones among them
  auto values = client.readMany(first);
  REQUIRE(values.size() == 6);
  for (int i = 0; i < 6; i++) CHECK(values[i] == want[i]);
}
