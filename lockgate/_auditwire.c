/* A serialized `AuditBatch` split by session without building a Python object per event.
 *
 * The control plane stores each session's events of an upload as one block (their
 * `AuditBatch` encoding) and keeps a summary per session (events stored, statements, how it
 * ended). Walking a batch of thousands of events in Python (parse, group, compare seqs,
 * serialize each event again) cost it about 2 µs an event; here the batch's bytes are
 * scanned once and each event's bytes are copied as they came.
 *
 * Only what `control_plane.audit` reads is decoded: `AuditEvent.session_id` (1), `seq` (2,
 * int64) and `kind` (4); for a field that occurs more than once the last one counts, and
 * fields of another number or wire type are skipped, as protobuf parsers do. Groups
 * (wire types 3 and 4), truncated fields and session ids that are not UTF-8 raise
 * ValueError; the caller then takes its Python path, which reports them.
 *
 * The node uses `frames_to_batch`: what its spool wrote in one turn, as an upload sends it,
 * and `prefix`: where to cut a batch of its spool's records for an upload (or where an
 * acknowledgement ends), which walked every event in Python before.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "_buf.h"

typedef struct {
    const unsigned char *p;
    const unsigned char *end;
} Reader;

static int read_varint(Reader *r, uint64_t *out) {
    uint64_t value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end)
            return -1;
        unsigned char b = *r->p++;
        value |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            *out = value;
            return 0;
        }
    }
    return -1; /* more than ten bytes */
}

/* Skips the value of a field of wire type `wt`; -1 when it cannot (truncated, a group). */
static int skip_value(Reader *r, unsigned wt) {
    uint64_t n;
    switch (wt) {
    case 0:
        return read_varint(r, &n);
    case 1:
        n = 8;
        break;
    case 2:
        if (read_varint(r, &n) < 0)
            return -1;
        break;
    case 5:
        n = 4;
        break;
    default:
        return -1;
    }
    if (n > (uint64_t)(r->end - r->p))
        return -1;
    r->p += n;
    return 0;
}

/* The next field of a message: its number, wire type and, for wire type 2, its bytes. */
typedef struct {
    uint64_t number;
    unsigned wt;
    const unsigned char *data; /* wire type 2: the value's bytes */
    Py_ssize_t size;
    uint64_t varint; /* wire type 0: the value */
} Field;

/* 1 with a field read, 0 at the end of the message, -1 when malformed. */
static int next_field(Reader *r, Field *f) {
    if (r->p >= r->end)
        return 0;
    uint64_t tag;
    if (read_varint(r, &tag) < 0)
        return -1;
    f->number = tag >> 3;
    f->wt = (unsigned)(tag & 7);
    if (f->number == 0)
        return -1;
    if (f->wt == 2) {
        uint64_t n;
        if (read_varint(r, &n) < 0 || n > (uint64_t)(r->end - r->p))
            return -1;
        f->data = r->p;
        f->size = (Py_ssize_t)n;
        r->p += n;
        return 1;
    }
    if (f->wt == 0)
        return read_varint(r, &f->varint) < 0 ? -1 : 1;
    return skip_value(r, f->wt) < 0 ? -1 : 1;
}

typedef struct {
    const unsigned char *sid;
    Py_ssize_t sid_size;
    int64_t seq;
    const unsigned char *kind;
    Py_ssize_t kind_size;
} Event;

static int parse_event(const unsigned char *data, Py_ssize_t size, Event *e) {
    Reader r = {data, data + size};
    Field f;
    int got;
    e->sid = (const unsigned char *)"";
    e->sid_size = 0;
    e->seq = 0;
    e->kind = (const unsigned char *)"";
    e->kind_size = 0;
    while ((got = next_field(&r, &f)) == 1) {
        if (f.number == 1 && f.wt == 2) {
            e->sid = f.data;
            e->sid_size = f.size;
        } else if (f.number == 2 && f.wt == 0) {
            e->seq = (int64_t)f.varint;
        } else if (f.number == 4 && f.wt == 2) {
            e->kind = f.data;
            e->kind_size = f.size;
        }
    }
    return got;
}

static int kind_is(const Event *e, const char *kind) {
    size_t n = strlen(kind);
    return (size_t)e->kind_size == n && memcmp(e->kind, kind, n) == 0;
}

static PyObject *malformed(void) {
    PyErr_SetString(PyExc_ValueError, "malformed AuditBatch");
    return NULL;
}

/* Calls `each(event, ctx)` for every event of the batch in order; -1 on error (set). */
typedef int (*EventFn)(const unsigned char *data, Py_ssize_t size, const Event *e, void *ctx);

