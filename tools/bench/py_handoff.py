#!/usr/bin/python3
"""py_handoff: a 64 MiB numpy array handed from one Python process to another, by refstore token
against pickling it through a pipe and through multiprocessing -- measured in the same run.

    bazel build -c opt //server:refstored //client/python:dist
    PYTHONPATH=bazel-bin/client/python/dist tools/bench/py_handoff.py \\
        --refstored bazel-bin/server/refstored [--mib 64] [--reps 15] [--json out.json]

The producer (this process) holds a float64 array in warm private memory. A handoff is timed
from the producer's first step to the moment the consumer (a process forked before anything is
connected) holds an equal numpy array and has read every element of it (numpy sum; the
consumer reports its CLOCK_MONOTONIC time):

  refstore           create_array, copy the array in, seal_and_share (one round trip, single-use
                     token), token over a pipe; the consumer's restore_view (one round trip) and
                     get_array: zero-copy, read-only.
  refstore_in_place  the same, but the array was computed straight into shared memory before
                     the clock started (what create_array is for): the clock starts at the seal.
  pickle_pipe        pickle.dump(array, protocol 5) into an os.pipe(); pickle.load at the other
                     end.
  multiprocessing    multiprocessing.Pipe(): Connection.send(array) / recv().
  signal_and_sum     not a handoff, the floor under every variant: a one-line message over the
                     pipe, then the consumer's sum over a warm private array of the same size.

The variants take turns, one repetition each per round in a freshly shuffled order (fixed
seed), after warm-up rounds that are discarded; the report gives the median, quartiles, min and
max of each, and the ratios of medians.
"""
import argparse
import json
import multiprocessing
import os
import pickle
import random
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import refstore

VARIANTS = ["refstore", "refstore_in_place", "pickle_pipe", "multiprocessing", "signal_and_sum"]


def the_array(count):
    """The value handed off: random float64s (the same in both processes)."""
    return np.random.default_rng(1).random(count)


def consumer(socket_path, control, raw_read, mp_data, count):
    """The receiving process: waits for each variant's value, reads it, reports when done."""
    client = refstore.connect(socket_path, name="py_handoff-consumer")
    raw = os.fdopen(raw_read, "rb")
    private = the_array(count)  # the producer's, made here too
    control.send("ready")
    while True:
        variant = control.recv()
        if variant is None:
            return
        control.send("go")
        if variant in ("refstore", "refstore_in_place"):
            token = raw.readline().decode().strip()
            array = refstore.get_array(client.restore_view(token))
        elif variant == "pickle_pipe":
            array = pickle.load(raw)
        elif variant == "multiprocessing":
            array = mp_data.recv()
        else:  # signal_and_sum: a message, then the read alone, from private memory
            raw.readline()
            array = private
        total = float(array.sum())
        done = time.perf_counter()
        del array  # a refstore value is freed here (its view goes)
        control.send((done, total))


class Producer:
    def __init__(self, client, control, raw_write, mp_data, array):
        self.client, self.control, self.mp_data, self.array = client, control, mp_data, array
        self.raw = os.fdopen(raw_write, "wb")
        self.expected = float(array.sum())

    def run(self, variant):
        """One handoff: its time in ms."""
        in_place = None
        if variant == "refstore_in_place":  # produced in shared memory, before the clock
            in_place = self.client.create_array(self.array.shape, self.array.dtype)
            np.copyto(in_place.array, self.array)
        self.control.send(variant)
        assert self.control.recv() == "go"
        start = time.perf_counter()
        if variant == "refstore":
            with self.client.create_array(self.array.shape, self.array.dtype) as out:
                np.copyto(out.array, self.array)
                self._send_token(out.seal_and_share(60, 1))
        elif variant == "refstore_in_place":
            self._send_token(in_place.seal_and_share(60, 1))
        elif variant == "pickle_pipe":
            pickle.dump(self.array, self.raw, protocol=5)
            self.raw.flush()
        elif variant == "multiprocessing":
            self.mp_data.send(self.array)
        else:
            self._send_token("start")
        done, total = self.control.recv()
        if total != self.expected:
            raise RuntimeError("%s: the consumer summed %r, not %r" % (variant, total,
                                                                      self.expected))
        if variant.startswith("refstore"):
            in_place = None
            # The consumer dropped its view: make sure the daemon freed the value before the
            # next repetition (stats() is answered after the release).
            while self.client.stats()["objects"]:
                time.sleep(0.001)
        return (done - start) * 1000

    def _send_token(self, token):
        self.raw.write(token.encode() + b"\n")
        self.raw.flush()


