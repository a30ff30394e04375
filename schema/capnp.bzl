"""capnp_cc_library: compiles Cap'n Proto schemas with the system `capnp` tool into a cc_library."""

load("@rules_cc//cc:defs.bzl", "cc_library")

def capnp_cc_library(name, srcs, deps = [], visibility = None):
    """Generates `<file>.capnp.h` and `<file>.capnp.c++` for each schema in `srcs`.

    Includes resolve against this package (`#include "schema/refstore.capnp.h"`), and the
    schemas may import Cap'n Proto's own (`/capnp/c++.capnp`) from /usr/include.
    """
    headers = [s + ".h" for s in srcs]
    sources = [s + ".c++" for s in srcs]
    native.genrule(
        name = name + "_gen",
        srcs = srcs,
        outs = headers + sources,
        cmd = " ".join([
            "capnp compile -I/usr/include",
            "--src-prefix=$$(dirname $(location %s))" % srcs[0],
            "-oc++:$(RULEDIR)",
        ] + ["$(location %s)" % s for s in srcs]),
    )
    cc_library(
        name = name,
        srcs = sources,
        hdrs = headers,
        deps = deps + ["//third_party:capnp"],
        visibility = visibility,
    )
