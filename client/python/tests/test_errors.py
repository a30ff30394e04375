"""Every error class: one per code of the C library, named after it, raised with the daemon's (or
the library's) message -- each provoked for real where a client can provoke it."""
import os
import re
import resource
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import refstore
from conftest import Daemon

# The list of codes every client is generated from (the schema's ErrorCode enum).
HEADER = "schema/refstore_error_codes.h"


def test_a_class_per_code_of_the_c_library():
    with open(HEADER) as header:
        codes = {name: number for number, name in re.findall(r"X\((\d+), ([A-Z_]+),", header.read())}
    assert len(codes) >= 21
    for code_name, code in codes.items():
        name = refstore.errors.class_name(code_name)
        cls = getattr(refstore, name)
        assert issubclass(cls, refstore.Error)
        assert (cls.code, cls.code_name, cls.__name__) == (int(code), code_name, name)
        assert name in refstore.__all__
    assert refstore.NotFound.__name__ == "NotFound" and refstore.IO.code_name == "IO"
    assert refstore.OutOfMemory.code_name == "OUT_OF_MEMORY"


def raised(call):
    """The refstore.Error `call` raises (fails the test if it raises none)."""
    with pytest.raises(refstore.Error) as caught:
        call()
    return caught.value


def check(error, cls, text=None):
    """`error` is exactly `cls`, worded "refstore.<CODE>: ...", mentioning `text`."""
    assert type(error) is cls, repr(error)
    assert str(error).startswith("refstore.%s: " % cls.code_name), str(error)
    if text:
        assert text in str(error), str(error)


def test_errors_of_values_and_tokens(client, daemon):
    check(raised(lambda: client.create(0)), refstore.InvalidArgument, "size")
    check(raised(lambda: client.restore("rs2.not-a-token")), refstore.Malformed)
    ref = client.put(b"12345")
    check(raised(lambda: ref.read(10, 5)), refstore.OutOfRange)
    token = ref.share(60, 1)
    client.restore(token)
    check(raised(lambda: client.restore(token)), refstore.NotFound)
    expiring = ref.share(1)
    time.sleep(1.5)
    check(raised(lambda: client.restore(expiring)), refstore.Expired)
    other = Daemon()
    try:
        with refstore.connect(other.socket) as elsewhere:
            check(raised(lambda: elsewhere.restore(ref.share(60))), refstore.WrongStore)
    finally:
        assert other.stop() == 0


def test_errors_of_promises_and_names(client):
    with client.promise() as promise:
        check(raised(lambda: promise.ref.when_ready(timeout=0.01)), refstore.Timeout)
        check(raised(lambda: promise.fulfill_with(promise.ref)), refstore.Cycle)
        promise.reject("because")
        check(raised(lambda: promise.reject("again")), refstore.FailedPrecondition, "settled")
    check(raised(promise.ref.read), refstore.Rejected, "because")
    with client.promise() as abandoned:
        pass
    check(raised(abandoned.ref.read), refstore.BrokenPromise)
    client.put(b"x").save_as("taken")
    check(raised(lambda: client.put(b"y").save_as("taken")), refstore.AlreadyExists)
    check(raised(lambda: client.lookup("nobody")), refstore.NotFound)


def test_errors_of_memory_limits():
    daemon = Daemon(extra=["--no-spill"])
    try:
        with refstore.connect(daemon.socket, memory_timeout=0.1) as client:
            check(raised(lambda: client.create(1 << 30)), refstore.TooLarge)
            held = client.create(40 << 20)
            check(raised(lambda: client.create(40 << 20)), refstore.OutOfMemory)
            held.close()
    finally:
        assert daemon.stop() == 0


def test_out_of_disk():
    # RLIMIT_FSIZE 16 MiB: 8 MiB shared-memory segments still work, a 48 MiB file does not.
    def limit_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (16 << 20, 16 << 20))

    daemon = Daemon(memory="32M", preexec_fn=limit_files)
    try:
        with refstore.connect(daemon.socket) as client:
            check(raised(lambda: client.create(48 << 20)), refstore.OutOfDisk)
    finally:
        assert daemon.stop() == 0


