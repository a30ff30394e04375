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

def many_hosts_test(name, data = [], deps = [], size = "medium"):
    """The doctest cases of `<name>.c++` against several refstored "hosts" (tests/hosts.h),
    built once and run twice: `<name>` on loopback addresses, and `<name>_netns` with every host
    in its own network namespace. The latter needs root and is tagged "local" (Bazel's sandbox
    makes `ip netns add` fail); where namespaces are unavailable it is skipped with a message
    (tests/many_hosts_main.c++). Cases that only make sense in namespaces (link control) go in
    TEST_SUITE("namespaces only"). The file defines no main()."""
    native.cc_library(
        name = name + "_cases",
        testonly = True,
        srcs = [name + ".c++"],
        deps = [
            ":hosts",
            "//client/cpp:client",
            "//third_party:doctest",
        ] + deps,
        alwayslink = True,
    )
    for variant, network, tags in [
        (name, "loopback", []),
        (name + "_netns", "namespaces", ["local"]),
    ]:
        cc_test(
            name = variant,
            size = size,
            data = ["//server:refstored"] + data,
            env = {"REFSTORE_TEST_NETWORK": network},
            tags = tags,
            deps = [
                ":" + name + "_cases",
                ":many_hosts_main",
            ],
        )
