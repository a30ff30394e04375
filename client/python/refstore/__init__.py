"""refstore: immutable values shared between processes by reference, zero-copy.

    import numpy, refstore
    with refstore.connect() as client:
        ref = client.put_array(numpy.arange(10.0))   # a Ref keeps the value alive
        token = ref.share(ttl=60)                     # hand it to any process
        array = refstore.get_array(ref)               # read-only, zero-copy

Errors raise refstore.Error subclasses named after their codes (refstore.NotFound, ...).
Threads and processes: one client per thread; a forked child connects a client of its own.
See README ("Using it from Python") and client/python/refstore/*.py.
"""
from . import errors as _errors
from . import _lib
from .arrays import ArrayBuffer, get_array
from .client import Client, connect
from .errors import Error
from .handles import ObjectInfo, Promise, Ref, View, WriteBuffer
from .pickling import get_pickled

# One class per result code of the C library: refstore.NotFound, refstore.Misuse, ...
globals().update(_errors.BY_NAME)


def version():
    """The C library's version ("0.1.0")."""
    return _lib.lib.refstore_version().decode()


__all__ = ["connect", "Client", "Ref", "View", "WriteBuffer", "Promise", "ObjectInfo",
           "ArrayBuffer", "get_array", "get_pickled", "Error", "version"] + sorted(_errors.BY_NAME)
