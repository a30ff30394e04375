"""Test rules shared by tests/BUILD.bazel: one place says what every test of a kind needs."""

load("@rules_cc//cc:defs.bzl", "cc_test")

def refstore_integration_test(name, data = [], deps = []):
    """A doctest test (`<name>.c++`) that starts real refstored processes (tests/daemon.h) and
    talks to them through the C++ client. `data` adds helper binaries, `deps` libraries."""
    cc_test(
        name = name,
        size = "medium",
        srcs = [name + ".c++"],
        data = ["//server:refstored"] + data,
        deps = [
            ":testing",
            "//client/cpp:client",
            "//third_party:doctest",
        ] + deps,
    )
