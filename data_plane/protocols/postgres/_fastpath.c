/* The PostgreSQL relay's fast path: statements the session has already decided, in C.
 *
 * A relayed session hands every chunk of client bytes to `FastPath.client_data`. When the
 * chunk is exactly one simple Query, or one execution of a prepared statement (Bind,
 * optional Describe, Execute, Sync), and the session's enforcer has already allowed that text
 * (or, for a plain read, that text but for its literals: `lockgate.sql.shape`), the statement
 * is audited and forwarded here: its `statement` event is encoded and framed as the spool
 * stores it, handed to the trail (which writes it to the spool before the bytes go upstream)
 * and the chunk forwarded. Anything else (a statement never seen, a denial, a hold, a Parse,
 * a partial message, several groups in one chunk) goes to the Python path, which decides it
 * and may teach the fast path its decision (`learn`).
 *
 * The keys are the ones `lockgate.sql.shape.shape_key` makes (tests compare them on fuzzed
 * text), and the event bytes are the ones `AuditEvent.SerializeToString` makes for the payload
 * `StatementPayloads.encode` makes (tests compare them too). Only ASCII text takes this path,
 * so its JSON is written byte by byte as `json` writes it.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include "_buf.h"

/* Longer statements go the Python path (it truncates what the audit keeps at 1 MiB). */
#define FAST_SQL_MAX 16384
/* Entries per cache before it is cleared (as `lockgate.enforcement.CACHE_LIMIT`). */
#define CACHE_LIMIT 4096

/* ---------------------------------------------------------------------------------------- */
/* Characters: which ones a shape key is sure about, and the classes the literal scan uses.   */

static unsigned char SURE[256];   /* printable ASCII and \t \n \r \f, except $ and \ */
static unsigned char WORD[256];   /* [A-Za-z0-9_.]: may not touch a number */

static void init_tables(void) {
    for (int c = 0x20; c <= 0x7E; c++)
        SURE[c] = 1;
    SURE['$'] = 0;
    SURE['\\'] = 0;
    SURE['\t'] = SURE['\n'] = SURE['\r'] = SURE['\f'] = 1;
    for (int c = 'A'; c <= 'Z'; c++)
        WORD[c] = 1;
    for (int c = 'a'; c <= 'z'; c++)
        WORD[c] = 1;
    for (int c = '0'; c <= '9'; c++)
        WORD[c] = 1;
    WORD['_'] = WORD['.'] = 1;
}

static inline int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/* Whether every byte of s is one a key is sure about. */
static int all_sure(const unsigned char *s, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++)
        if (!SURE[s[i]])
            return 0;
    return 1;
}

/* The end of a number starting at i (as `_LITERAL`'s third branch), or -1 when none starts. */
static Py_ssize_t number_end(const unsigned char *s, Py_ssize_t n, Py_ssize_t i) {
    if (i > 0 && WORD[s[i - 1]])
        return -1;
    Py_ssize_t j = i;
    if (is_digit(s[j])) {
        while (j < n && is_digit(s[j]))
            j++;
        if (j < n && s[j] == '.') {
            j++;
            while (j < n && is_digit(s[j]))
                j++;
        }
    } else { /* '.' */
        j++;
        if (j >= n || !is_digit(s[j]))
            return -1;
        while (j < n && is_digit(s[j]))
            j++;
    }
    if (j < n && (s[j] == 'e' || s[j] == 'E')) {
        Py_ssize_t k = j + 1;
        if (k < n && (s[k] == '+' || s[k] == '-'))
            k++;
        if (k < n && is_digit(s[k])) {
            while (k < n && is_digit(s[k]))
                k++;
            j = k;
        }
    }
    /* Backtracking can only shorten the match so that a digit, '.', or 'e' follows it, all of
     * which the lookahead refuses: the longest match is the only candidate. */
    if (j < n && WORD[s[j]])
        return -1;
    return j;
}