def summary(samples):
    quartiles = statistics.quantiles(samples, n=4)
    return {"median": statistics.median(samples), "p25": quartiles[0], "p75": quartiles[2],
            "min": min(samples), "max": max(samples), "n": len(samples)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--refstored", default="bazel-bin/server/refstored")
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--memory", default="2G", help="refstored --memory")
    parser.add_argument("--only", help="comma-separated variants (default: all)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    count = args.mib * (1 << 20) // 8
    socket_path = "/tmp/py-handoff-%s.sock" % secrets.token_hex(6)
    spill = tempfile.mkdtemp(prefix="py-handoff-")
    daemon = subprocess.Popen([args.refstored, "--socket", socket_path, "--memory", args.memory,
                               "--spill-dir", spill], stderr=subprocess.DEVNULL)
    try:
        for _ in range(2000):
            with socket.socket(socket.AF_UNIX) as probe:
                if probe.connect_ex(socket_path) == 0:
                    break
            time.sleep(0.01)
        # The consumer is forked before this process connects or allocates the array.
        context = multiprocessing.get_context("fork")
        control, control_end = context.Pipe()
        mp_data, mp_data_end = context.Pipe()
        raw_read, raw_write = os.pipe()
        receiver = context.Process(target=consumer,
                                   args=(socket_path, control_end, raw_read, mp_data_end, count))
        receiver.daemon = True  # never outlives a failed run
        receiver.start()
        os.close(raw_read)
        assert control.recv() == "ready"

        client = refstore.connect(socket_path, name="py_handoff-producer")
        array = the_array(count)  # in warm private memory
        producer = Producer(client, control, raw_write, mp_data, array)
        order = random.Random(7)
        chosen = args.only.split(",") if args.only else VARIANTS
        samples = {variant: [] for variant in chosen}
        for round_number in range(args.warmup + args.reps):
            variants = chosen[:]
            order.shuffle(variants)
            for variant in variants:
                elapsed = producer.run(variant)
                if round_number >= args.warmup:
                    samples[variant].append(elapsed)
        control.send(None)
        receiver.join()
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait()

    results = {variant: summary(values) for variant, values in samples.items()}
    median = {variant: results[variant]["median"] for variant in samples}
    ratios = {"%s_over_%s" % (slow, fast): median[slow] / median[fast]
              for slow in ("pickle_pipe", "multiprocessing") if slow in median
              for fast in ("refstore", "refstore_in_place") if fast in median}
    print("%d MiB float64 array, %d repetitions after %d warm-up rounds (ms)" % (
        args.mib, args.reps, args.warmup))
    print("| variant | median | quartiles | min-max |")
    print("|---|---|---|---|")
    for variant in samples:
        r = results[variant]
        print("| %s | %.2f | %.2f-%.2f | %.2f-%.2f |" % (variant, r["median"], r["p25"], r["p75"],
                                                       r["min"], r["max"]))
    for name, value in ratios.items():
        print("%s: %.2fx" % (name, value))
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"mib": args.mib, "reps": args.reps, "warmup": args.warmup,
                       "results": results, "ratios": ratios}, out, indent=1)


if __name__ == "__main__":
    main()
