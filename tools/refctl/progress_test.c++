// Tests for tools/refctl/progress.h: the progress and final lines, and that nothing is drawn
// when stderr is not a terminal (as under the test runner).

#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <unistd.h>

#include "tools/refctl/progress.h"

using namespace refstore::tools;

TEST_CASE("a progress line shows the bar, share, bytes, rate and time left") {
  uint64_t gib = uint64_t(1) << 30;
  CHECK(renderProgress("put", gib / 2, gib, 0.5) ==
        "put [############            ]  50%  512 MiB / 1.0 GiB  1.0 GiB/s  ETA 500 ms");
  CHECK(renderProgress("get", 0, gib, 0) == "get [                        ]   0%  0 B / 1.0 GiB");
  CHECK(renderProgress("get", gib, gib, 2) ==
        "get [########################] 100%  1.0 GiB / 1.0 GiB  512 MiB/s");
}

TEST_CASE("the final line shows the total, time and average rate") {
  CHECK(renderFinished("put", uint64_t(3) << 30, 2) == "put 3.0 GiB in 2.0 s (1.5 GiB/s)");
  CHECK(renderFinished("get", 100 << 20, 0) == "get 100 MiB in 0 µs");
}

TEST_CASE("nothing is drawn without a terminal, or for small transfers") {
  REQUIRE_FALSE(isatty(STDERR_FILENO));
  Progress large("put", uint64_t(1) << 30);
  CHECK_FALSE(large.drawing());
  large.update(1);
  large.finish();
  Progress small("put", 1000, /*enabled=*/true);
  CHECK_FALSE(small.drawing());
}