/* The end of a quoted identifier starting at i (`"(?:[^"]|"")*"`), or -1. */
static Py_ssize_t identifier_end(const unsigned char *s, Py_ssize_t n, Py_ssize_t i) {
    Py_ssize_t j = i + 1;
    Py_ssize_t last_pair = -1; /* where the last `""` consumed by the loop starts */
    while (j < n) {
        if (s[j] != '"') {
            j++;
        } else if (j + 1 < n && s[j + 1] == '"') {
            last_pair = j;
            j += 2;
        } else {
            return j + 1;
        }
    }
    /* At the end without a closing quote the regex gives back iterations until a quote can
     * close it: the first quote of the last pair. */
    return last_pair < 0 ? -1 : last_pair + 1;
}

/* Writes the shape key of s into out (room for 3 * n bytes); its length, or -1 for no key. */
static Py_ssize_t shape_key(const unsigned char *s, Py_ssize_t n, unsigned char *out) {
    if (!all_sure(s, n))
        return -1;
    for (Py_ssize_t i = 0; i + 1 < n; i++)
        if ((s[i] == '-' && s[i + 1] == '-') || (s[i] == '/' && s[i + 1] == '*'))
            return -1;
    Py_ssize_t i = 0, o = 0;
    while (i < n) {
        unsigned char c = s[i];
        Py_ssize_t end = -1;
        if (c == '"') {
            end = identifier_end(s, n, i);
            if (end >= 0) { /* kept as written */
                memcpy(out + o, s + i, (size_t)(end - i));
                o += end - i;
                i = end;
                continue;
            }
        } else if (c == '\'') {
            const unsigned char *q = memchr(s + i + 1, '\'', (size_t)(n - i - 1));
            if (q != NULL) {
                out[o++] = '\'';
                out[o++] = 1;
                out[o++] = '\'';
                i = (Py_ssize_t)(q - s) + 1;
                continue;
            }
        } else if (is_digit(c) || c == '.') {
            end = number_end(s, n, i);
            if (end >= 0) {
                out[o++] = 1;
                i = end;
                continue;
            }
        }
        out[o++] = c;
        i++;
    }
    return o;
}

/* A JSON string of ASCII text, as json's encode_basestring_ascii writes it (needs 6n + 2). */
static void put_json_str(Buf *b, const unsigned char *s, Py_ssize_t n) {
    static const char hex[] = "0123456789abcdef";
    b->p[b->len++] = '"';
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c >= ' ' && c <= '~' && c != '\\' && c != '"') {
            b->p[b->len++] = c;
            continue;
        }
        switch (c) {
        case '"': put(b, "\\\"", 2); break;
        case '\\': put(b, "\\\\", 2); break;
        case '\b': put(b, "\\b", 2); break;
        case '\t': put(b, "\\t", 2); break;
        case '\n': put(b, "\\n", 2); break;
        case '\r': put(b, "\\r", 2); break;
        case '\f': put(b, "\\f", 2); break;
        default:
            put(b, "\\u00", 4);
            b->p[b->len++] = (unsigned char)hex[c >> 4];
            b->p[b->len++] = (unsigned char)hex[c & 15];
        }
    }
    b->p[b->len++] = '"';
}

/* Whether every byte is ASCII: text whose audit the fast path writes exactly as Python does. */
static int all_ascii(const unsigned char *s, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++)
        if (s[i] >= 0x80)
            return 0;
    return 1;
}

/* ---------------------------------------------------------------------------------------- */
/* The fast path of one session.                                                              */

