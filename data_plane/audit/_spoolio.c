/* The end of an event-loop turn of the audit trail, in C: spool what the turn recorded in one
 * write, then forward what waited for it.
 *
 * `SpoolFile` is the spool's current segment as the writers share it: its descriptor and size.
 * The spool (`data_plane.audit.spool`) writes through it and rotates it; `Outbox`, the
 * callable the trail schedules at the end of a turn with records to spool (`AuditTrail.outbox`),
 * writes the turn's framed records to it from C and leaves their bookkeeping (counts, the run
 * kept for upload) to the spool, which takes them (`SpoolFile.take`) before anything else it
 * does. Whatever this path does not take (a write that would cross into a new segment, a write
 * that fails, a spool without its fsync thread) goes to the trail's Python `write_pending`,
 * which does the same and handles those.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "_buf.h"

/* ---------------------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    int fd;
    long long size;  /* bytes in the segment */
    long long limit; /* a write that would take it past this (from a non-empty segment) rotates */
    PyObject *syncer; /* the spool's fsync thread (`pending`, `request(fd)`), or None */
    Buf unaccounted; /* records written here that the spool has not taken yet */
    long long unaccounted_records;
} SpoolFile;

static PyObject *pending_name, *request_name, *is_closing_name, *write_name;

static int SpoolFile_init(SpoolFile *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"fd", "size", "limit", "syncer", NULL};
    int fd;
    long long size, limit;
    PyObject *syncer;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iLLO", kwlist, &fd, &size, &limit, &syncer))
        return -1;
    self->fd = fd;
    self->size = size;
    self->limit = limit;
    Py_INCREF(syncer);
    Py_XSETREF(self->syncer, syncer);
    self->unaccounted.len = 0;
    self->unaccounted_records = 0;
    return 0;
}

static int SpoolFile_traverse(SpoolFile *self, visitproc visit, void *arg) {
    Py_VISIT(self->syncer);
    return 0;
}

static int SpoolFile_clear(SpoolFile *self) {
    Py_CLEAR(self->syncer);
    return 0;
}

