"""The worked example: a numpy producer (produce_array.py) hands a 64 MiB array to a C++
consumer (sum_array) by token; both are real processes, and nothing is left afterwards."""
import os
import subprocess
import sys

import pytest

import refstore
from conftest import Daemon, eventually

PRODUCER = "client/python/examples/produce_array.py"
CONSUMER = "client/python/examples/sum_array"


@pytest.fixture
def daemon():
    started = Daemon(memory="256M")  # room for the 64 MiB value in shared memory
    yield started
    assert started.stop() == 0, started.log()


def test_numpy_producer_to_cpp_consumer_by_token(daemon):
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(refstore.__file__)))
    produced = subprocess.run([sys.executable, PRODUCER, "--store", daemon.socket], env=env,
                              capture_output=True, text=True, check=True)
    token = produced.stdout.strip()
    expected = float(produced.stderr.split("sum ")[1])
    stats = daemon.stats()
    assert stats["objects"] == 1 and stats["tokens"] == 1
    assert stats["bytes_used"] >= 64 << 20  # the producer is gone: the token keeps the value

    consumed = subprocess.run([CONSUMER, "--store", daemon.socket, token], capture_output=True,
                              text=True, check=True)
    shape, total = consumed.stdout.strip().split(" sum ")
    assert shape == "shape (8388608,)"
    assert float(total) == expected == 0.5 * 8388608 * 8388607 / 2
    # The single-use token was spent and the consumer's view went with it.
    assert eventually(lambda: daemon.stats()["objects"] == 0)

    again = subprocess.run([CONSUMER, "--store", daemon.socket, token], capture_output=True,
                           text=True)
    assert again.returncode == 1 and "refstore.NOT_FOUND" in again.stderr
    usage = subprocess.run([CONSUMER], capture_output=True, text=True)
    assert usage.returncode == 2 and usage.stderr.startswith("usage: sum_array")