typedef struct {
    PyObject_HEAD
    PyObject *client;         /* the client's transport */
    PyObject *upstream;       /* the target's transport */
    PyObject *audit;          /* the session's SessionAudit: its `seq` numbers the events */
    PyObject *unwritten;      /* the trail's outbox (AuditTrail.outbox): framed events, */
    PyObject *after_write;    /* (transport, data) forwarded after them, */
    PyObject *schedule;       /* called when both lists stop being empty */
    PyObject *slow;           /* the Python path for client bytes: slow(data) */
    PyObject *prepared;       /* protocol-level statement name -> SQL (the ClientStream's) */
    PyObject *by_text;        /* SQL bytes -> payload tail */
    PyObject *by_shape;       /* shape key bytes -> payload tail */
    PyObject *session_id;     /* bytes */
    PyObject *bulk;           /* data_plane.bulk.BulkReads of the target's socket, or NULL */
    PyObject *arm;            /* the node's BusyPoll.arm (data_plane/busy_poll.py), or NULL */
    long long bulk_after;     /* its `after`: a streak from then on is reported to it */
    long long streak;         /* target bytes since the client last sent */
    double fresh_until;       /* cached decisions hold until then (seconds since the epoch) */
    int enabled;              /* the Python path has no state of its own pending */
    long long bytes_in, bytes_out, statements;
    Buf payload, frame;
} FastPath;

static PyObject *seq_name, *write_name, *read_name, *reset_name;