static int each_event(const unsigned char *data, Py_ssize_t size, EventFn each, void *ctx) {
    Reader r = {data, data + size};
    Field f;
    int got;
    while ((got = next_field(&r, &f)) == 1) {
        if (f.number != 1 || f.wt != 2)
            continue;
        Event e;
        if (parse_event(f.data, f.size, &e) < 0) {
            malformed();
            return -1;
        }
        if (each(f.data, f.size, &e, ctx) < 0)
            return -1;
    }
    if (got < 0) {
        malformed();
        return -1;
    }
    return 0;
}

/* The session ids met so far, up to NEAR of them: a batch interleaves the events of a few
 * sessions, and comparing bytes is cheaper than decoding an id and hashing it for each. */
#define NEAR 32

typedef struct {
    const unsigned char *sid[NEAR];
    Py_ssize_t size[NEAR];
    Py_ssize_t value[NEAR]; /* what the caller keeps for the id */
    int count;
    int next; /* the entry replaced next once all are taken */
} Near;

static int near_find(const Near *near, const Event *e, Py_ssize_t *value) {
    for (int i = 0; i < near->count; i++) {
        if (near->size[i] == e->sid_size && memcmp(near->sid[i], e->sid, e->sid_size) == 0) {
            *value = near->value[i];
            return 1;
        }
    }
    return 0;
}

static void near_add(Near *near, const Event *e, Py_ssize_t value) {
    int i = near->count < NEAR ? near->count++ : near->next++ % NEAR;
    near->sid[i] = e->sid;
    near->size[i] = e->sid_size;
    near->value[i] = value;
}

/* -- session_ids ------------------------------------------------------------------------- */

typedef struct {
    PyObject *seen; /* dict: sid -> sid */
    PyObject *order; /* list of sid */
    Near near;
} IdsCtx;

static int collect_id(const unsigned char *data, Py_ssize_t size, const Event *e, void *arg) {
    IdsCtx *ctx = arg;
    Py_ssize_t unused;
    if (near_find(&ctx->near, e, &unused))
        return 0;
    PyObject *sid = PyUnicode_DecodeUTF8((const char *)e->sid, e->sid_size, "strict");
    if (!sid)
        return -1;
    Py_ssize_t before = PyDict_GET_SIZE(ctx->seen);
    PyObject *known = PyDict_SetDefault(ctx->seen, sid, sid); /* borrowed */
    int added = known && PyDict_GET_SIZE(ctx->seen) > before;
    int failed = !known || (added && PyList_Append(ctx->order, sid) < 0);
    Py_DECREF(sid);
    if (failed)
        return -1;
    near_add(&ctx->near, e, 0);
    return 0;
}

static PyObject *session_ids(PyObject *module, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    IdsCtx ctx;
    memset(&ctx, 0, sizeof(ctx));
    ctx.seen = PyDict_New();
    ctx.order = PyList_New(0);
    PyObject *result = NULL;
    if (ctx.seen && ctx.order &&
        each_event(view.buf, view.len, collect_id, &ctx) == 0) {
        result = ctx.order;
        Py_INCREF(result);
    }
    Py_XDECREF(ctx.seen);
    Py_XDECREF(ctx.order);
    PyBuffer_Release(&view);
    return result;
}

/* -- split ------------------------------------------------------------------------------- */

typedef struct {
    PyObject *sid;
    int64_t last; /* the last seq stored or kept */
    int64_t first_seq;
    Py_ssize_t kept;
    Py_ssize_t statements;
    const unsigned char *first; /* the first kept event's bytes */
    Py_ssize_t first_size;
    PyObject *ends; /* list of bytes: kept session.end events */
    Buf block; /* the kept events, each as AuditBatch field 1 */
} Session;

typedef struct {
    PyObject *stored; /* dict: sid -> int */
    PyObject *index; /* dict: sid -> index into sessions */
    Session *sessions;
    Py_ssize_t count;
    Py_ssize_t cap;
    Py_ssize_t total;
    Near near;
} SplitCtx;

static int block_append(Session *s, const unsigned char *data, Py_ssize_t size) {
    if (buf_reserve(&s->block, 11 + size) < 0) /* a tag, a varint of at most ten bytes */
        return -1;
    s->block.p[s->block.len++] = 0x0A;
    put_varint(&s->block, (uint64_t)size);
    put(&s->block, data, size);
    return 0;
}

