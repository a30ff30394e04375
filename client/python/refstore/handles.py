"""Ref, View, WriteBuffer and Promise: handles on values held in refstored.

Every handle is released by close(), at the end of a `with` block, or, as a last resort, when
it is garbage collected. A View's and a WriteBuffer's memory is exported through the buffer
protocol (memoryview, numpy.frombuffer, ...) without a copy; every such export keeps its
handle, and so the pin on the bytes, alive: closing a handle whose memory is still exported
only refuses new exports, and the release happens when the last export goes.
"""
import ctypes
import dataclasses
import weakref

from . import _lib, _memory, errors
from ._lib import lib

# Whole values at least this large are read through a view (one copy out of shared memory)
# rather than the copy path (4 MiB chunks over the socket).
_READ_THROUGH_VIEW = 64 * 1024


def _forever(timeout):
    return -1.0 if timeout is None else float(timeout)


class Connection:
    """One C client handle, shared by its Client and every open handle made through it: their
    errors are read from it, so it lives until the Client is closed and the last of them is
    closed too. (The connection itself stays open as long as any handle in the C library does.)"""

    def __init__(self, handle):
        self.handle = handle
        self._finalizer = weakref.finalize(self, lib.refstore_client_destroy, handle)

    def check(self, result):
        """Raises the refstore.Error subclass for a failed call's result code."""
        if result != 0:
            message = lib.refstore_errmsg(self.handle).decode(errors="replace")
            raise errors.error_for(result, message)


def _children(children):
    """A C array of the handles of `children` (Refs), and its length."""
    refs = list(children)
    for ref in refs:
        if not isinstance(ref, Ref):
            raise TypeError("children must be refstore.Ref objects, not %s" % type(ref).__name__)
    return _lib.handles([ref._live() for ref in refs]), len(refs)


@dataclasses.dataclass(frozen=True)
class ObjectInfo:
    """What the daemon knows about a value: its id (display only: there is no get-by-id), size,
    XXH3-128 hash (hex; zeros until known), and state ("sealed", "promised", "spilled", ...)."""

    id: str
    size: int
    hash: str
    state: str

    @staticmethod
    def _from_c(info):
        return ObjectInfo(id="%016x%016x" % (info.id_origin, info.id_serial), size=info.size,
                          hash="%016x%016x" % (info.hash_high, info.hash_low),
                          state=info.state.decode())


class _Handle:
    """A C handle of one kind, destroyed (once) by close(), `with` or garbage collection."""

    def _own(self, connection, handle, destroy):
        self._connection = connection
        self._handle = handle
        self._closed = False
        self._finalizer = weakref.finalize(self, destroy, handle)

    def _live(self):
        if self._closed:
            raise errors.misuse("operation on a closed %s" % type(self).__name__)
        return self._handle

    @property
    def closed(self):
        return self._closed

    def close(self):
        """Releases the handle now (idempotent)."""
        self._closed = True
        self._finalizer()
        self._forget_connection()

    def _forget_connection(self):
        # A closed handle makes no more calls, so it no longer needs the client handle (whose
        # only use here is reading errors): holding it would keep the connection open for as
        # long as the closed handle object is referenced.
        self._connection = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __reduce__(self):
        raise TypeError("a refstore %s cannot be pickled: share() a Ref and send its token "
                        "(or use Client.put_pickled)" % type(self).__name__)

    def __repr__(self):
        return "<refstore.%s%s>" % (type(self).__name__, " closed" if self._closed else "")


