"""Every method of the Python API against a real refstored."""
import pytest

import refstore
from conftest import eventually


def test_version_is_the_libraries():
    assert refstore.version() == "0.1.0"


def test_put_read_info(client):
    ref = client.put(b"hello, refstore")
    assert isinstance(ref, refstore.Ref)
    assert ref.read() == b"hello, refstore"
    assert ref.read(7) == b"refstore"
    assert ref.read(0, 5) == b"hello"
    info = ref.info()
    assert info.size == 15 and info.state == "sealed"
    assert len(info.id) == 32 and len(info.hash) == 32
    assert info.hash != "0" * 32  # small values are hashed at seal
    # Any contiguous bytes-like object, without a copy on the way in.
    assert client.put(bytearray(b"abc")).read() == b"abc"
    assert client.put(memoryview(b"xyz123")[2:5]).read() == b"z12"


def test_large_put_goes_through_shared_memory(client, daemon):
    value = bytes(range(256)) * (12 << 12)  # 12 MiB: above put's inline limit of 1 MiB
    ref = client.put(value)
    assert ref.info().size == len(value)
    assert ref.read() == value
    assert ref.read(len(value) - 3) == value[-3:]


def test_create_write_seal_view(client):
    with client.create(1000) as buffer:
        assert isinstance(buffer, refstore.WriteBuffer)
        assert len(buffer) == buffer.size == 1000
        with memoryview(buffer) as memory:
            assert not memory.readonly and memory.nbytes == 1000
            memory[:] = bytes(i % 251 for i in range(1000))
        buffer.write(0, b"head")
        ref = buffer.seal()
    assert buffer.closed
    with ref.view() as view:
        assert isinstance(view, refstore.View)
        assert len(view) == 1000
        with memoryview(view) as memory:
            assert memory.readonly
            assert memory[:4] == b"head" and memory[999] == 999 % 251
        assert view.tobytes()[4:8] == bytes([4, 5, 6, 7])


def test_share_restore_and_restore_view(client):
    ref = client.put(b"shared")
    token = ref.share(ttl=60, uses=2)
    assert token.startswith("rs2.")
    assert client.restore(token).read() == b"shared"
    with client.restore_view(token) as view:
        assert view.tobytes() == b"shared"
    with pytest.raises(refstore.NotFound):  # two uses, both spent
        client.restore(token)


def test_seal_and_share_hands_off_in_one_call(client, daemon):
    with client.create(5) as buffer:
        memoryview(buffer)[:] = b"token"
        token = buffer.seal_and_share(60, 1)
    assert daemon.stats()["objects"] == 1  # the token keeps it
    with client.restore_view(token) as view:
        assert view.tobytes() == b"token"
    assert eventually(lambda: daemon.stats()["objects"] == 0)


def test_put_many_and_read_many(client):
    refs = client.put_many([b"alpha", b"be", bytearray(b"gamma!")])
    assert len(refs) == 3
    assert client.read_many(list(reversed(refs))) == [b"gamma!", b"be", b"alpha"]
    assert client.put_many([]) == [] and client.read_many([]) == []
    with pytest.raises(refstore.InvalidArgument, match="value 1"):
        client.put_many([b"a", b"", b"c"])


def test_stats_is_every_counter(client, daemon):
    kept = client.put(b"x")
    stats = client.stats()
    assert isinstance(stats, dict)
    assert stats["objects"] == 1 and stats["clients"] == 1
    assert set(stats) == set(daemon.stats())  # the names refctl prints, all of them


def test_promises(client):
    with client.promise() as promise:
        later = promise.ref
        with pytest.raises(refstore.Timeout):
            later.when_ready(timeout=0.05)
        assert later.info().state == "promised"
        token = later.share(60)
        promise.fulfill(b"later")
        with pytest.raises(refstore.FailedPrecondition):
            promise.reject("too late")
    assert later.when_ready().size == 5
    assert client.restore(token).read() == b"later"

    big = client.put(b"B" * 100)
    with client.promise() as aliased:
        with pytest.raises(refstore.Cycle):
            aliased.fulfill_with(aliased.ref)
        aliased.fulfill_with(big)
    assert aliased.ref.read() == b"B" * 100

    with client.promise() as doomed:
        doomed.reject("no luck today")
    with pytest.raises(refstore.Rejected, match="no luck today"):
        doomed.ref.read()

    with client.promise() as abandoned:
        pass  # leaving the block unfulfilled breaks it
    with pytest.raises(refstore.BrokenPromise):
        abandoned.ref.when_ready(timeout=5)