static void clear_caches(FastPath *self) {
    PyDict_Clear(self->by_text);
    PyDict_Clear(self->by_shape);
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One statement found in a chunk: its text, and the prepared statement's name (ASCII). */
typedef struct {
    const unsigned char *sql;
    Py_ssize_t sql_len;
    const unsigned char *name;
    Py_ssize_t name_len;
    const char *protocol;
    PyObject *owner; /* keeps `sql` alive when it is not in the chunk */
} Found;

/* The chunk as one execution of a prepared statement: Bind, [Describe], Execute, Sync, each
 * whole and nothing after; 1 when it is one (and the statement is known), else 0. */
static int find_execution(FastPath *self, const unsigned char *d, Py_ssize_t n, Found *f) {
    Py_ssize_t pos = 0;
    int step = 0; /* 0: Bind, 1: Describe or Execute, 2: Sync, 3: the end */
    const unsigned char *stmt = NULL;
    Py_ssize_t stmt_len = 0;
    while (pos < n) {
        if (n - pos < 5)
            return 0;
        unsigned char kind = d[pos];
        uint32_t len = be32(d + pos + 1);
        if (len < 4 || (Py_ssize_t)len > n - pos - 1)
            return 0;
        const unsigned char *body = d + pos + 5;
        Py_ssize_t body_len = (Py_ssize_t)len - 4;
        if (step == 0) {
            if (kind != 'B')
                return 0;
            const unsigned char *nul = memchr(body, 0, (size_t)body_len);
            if (nul == NULL)
                return 0;
            stmt = nul + 1;
            const unsigned char *end = memchr(stmt, 0, (size_t)(body + body_len - stmt));
            if (end == NULL)
                return 0;
            stmt_len = end - stmt;
            step = 1;
        } else if (step == 1 && kind == 'D') {
            step = 1; /* a Describe of the portal before its Execute */
        } else if (step == 1 && kind == 'E') {
            step = 2;
        } else if (step == 2 && kind == 'S' && body_len == 0) {
            step = 3;
        } else {
            return 0;
        }
        pos += 1 + (Py_ssize_t)len;
    }
    if (step != 3 || !all_ascii(stmt, stmt_len))
        return 0;
    PyObject *name = PyUnicode_DecodeASCII((const char *)stmt, stmt_len, NULL);
    if (name == NULL) {
        PyErr_Clear();
        return 0;
    }
    PyObject *sql = PyDict_GetItemWithError(self->prepared, name);
    Py_DECREF(name);
    if (sql == NULL) {
        PyErr_Clear();
        return 0;
    }
    Py_ssize_t sql_len;
    const char *text = PyUnicode_Check(sql) ? PyUnicode_AsUTF8AndSize(sql, &sql_len) : NULL;
    if (text == NULL || sql_len == 0) { /* empty: the Python path decides `EXECUTE "name"` */
        PyErr_Clear();
        return 0;
    }
    Py_INCREF(sql);
    f->sql = (const unsigned char *)text;
    f->sql_len = sql_len;
    f->name = stmt;
    f->name_len = stmt_len;
    f->protocol = "execute";
    f->owner = sql;
    return 1;
}

/* The chunk as exactly one simple Query: 1 when it is, else 0. */
static int find_query(const unsigned char *d, Py_ssize_t n, Found *f) {
    if (n < 6 || d[0] != 'Q' || (Py_ssize_t)be32(d + 1) != n - 1 || d[n - 1] != 0)
        return 0;
    f->sql = d + 5;
    f->sql_len = n - 6;
    if (memchr(f->sql, 0, (size_t)f->sql_len) != NULL)
        return 0;
    f->name = (const unsigned char *)"";
    f->name_len = 0;
    f->protocol = "simple";
    f->owner = NULL;
    return 1;
}

/* The payload tail the session learned for this text, borrowed; NULL when none. */
static PyObject *lookup(FastPath *self, const unsigned char *sql, Py_ssize_t n) {
    PyObject *key = PyBytes_FromStringAndSize((const char *)sql, n);
    if (key == NULL)
        return NULL;
    PyObject *tail = PyDict_GetItemWithError(self->by_text, key);
    Py_DECREF(key);
    if (tail != NULL || PyErr_Occurred())
        return tail;
    key = PyBytes_FromStringAndSize(NULL, 3 * n);
    if (key == NULL)
        return NULL;
    Py_ssize_t len = shape_key(sql, n, (unsigned char *)PyBytes_AS_STRING(key));
    if (len < 0) {
        Py_DECREF(key);
        return NULL;
    }
    if (_PyBytes_Resize(&key, len) < 0)
        return NULL;
    tail = PyDict_GetItemWithError(self->by_shape, key);
    Py_DECREF(key);
    return tail;
}

/* The spool record of a `statement` event: uint32 length, uint32 CRC32, AuditEvent. */
static PyObject *frame_event(FastPath *self, const Found *f, PyObject *tail, long long seq) {
    Buf *p = &self->payload, *fr = &self->frame;
    Py_ssize_t tail_len = PyBytes_GET_SIZE(tail);
    Py_ssize_t plen = strlen(f->protocol);
    p->len = 0;
    if (buf_reserve(p, 6 * f->sql_len + 6 * f->name_len + tail_len + plen + 64) < 0)
        return NULL;
    put(p, "{\"sql\":", 7);
    put_json_str(p, f->sql, f->sql_len);
    put(p, ",\"protocol\":\"", 13);
    put(p, f->protocol, plen);
    put(p, "\",\"name\":", 9);
    put_json_str(p, f->name, f->name_len);
    put(p, ",", 1);
    put(p, PyBytes_AS_STRING(tail), tail_len);
    put(p, "}", 1);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    /* int(time.time() * 1000): the float product, truncated */
    double ms = ((double)ts.tv_sec + (double)ts.tv_nsec / 1e9) * 1000.0;
    uint64_t time_ms = (uint64_t)ms;

    Py_ssize_t sid_len = PyBytes_GET_SIZE(self->session_id);
    fr->len = 0;
    /* header, five tags, four varints of at most 10 bytes, "statement" and its length */
    if (buf_reserve(fr, 8 + 5 + 40 + 10 + sid_len + p->len) < 0)
        return NULL;
    fr->len = 8; /* the header, written last */
    fr->p[fr->len++] = 0x0A;
    put_varint(fr, (uint64_t)sid_len);
    put(fr, PyBytes_AS_STRING(self->session_id), sid_len);
    fr->p[fr->len++] = 0x10;
    put_varint(fr, (uint64_t)seq);
    fr->p[fr->len++] = 0x18;
    put_varint(fr, time_ms);
    fr->p[fr->len++] = 0x22;
    put_varint(fr, 9);
    put(fr, "statement", 9);
    fr->p[fr->len++] = 0x2A;
    put_varint(fr, (uint64_t)p->len);
    put(fr, p->p, p->len);
    uint32_t size = (uint32_t)(fr->len - 8);
    uint32_t crc = (uint32_t)crc32(0L, fr->p + 8, size);
    for (int i = 0; i < 4; i++) {
        fr->p[i] = (unsigned char)(size >> (8 * i));
        fr->p[4 + i] = (unsigned char)(crc >> (8 * i));
    }
    return PyBytes_FromStringAndSize((const char *)fr->p, fr->len);
}

/* Audits and forwards the chunk; 1 when done, 0 to leave it to the Python path, -1 on error. */
static int try_fast(FastPath *self, PyObject *data) {
    const unsigned char *d = (const unsigned char *)PyBytes_AS_STRING(data);
    Py_ssize_t n = PyBytes_GET_SIZE(data);
    Found f;
    if (!find_query(d, n, &f) && !find_execution(self, d, n, &f))
        return 0;
    int done = 0;
    if (f.sql_len > FAST_SQL_MAX || !all_ascii(f.sql, f.sql_len))
        goto out;
    if (now_seconds() >= self->fresh_until) {
        clear_caches(self); /* the Python path's enforcer renews its own */
        goto out;
    }
    PyObject *tail = lookup(self, f.sql, f.sql_len);
    if (tail == NULL) {
        done = PyErr_Occurred() ? -1 : 0;
        goto out;
    }
    Py_INCREF(tail);
    PyObject *seq_obj = PyObject_GetAttr(self->audit, seq_name);
    long long seq = seq_obj ? PyLong_AsLongLong(seq_obj) : -1;
    Py_XDECREF(seq_obj);
    if (seq < 0 && PyErr_Occurred()) {
        Py_DECREF(tail);
        done = -1;
        goto out;
    }
    seq += 1;
    PyObject *frame = frame_event(self, &f, tail, seq);
    Py_DECREF(tail);
    if (frame == NULL) {
        done = -1;
        goto out;
    }
    PyObject *new_seq = PyLong_FromLongLong(seq);
    if (new_seq == NULL || PyObject_SetAttr(self->audit, seq_name, new_seq) < 0) {
        Py_XDECREF(new_seq);
        Py_DECREF(frame);
        done = -1;
        goto out;
    }
    Py_DECREF(new_seq);
    /* Into the trail's outbox (AuditTrail.outbox), without a Python call per statement. */
    int idle = PyList_GET_SIZE(self->unwritten) == 0 && PyList_GET_SIZE(self->after_write) == 0;
    PyObject *waiting = PyTuple_Pack(2, self->upstream, data);
    int failed = waiting == NULL || PyList_Append(self->unwritten, frame) < 0 ||
                 PyList_Append(self->after_write, waiting) < 0;
    Py_XDECREF(waiting);
    Py_DECREF(frame);
    if (!failed && idle) {
        PyObject *r = PyObject_CallNoArgs(self->schedule);
        failed = r == NULL;
        Py_XDECREF(r);
    }
    if (failed) {
        done = -1;
        goto out;
    }
    self->bytes_in += n;
    self->statements += 1;
    done = 1;
out:
    Py_XDECREF(f.owner);
    return done;
}

/* Whether __init__ ran (and the collector did not clear the object); raises when not. */
static int ready(FastPath *self) {
    if (self->by_text != NULL && self->slow != NULL && self->client != NULL)
        return 1;
    PyErr_SetString(PyExc_RuntimeError, "FastPath is not initialized");
    return 0;
}

/* Keeps the loop polling for what comes next (an answer, the next statement); 0 or -1. */
static int arm(FastPath *self) {
    if (self->arm == NULL)
        return 0;
    PyObject *r = PyObject_CallNoArgs(self->arm);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

static PyObject *FastPath_client_data(FastPath *self, PyObject *data) {
    if (!ready(self))
        return NULL;
    if (!PyBytes_CheckExact(data)) {
        PyErr_SetString(PyExc_TypeError, "client_data takes bytes");
        return NULL;
    }
    if (arm(self) < 0)
        return NULL;
    if (self->bulk != NULL && self->streak >= self->bulk_after) {
        PyObject *r = PyObject_CallMethodNoArgs(self->bulk, reset_name);
        if (r == NULL)
            return NULL;
        Py_DECREF(r);
    }
    self->streak = 0;
    if (self->enabled) {
        int done = try_fast(self, data);
        if (done < 0)
            return NULL;
        if (done)
            Py_RETURN_NONE;
    }
    return PyObject_CallOneArg(self->slow, data);
}

static PyObject *FastPath_upstream_data(FastPath *self, PyObject *data) {
    if (!ready(self))
        return NULL;
    if (!PyBytes_Check(data)) {
        PyErr_SetString(PyExc_TypeError, "upstream_data takes bytes");
        return NULL;
    }
    Py_ssize_t n = PyBytes_GET_SIZE(data);
    self->bytes_out += n;
    if (arm(self) < 0)
        return NULL;
    PyObject *written = PyObject_CallMethodOneArg(self->client, write_name, data);
    if (written == NULL || self->bulk == NULL)
        return written;
    self->streak += n;
    if (self->streak < self->bulk_after)
        return written;
    /* A long reply: BulkReads.read(n) says whether to keep counting. */
    PyObject *size = PyLong_FromSsize_t(n);
    PyObject *keep = size ? PyObject_CallMethodOneArg(self->bulk, read_name, size) : NULL;
    Py_XDECREF(size);
    int go_on = keep ? PyObject_IsTrue(keep) : -1;
    Py_XDECREF(keep);
    if (go_on < 0) {
        Py_DECREF(written);
        return NULL;
    }
    if (!go_on)
        self->streak = 0;
    return written;
}

/* cache[key] = value, clearing a full cache first; steals the reference to key. */
static int store(PyObject *cache, PyObject *key, PyObject *value) {
    if (key == NULL)
        return -1;
    if (PyDict_GET_SIZE(cache) >= CACHE_LIMIT)
        PyDict_Clear(cache);
    int rc = PyDict_SetItem(cache, key, value);
    Py_DECREF(key);
    return rc;
}

static PyObject *FastPath_learn(FastPath *self, PyObject *args) {
    PyObject *sql, *tail;
    int by_shape;
    double fresh_until;
    if (!ready(self) || !PyArg_ParseTuple(args, "USpd", &sql, &tail, &by_shape, &fresh_until))
        return NULL;
    Py_ssize_t n;
    const char *text = PyUnicode_AsUTF8AndSize(sql, &n);
    if (text == NULL)
        return NULL;
    if (n > FAST_SQL_MAX || !all_ascii((const unsigned char *)text, n))
        Py_RETURN_FALSE;
    if (fresh_until != self->fresh_until) {
        clear_caches(self); /* decided under other conditions than what is cached */
        self->fresh_until = fresh_until;
    }
    /* The text itself, always (as the enforcer caches it); its shape too for a plain read. */
    if (store(self->by_text, PyBytes_FromStringAndSize(text, n), tail) < 0)
        return NULL;
    if (by_shape) {
        PyObject *key = PyBytes_FromStringAndSize(NULL, 3 * n);
        if (key == NULL)
            return NULL;
        Py_ssize_t len = shape_key((const unsigned char *)text, n, (unsigned char *)PyBytes_AS_STRING(key));
        if (len < 0) {
            Py_DECREF(key);
            Py_RETURN_TRUE;
        }
        if (_PyBytes_Resize(&key, len) < 0 || store(self->by_shape, key, tail) < 0)
            return NULL;
    }
    Py_RETURN_TRUE;
}

static PyObject *FastPath_forget(FastPath *self, PyObject *Py_UNUSED(ignored)) {
    if (!ready(self))
        return NULL;
    clear_caches(self);
    Py_RETURN_NONE;
}

static int FastPath_init(FastPath *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"client", "upstream", "audit", "outbox", "slow",
                             "prepared", "session_id", "bulk", "busy", NULL};
    PyObject *client, *upstream, *audit, *slow, *prepared, *session_id;
    PyObject *unwritten, *after_write, *schedule, *bulk = Py_None, *busy = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO(O!O!O)OO!S|$OO", kwlist, &client, &upstream,
                                     &audit, &PyList_Type, &unwritten, &PyList_Type, &after_write,
                                     &schedule, &slow, &PyDict_Type, &prepared, &session_id,
                                     &bulk, &busy))
        return -1;
    long long bulk_after = 0;
    if (bulk != Py_None) {
        PyObject *after = PyObject_GetAttrString(bulk, "after");
        bulk_after = after ? PyLong_AsLongLong(after) : -1;
        Py_XDECREF(after);
        if (bulk_after < 0) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "bulk.after must not be negative");
            return -1;
        }
    }
    PyObject *arm_method = NULL;
    if (busy != Py_None && (arm_method = PyObject_GetAttrString(busy, "arm")) == NULL)
        return -1;
    PyObject *by_text = PyDict_New(), *by_shape = PyDict_New();
    if (by_text == NULL || by_shape == NULL) {
        Py_XDECREF(by_text);
        Py_XDECREF(by_shape);
        Py_XDECREF(arm_method);
        return -1;
    }
