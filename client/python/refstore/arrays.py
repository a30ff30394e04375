"""numpy arrays as refstore values, shared zero-copy.

An array is stored as a .npy file: numpy's own header (magic, version, and a dict of dtype
`descr`, `fortran_order` and `shape`, padded so the data starts 64-byte aligned), then the
elements. Any program can read it: numpy.load() of the value's bytes (`refctl get TOKEN >
a.npy`), or any .npy reader in C or C++ (see client/python/examples/). A C- or
Fortran-contiguous array keeps its layout; any other strided array is stored C-contiguous (the
copy into shared memory compacts it), so `strides` are those of the stored layout.

get_array() maps the value back as a read-only numpy array over the value's shared memory: no
copy, and the array holds the View that pins the bytes for as long as it lives.
"""
import io
import math

try:
    import numpy
    from numpy.lib import format as npy
except ImportError:  # refstore works without numpy; only these helpers need it
    numpy = None


def _need_numpy():
    if numpy is None:
        raise ImportError("refstore's array helpers need numpy (Debian: python3-numpy)")


def _header(dtype, shape, fortran_order):
    """The .npy header (version 1.0, or 2.0 if the header is too large for 1.0)."""
    d = {"descr": npy.dtype_to_descr(dtype), "fortran_order": fortran_order,
         "shape": tuple(shape)}
    out = io.BytesIO()
    try:
        npy.write_array_header_1_0(out, d)
    except ValueError:
        out = io.BytesIO()
        npy.write_array_header_2_0(out, d)
    return out.getvalue()


def _refuse_objects(dtype):
    if dtype.hasobject:
        raise TypeError("arrays of Python objects cannot be shared as memory: "
                        "use Client.put_pickled")


class ArrayBuffer:
    """A numpy array being written in place in shared memory (Client.create_array). Fill
    `array`, then seal() -> Ref or seal_and_share(ttl, uses) -> token. Any other references to
    `array` (or views of it) must be gone by then: nothing may write into a sealed value."""

    def __init__(self, client, shape, dtype, order="C"):
        _need_numpy()
        dtype = numpy.dtype(dtype)
        _refuse_objects(dtype)
        shape = tuple(int(n) for n in (shape if isinstance(shape, (tuple, list)) else (shape,)))
        if order not in ("C", "F"):
            raise ValueError("order must be 'C' or 'F'")
        header = _header(dtype, shape, order == "F" and len(shape) > 1)
        count = math.prod(shape)
        self._buffer = client.create(len(header) + count * dtype.itemsize)
        with memoryview(self._buffer) as whole:
            whole[:len(header)] = header
        self.array = numpy.frombuffer(self._buffer, dtype, count, len(header)).reshape(
            shape, order=order)

    def seal(self, children=()):
        self.array = None
        return self._buffer.seal(children)

    def seal_and_share(self, ttl, uses=0):
        self.array = None
        return self._buffer.seal_and_share(ttl, uses)

    def close(self):
        """Aborts the value if unsealed (once `array` and its views are gone)."""
        self.array = None
        self._buffer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def create_array(client, shape, dtype, order="C"):
    return ArrayBuffer(client, shape, dtype, order)


def put_array(client, array):
    """Stores `array` (any numpy array, or anything numpy.asarray takes) as a .npy value: one
    copy, into shared memory (over TCP, through the copy path). Returns its Ref."""
    _need_numpy()
    array = numpy.asarray(array)
    _refuse_objects(array.dtype)
    order = "F" if array.ndim > 1 and array.flags.f_contiguous and not array.flags.c_contiguous \
        else "C"
    if not client.shared_memory:
        header = _header(array.dtype, array.shape, order == "F")
        with client.create(len(header) + array.nbytes) as buffer:
            buffer.write(0, header)
            if array.nbytes:
                buffer.write(len(header), numpy.ravel(array, order=order).view(numpy.uint8))
            return buffer.seal()
    with ArrayBuffer(client, array.shape, array.dtype, order) as out:
        numpy.copyto(out.array, array, casting="no")
        return out.seal()


def _parse_header(whole):
    """(shape, fortran_order, dtype, data offset) of the .npy value in memoryview `whole`."""
    prefix = whole[:npy.MAGIC_LEN + 4].tobytes()
    if not prefix.startswith(npy.MAGIC_PREFIX) or len(prefix) < npy.MAGIC_LEN + 2:
        raise ValueError("not an array stored by refstore (no .npy header)")
    source = io.BytesIO(prefix)
    version = npy.read_magic(source)
    length_bytes = 2 if version == (1, 0) else 4
    header_length = int.from_bytes(prefix[npy.MAGIC_LEN:npy.MAGIC_LEN + length_bytes], "little")
    offset = npy.MAGIC_LEN + length_bytes + header_length
    source = io.BytesIO(whole[:offset].tobytes())
    npy.read_magic(source)
    if version == (1, 0):
        shape, fortran_order, dtype = npy.read_array_header_1_0(source)
    else:
        shape, fortran_order, dtype = npy.read_array_header_2_0(source)
    return shape, fortran_order, dtype, offset


def get_array(source):
    """The array stored by put_array/create_array, read-only and zero-copy. `source` is a Ref
    or a View (e.g. client.restore_view(token)); the array pins the value's bytes while it
    lives, whether or not `source` is closed. (A Ref of a client without shared memory, over
    TCP, gives a read-only copy.)"""
    _need_numpy()
    from .handles import Ref, View
    if isinstance(source, Ref):
        # Without shared memory (TCP) there is nothing to map: a read-only copy instead.
        view = source.view() if source.shared_memory else source.read()
    elif isinstance(source, View):
        view = source
    else:
        raise TypeError("get_array needs a refstore.Ref or View, not %s" % type(source).__name__)
    whole = memoryview(view)  # the export that keeps the View, and its pin, alive
    shape, fortran_order, dtype, offset = _parse_header(whole)
    _refuse_objects(dtype)
    count = math.prod(shape)
    if offset + count * dtype.itemsize > len(whole):
        raise ValueError("the .npy header describes more bytes than the value holds")
    array = numpy.frombuffer(whole, dtype, count, offset)
    return array.reshape(shape, order="F" if fortran_order else "C")