class Ref(_Handle):
    """A reference to an immutable value: holding it keeps the value alive."""

    def __init__(self, connection, handle):
        self._own(connection, handle, lib.refstore_ref_destroy)

    @property
    def shared_memory(self):
        """Whether view() is available (zero-copy, through shared memory) for this Ref."""
        self._live()
        return bool(lib.refstore_shared_memory(self._connection.handle))

    def info(self):
        """The value's ObjectInfo (a promise's state is "promised" until it is fulfilled)."""
        handle = self._live()
        info = _lib.ObjectInfo()
        self._connection.check(lib.refstore_ref_info(handle, ctypes.byref(info)))
        return ObjectInfo._from_c(info)

    def when_ready(self, timeout=None):
        """Waits until the value exists (at once unless it is a promise) and returns its info;
        refstore.Timeout after `timeout` seconds (None: no limit), Rejected or BrokenPromise if
        the promise failed."""
        handle = self._live()
        info = _lib.ObjectInfo()
        self._connection.check(
            lib.refstore_ref_when_ready(handle, _forever(timeout), ctypes.byref(info)))
        return ObjectInfo._from_c(info)

    def view(self, timeout=None):
        """A zero-copy, read-only View of the bytes, which pins them in memory while it (or
        any memoryview or array made from it) lives. A promise is waited for first."""
        handle = self._live()
        if timeout is not None:
            self.when_ready(timeout)
        out = ctypes.c_void_p()
        self._connection.check(lib.refstore_ref_view(handle, ctypes.byref(out)))
        return View(self._connection, out.value)

    def read(self, offset=0, length=None):
        """A copy of `length` bytes from `offset` (None: to the end), as bytes."""
        handle = self._live()
        if length is None:
            size = self.when_ready().size
            if offset > size:
                raise errors.error_class("OUT_OF_RANGE")(
                    "refstore.OUT_OF_RANGE: offset %d is past the end of the %d-byte value"
                    % (offset, size))
            length = size - offset
            if length >= _READ_THROUGH_VIEW and self.shared_memory:
                with self.view() as view, memoryview(view) as whole:
                    return bytes(whole[offset:offset + length])
        out = ctypes.create_string_buffer(length)
        count = ctypes.c_size_t()
        self._connection.check(
            lib.refstore_ref_read(handle, offset, out, length, ctypes.byref(count)))
        return out.raw[:count.value]

    def share(self, ttl, uses=0):
        """A printable token that Client.restore turns back into a Ref, valid for `ttl` seconds
        and `uses` restores (0: unlimited). The token keeps the value alive until then."""
        handle = self._live()
        token = _lib.owned_string()
        self._connection.check(
            lib.refstore_ref_share(handle, int(ttl), int(uses), ctypes.byref(token)))
        return _lib.take_string(token)

    def children(self):
        """New Refs to the nested references the value was made with."""
        handle = self._live()
        array = _lib.handle_p()
        count = ctypes.c_size_t()
        self._connection.check(
            lib.refstore_ref_children(handle, ctypes.byref(array), ctypes.byref(count)))
        try:
            return [Ref(self._connection, array[i]) for i in range(count.value)]
        finally:
            lib.refstore_ref_array_free(array)

    def save_as(self, name):
        """Pins the value under `name` until Client.unname(name) (AlreadyExists if taken)."""
        handle = self._live()
        self._connection.check(lib.refstore_ref_save_as(handle, name.encode()))


class View(_memory.Memory, _Handle):
    """A zero-copy, read-only window on a value's bytes: a buffer (memoryview(view),
    numpy.frombuffer(view, dtype)) that pins the bytes while it, or anything made from it,
    lives."""

    def __init__(self, connection, handle):
        self._own(connection, handle, lib.refstore_view_destroy)
        self._size = lib.refstore_view_size(handle)
        self._attach(lib.refstore_view_data(handle) or 0, self._size, True)

    @property
    def size(self):
        return self._size

    def __len__(self):
        return self._size

    def tobytes(self):
        """A copy of the bytes."""
        with memoryview(self) as whole:
            return whole.tobytes()

    def close(self):
        """Unpins the bytes now, or, while memoryviews or arrays of them exist, when the last of
        them goes. No new ones can be made."""
        self._closed = True
        if self._detach():
            self._finalizer()
        self._forget_connection()

    def _release(self):  # called by _memory when the last export of a closed View goes
        self._finalizer()


