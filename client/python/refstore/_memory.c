/* refstore._memory: the buffer protocol for refstore's View and WriteBuffer.
 *
 * Python 3.11 classes cannot export buffers themselves (PEP 688 came in 3.12), so View and
 * WriteBuffer derive from Memory, which exports one span of memory (read-only or writable) and
 * counts its exports. Every memoryview and numpy array made from it holds an export, and every
 * export holds a reference to the Memory: the span cannot be released while anything can still
 * reach it. Closing is therefore two-step: _detach() refuses new exports at once, and the
 * subclass's _release() (which unpins or aborts in the daemon) runs at once if nothing is
 * exported, else when the last export is released.
 *
 * Borrowed is the other direction: the address of any contiguous bytes-like object, held for
 * the length of a `with` block, so that data can be handed to the C library without a copy.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <unistd.h>

/* Raised for misuse: refstore.Misuse (set by refstore.errors at import), RuntimeError before. */
static PyObject* misuse_error = NULL;

enum memory_state {
  MEMORY_EMPTY,     /* nothing attached yet (or no shared memory: use write()) */
  MEMORY_OPEN,      /* exportable */
  MEMORY_CLOSING,   /* closed, waiting for its last export to go */
  MEMORY_RELEASED,  /* closed and released */
};

typedef struct {
  PyObject_HEAD
  char* data;
  Py_ssize_t size;
  int readonly;
  Py_ssize_t exports;
  enum memory_state state;
  pid_t pid; /* the process that attached it: a forked child may not export it */
} Memory;

static PyObject* misuse(const char* message) {
  PyErr_SetString(misuse_error ? misuse_error : PyExc_RuntimeError, message);
  return NULL;
}

static int memory_getbuffer(PyObject* object, Py_buffer* view, int flags) {
  Memory* self = (Memory*)object;
  switch (self->state) {
    case MEMORY_OPEN:
      break;
    case MEMORY_EMPTY:
      misuse("refstore.MISUSE: no shared memory to export (a connection without shared memory: "
             "use write() / read())");
      view->obj = NULL;
      return -1;
    default:
      misuse("refstore.MISUSE: operation on a closed View or WriteBuffer");
      view->obj = NULL;
      return -1;
  }
  if (self->pid != getpid()) {
    misuse("refstore.MISUSE: this memory belongs to the process that made it; a forked child "
           "cannot use it (connect a client of its own)");
    view->obj = NULL;
    return -1;
  }
  if (PyBuffer_FillInfo(view, object, self->data, self->size, self->readonly, flags) < 0) {
    return -1;
  }
  self->exports++;
  return 0;
}

static void memory_releasebuffer(PyObject* object, Py_buffer* Py_UNUSED(view)) {
  Memory* self = (Memory*)object;
  self->exports--;
  if (self->exports == 0 && self->state == MEMORY_CLOSING) {
    self->state = MEMORY_RELEASED;
    PyObject* result = PyObject_CallMethod(object, "_release", NULL);
    if (result == NULL) {
      PyErr_WriteUnraisable(object);
    } else {
      Py_DECREF(result);
    }
  }
}

static PyBufferProcs memory_as_buffer = {memory_getbuffer, memory_releasebuffer};

static PyObject* memory_attach(PyObject* object, PyObject* args) {
  Memory* self = (Memory*)object;
  unsigned long long address = 0;
  Py_ssize_t size = 0;
  int readonly = 1;
  if (!PyArg_ParseTuple(args, "Knp", &address, &size, &readonly)) return NULL;
  if (self->state != MEMORY_EMPTY) return misuse("refstore.MISUSE: memory attached twice");
  if (size < 0) {
    PyErr_SetString(PyExc_ValueError, "negative size");
    return NULL;
  }
  self->data = (char*)(uintptr_t)address;
  self->size = size;
  self->readonly = readonly;
  self->state = MEMORY_OPEN;
  self->pid = getpid();
  Py_RETURN_NONE;
}

static PyObject* memory_detach(PyObject* object, PyObject* Py_UNUSED(unused)) {
  Memory* self = (Memory*)object;
  if (self->state == MEMORY_OPEN && self->exports > 0) {
    self->state = MEMORY_CLOSING;
    Py_RETURN_FALSE; /* _release() runs when the last export goes */
  }
  if (self->state == MEMORY_CLOSING) Py_RETURN_FALSE;
  self->state = MEMORY_RELEASED; /* nothing is (or ever was) exported */
  Py_RETURN_TRUE;
}

static PyObject* memory_exports(PyObject* object, void* Py_UNUSED(unused)) {
  return PyLong_FromSsize_t(((Memory*)object)->exports);
}

static PyObject* memory_address(PyObject* object, void* Py_UNUSED(unused)) {
  return PyLong_FromUnsignedLongLong((unsigned long long)(uintptr_t)((Memory*)object)->data);
}

static PyObject* memory_attached(PyObject* object, void* Py_UNUSED(unused)) {
  return PyBool_FromLong(((Memory*)object)->state == MEMORY_OPEN);
}