static Py_ssize_t session_index(SplitCtx *ctx, const Event *e) {
    Py_ssize_t near;
    if (near_find(&ctx->near, e, &near))
        return near;
    PyObject *sid = PyUnicode_DecodeUTF8((const char *)e->sid, e->sid_size, "strict");
    if (!sid)
        return -1;
    Py_ssize_t i;
    PyObject *found = PyDict_GetItemWithError(ctx->index, sid);
    if (found) {
        i = PyLong_AsSsize_t(found);
    } else if (PyErr_Occurred()) {
        i = -1;
    } else {
        i = -1;
        int64_t last = 0;
        PyObject *stored = PyDict_GetItemWithError(ctx->stored, sid);
        if (stored) {
            last = PyLong_AsLongLong(stored);
            if (last == -1 && PyErr_Occurred())
                goto done;
        } else if (PyErr_Occurred()) {
            goto done;
        }
        if (ctx->count == ctx->cap) {
            Py_ssize_t cap = ctx->cap ? ctx->cap * 2 : 16;
            Session *grown = PyMem_Realloc(ctx->sessions, cap * sizeof(Session));
            if (!grown) {
                PyErr_NoMemory();
                goto done;
            }
            ctx->sessions = grown;
            ctx->cap = cap;
        }
        PyObject *number = PyLong_FromSsize_t(ctx->count);
        if (!number || PyDict_SetItem(ctx->index, sid, number) < 0) {
            Py_XDECREF(number);
            goto done;
        }
        Py_DECREF(number);
        Session *s = &ctx->sessions[ctx->count];
        memset(s, 0, sizeof(*s));
        s->sid = sid;
        Py_INCREF(sid);
        s->last = last;
        i = ctx->count++;
    }
    if (i >= 0)
        near_add(&ctx->near, e, i);
done:
    Py_DECREF(sid);
    return i;
}

static int split_event(const unsigned char *data, Py_ssize_t size, const Event *e, void *arg) {
    SplitCtx *ctx = arg;
    ctx->total++;
    Py_ssize_t i = session_index(ctx, e);
    if (i < 0)
        return -1;
    Session *s = &ctx->sessions[i];
    if (e->seq <= s->last)
        return 0; /* stored before, or repeated in this batch */
    if (!s->kept) {
        s->first_seq = e->seq;
        s->first = data;
        s->first_size = size;
    }
    s->kept++;
    s->last = e->seq;
    if (kind_is(e, "statement")) {
        s->statements++;
    } else if (kind_is(e, "session.end")) {
        if (!s->ends && !(s->ends = PyList_New(0)))
            return -1;
        PyObject *event = PyBytes_FromStringAndSize((const char *)data, size);
        if (!event || PyList_Append(s->ends, event) < 0) {
            Py_XDECREF(event);
            return -1;
        }
        Py_DECREF(event);
    }
    return block_append(s, data, size);
}

static PyObject *split_result(SplitCtx *ctx) {
    PyObject *blocks = PyList_New(0);
    if (!blocks)
        return NULL;
    for (Py_ssize_t i = 0; i < ctx->count; i++) {
        Session *s = &ctx->sessions[i];
        if (!s->kept)
            continue;
        PyObject *ends = s->ends ? s->ends : PyList_New(0);
        if (!ends)
            goto fail;
        if (s->ends)
            Py_INCREF(ends);
        PyObject *item = Py_BuildValue(
            "(OLLnny#y#N)", s->sid, (long long)s->first_seq, (long long)s->last, s->kept,
            s->statements, (const char *)s->block.p, s->block.len, (const char *)s->first,
            s->first_size, ends);
        if (!item || PyList_Append(blocks, item) < 0) {
            Py_XDECREF(item);
            goto fail;
        }
        Py_DECREF(item);
    }
    return Py_BuildValue("(Nn)", blocks, ctx->total);
fail:
    Py_DECREF(blocks);
    return NULL;
}

static PyObject *split(PyObject *module, PyObject *args) {
    Py_buffer view;
    PyObject *stored;
    if (!PyArg_ParseTuple(args, "y*O!:split", &view, &PyDict_Type, &stored))
        return NULL;
    SplitCtx ctx;
    memset(&ctx, 0, sizeof(ctx));
    ctx.stored = stored;
    ctx.index = PyDict_New();
    PyObject *result = NULL;
    if (ctx.index && each_event(view.buf, view.len, split_event, &ctx) == 0)
        result = split_result(&ctx);
    for (Py_ssize_t i = 0; i < ctx.count; i++) {
        Py_XDECREF(ctx.sessions[i].sid);
        Py_XDECREF(ctx.sessions[i].ends);
        PyMem_Free(ctx.sessions[i].block.p);
    }
    PyMem_Free(ctx.sessions);
    Py_XDECREF(ctx.index);
    PyBuffer_Release(&view);
    return result;
}