static void SpoolFile_dealloc(SpoolFile *self) {
    PyObject_GC_UnTrack(self);
    SpoolFile_clear(self);
    PyMem_Free(self->unaccounted.p);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Writes all of data at the end of the segment: 0, or -1 with errno set after truncating the
 * segment back to its size (no torn record is left for readers or recovery). */
static int write_all(SpoolFile *self, const char *data, Py_ssize_t n) {
    Py_ssize_t done = 0;
    while (done < n) {
        ssize_t w = write(self->fd, data + done, (size_t)(n - done));
        if (w < 0) {
            if (errno == EINTR)
                continue;
            int saved = errno;
            if (ftruncate(self->fd, (off_t)self->size) < 0) {
                /* nothing more to do: the write's error is the one reported */
            }
            errno = saved;
            return -1;
        }
        done += w;
    }
    self->size += n;
    return 0;
}

/* Asks the fsync thread for an fsync unless one is pending (it would start after this write). */
static int request_sync(SpoolFile *self) {
    PyObject *pending = PyObject_GetAttr(self->syncer, pending_name);
    if (pending == NULL)
        return -1;
    int idle = pending == Py_None;
    Py_DECREF(pending);
    if (!idle)
        return 0;
    PyObject *fd = PyLong_FromLong(self->fd);
    if (fd == NULL)
        return -1;
    PyObject *r = PyObject_CallMethodOneArg(self->syncer, request_name, fd);
    Py_DECREF(fd);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* Records of the outbox: 1 when written (and left for the spool to take), 0 when the Python
 * path must write them (a new segment is due, the spool syncs inline, the write failed), -1
 * with an exception when there is no memory to keep them (nothing written). */
static int write_records(SpoolFile *self, const char *data, Py_ssize_t n, Py_ssize_t records) {
    if (self->syncer == NULL || self->syncer == Py_None)
        return 0;
    if (self->size > 0 && self->size + n > self->limit)
        return 0;
    Py_ssize_t mark = self->unaccounted.len;
    if (buf_add(&self->unaccounted, data, n) < 0)
        return -1;
    if (write_all(self, data, n) < 0) {
        self->unaccounted.len = mark;
        return 0;
    }
    self->unaccounted_records += records;
    return 1;
}

static PyObject *SpoolFile_take(SpoolFile *self, PyObject *Py_UNUSED(ignored)) {
    PyObject *data = PyBytes_FromStringAndSize((const char *)self->unaccounted.p, self->unaccounted.len);
    if (data == NULL)
        return NULL;
    PyObject *out = Py_BuildValue("(NL)", data, self->unaccounted_records);
    if (out == NULL)
        return NULL;
    self->unaccounted.len = 0;
    self->unaccounted_records = 0;
    return out;
}

static PyObject *SpoolFile_reopen(SpoolFile *self, PyObject *args) {
    int fd;
    long long size;
    if (!PyArg_ParseTuple(args, "iL", &fd, &size))
        return NULL;
    if (self->unaccounted_records) {
        PyErr_SetString(PyExc_RuntimeError, "reopen with records not taken");
        return NULL;
    }
    self->fd = fd;
    self->size = size;
    Py_RETURN_NONE;
}

static PyObject *SpoolFile_get_fd(SpoolFile *self, void *closure) {
    return PyLong_FromLong(self->fd);
}

static PyObject *SpoolFile_get_size(SpoolFile *self, void *closure) {
    return PyLong_FromLongLong(self->size);
}

static int SpoolFile_set_size(SpoolFile *self, PyObject *value, void *closure) {
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete size");
        return -1;
    }
    long long size = PyLong_AsLongLong(value);
    if (size == -1 && PyErr_Occurred())
        return -1;
    self->size = size;
    return 0;
}

static PyObject *SpoolFile_get_limit(SpoolFile *self, void *closure) {
    return PyLong_FromLongLong(self->limit);
}

static PyObject *SpoolFile_get_unaccounted(SpoolFile *self, void *closure) {
    return PyLong_FromLongLong(self->unaccounted_records);
}

static PyGetSetDef SpoolFile_getset[] = {
    {"fd", (getter)SpoolFile_get_fd, NULL, "The segment's descriptor (opened for appending).", NULL},
    {"size", (getter)SpoolFile_get_size, (setter)SpoolFile_set_size,
     "Bytes in the segment (the spool's own writes add theirs).", NULL},
    {"limit", (getter)SpoolFile_get_limit, NULL,
     "A write that would take a non-empty segment past this many bytes starts a new one.",
     NULL},
    {"unaccounted", (getter)SpoolFile_get_unaccounted, NULL,
     "Records written by an Outbox that `take` has not returned yet.", NULL},
    {NULL},
};

static PyMethodDef SpoolFile_methods[] = {
    {"take", (PyCFunction)SpoolFile_take, METH_NOARGS,
     "(records, count): what Outboxes wrote since the last take, in order."},
    {"reopen", (PyCFunction)SpoolFile_reopen, METH_VARARGS,
     "reopen(fd, size): a new segment (everything written before taken first)."},
    {NULL},
};

static PyTypeObject SpoolFileType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "data_plane.audit._spoolio.SpoolFile",
    .tp_basicsize = sizeof(SpoolFile),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "SpoolFile(fd, size, limit, syncer): the spool's current segment (see the module).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)SpoolFile_init,
    .tp_dealloc = (destructor)SpoolFile_dealloc,
    .tp_traverse = (traverseproc)SpoolFile_traverse,
    .tp_clear = (inquiry)SpoolFile_clear,
    .tp_methods = SpoolFile_methods,
    .tp_getset = SpoolFile_getset,
};

/* ---------------------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *unwritten;   /* list of framed records */
    PyObject *after_write; /* list of (transport, data) */
    SpoolFile *file;
    PyObject *fallback; /* the trail's write_pending */
    PyObject *wake;     /* called after records are spooled */
    Buf joined;
} Outbox;

static int Outbox_init(Outbox *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"unwritten", "after_write", "file", "fallback", "wake", NULL};
    PyObject *unwritten, *after_write, *file, *fallback, *wake;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!O!O!OO", kwlist, &PyList_Type, &unwritten,
                                     &PyList_Type, &after_write, &SpoolFileType, &file, &fallback,
                                     &wake))
        return -1;
    Py_INCREF(unwritten);
    Py_XSETREF(self->unwritten, unwritten);
    Py_INCREF(after_write);
    Py_XSETREF(self->after_write, after_write);
    Py_INCREF(file);
    Py_XSETREF(self->file, (SpoolFile *)file);
    Py_INCREF(fallback);
    Py_XSETREF(self->fallback, fallback);
    Py_INCREF(wake);
    Py_XSETREF(self->wake, wake);
    return 0;
}

static int Outbox_traverse(Outbox *self, visitproc visit, void *arg) {
    Py_VISIT(self->unwritten);
    Py_VISIT(self->after_write);
    Py_VISIT(self->file);
    Py_VISIT(self->fallback);
    Py_VISIT(self->wake);
    return 0;
}

static int Outbox_clear(Outbox *self) {
    Py_CLEAR(self->unwritten);
    Py_CLEAR(self->after_write);
    Py_CLEAR(self->file);
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->wake);
    return 0;
}