#define SET(field, value) do { PyObject *old = (PyObject *)self->field; Py_INCREF(value); self->field = value; Py_XDECREF(old); } while (0)
    SET(client, client);
    SET(upstream, upstream);
    SET(audit, audit);
    SET(unwritten, unwritten);
    SET(after_write, after_write);
    SET(schedule, schedule);
    SET(slow, slow);
    SET(prepared, prepared);
    SET(session_id, session_id);
#undef SET
    if (bulk != Py_None) {
        Py_INCREF(bulk);
        Py_XSETREF(self->bulk, bulk);
    } else {
        Py_CLEAR(self->bulk);
    }
    Py_XSETREF(self->arm, arm_method);
    self->bulk_after = bulk_after;
    self->streak = 0;
    Py_XSETREF(self->by_text, by_text);
    Py_XSETREF(self->by_shape, by_shape);
    self->fresh_until = 0.0;
    self->enabled = 1;
    return 0;
}

static int FastPath_traverse(FastPath *self, visitproc visit, void *arg) {
    Py_VISIT(self->client);
    Py_VISIT(self->upstream);
    Py_VISIT(self->audit);
    Py_VISIT(self->unwritten);
    Py_VISIT(self->after_write);
    Py_VISIT(self->schedule);
    Py_VISIT(self->slow);
    Py_VISIT(self->prepared);
    Py_VISIT(self->by_text);
    Py_VISIT(self->by_shape);
    Py_VISIT(self->session_id);
    Py_VISIT(self->bulk);
    Py_VISIT(self->arm);
    return 0;
}

