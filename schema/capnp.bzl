"""capnp_cc_library: compiles Cap'n Proto schemas with the system `capnp` tool into a cc_library."""

load("@rules_cc//cc:defs.bzl", "cc_library")

def capnp_cc_library(name, srcs, deps = [], imports = [], tags = [], visibility = None):
    """Generates `<file>.capnp.h` and `<file>.capnp.c++` for each schema in `srcs`.

    Schemas may import Cap'n Proto's own (`/capnp/c++.capnp`) from /usr/include and other
    schemas of this workspace by absolute path (`import "/schema/refstore.capnp"`); list those in
    `imports` (their .capnp files) and their capnp_cc_library in `deps`. `tags` go on both
    generated targets (e.g. "manual" for benchmark-only schemas).
    """
    headers = [s + ".h" for s in srcs]
    sources = [s + ".c++" for s in srcs]
    native.genrule(
        name = name + "_gen",
        srcs = srcs + imports,
        outs = headers + sources,
        # capnp writes imports of workspace schemas as <schema/x.capnp.h>; quoting them lets
        # Bazel's -iquote roots (source and generated trees) resolve them.
        cmd = " ".join([
            "capnp compile -I/usr/include -I.",
            "--src-prefix=$$(dirname $(location %s))" % srcs[0],
            "-oc++:$(RULEDIR)",
        ] + ["$(location %s)" % s for s in srcs]) + " && sed -i -E " +
              "'/#include <capnp\\//! s|#include <([^>]*[.]capnp[.]h)>|#include \"\\1\"|' " +
              " ".join(["$(RULEDIR)/%s.h" % s for s in srcs]),
        tags = tags,
    )
    cc_library(
        name = name,
        srcs = sources,
        hdrs = headers,
        deps = deps + ["//third_party:capnp"],
        tags = tags,
        visibility = visibility,
    )
