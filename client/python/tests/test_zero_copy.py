"""Zero-copy with numpy: arrays over a View are the daemon's shared memory itself, read-only down
to the page tables; arrays over a WriteBuffer write the value in place; .npy values and pickle
protocol 5 buffers come back without a copy."""
import ctypes
import io
import pickle
import socket

import numpy as np
import pytest

import refstore
from conftest import Daemon, data_address, mapping_of


def is_shared_segment(address, permissions):
    mapping = mapping_of(address)
    return mapping is not None and mapping[0] == permissions and \
        mapping[1].startswith("/memfd:refstore-segment")


def test_an_array_over_a_view_is_the_shared_mapping_and_read_only(client):
    with client.create(1 << 20) as buffer:
        np.frombuffer(buffer, np.uint8)[:] = np.arange(1 << 20) % 253
        ref = buffer.seal()
    view = ref.view()
    array = np.frombuffer(view, np.uint8)
    assert data_address(array) == view._address
    assert is_shared_segment(data_address(array), "r--s")  # read-only, shared: no copy
    assert array[12345] == 12345 % 253
    assert not array.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        array[0] = 1
    with pytest.raises(ValueError):
        array.setflags(write=True)
    with pytest.raises(TypeError):
        memoryview(view)[0] = 1
    with pytest.raises((BufferError, TypeError), match="writable"):
        ctypes.c_char.from_buffer(view)  # asks for a writable export: there is none


def test_an_array_over_a_write_buffer_writes_the_value_in_place(client, daemon):
    buffer = client.create(8 * 1000)
    array = np.frombuffer(buffer, np.float64)
    assert data_address(array) == buffer._address
    assert is_shared_segment(data_address(array), "rw-s")
    array[:] = np.arange(1000) * 0.5
    del array
    token = buffer.seal_and_share(60, 1)
    with refstore.connect(daemon.socket) as consumer:
        with consumer.restore_view(token) as view:
            assert np.array_equal(np.frombuffer(view, np.float64), np.arange(1000) * 0.5)


ARRAYS = {
    "float64 2-D": np.arange(12.0).reshape(3, 4),
    "int16 3-D Fortran order": np.asfortranarray(np.arange(60, dtype=np.int16).reshape(3, 4, 5)),
    "strided slice": np.arange(100, dtype=np.int32).reshape(10, 10)[::2, 1::3],
    "0-d": np.array(7.25),
    "empty": np.zeros((0, 3)),
    "big-endian": np.arange(5, dtype=">u4"),
    "bool": np.array([True, False, True]),
    "structured": np.array([(1, 2.5), (3, 4.5)], dtype=[("id", "<i8"), ("x", "<f4")]),
    "complex": np.array([1 + 2j, 3 - 4j]),
}


@pytest.mark.parametrize("name", sorted(ARRAYS))
def test_put_array_get_array(client, name):
    original = ARRAYS[name]
    ref = client.put_array(original)
    restored = refstore.get_array(ref)
    assert restored.dtype == original.dtype and restored.shape == original.shape
    assert np.array_equal(restored, original)
    assert not restored.flags.writeable
    if original.ndim > 1 and original.flags.f_contiguous and not original.flags.c_contiguous:
        assert restored.flags.f_contiguous  # the layout is kept
    if original.size:
        assert is_shared_segment(data_address(restored), "r--s")
        assert data_address(restored) % 16 == 0  # the .npy header keeps the data aligned
    # The value is a plain .npy file: anything that reads those reads it.
    assert np.array_equal(np.load(io.BytesIO(ref.read())), original)


def test_get_array_from_a_token_view(client, daemon):
    token = client.put_array(np.arange(1000, dtype=np.uint16)).share(60, 1)
    with refstore.connect(daemon.socket) as consumer:
        array = refstore.get_array(consumer.restore_view(token))
        assert array.sum() == sum(range(1000))


def test_arrays_of_objects_and_values_not_arrays_are_refused(client):
    with pytest.raises(TypeError, match="put_pickled"):
        client.put_array(np.array([{}, []], dtype=object))
    with pytest.raises(ValueError, match="no .npy header"):
        refstore.get_array(client.put(b"just bytes"))
    with pytest.raises(TypeError):
        refstore.get_array(b"not a ref")


def test_create_array_computes_in_place(client, daemon):
    with client.create_array((100, 50), np.float32) as out:
        assert is_shared_segment(data_address(out.array), "rw-s")
        out.array[:] = 1.5
        out.array[7, 3] = -2
        token = out.seal_and_share(60, 1)
    with refstore.connect(daemon.socket) as consumer:
        array = refstore.get_array(consumer.restore_view(token))
        assert array.shape == (100, 50) and array.dtype == np.float32
        assert array[7, 3] == -2 and array.sum() == 1.5 * 4999 - 2


def test_create_array_refuses_to_seal_while_the_array_is_held(client):
    out = client.create_array(10, np.int64)
    held = out.array
    with pytest.raises(refstore.Misuse, match="before sealing"):
        out.seal()
    del held
    ref = out.seal()
    assert np.array_equal(refstore.get_array(ref), np.zeros(10, np.int64))


def test_pickle_protocol_5_buffers_travel_by_reference(client, daemon):
    big = np.arange(1 << 17, dtype=np.float64)  # 1 MiB: out of band
    raw = pickle.PickleBuffer(bytearray(b"r" * 100000))  # any buffer can go out of band
    obj = {"big": big, "small": np.arange(3), "meta": ("x", 1), "raw": raw}
    ref = client.put_pickled(obj)
    assert len(ref.children()) == 2  # big and raw; small stays inside the pickle stream
    token = ref.share(60, 1)
    ref.close()
    with refstore.connect(daemon.socket) as consumer:
        loaded = refstore.get_pickled(consumer.restore(token))
        assert np.array_equal(loaded["big"], big) and np.array_equal(loaded["small"], [0, 1, 2])
        assert loaded["meta"] == ("x", 1) and bytes(loaded["raw"]) == b"r" * 100000
        assert is_shared_segment(data_address(loaded["big"]), "r--s")  # zero-copy
        assert not loaded["big"].flags.writeable
        del loaded


def test_over_tcp_arrays_travel_by_copy():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    daemon = Daemon(extra=["--tcp", "127.0.0.1:%d" % port])
    try:
        with refstore.connect("tcp:127.0.0.1:%d" % port) as remote:
            assert not remote.shared_memory
            original = np.asfortranarray(np.arange(24.0).reshape(4, 6))
            ref = remote.put_array(original)
            assert not ref.shared_memory
            with pytest.raises(refstore.FailedPrecondition):
                ref.view()
            restored = refstore.get_array(ref)  # a read-only copy: nothing to map
            assert np.array_equal(restored, original) and restored.flags.f_contiguous
            assert not restored.flags.writeable
            with pytest.raises(refstore.Misuse, match="no shared memory"):
                remote.create_array(3, np.int8)
            with refstore.connect(daemon.socket) as local:  # the same value, zero-copy locally
                shared = refstore.get_array(local.restore_view(ref.share(60)))
                assert np.array_equal(shared, original)
                assert is_shared_segment(data_address(shared), "r--s")
    finally:
        assert daemon.stop() == 0