static PyMethodDef memory_methods[] = {
    {"_attach", memory_attach, METH_VARARGS,
     "_attach(address, size, readonly): the span this object exports from now on."},
    {"_detach", memory_detach, METH_NOARGS,
     "_detach() -> bool: no new exports from now on. True: nothing is exported, release now. "
     "False: exports are alive, and self._release() will be called when the last one goes."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef memory_getset[] = {
    {"_exports", memory_exports, NULL, "How many buffer exports are alive.", NULL},
    {"_address", memory_address, NULL, "The span's address (0 if none).", NULL},
    {"_attached", memory_attached, NULL, "Whether the span can be exported now.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject MemoryType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "refstore._memory.Memory",
    .tp_doc = "A span of memory exported through the buffer protocol (base of View, WriteBuffer).",
    .tp_basicsize = sizeof(Memory),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_new = PyType_GenericNew,
    .tp_as_buffer = &memory_as_buffer,
    .tp_methods = memory_methods,
    .tp_getset = memory_getset,
};

/* --- Borrowed ------------------------------------------------------------------------------ */

typedef struct {
  PyObject_HEAD
  Py_buffer buffer;
  int held;
} Borrowed;

static int borrowed_init(PyObject* object, PyObject* args, PyObject* Py_UNUSED(kwargs)) {
  Borrowed* self = (Borrowed*)object;
  PyObject* source = NULL;
  if (!PyArg_ParseTuple(args, "O", &source)) return -1;
  if (self->held) {
    PyBuffer_Release(&self->buffer);
    self->held = 0;
  }
  if (PyObject_GetBuffer(source, &self->buffer, PyBUF_C_CONTIGUOUS) < 0) {
    PyErr_Format(PyExc_TypeError,
                 "refstore needs a C-contiguous bytes-like object, not %.100s "
                 "(numpy arrays of any layout: put_array)",
                 Py_TYPE(source)->tp_name);
    return -1;
  }
  self->held = 1;
  return 0;
}

static void borrowed_release_buffer(Borrowed* self) {
  if (self->held) {
    PyBuffer_Release(&self->buffer);
    self->held = 0;
  }
}

static void borrowed_dealloc(PyObject* object) {
  borrowed_release_buffer((Borrowed*)object);
  Py_TYPE(object)->tp_free(object);
}

static PyObject* borrowed_address(PyObject* object, void* Py_UNUSED(unused)) {
  Borrowed* self = (Borrowed*)object;
  if (!self->held) return misuse("refstore.MISUSE: Borrowed used after release");
  return PyLong_FromUnsignedLongLong((unsigned long long)(uintptr_t)self->buffer.buf);
}

static PyObject* borrowed_nbytes(PyObject* object, void* Py_UNUSED(unused)) {
  Borrowed* self = (Borrowed*)object;
  if (!self->held) return misuse("refstore.MISUSE: Borrowed used after release");
  return PyLong_FromSsize_t(self->buffer.len);
}

static PyObject* borrowed_enter(PyObject* object, PyObject* Py_UNUSED(unused)) {
  Py_INCREF(object);
  return object;
}

static PyObject* borrowed_exit(PyObject* object, PyObject* Py_UNUSED(args)) {
  borrowed_release_buffer((Borrowed*)object);
  Py_RETURN_FALSE;
}

static PyMethodDef borrowed_methods[] = {
    {"__enter__", borrowed_enter, METH_NOARGS, NULL},
    {"__exit__", borrowed_exit, METH_VARARGS, "Releases the borrowed buffer."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef borrowed_getset[] = {
    {"address", borrowed_address, NULL, "Address of the first byte.", NULL},
    {"nbytes", borrowed_nbytes, NULL, "Length in bytes.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject BorrowedType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "refstore._memory.Borrowed",
    .tp_doc = "Borrowed(obj): the address and length of a contiguous bytes-like object, held "
              "(the object cannot be resized or freed) until the `with` block ends.",
    .tp_basicsize = sizeof(Borrowed),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = borrowed_init,
    .tp_dealloc = borrowed_dealloc,
    .tp_methods = borrowed_methods,
    .tp_getset = borrowed_getset,
};

/* --- module -------------------------------------------------------------------------------- */

static PyObject* set_misuse_error(PyObject* Py_UNUSED(module), PyObject* error) {
  Py_XINCREF(error);
  Py_XSETREF(misuse_error, error);
  Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"set_misuse_error", set_misuse_error, METH_O,
     "The exception class raised for misuse (refstore.Misuse)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef memory_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "refstore._memory",
    .m_doc = "The buffer protocol for refstore's View and WriteBuffer.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__memory(void) {
  if (PyType_Ready(&MemoryType) < 0 || PyType_Ready(&BorrowedType) < 0) return NULL;
  PyObject* module = PyModule_Create(&memory_module);
  if (module == NULL) return NULL;
  Py_INCREF(&MemoryType);
  Py_INCREF(&BorrowedType);
  if (PyModule_AddObject(module, "Memory", (PyObject*)&MemoryType) < 0 ||
      PyModule_AddObject(module, "Borrowed", (PyObject*)&BorrowedType) < 0) {
    Py_DECREF(module);
    return NULL;
  }
  return module;
}