def test_corrupted_spill_file_is_reported():
    daemon = Daemon(memory="32M")
    try:
        with refstore.connect(daemon.socket) as client:
            victim = client.put(np.full(3 << 20, 77, np.uint8))  # a spill file of its own
            filler = []
            while victim.info().state != "spilled" and len(filler) < 200:
                filler.append(client.put(np.full(512 << 10, len(filler) % 256, np.uint8)))
            assert victim.info().state == "spilled"
            names = [n for n in os.listdir(daemon.spill_dir) if n.startswith("object-")]
            assert len(names) == 1
            with open(os.path.join(daemon.spill_dir, names[0]), "r+b") as spilled:
                spilled.seek(4096)
                byte = spilled.read(1)
                spilled.seek(4096)
                spilled.write(bytes([byte[0] ^ 0x5A]))
            check(raised(victim.view), refstore.Corrupted)
    finally:
        assert daemon.stop() == 0


def test_unauthenticated_tcp():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    secret = os.path.join(os.environ.get("TEST_TMPDIR", "/tmp"), "secret-%d" % os.getpid())
    with open(secret, "w") as f:
        f.write("correct-horse-battery-staple\n")
    daemon = Daemon(extra=["--tcp", "127.0.0.1:%d" % port, "--secret-file", secret])
    try:
        check(raised(lambda: refstore.connect("tcp:127.0.0.1:%d" % port)),
              refstore.Unauthenticated)
    finally:
        assert daemon.stop() == 0


def test_disconnected():
    check(raised(lambda: refstore.connect("/tmp/rsp-nobody-listens.sock")),
          refstore.Disconnected, "cannot connect")
    daemon = Daemon()
    client = refstore.connect(daemon.socket)
    daemon.process.kill()
    daemon.process.wait()
    check(raised(lambda: client.put(b"x")), refstore.Disconnected)


def test_misuse(client):
    found = []
    thread = threading.Thread(target=lambda: found.append(raised(lambda: client.put(b"x"))))
    thread.start()
    thread.join()
    check(found[0], refstore.Misuse, "one client per thread")
    ref = client.put(b"x")
    ref.close()
    check(raised(ref.read), refstore.Misuse, "closed Ref")


def test_io_when_a_segment_cannot_be_mapped(client, daemon):
    # A process whose address space is full cannot map a new segment: IO, with mmap's reason.
    ref = client.put(np.zeros(32 << 20, np.uint8))  # a segment of its own, not mapped yet
    token = ref.share(60, 1)
    result = subprocess.run(
        [sys.executable, "-c", CANNOT_MAP, daemon.socket, token], capture_output=True,
        text=True, env=dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(
            refstore.__file__))))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("IO refstore.IO: "), result.stdout
    assert "mmap" in result.stdout or "memory" in result.stdout, result.stdout


CANNOT_MAP = r"""
import resource, sys
import refstore
client = refstore.connect(sys.argv[1])
with open("/proc/self/status") as status:
    size = next(int(l.split()[1]) for l in status if l.startswith("VmSize:")) * 1024
resource.setrlimit(resource.RLIMIT_AS, (size + (4 << 20), resource.RLIM_INFINITY))
try:
    client.restore_view(sys.argv[2])
    print("no error")
except refstore.Error as e:
    print(type(e).__name__, e)
"""


def test_internal_is_reserved_for_daemon_faults():
    # No client request makes a correct daemon fail with INTERNAL; the class exists and maps.
    error = refstore.errors.error_for(refstore.Internal.code, "refstore.INTERNAL: boom")
    assert type(error) is refstore.Internal and str(error) == "refstore.INTERNAL: boom"
    unknown = refstore.errors.error_for(999, "something new")
    assert type(unknown) is refstore.Error and unknown.code == 999