static int FastPath_clear(FastPath *self) {
    Py_CLEAR(self->client);
    Py_CLEAR(self->upstream);
    Py_CLEAR(self->audit);
    Py_CLEAR(self->unwritten);
    Py_CLEAR(self->after_write);
    Py_CLEAR(self->schedule);
    Py_CLEAR(self->slow);
    Py_CLEAR(self->prepared);
    Py_CLEAR(self->by_text);
    Py_CLEAR(self->by_shape);
    Py_CLEAR(self->session_id);
    Py_CLEAR(self->bulk);
    Py_CLEAR(self->arm);
    return 0;
}

static void FastPath_dealloc(FastPath *self) {
    PyObject_GC_UnTrack(self);
    FastPath_clear(self);
    PyMem_Free(self->payload.p);
    PyMem_Free(self->frame.p);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *FastPath_get_enabled(FastPath *self, void *closure) {
    return PyBool_FromLong(self->enabled);
}

static int FastPath_set_enabled(FastPath *self, PyObject *value, void *closure) {
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete enabled");
        return -1;
    }
    int v = PyObject_IsTrue(value);
    if (v < 0)
        return -1;
    self->enabled = v;
    return 0;
}

static PyObject *FastPath_get_counter(FastPath *self, void *closure) {
    long long *field = (long long *)((char *)self + (Py_ssize_t)closure);
    return PyLong_FromLongLong(*field);
}

