"""Test support: real refstored processes on fresh short socket paths, clients on them, and
refctl. Paths are relative to the runfiles root, where Bazel runs tests."""
import json
import os
import secrets
import signal
import socket
import subprocess
import tempfile
import time

import pytest

import refstore

REFSTORED = "server/refstored"
REFCTL = "tools/refctl/refctl"


def eventually(condition, seconds=20.0):
    """Polls `condition` every 10 ms until true or `seconds` pass; returns its last value. For
    asynchronous effects (a killed client's disconnect), never a timing assertion."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.01)


class Daemon:
    """A refstored on "/tmp/rsp-<random>.sock" (random, not pid-based: Bazel sandboxes share
    /tmp but not pid namespaces), stopped with SIGTERM, which it must survive cleanly."""

    def __init__(self, memory="64M", extra=(), preexec_fn=None):
        self.socket = "/tmp/rsp-%s.sock" % secrets.token_hex(8)
        self.directory = tempfile.mkdtemp(prefix="refstored-", dir=os.environ.get("TEST_TMPDIR"))
        self.spill_dir = os.path.join(self.directory, "spill")
        self.log_path = os.path.join(self.directory, "daemon.log")
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [REFSTORED, "--socket", self.socket, "--memory", memory, "--segment-size", "8M",
                 "--spill-dir", self.spill_dir] + list(extra),
                stderr=log, preexec_fn=preexec_fn)
        if not eventually(self._accepts):
            raise RuntimeError("refstored did not start:\n" + self.log())

    def _accepts(self):
        if self.process.poll() is not None:
            raise RuntimeError("refstored exited:\n" + self.log())
        with socket.socket(socket.AF_UNIX) as probe:
            return probe.connect_ex(self.socket) == 0

    def log(self):
        with open(self.log_path, errors="replace") as log:
            return log.read()

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(20)

    def refctl(self, *args):
        """refctl's stdout (it must succeed)."""
        return subprocess.run([REFCTL] + list(args), check=True, capture_output=True,
                              text=True, env=dict(os.environ, REFSTORE_SOCKET=self.socket)).stdout

    def stats(self):
        """`refctl stats --json`, from a process of its own (its `clients` counts refctl)."""
        return json.loads(self.refctl("stats", "--json"))

    def clients(self):
        """Connected clients, refctl's own connection not counted."""
        return self.stats()["clients"] - 1


@pytest.fixture
def daemon():
    started = Daemon()
    yield started
    assert started.stop() == 0, started.log()


@pytest.fixture
def client(daemon):
    with refstore.connect(daemon.socket, name="pytest") as connected:
        yield connected


def mapping_of(address):
    """(permissions, path) of the mapping of this process that contains `address`, from
    /proc/self/maps: e.g. ("r--s", "/memfd:refstore-segment-1 (deleted)")."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if start <= address < end:
                return fields[1], fields[5].strip() if len(fields) > 5 else ""
    return None


def data_address(array):
    """Address of a numpy array's first element."""
    return array.__array_interface__["data"][0]
