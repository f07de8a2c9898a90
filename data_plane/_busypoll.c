/* The node's event loop kept polling for a moment after it forwards something (see
 * data_plane/busy_poll.py, which holds the reference in Python and the reasons).
 *
 * `arm()` is called for every chunk a relay forwards, so it is a clock read and a store when
 * the loop is already polling; the loop's `call_soon` is called only when a polling run starts.
 * Calling the object is one turn of the run: it schedules itself again until the window since
 * the last `arm` has passed.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <time.h>

typedef struct {
    PyObject_HEAD
    PyObject *call_soon; /* the event loop's call_soon */
    double window;       /* seconds the loop polls after the last arm */
    double until;        /* CLOCK_MONOTONIC seconds: the end of the current run */
    int active;          /* a turn is scheduled */
    long long turns;     /* turns spent polling, over the object's life */
    long long runs;      /* polling runs started */
} BusyPoll;

static double monotonic(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Schedules the next turn; -1 (with the exception set) when call_soon refuses. */
static int schedule(BusyPoll *self) {
    PyObject *handle = PyObject_CallOneArg(self->call_soon, (PyObject *)self);
    if (handle == NULL) {
        self->active = 0;
        return -1;
    }
    Py_DECREF(handle);
    self->active = 1;
    return 0;
}

static PyObject *BusyPoll_arm(BusyPoll *self, PyObject *Py_UNUSED(ignored)) {
    if (self->call_soon == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "BusyPoll is not initialized");
        return NULL;
    }
    if (self->window <= 0.0)
        Py_RETURN_NONE;
    self->until = monotonic() + self->window;
    if (!self->active) {
        if (schedule(self) < 0)
            return NULL;
        self->runs += 1;
    }
    Py_RETURN_NONE;
}

static PyObject *BusyPoll_stop(BusyPoll *self, PyObject *Py_UNUSED(ignored)) {
    self->until = 0.0; /* the turn already scheduled ends the run */
    Py_RETURN_NONE;
}

static PyObject *BusyPoll_call(BusyPoll *self, PyObject *args, PyObject *kwds) {
    if (self->call_soon == NULL || monotonic() >= self->until) {
        self->active = 0;
        Py_RETURN_NONE;
    }
    self->turns += 1;
    if (schedule(self) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static int BusyPoll_init(BusyPoll *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"call_soon", "window", NULL};
    PyObject *call_soon;
    double window;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "Od", kwlist, &call_soon, &window))
        return -1;
    if (!PyCallable_Check(call_soon)) {
        PyErr_SetString(PyExc_TypeError, "call_soon must be callable");
        return -1;
    }
    if (!(window >= 0.0)) {
        PyErr_SetString(PyExc_ValueError, "window must not be negative");
        return -1;
    }
    Py_INCREF(call_soon);
    Py_XSETREF(self->call_soon, call_soon);
    self->window = window;
    self->until = 0.0;
    return 0;
}

static int BusyPoll_traverse(BusyPoll *self, visitproc visit, void *arg) {
    Py_VISIT(self->call_soon);
    return 0;
}

static int BusyPoll_clear(BusyPoll *self) {
    Py_CLEAR(self->call_soon);
    return 0;
}

static void BusyPoll_dealloc(BusyPoll *self) {
    PyObject_GC_UnTrack(self);
    BusyPoll_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *BusyPoll_get_window(BusyPoll *self, void *closure) {
    return PyFloat_FromDouble(self->window);
}

/* A new window applies from the next arm; 0 stops polling after the current run. */
static int BusyPoll_set_window(BusyPoll *self, PyObject *value, void *closure) {
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "window cannot be deleted");
        return -1;
    }
    double window = PyFloat_AsDouble(value);
    if (window == -1.0 && PyErr_Occurred())
        return -1;
    if (!(window >= 0.0)) {
        PyErr_SetString(PyExc_ValueError, "window must not be negative");
        return -1;
    }
    self->window = window;
    return 0;
}

static PyObject *BusyPoll_get_active(BusyPoll *self, void *closure) {
    return PyBool_FromLong(self->active);
}

static PyObject *BusyPoll_get_turns(BusyPoll *self, void *closure) {
    return PyLong_FromLongLong(self->turns);
}

static PyObject *BusyPoll_get_runs(BusyPoll *self, void *closure) {
    return PyLong_FromLongLong(self->runs);
}

static PyGetSetDef BusyPoll_getset[] = {
    {"window", (getter)BusyPoll_get_window, (setter)BusyPoll_set_window,
     "seconds polled after the last arm", NULL},
    {"active", (getter)BusyPoll_get_active, NULL, "whether a polling run is going on", NULL},
    {"turns", (getter)BusyPoll_get_turns, NULL, "event-loop turns spent polling", NULL},
    {"runs", (getter)BusyPoll_get_runs, NULL, "polling runs started", NULL},
    {NULL},
};

static PyMethodDef BusyPoll_methods[] = {
    {"arm", (PyCFunction)BusyPoll_arm, METH_NOARGS,
     "keep the loop polling until `window` seconds from now"},
    {"stop", (PyCFunction)BusyPoll_stop, METH_NOARGS, "end the current run at its next turn"},
    {NULL},
};

static PyTypeObject BusyPollType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "data_plane._busypoll.BusyPoll",
    .tp_basicsize = sizeof(BusyPoll),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "BusyPoll(call_soon, window): the event loop kept polling after I/O",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)BusyPoll_init,
    .tp_dealloc = (destructor)BusyPoll_dealloc,
    .tp_traverse = (traverseproc)BusyPoll_traverse,
    .tp_clear = (inquiry)BusyPoll_clear,
    .tp_call = (ternaryfunc)BusyPoll_call,
    .tp_methods = BusyPoll_methods,
    .tp_getset = BusyPoll_getset,
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "data_plane._busypoll",
    .m_doc = "The node's event loop kept polling for a moment after it forwards something.",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__busypoll(void) {
    if (PyType_Ready(&BusyPollType) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL)
        return NULL;
    Py_INCREF(&BusyPollType);
    if (PyModule_AddObject(module, "BusyPoll", (PyObject *)&BusyPollType) < 0) {
        Py_DECREF(&BusyPollType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