static PyObject *FastPath_get_cached(FastPath *self, void *closure) {
    if (!ready(self))
        return NULL;
    return PyLong_FromSsize_t(PyDict_GET_SIZE(self->by_text) + PyDict_GET_SIZE(self->by_shape));
}

static PyGetSetDef FastPath_getset[] = {
    {"enabled", (getter)FastPath_get_enabled, (setter)FastPath_set_enabled,
     "Whether client bytes may take the fast path (the Python path has nothing pending).", NULL},
    {"bytes_in", (getter)FastPath_get_counter, NULL, "Client bytes the fast path forwarded.",
     (void *)offsetof(FastPath, bytes_in)},
    {"bytes_out", (getter)FastPath_get_counter, NULL, "Target bytes relayed to the client.",
     (void *)offsetof(FastPath, bytes_out)},
    {"statements", (getter)FastPath_get_counter, NULL, "Statements the fast path forwarded.",
     (void *)offsetof(FastPath, statements)},
    {"cached", (getter)FastPath_get_cached, NULL, "Decisions the fast path holds.", NULL},
    {NULL},
};

static PyMethodDef FastPath_methods[] = {
    {"client_data", (PyCFunction)FastPath_client_data, METH_O,
     "Client bytes: audited and forwarded here, or handed to the Python path."},
    {"upstream_data", (PyCFunction)FastPath_upstream_data, METH_O,
     "Target bytes: written to the client as they are (sessions without masking)."},
    {"learn", (PyCFunction)FastPath_learn, METH_VARARGS,
     "learn(sql, tail, by_shape, fresh_until): take statements like `sql` from now on, with "
     "the payload tail `tail`; False when this text cannot take the fast path."},
    {"forget", (PyCFunction)FastPath_forget, METH_NOARGS, "Drop every learned decision."},
    {NULL},
};

