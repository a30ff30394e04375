"""The C library's version: refstore_version() returns it, and its major number names the
shared library's SONAME (librefstore.so.MAJOR)."""

REFSTORE_VERSION = "0.1.0"

REFSTORE_SONAME = "librefstore.so." + REFSTORE_VERSION.split(".")[0]