class WriteBuffer(_memory.Memory, _Handle):
    """Reserved space for a new value: fill it in place through the buffer protocol
    (memoryview(buffer), numpy.frombuffer(buffer, dtype)) or with write(), then seal(). Closing
    it unsealed aborts the value and frees the space."""

    def __init__(self, connection, handle):
        self._own(connection, handle, lib.refstore_buffer_destroy)
        self._size = lib.refstore_buffer_size(handle)
        address = lib.refstore_buffer_data(handle)
        if address:  # no shared memory to write in place (TCP): write() only
            self._attach(address, self._size, False)

    @property
    def size(self):
        return self._size

    def __len__(self):
        return self._size

    def write(self, offset, data):
        """Copies bytes-like `data` into the buffer at `offset`."""
        handle = self._live()
        with _memory.Borrowed(data) as source:
            self._connection.check(
                lib.refstore_buffer_write(handle, offset, source.address, source.nbytes))

    def _spend(self):
        """Before a seal: nothing may write into the value once it is sealed (or, if the seal
        fails, once the space is freed), so the memory must not be exported any more."""
        handle = self._live()
        if self._exports:
            raise errors.misuse(
                "%d memoryview(s) or array(s) of this WriteBuffer still exist: release them "
                "(del, or memoryview.release()) before sealing, since writing through them "
                "afterwards would change an immutable value" % self._exports)
        self._detach()
        return handle

    def seal(self, children=()):
        """Makes the value immutable and returns its first Ref; `children` are nested Refs the
        value keeps alive. The buffer is closed afterwards."""
        handle = self._spend()
        array, count = _children(children)
        out = ctypes.c_void_p()
        self._connection.check(
            lib.refstore_buffer_seal_nested(handle, array, count, ctypes.byref(out)))
        ref = Ref(self._connection, out.value)
        self.close()
        return ref

    def seal_and_share(self, ttl, uses=0):
        """seal() and Ref.share(ttl, uses) in one round trip, keeping no Ref: the token alone
        keeps the value alive. What a producer handing a value to another process calls."""
        handle = self._spend()
        token = _lib.owned_string()
        self._connection.check(lib.refstore_buffer_seal_and_share(
            handle, int(ttl), int(uses), None, ctypes.byref(token)))
        self.close()
        return _lib.take_string(token)

    def close(self):
        """Aborts the value if unsealed (frees its space), now or, while memoryviews or arrays of
        the buffer exist, when the last of them goes."""
        self._closed = True
        if self._detach():
            self._finalizer()
        self._forget_connection()

    def _release(self):  # called by _memory when the last export of a closed buffer goes
        self._finalizer()


class Promise(_Handle):
    """A future: `ref` exists at once (share it, nest it, name it); readers wait for the value.
    Exactly one of fulfill, fulfill_with and reject succeeds; closing the Promise before that
    (or leaving its `with` block) breaks it: readers get refstore.BrokenPromise."""

    def __init__(self, connection, ref_handle, fulfiller_handle):
        self.ref = Ref(connection, ref_handle)
        self._own(connection, fulfiller_handle, lib.refstore_fulfiller_destroy)

    def fulfill(self, data, children=()):
        """The value: a copy of bytes-like `data` (at most 16 MiB), with nested Refs."""
        handle = self._live()
        array, count = _children(children)
        with _memory.Borrowed(data) as source:
            self._connection.check(
                lib.refstore_fulfill(handle, source.address, source.nbytes, array, count))

    def fulfill_with(self, ref):
        """The value is `ref`'s (no copy): for large values, create + seal, then this."""
        if not isinstance(ref, Ref):
            raise TypeError("fulfill_with needs a refstore.Ref, not %s" % type(ref).__name__)
        handle = self._live()
        self._connection.check(lib.refstore_fulfill_with(handle, ref._live()))

    def reject(self, reason):
        """Readers get refstore.Rejected with `reason` in its message."""
        handle = self._live()
        self._connection.check(lib.refstore_reject(handle, str(reason).encode()))