static void Outbox_dealloc(Outbox *self) {
    PyObject_GC_UnTrack(self);
    Outbox_clear(self);
    PyMem_Free(self->joined.p);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Writes each waiting (transport, data) whose transport is not closing; the list is emptied
 * first, so what the writes cause to be forwarded waits for the next turn. */
static int forward_waiting(Outbox *self) {
    PyObject *waiting = PyList_GetSlice(self->after_write, 0, PY_SSIZE_T_MAX);
    if (waiting == NULL || PyList_SetSlice(self->after_write, 0, PY_SSIZE_T_MAX, NULL) < 0) {
        Py_XDECREF(waiting);
        return -1;
    }
    int rc = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(waiting) && rc == 0; i++) {
        PyObject *item = PyList_GET_ITEM(waiting, i);
        PyObject *transport, *data;
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
            PyErr_SetString(PyExc_TypeError, "after_write holds (transport, data) pairs");
            rc = -1;
            break;
        }
        transport = PyTuple_GET_ITEM(item, 0);
        data = PyTuple_GET_ITEM(item, 1);
        PyObject *closing = PyObject_CallMethodNoArgs(transport, is_closing_name);
        int skip = closing == NULL ? -1 : PyObject_IsTrue(closing);
        Py_XDECREF(closing);
        if (skip < 0) {
            rc = -1;
        } else if (!skip) {
            PyObject *r = PyObject_CallMethodOneArg(transport, write_name, data);
            rc = r == NULL ? -1 : 0;
            Py_XDECREF(r);
        }
    }
    Py_DECREF(waiting);
    return rc;
}

static PyObject *Outbox_call(Outbox *self, PyObject *args, PyObject *kwds) {
    if (self->unwritten == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Outbox is not initialized");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(self->unwritten);
    if (n > 0) {
        Buf *j = &self->joined;
        j->len = 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *record = PyList_GET_ITEM(self->unwritten, i);
            if (!PyBytes_Check(record))
                return PyObject_CallNoArgs(self->fallback); /* it reports what is wrong */
            if (buf_add(j, PyBytes_AS_STRING(record), PyBytes_GET_SIZE(record)) < 0)
                return NULL;
        }
        int done = write_records(self->file, (const char *)j->p, j->len, n);
        if (done < 0)
            return NULL;
        if (done == 0)
            return PyObject_CallNoArgs(self->fallback);
        if (PyList_SetSlice(self->unwritten, 0, n, NULL) < 0)
            return NULL;
        if (request_sync(self->file) < 0) /* the records are written: forward all the same */
            PyErr_WriteUnraisable(self->file->syncer);
        PyObject *r = PyObject_CallNoArgs(self->wake);
        if (r == NULL)
            return NULL;
        Py_DECREF(r);
    }
    if (PyList_GET_SIZE(self->after_write) > 0 && forward_waiting(self) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyTypeObject OutboxType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "data_plane.audit._spoolio.Outbox",
    .tp_basicsize = sizeof(Outbox),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Outbox(unwritten, after_write, file, fallback, wake): called at the end of a "
              "turn, spools the framed records in `unwritten` through `file` in one write, "
              "calls `wake`, then writes each (transport, data) of `after_write` whose "
              "transport is not closing; both lists end empty. What it cannot write it leaves "
              "to `fallback()` (see the module).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Outbox_init,
    .tp_dealloc = (destructor)Outbox_dealloc,
    .tp_traverse = (traverseproc)Outbox_traverse,
    .tp_clear = (inquiry)Outbox_clear,
    .tp_call = (ternaryfunc)Outbox_call,
};

/* ---------------------------------------------------------------------------------------- */

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "data_plane.audit._spoolio",
    .m_doc = "The audit trail's end of a turn in C: the spool's segment and the outbox.",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__spoolio(void) {
    pending_name = PyUnicode_InternFromString("pending");
    request_name = PyUnicode_InternFromString("request");
    is_closing_name = PyUnicode_InternFromString("is_closing");
    write_name = PyUnicode_InternFromString("write");
    if (!pending_name || !request_name || !is_closing_name || !write_name)
        return NULL;
    if (PyType_Ready(&SpoolFileType) < 0 || PyType_Ready(&OutboxType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL)
        return NULL;
    Py_INCREF(&SpoolFileType);
    if (PyModule_AddObject(m, "SpoolFile", (PyObject *)&SpoolFileType) < 0) {
        Py_DECREF(&SpoolFileType);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&OutboxType);
    if (PyModule_AddObject(m, "Outbox", (PyObject *)&OutboxType) < 0) {
        Py_DECREF(&OutboxType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
