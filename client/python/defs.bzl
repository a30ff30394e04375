"""The Python package's sources and its test rule."""

PACKAGE_SOURCES = [
    "refstore/__init__.py",
    "refstore/_lib.py",
    "refstore/arrays.py",
    "refstore/client.py",
    "refstore/errors.py",
    "refstore/handles.py",
    "refstore/pickling.py",
]

def refstore_py_test(name, size = "medium", data = []):
    """pytest over tests/<name>.py with Debian's /usr/bin/python3, against real refstored
    processes (tests/conftest.py starts them). Tagged "no_sanitizer": the package's .so files,
    built with a sanitizer, cannot load into an interpreter that is not (.ci/run leaves these
    out of its sanitizer runs; the C ABI underneath is covered there by //tests:c_*_test)."""
    native.py_test(
        name = name,
        size = size,
        srcs = [
            "tests/conftest.py",
            "tests/run_pytest.py",
            "tests/%s.py" % name,
        ],
        main = "tests/run_pytest.py",
        args = ["$(location tests/%s.py)" % name],
        data = [
            "//server:refstored",
            "//tools/refctl",
        ] + data,
        legacy_create_init = False,
        python_version = "PY3",
        srcs_version = "PY3",
        tags = ["no_sanitizer"],
        deps = [":refstore"],
    )