static PyTypeObject FastPathType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "data_plane.protocols.postgres._fastpath.FastPath",
    .tp_basicsize = sizeof(FastPath),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The fast path of one relayed PostgreSQL session (see the module).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)FastPath_init,
    .tp_dealloc = (destructor)FastPath_dealloc,
    .tp_traverse = (traverseproc)FastPath_traverse,
    .tp_clear = (inquiry)FastPath_clear,
    .tp_methods = FastPath_methods,
    .tp_getset = FastPath_getset,
};

/* ---------------------------------------------------------------------------------------- */

static PyObject *py_shape_key(PyObject *module, PyObject *arg) {
    Py_ssize_t n;
    const char *text = PyUnicode_AsUTF8AndSize(arg, &n);
    if (text == NULL)
        return NULL;
    PyObject *key = PyBytes_FromStringAndSize(NULL, 3 * n + 1);
    if (key == NULL)
        return NULL;
    Py_ssize_t len = shape_key((const unsigned char *)text, n, (unsigned char *)PyBytes_AS_STRING(key));
    if (len < 0) {
        Py_DECREF(key);
        Py_RETURN_NONE;
    }
    PyObject *out = PyUnicode_DecodeASCII(PyBytes_AS_STRING(key), len, NULL);
    Py_DECREF(key);
    return out;
}

static PyMethodDef module_methods[] = {
    {"shape_key", py_shape_key, METH_O,
     "The key `lockgate.sql.shape.shape_key` gives, computed here (for tests)."},
    {NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "data_plane.protocols.postgres._fastpath",
    .m_doc = "The PostgreSQL relay's fast path for statements a session has already decided.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__fastpath(void) {
    init_tables();
    seq_name = PyUnicode_InternFromString("seq");
    write_name = PyUnicode_InternFromString("write");
    read_name = PyUnicode_InternFromString("read");
    reset_name = PyUnicode_InternFromString("reset");
    if (seq_name == NULL || write_name == NULL || read_name == NULL || reset_name == NULL)
        return NULL;
    if (PyType_Ready(&FastPathType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL)
        return NULL;
    Py_INCREF(&FastPathType);
    if (PyModule_AddObject(m, "FastPath", (PyObject *)&FastPathType) < 0) {
        Py_DECREF(&FastPathType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