/* -- frames_to_batch -------------------------------------------------------------------- */

static PyObject *frames_to_batch(PyObject *module, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const unsigned char *in = view.buf, *end = in + view.len;
    /* A header of 8 bytes becomes a tag and a varint of at most 6: never longer. */
    PyObject *out = PyBytes_FromStringAndSize(NULL, view.len);
    if (!out)
        goto fail;
    unsigned char *o = (unsigned char *)PyBytes_AS_STRING(out);
    while (in < end) {
        if (end - in < 8)
            goto malformed;
        uint32_t size = (uint32_t)in[0] | (uint32_t)in[1] << 8 | (uint32_t)in[2] << 16 |
                        (uint32_t)in[3] << 24;
        in += 8;
        if (size > (uint64_t)(end - in))
            goto malformed;
        *o++ = 0x0A;
        uint32_t n = size;
        while (n >= 0x80) {
            *o++ = (unsigned char)((n & 0x7F) | 0x80);
            n >>= 7;
        }
        *o++ = (unsigned char)n;
        memcpy(o, in, size);
        o += size;
        in += size;
    }
    PyBuffer_Release(&view);
    if (_PyBytes_Resize(&out, o - (unsigned char *)PyBytes_AS_STRING(out)) < 0)
        return NULL;
    return out;
malformed:
    PyErr_SetString(PyExc_ValueError, "a spool record is cut short");
    Py_DECREF(out);
fail:
    PyBuffer_Release(&view);
    return NULL;
}

/* prefix(batch, limit, budget, alone) -> (end, events, size): the longest run of whole events
 * at the start of `batch` (field 1 only, as `batch_of` makes it) of at most `limit` events
 * and at most `budget` bytes of events (budget < 0: no bound), or its first event whatever its
 * size when `alone`; `end` is where they end in `batch`, `size` the bytes of their events. */
static PyObject *prefix(PyObject *module, PyObject *args) {
    Py_buffer view;
    Py_ssize_t limit, budget;
    int alone;
    if (!PyArg_ParseTuple(args, "y*nnp", &view, &limit, &budget, &alone))
        return NULL;
    Reader r = {view.buf, (const unsigned char *)view.buf + view.len};
    Py_ssize_t end = 0, count = 0, size = 0;
    while (count < limit && r.p < r.end) {
        uint64_t n;
        if (*r.p++ != 0x0A || read_varint(&r, &n) < 0 || n > (uint64_t)(r.end - r.p)) {
            PyBuffer_Release(&view);
            PyErr_SetString(PyExc_ValueError, "not an AuditBatch of field 1 only");
            return NULL;
        }
        if (budget >= 0 && (uint64_t)size + n > (uint64_t)budget && !(alone && count == 0))
            break;
        r.p += n;
        end = r.p - (const unsigned char *)view.buf;
        count++;
        size += (Py_ssize_t)n;
    }
    PyBuffer_Release(&view);
    return Py_BuildValue("nnn", end, count, size);
}

static PyMethodDef methods[] = {
    {"prefix", prefix, METH_VARARGS,
     "prefix(batch, limit, budget, alone) -> (end, events, size): the first events of an "
     "AuditBatch of field 1 only, at most `limit` of them and `budget` bytes of events "
     "(negative: no bound), the first whatever its size when `alone`."},
    {"frames_to_batch", frames_to_batch, METH_O,
     "frames_to_batch(frames) -> bytes: the AuditBatch encoding of records framed as the "
     "node's spool frames them (uint32 length, CRC32, serialized event)."},
    {"session_ids", session_ids, METH_O,
     "session_ids(batch) -> list[str]: the sessions of a serialized AuditBatch, in the order "
     "of their first event."},
    {"split", split, METH_VARARGS,
     "split(batch, stored) -> (blocks, events): the events of a serialized AuditBatch whose "
     "seq is past `stored[session_id]` (0 when absent) and past every earlier one of their "
     "session in the batch, per session in the order of its first event, as tuples "
     "(session_id, first_seq, last_seq, events, statements, block, first, ends): `block` is "
     "their AuditBatch encoding, `first` the first one's bytes, `ends` the bytes of those of "
     "kind session.end; `events` counts every event of the batch."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_auditwire", "AuditBatch bytes split by session (see the source).",
    -1, methods,
};

PyMODINIT_FUNC PyInit__auditwire(void) { return PyModule_Create(&module); }
