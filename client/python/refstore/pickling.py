"""Pickle protocol 5 through refstore: a large array pickled for another process travels as a
token, and arrives zero-copy.

put_pickled(client, obj) pickles `obj` with protocol 5, handing every out-of-band buffer of at
least `inline_below` bytes (numpy arrays, bytes, PickleBuffers) to refstore as a value of its
own. The pickle stream becomes one value whose nested references are those buffers: one Ref (or
one token, Ref.share) stands for the whole object and keeps all of it alive. get_pickled(ref)
loads it, each buffer a read-only View of shared memory (no copy), held by whatever the
unpickled objects keep of it.

Unpickling runs code chosen by whoever pickled: load only values from producers you trust.
"""
import pickle

INLINE_BELOW = 64 * 1024


def put_pickled(client, obj, inline_below=INLINE_BELOW):
    out_of_band = []

    def keep(buffer):
        with buffer.raw() as raw:
            if raw.nbytes < inline_below:
                return True  # small: serialized inside the pickle stream
        out_of_band.append(buffer)
        return False

    stream = pickle.dumps(obj, protocol=5, buffer_callback=keep)
    parts = []
    try:
        for buffer in out_of_band:
            with buffer.raw() as raw:
                parts.append(client.put(raw))
        return client.put(stream, children=parts)
    finally:
        for part in parts:
            part.close()  # the stream's value holds them now


def get_pickled(ref):
    """The object put_pickled stored; its large buffers are zero-copy Views."""
    parts = ref.children()
    views = []
    try:
        for part in parts:
            views.append(part.view())
    finally:
        for part in parts:
            part.close()  # the views pin the bytes
    return pickle.loads(ref.read(), buffers=[memoryview(view) for view in views])
