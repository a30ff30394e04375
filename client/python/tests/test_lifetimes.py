"""Lifetimes: whatever is made from a View or WriteBuffer keeps it (and the daemon's pin) alive,
no stale pointer can be made, and once everything is released the daemon holds nothing -- also
when the holder is a Python process killed with SIGKILL."""
import gc
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

import refstore
from conftest import eventually

SIZE = 1 << 20


def pattern(seed):
    return (np.arange(SIZE, dtype=np.uint64) * 2654435761 + seed).astype(np.uint8)


def put_pattern(client, seed):
    with client.create(SIZE) as buffer:
        np.frombuffer(buffer, np.uint8)[:] = pattern(seed)
        return buffer.seal()


def the_object(daemon):
    """The only object's `refctl ls --json` entry."""
    objects = json.loads(daemon.refctl("ls", "--json"))
    assert len(objects) == 1, objects
    return objects[0]


def an_array_whose_view_is_gone(client):
    ref = put_pattern(client, 7)
    with ref.view() as view:
        array = np.frombuffer(view, np.uint8)
    ref.close()
    return array  # the View, closed, and the Ref, closed, are out of scope


def test_an_array_outlives_its_view_and_keeps_the_pin(client, daemon):
    array = an_array_whose_view_is_gone(client)
    gc.collect()
    entry = the_object(daemon)
    assert entry["pins"] == 1 and entry["holders"] == []  # no reference left, but pinned
    # Its memory is not reused while pinned: other values come and go around it.
    for seed in range(20):
        put_pattern(client, seed).close()
    assert np.array_equal(array, pattern(7))
    del array
    assert eventually(lambda: daemon.stats()["objects"] == 0)


def test_a_memoryview_outlives_its_view_too(client, daemon):
    ref = put_pattern(client, 3)
    memory = memoryview(ref.view())
    ref.close()
    gc.collect()
    assert the_object(daemon)["pins"] == 1
    assert memory[SIZE - 1] == pattern(3)[SIZE - 1]
    memory.release()
    assert eventually(lambda: daemon.stats()["objects"] == 0)


def test_closing_an_exported_view_waits_for_its_exports(client, daemon):
    ref = put_pattern(client, 1)
    view = ref.view()
    array = np.frombuffer(view, np.uint8)
    ref.close()
    view.close()
    assert view.closed
    with pytest.raises(refstore.Misuse, match="closed"):
        memoryview(view)  # no new exports
    assert the_object(daemon)["pins"] == 1
    assert np.array_equal(array, pattern(1))
    del array
    assert eventually(lambda: daemon.stats()["objects"] == 0)


def test_closing_an_exported_write_buffer_aborts_after_its_exports(client, daemon):
    buffer = client.create(SIZE)
    array = np.frombuffer(buffer, np.uint8)
    buffer.close()
    assert daemon.stats()["creating"] == 1  # not aborted under the array's feet
    array[:] = 1  # still writable memory of the buffer, not of anything else
    with pytest.raises(refstore.Misuse):
        buffer.seal()
    del array
    assert eventually(lambda: daemon.stats()["objects"] == 0)


def test_sealing_is_refused_while_the_buffer_is_exported(client):
    buffer = client.create(16)
    memory = memoryview(buffer)
    memory[:] = b"0123456789abcdef"
    with pytest.raises(refstore.Misuse, match="1 memoryview"):
        buffer.seal()
    with pytest.raises(refstore.Misuse, match="before sealing"):
        buffer.seal_and_share(60)
    memory.release()
    assert buffer.seal().read() == b"0123456789abcdef"
    with pytest.raises(refstore.Misuse, match="closed"):
        memoryview(buffer)  # a sealed buffer exports nothing any more


def test_refctl_stats_reaches_zero_once_everything_is_released(client, daemon):
    ref = put_pattern(client, 5)
    view = ref.view()
    array = np.frombuffer(view, np.float32)
    restored = client.restore(ref.share(60, 1))  # single-use tokens, both spent here
    client.restore_view(ref.share(60, 1)).close()
    buffer = client.create(100)
    promise = client.promise()
    pickled = client.put_pickled({"a": np.arange(100000)})  # two values: stream and array
    loaded = refstore.get_pickled(pickled)
    named = client.put(b"named")
    named.save_as("lifetimes")
    many = client.put_many([b"a", b"b"])
    assert daemon.stats()["objects"] == 8
    for handle in [ref, view, restored, buffer, promise, promise.ref, pickled, named] + many:
        handle.close()
    client.unname("lifetimes")
    # Left: the pattern (pinned by `array`) and the pickled array (by `loaded`'s views).
    assert eventually(lambda: daemon.stats()["objects"] == 2)
    del array, loaded
    stats = daemon.stats()
    assert stats["objects"] == stats["holders"] == stats["tokens"] == stats["bytes_used"] == 0


def test_a_killed_python_holder_frees_everything(daemon):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, daemon.socket], stdout=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(refstore.__file__))))
    try:
        assert holder.stdout.readline().strip() == "ready"
        stats = daemon.stats()
        assert stats["objects"] == 5 and daemon.clients() == 1
        holder.send_signal(signal.SIGKILL)
        assert holder.wait() == -signal.SIGKILL
        assert eventually(lambda: daemon.stats()["objects"] == 0)
        assert daemon.clients() == 0
    finally:
        holder.kill()
        holder.wait()


# Holds a Ref, a View with an array over it, an unsealed WriteBuffer with an array over it, a
# promise, and a pickled object, then waits to be killed.
HOLDER = r"""
import sys, time
import numpy as np
import refstore
client = refstore.connect(sys.argv[1], name="holder")
ref = client.put(b"held" * 1000)
view = ref.view()
array = np.frombuffer(view, np.uint8)
buffer = client.create(1 << 20)
writing = np.frombuffer(buffer, np.uint8)
writing[:] = 9
promise = client.promise()
pickled = client.put_pickled(np.arange(1 << 16))
print("ready", flush=True)
time.sleep(600)
"""
