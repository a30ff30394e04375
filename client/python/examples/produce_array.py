"""A numpy producer handing a 64 MiB array to any other program by token.

It computes a float64 array straight into refstore's shared memory (Client.create_array: the
value is a .npy file, which any program can read), seals it and shares it with a single-use
token in one round trip, and prints the token. The consumer may be anything that speaks
refstore: sum_array.c++ (C++), refstore.get_array (Python), or `refctl get TOKEN > a.npy`.

    TOKEN=$(python3 client/python/examples/produce_array.py --store $SOCK)
    bazel-bin/client/python/examples/sum_array --store $SOCK $TOKEN

The token keeps the value alive (for --ttl seconds or until restored); nothing is copied on
the way. Prints the token on stdout and the sum the consumer should find on stderr.
"""
import argparse
import sys

import numpy as np

import refstore


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", help="refstored's socket (default: the default socket)")
    parser.add_argument("--mib", type=int, default=64, help="size of the array (default 64)")
    parser.add_argument("--ttl", type=int, default=600, help="token lifetime, seconds")
    args = parser.parse_args()

    count = args.mib * (1 << 20) // 8
    with refstore.connect(args.store, name="numpy-producer") as client:
        with client.create_array(count, np.float64) as out:
            np.multiply(np.arange(count, dtype=np.float64), 0.5, out=out.array)  # in place
            expected = float(out.array.sum())
            token = out.seal_and_share(args.ttl, 1)
    print(token)
    print("sum %r" % expected, file=sys.stderr)


if __name__ == "__main__":
    main()
