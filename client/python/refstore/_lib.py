"""The C library (librefstore.so, client/c/refstore.h) loaded with ctypes, and its signatures.

Looked for, in order: $REFSTORE_LIBRARY (a path), librefstore.so.0 next to this package (where
`bazel build //client/python:dist` puts it), then the system's library path. ctypes releases
the GIL around every call, so a thread waiting on the daemon does not stop the others.
"""
import ctypes
import os

SONAME = "librefstore.so.0"


def _load():
    candidates = []
    if os.environ.get("REFSTORE_LIBRARY"):
        candidates.append(os.environ["REFSTORE_LIBRARY"])
    candidates.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), SONAME))
    candidates.append(SONAME)  # the dynamic linker's search path (an installed library)
    failures = []
    for candidate in candidates:
        try:
            return ctypes.CDLL(candidate)
        except OSError as e:
            failures.append(str(e))
    raise ImportError(
        "refstore: cannot load the C library %s (%s). Build the package with "
        "`bazel build -c opt //client/python:dist` and put bazel-bin/client/python/dist on "
        "PYTHONPATH, or set $REFSTORE_LIBRARY (see README, 'Using it from Python')."
        % (SONAME, "; ".join(failures)))


lib = _load()

# Opaque handles travel as plain pointers.
handle = ctypes.c_void_p
handle_p = ctypes.POINTER(ctypes.c_void_p)
c_int, c_size_t, c_uint32, c_uint64, c_double = (
    ctypes.c_int, ctypes.c_size_t, ctypes.c_uint32, ctypes.c_uint64, ctypes.c_double)
c_char_p, c_void_p = ctypes.c_char_p, ctypes.c_void_p
# Strings the library allocates (freed with refstore_string_free): kept as raw pointers.
owned_string = ctypes.POINTER(ctypes.c_char)


class ObjectInfo(ctypes.Structure):
    _fields_ = [
        ("id_origin", c_uint64), ("id_serial", c_uint64), ("size", c_uint64),
        ("hash_high", c_uint64), ("hash_low", c_uint64), ("state", ctypes.c_char * 16),
    ]


def _declare(name, restype, *argtypes):
    function = getattr(lib, name)
    function.restype = restype
    function.argtypes = list(argtypes)


_declare("refstore_version", c_char_p)
_declare("refstore_errstr", c_char_p, c_int)
_declare("refstore_connect", c_int, c_char_p, c_char_p, handle_p, ctypes.c_char_p, c_size_t)
_declare("refstore_client_destroy", None, handle)
_declare("refstore_errmsg", c_char_p, handle)
_declare("refstore_errcode", c_int, handle)
_declare("refstore_shared_memory", c_int, handle)
_declare("refstore_memory_timeout", c_int, handle, c_uint32)
_declare("refstore_put_nested", c_int, handle, c_void_p, c_size_t, handle_p, c_size_t, handle_p)
_declare("refstore_put_many", c_int, handle, ctypes.POINTER(c_void_p), ctypes.POINTER(c_size_t),
         c_size_t, handle_p)
_declare("refstore_read_many", c_int, handle, handle_p, c_size_t,
         ctypes.POINTER(ctypes.POINTER(ctypes.c_uint8)), ctypes.POINTER(c_size_t))
_declare("refstore_bytes_free", None, ctypes.POINTER(ctypes.c_uint8))
_declare("refstore_restore", c_int, handle, c_char_p, handle_p)
_declare("refstore_restore_view", c_int, handle, c_char_p, handle_p)
_declare("refstore_stats_json", c_int, handle, ctypes.POINTER(owned_string))
_declare("refstore_create", c_int, handle, c_uint64, handle_p)
_declare("refstore_buffer_data", c_void_p, handle)
_declare("refstore_buffer_size", c_uint64, handle)
_declare("refstore_buffer_write", c_int, handle, c_uint64, c_void_p, c_size_t)
_declare("refstore_buffer_seal_nested", c_int, handle, handle_p, c_size_t, handle_p)
_declare("refstore_buffer_seal_and_share", c_int, handle, c_uint32, c_uint32, handle_p,
         ctypes.POINTER(owned_string))
_declare("refstore_buffer_destroy", None, handle)
_declare("refstore_ref_destroy", None, handle)
_declare("refstore_ref_info", c_int, handle, ctypes.POINTER(ObjectInfo))
_declare("refstore_ref_when_ready", c_int, handle, c_double, ctypes.POINTER(ObjectInfo))
_declare("refstore_ref_read", c_int, handle, c_uint64, c_void_p, c_size_t,
         ctypes.POINTER(c_size_t))
_declare("refstore_ref_share", c_int, handle, c_uint32, c_uint32, ctypes.POINTER(owned_string))
_declare("refstore_string_free", None, owned_string)
_declare("refstore_ref_children", c_int, handle, ctypes.POINTER(handle_p),
         ctypes.POINTER(c_size_t))
_declare("refstore_ref_array_free", None, handle_p)
_declare("refstore_ref_save_as", c_int, handle, c_char_p)
_declare("refstore_lookup", c_int, handle, c_char_p, handle_p)
_declare("refstore_unname", c_int, handle, c_char_p)
_declare("refstore_adopt", c_int, handle, handle, handle_p)
_declare("refstore_promise", c_int, handle, handle_p, handle_p)
_declare("refstore_fulfill", c_int, handle, c_void_p, c_size_t, handle_p, c_size_t)
_declare("refstore_fulfill_with", c_int, handle, handle)
_declare("refstore_reject", c_int, handle, c_char_p)
_declare("refstore_fulfiller_destroy", None, handle)
_declare("refstore_ref_view", c_int, handle, handle_p)
_declare("refstore_view_data", c_void_p, handle)
_declare("refstore_view_size", c_size_t, handle)
_declare("refstore_view_destroy", None, handle)


def take_string(pointer):
    """The text of a string the library allocated, which is then freed."""
    try:
        return ctypes.string_at(pointer).decode()
    finally:
        lib.refstore_string_free(pointer)


def handles(values):
    """A C array of the given handle values (for children and read_many)."""
    return (c_void_p * len(values))(*values)
