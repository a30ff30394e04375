"""refstore.Error and one subclass per result code, named after it (NOT_FOUND -> NotFound).

The codes are not listed here: they are read from the C library (refstore_errstr), so a code
added to the library appears in Python without a change to this file.
"""
from . import _lib, _memory

# Codes are small integers; scan well past the highest, so that gaps are no problem.
_HIGHEST_CODE = 255


class Error(Exception):
    """A failed refstore operation. `code` is the library's result code, `code_name` its name
    ("NOT_FOUND"); str() is the message, e.g. "refstore.NOT_FOUND: token unknown, ..."."""

    code = None
    code_name = None

    def __init__(self, message):
        super().__init__(message)
        self.message = message


def class_name(code_name):
    """NOT_FOUND -> NotFound; a single short word stays upper case (IO)."""
    if "_" not in code_name and len(code_name) <= 2:
        return code_name
    return "".join(word.capitalize() for word in code_name.split("_"))


def _make_classes():
    classes = {}
    for code in range(1, _HIGHEST_CODE + 1):
        code_name = _lib.lib.refstore_errstr(code).decode()
        if code_name == "UNKNOWN":
            continue
        name = class_name(code_name)
        classes[code] = type(name, (Error,), {
            "code": code,
            "code_name": code_name,
            "__module__": "refstore",
            "__doc__": "refstore.%s (result code %d)." % (code_name, code),
        })
    return classes


CLASSES = _make_classes()
BY_NAME = {cls.__name__: cls for cls in CLASSES.values()}


def error_class(code_name):
    """The class of a code by its name, e.g. error_class("MISUSE")."""
    return BY_NAME[class_name(code_name)]


def error_for(code, message):
    """The exception for a result code and message (Error itself for a code unknown here).
    Messages are worded "refstore.<CODE>: ..." as the daemon words its own; failures found in
    the client library (DISCONNECTED, TIMEOUT, IO, ...) get the code word put in front."""
    cls = CLASSES.get(code)
    if not message.startswith("refstore."):
        message = "refstore.%s: %s" % (cls.code_name if cls else code, message)
    if cls is None:
        error = Error(message)
        error.code = code
        return error
    return cls(message)


def misuse(message):
    """A Misuse error with the code word in front, as the library words its own."""
    return error_class("MISUSE")("refstore.MISUSE: " + message)


_memory.set_misuse_error(error_class("MISUSE"))
