"""connect() and Client: a connection to refstored.

One client per thread: a Client and every handle made through it belong to the thread that
connected it (calls from another thread raise refstore.Misuse; handles garbage collected on
another thread are released at the owning thread's next call). After os.fork() the child
cannot use what it inherited (Misuse; dropping it releases nothing of the parent's): it
connects a client of its own, as multiprocessing workers do.
"""
import contextlib
import ctypes
import json

from . import _lib, _memory, arrays, errors, pickling
from ._lib import lib
from .handles import Connection, Promise, Ref, View, WriteBuffer, _children

# put() sends values up to this size in its request (the copy path); larger ones are written
# straight into shared memory (create + write + seal: one copy, no socket traffic).
_PUT_INLINE_LIMIT = 1 << 20


def connect(address=None, name=None, *, memory_timeout=None):
    """Connects to refstored and returns a Client (a context manager).

    `address`: None for the default socket ($REFSTORE_SOCKET, else $XDG_RUNTIME_DIR/
    refstored.sock, else /tmp/refstore-<uid>/refstored.sock), "/path" or "unix:/path", or
    "tcp:host:port" (copy path only). `name` labels the connection in `refctl ls` (None: the
    program's name). `memory_timeout`: seconds put/create wait for memory to free up before
    refstore.OutOfMemory (None: the daemon's default, 30 s)."""
    out = ctypes.c_void_p()
    message = ctypes.create_string_buffer(1024)
    result = lib.refstore_connect(
        address.encode() if address else None, name.encode() if name else None,
        ctypes.byref(out), message, len(message))
    if result != 0:
        raise errors.error_for(result, message.value.decode(errors="replace"))
    client = Client(Connection(out.value))
    if memory_timeout is not None:
        client._connection.check(
            lib.refstore_memory_timeout(out.value, int(round(memory_timeout * 1000))))
    return client


