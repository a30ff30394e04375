"""Processes and threads: a forked child can use nothing it inherited and, dropping it, releases
nothing of the parent's; another thread's calls fail with Misuse (never Internal); a handle
dropped on another thread is released by the owner; multiprocessing workers connect their own
clients."""
import atexit
import gc
import multiprocessing
import os
import threading

import numpy as np
import pytest

import refstore
from conftest import eventually


def in_forked_child(body):
    """Runs body() in a forked child; returns the list of failures it reported (empty: fine)."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read_end)
        failures = []
        try:
            body(failures)
        except BaseException as e:  # noqa: everything must reach the parent
            failures.append("raised %r" % e)
        os.write(write_end, "\n".join(failures).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as report:
        failures = report.read()
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return [line for line in failures.split("\n") if line]


def expect_misuse(failures, what, call):
    try:
        call()
        failures.append("%s: no error" % what)
    except refstore.Misuse as e:
        if "forked child" not in str(e):
            failures.append("%s: %s" % (what, e))
    except Exception as e:  # noqa
        failures.append("%s: %r instead of Misuse" % (what, e))


def test_a_forked_child_leaves_the_parents_references_alone(client, daemon):
    ref = client.put(b"parent's value")
    view = ref.view()
    array = np.frombuffer(view, np.uint8)
    buffer = client.create(1000)
    np.frombuffer(buffer, np.uint8)[:] = 42
    promise = client.promise()
    before = daemon.stats()

    def child(failures):
        nonlocal ref, view, array, buffer, promise
        expect_misuse(failures, "put", lambda: client.put(b"x"))
        expect_misuse(failures, "read", lambda: ref.read())
        expect_misuse(failures, "view", lambda: ref.view())
        expect_misuse(failures, "stats", lambda: client.stats())
        expect_misuse(failures, "seal", lambda: buffer.seal())
        expect_misuse(failures, "fulfill", lambda: promise.fulfill(b"x"))
        expect_misuse(failures, "export", lambda: memoryview(view))
        # Dropping everything, and the interpreter's exit-time finalizers, release nothing.
        del array
        view.close()
        buffer.close()
        promise.close()
        ref = view = buffer = promise = None
        client.close()
        gc.collect()
        atexit._run_exitfuncs()
        # A client of its own works.
        with refstore.connect(daemon.socket, name="child") as own:
            if own.put(b"mine").read() != b"mine":
                failures.append("the child's own client failed")

    assert in_forked_child(child) == []
    # Everything of the parent's is as it was, and works.
    assert eventually(lambda: daemon.stats()["objects"] == before["objects"])
    assert daemon.stats()["holders"] == before["holders"]
    assert bytes(array[:14]) == b"parent's value"
    assert ref.read() == b"parent's value"
    promise.fulfill(b"kept")
    assert promise.ref.read() == b"kept"
    assert buffer.seal().read() == b"\x2a" * 1000  # the child did not abort it
    assert eventually(lambda: daemon.stats()["clients"] == before["clients"])  # the child's gone


def test_another_thread_is_refused_with_misuse(client):
    ref = client.put(b"owner's")
    outcomes = {}

    def other():
        for name, call in [("put", lambda: client.put(b"x")), ("read", ref.read),
                           ("create", lambda: client.create(10)),
                           ("stats", client.stats)]:
            try:
                call()
                outcomes[name] = "no error"
            except refstore.Error as e:
                outcomes[name] = (type(e).__name__, str(e))

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert set(outcomes) == {"put", "read", "create", "stats"}
    for name, (kind, message) in outcomes.items():
        assert kind == "Misuse", (name, message)
        assert message.startswith("refstore.MISUSE: a client and its handles belong to the "
                                  "thread that connected it"), message
    assert ref.read() == b"owner's"  # the owner is unaffected


def test_a_handle_dropped_on_another_thread_is_released_by_the_owner(client, daemon):
    refs = [client.put(b"%d" % i) for i in range(3)]
    assert daemon.stats()["holders"] == 3

    def drop():
        refs.clear()  # the last references: finalizers run here, on this thread
        gc.collect()

    thread = threading.Thread(target=drop)
    thread.start()
    thread.join()
    client.put(b"any call on the owner's thread").close()
    assert eventually(lambda: daemon.stats()["objects"] == 0)


def test_each_thread_with_its_own_client(daemon):
    results = {}

    def work(index):
        with refstore.connect(daemon.socket, name="thread-%d" % index) as own:
            values = [own.put(b"%d-%d" % (index, i)) for i in range(50)]
            results[index] = [v.read() for v in values] == [b"%d-%d" % (index, i)
                                                            for i in range(50)]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {0: True, 1: True, 2: True, 3: True}
    assert eventually(lambda: daemon.stats()["objects"] == 0)


# --- multiprocessing: each worker connects its own client ----------------------------------

_worker_client = None


def _connect_worker(socket):
    global _worker_client
    _worker_client = refstore.connect(socket, name="worker-%d" % os.getpid())


def _sum_by_token(token):
    array = refstore.get_array(_worker_client.restore_view(token))
    return int(array.sum()), os.getpid()


def _produce(seed):
    ref = _worker_client.put_array(np.full(1000, seed, dtype=np.int64))
    token = ref.share(60, 1)
    ref.close()
    return token


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_multiprocessing_workers_with_their_own_clients(client, daemon, start_method):
    # The parent has a connected client (and so an event loop) when the workers start.
    arrays = [client.put_array(np.arange(1000, dtype=np.int64) * i) for i in range(8)]
    tokens = [array.share(60, 1) for array in arrays]
    context = multiprocessing.get_context(start_method)
    with context.Pool(2, initializer=_connect_worker, initargs=(daemon.socket,)) as pool:
        sums = pool.map(_sum_by_token, tokens)
        produced = pool.map(_produce, range(4))
    assert [total for total, _ in sums] == [sum(range(1000)) * i for i in range(8)]
    assert all(pid != os.getpid() for _, pid in sums)
    assert [int(refstore.get_array(client.restore_view(t)).sum()) for t in produced] == \
        [1000 * seed for seed in range(4)]
    for array in arrays:
        array.close()
    assert eventually(lambda: daemon.stats()["objects"] == 0)
    assert client.put(b"the parent's client still works").read() == \
        b"the parent's client still works"
