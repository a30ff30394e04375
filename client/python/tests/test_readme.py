"""The README's Python example runs as written (against a real daemon instead of /tmp/rs.sock)."""
import re

import numpy as np

import refstore

README = "README.md"


def test_the_readme_example_runs(daemon):
    with open(README) as readme:
        text = readme.read()
    section = text[text.index("## Using it from Python"):text.index("## Layout")]
    example = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert "/tmp/rs.sock" in example
    namespace = {}
    exec(example.replace("/tmp/rs.sock", daemon.socket), namespace)
    assert namespace["total"] == 7 << 20
    assert np.array_equal(namespace["array"], np.arange(10.0))
    assert namespace["obj"]["step"] == 3 and namespace["obj"]["weights"].nbytes == 8 << 20
    assert isinstance(namespace["ref"], refstore.Ref)
