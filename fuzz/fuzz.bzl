"""refstore_fuzzer: a libFuzzer target and the test that runs it (see fuzz/BUILD.bazel)."""

load("@rules_cc//cc:defs.bzl", "cc_binary")

def refstore_fuzzer(name, deps, flags = [], size = "small"):
    """A fuzz target `<name>` from `<name>.c++` (which defines LLVMFuzzerTestOneInput), its seed
    corpus `corpus/<name>/`, and the test `<name>_test`.

    Plain builds (g++, also --config=asan/tsan) link replay_main.c++: the test replays every
    corpus input once. With --config=fuzz (clang, ASan + UBSan, libFuzzer) the binary is a
    libFuzzer fuzzer and the test fuzzes for $REFSTORE_FUZZ_SECONDS from the corpus. `flags`
    are libFuzzer options for that run (e.g. -max_len).
    """
    cc_binary(
        name = name,
        testonly = True,
        srcs = [name + ".c++"],
        deps = deps + select({
            "//fuzz:libfuzzer": ["//fuzz:fuzz_input"],
            "//conditions:default": ["//fuzz:fuzz_input", "//fuzz:replay_main"],
        }),
        linkopts = select({
            "//fuzz:libfuzzer": ["-fsanitize=fuzzer"],
            "//conditions:default": [],
        }),
    )
    native.sh_test(
        name = name + "_test",
        size = size,
        srcs = ["run_fuzzer.sh"],
        args = select({
            "//fuzz:libfuzzer": ["libfuzzer"],
            "//conditions:default": ["replay"],
        }) + ["$(location :%s)" % name, "fuzz/corpus/" + name] + flags,
        data = [":" + name] + native.glob(["corpus/%s/*" % name]),
    )