class Client:
    """A connection to refstored. close() (or the end of a `with` block) closes it once the
    Refs, Views and buffers made through it are closed too: they keep the connection open."""

    def __init__(self, connection):
        self._connection = connection

    def _live(self):
        if self._connection is None:
            raise errors.misuse("operation on a closed Client")
        return self._connection

    def _made(self, result, out):
        """`out`'s handle after a call that makes one."""
        self._connection.check(result)
        return out.value

    @property
    def closed(self):
        return self._connection is None

    def close(self):
        self._connection = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __reduce__(self):
        raise TypeError("a refstore Client cannot be pickled: connect one in each process")

    @property
    def shared_memory(self):
        """Whether views are zero-copy (a Unix socket) rather than unavailable (TCP)."""
        return bool(lib.refstore_shared_memory(self._live().handle))

    # --- values ------------------------------------------------------------------------------

    def put(self, data, children=()):
        """Stores a copy of bytes-like `data` (any size) and returns its Ref. `children` are
        nested Refs the value keeps alive (a dataset and its partitions)."""
        connection = self._live()
        with _memory.Borrowed(data) as source:
            if source.nbytes <= _PUT_INLINE_LIMIT:
                array, count = _children(children)
                out = ctypes.c_void_p()
                return Ref(connection, self._made(lib.refstore_put_nested(
                    connection.handle, source.address, source.nbytes, array, count,
                    ctypes.byref(out)), out))
            with self.create(source.nbytes) as buffer:
                buffer.write(0, data)
                return buffer.seal(children)

    def put_many(self, values):
        """put() for many small values in one round trip: a list of Refs, in order. All or
        nothing (at most 65,536 values, 16 MiB in all)."""
        connection = self._live()
        with contextlib.ExitStack() as stack:
            sources = [stack.enter_context(_memory.Borrowed(value)) for value in values]
            count = len(sources)
            addresses = (ctypes.c_void_p * count)(*[s.address for s in sources])
            sizes = (ctypes.c_size_t * count)(*[s.nbytes for s in sources])
            out = (ctypes.c_void_p * count)()
            connection.check(lib.refstore_put_many(connection.handle, addresses, sizes, count, out))
            return [Ref(connection, handle) for handle in out]

    def read_many(self, refs):
        """The whole value of each Ref, as bytes, in one round trip (promises are waited for;
        at most 65,536 Refs, 16 MiB in all)."""
        connection = self._live()
        array, count = _children(refs)
        data = ctypes.POINTER(ctypes.c_uint8)()
        sizes = (ctypes.c_size_t * count)()
        connection.check(
            lib.refstore_read_many(connection.handle, array, count, ctypes.byref(data), sizes))
        try:
            values, at = [], 0
            for size in sizes:
                values.append(ctypes.string_at(ctypes.addressof(data.contents) + at, size)
                              if size else b"")
                at += size
            return values
        finally:
            lib.refstore_bytes_free(data)

    def create(self, size):
        """Reserves `size` bytes for a new value: a WriteBuffer to fill in place and seal. When
        memory is full this waits (first come, first served) while the daemon spills older
        values; refstore.OutOfMemory after `memory_timeout`."""
        connection = self._live()
        out = ctypes.c_void_p()
        return WriteBuffer(connection, self._made(
            lib.refstore_create(connection.handle, int(size), ctypes.byref(out)), out))

    def restore(self, token):
        """Turns a share token into a Ref (NotFound, Expired, Malformed, WrongStore)."""
        connection = self._live()
        out = ctypes.c_void_p()
        return Ref(connection, self._made(
            lib.refstore_restore(connection.handle, token.encode(), ctypes.byref(out)), out))

    def restore_view(self, token):
        """restore(token).view() in one round trip, keeping no Ref: the View alone pins the
        value. What a consumer handed a token calls."""
        connection = self._live()
        out = ctypes.c_void_p()
        return View(connection, self._made(
            lib.refstore_restore_view(connection.handle, token.encode(), ctypes.byref(out)), out))

    def stats(self):
        """Every counter of the daemon, as a dict named as `refctl stats --json` names them."""
        connection = self._live()
        text = _lib.owned_string()
        connection.check(lib.refstore_stats_json(connection.handle, ctypes.byref(text)))
        return json.loads(_lib.take_string(text))

    # --- references beyond put/get ---------------------------------------------------------

    def promise(self):
        """A Promise: its `ref` exists now, the value comes with fulfill/fulfill_with/reject."""
        connection = self._live()
        ref, fulfiller = ctypes.c_void_p(), ctypes.c_void_p()
        connection.check(
            lib.refstore_promise(connection.handle, ctypes.byref(ref), ctypes.byref(fulfiller)))
        return Promise(connection, ref.value, fulfiller.value)

    def lookup(self, name):
        """A new Ref to the value saved under `name` (Ref.save_as); NotFound if none."""
        connection = self._live()
        out = ctypes.c_void_p()
        return Ref(connection, self._made(
            lib.refstore_lookup(connection.handle, name.encode(), ctypes.byref(out)), out))

    def unname(self, name):
        """Drops the name's pin; the value is freed if nothing else references it."""
        connection = self._live()
        connection.check(lib.refstore_unname(connection.handle, name.encode()))

    def adopt(self, ref):
        """A new Ref on this client's connection to the value of `ref`, a Ref of another Client
        (of the same daemon), so that the other may close."""
        connection = self._live()
        if not isinstance(ref, Ref):
            raise TypeError("adopt needs a refstore.Ref, not %s" % type(ref).__name__)
        out = ctypes.c_void_p()
        return Ref(connection, self._made(
            lib.refstore_adopt(connection.handle, ref._live(), ctypes.byref(out)), out))

    # --- numpy and pickle --------------------------------------------------------------------

    def put_array(self, array):
        """Stores a numpy array as a .npy value (see refstore.arrays) and returns its Ref;
        refstore.get_array turns it back into a zero-copy read-only array."""
        return arrays.put_array(self, array)

    def create_array(self, shape, dtype, order="C"):
        """An ArrayBuffer whose `array` is a writable numpy array in shared memory: compute into
        it, then seal() or seal_and_share() (see refstore.arrays)."""
        return arrays.create_array(self, shape, dtype, order)

    def put_pickled(self, obj, inline_below=pickling.INLINE_BELOW):
        """Pickles `obj` (protocol 5) into one value whose large buffers (numpy arrays, bytes)
        are nested values of their own; refstore.get_pickled loads it with those buffers
        zero-copy (see refstore.pickling)."""
        return pickling.put_pickled(self, obj, inline_below)