def test_nested_refs(client, daemon):
    parts = [client.put(b"part-%d" % i) for i in range(3)]
    dataset = client.put(b"index", children=parts)
    for part in parts:
        part.close()
    assert daemon.stats()["objects"] == 4
    children = dataset.children()
    assert [child.read() for child in children] == [b"part-0", b"part-1", b"part-2"]
    with client.create(4) as buffer:
        buffer.write(0, b"wrap")
        wrapper = buffer.seal(children=[dataset])
    assert [c.read() for c in wrapper.children()] == [b"index"]
    with pytest.raises(TypeError):
        client.put(b"x", children=[b"not a ref"])
    for ref in children + [dataset, wrapper]:
        ref.close()
    assert eventually(lambda: daemon.stats()["objects"] == 0)


def test_names(client, daemon):
    model = client.put(b"weights")
    model.save_as("models/py")
    with pytest.raises(refstore.AlreadyExists):
        client.put(b"other").save_as("models/py")
    model.close()
    assert client.lookup("models/py").read() == b"weights"
    client.unname("models/py")
    with pytest.raises(refstore.NotFound):
        client.lookup("models/py")
    with pytest.raises(refstore.NotFound):
        client.unname("models/py")


def test_adopt_from_another_client(daemon, client):
    sender = refstore.connect(daemon.socket, name="sender")
    sent = sender.put(b"adopt me")
    adopted = client.adopt(sent)
    sent.close()
    sender.close()  # its connection closes: nothing of it is left
    assert eventually(lambda: daemon.clients() == 1)
    with adopted.view() as view:
        assert view.tobytes() == b"adopt me"


def test_context_managers_and_close(daemon):
    with refstore.connect(daemon.socket) as client:
        ref = client.put(b"x")
        with ref:
            assert not ref.closed
        assert ref.closed
        with pytest.raises(refstore.Misuse, match="closed Ref"):
            ref.read()
        ref.close()  # idempotent
    assert client.closed
    with pytest.raises(refstore.Misuse, match="closed Client"):
        client.put(b"y")
    assert eventually(lambda: daemon.clients() == 0)


def test_handles_keep_the_connection_after_client_close(daemon):
    client = refstore.connect(daemon.socket)
    ref = client.put(b"still here")
    client.close()
    assert ref.read() == b"still here"
    assert daemon.clients() == 1
    ref.close()
    assert eventually(lambda: daemon.clients() == 0)


def test_garbage_collection_releases(client, daemon):
    ref = client.put(b"x")
    view = ref.view()
    buffer = client.create(10)
    assert daemon.stats()["objects"] == 2
    del ref, view, buffer  # CPython frees them at once
    assert eventually(lambda: daemon.stats()["objects"] == 0)


def test_handles_refuse_pickling(client):
    import pickle
    with pytest.raises(TypeError, match="share"):
        pickle.dumps(client.put(b"x"))
    with pytest.raises(TypeError, match="connect one in each process"):
        pickle.dumps(client)


def test_connect_names_and_default_socket(daemon, monkeypatch):
    with refstore.connect(daemon.socket, name="labelled") as client:
        client.put(b"x").save_as("held")
        kept = client.put(b"y")
        listing = daemon.refctl("ls")
        assert "held" in listing and "labelled[" in listing
        kept.close()
    monkeypatch.setenv("REFSTORE_SOCKET", daemon.socket)
    with refstore.connect() as client:  # the default: $REFSTORE_SOCKET
        assert client.lookup("held").read() == b"x"
        assert client.shared_memory
        client.unname("held")
