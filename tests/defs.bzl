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

def c_client_test(name, deps = []):
    """A plain C test (`<name>.c`) of the C API (client/c/refstore.h) against real refstored
    processes (tests/c_testing.h)."""
    cc_test(
        name = name,
        size = "medium",
        srcs = [name + ".c"],
        copts = ["-std=c11", "-D_DEFAULT_SOURCE", "-Wno-discarded-qualifiers"],
        data = ["//server:refstored"],
        deps = [
            ":c_testing",
            "//client/c",
        ] + deps,
    )
