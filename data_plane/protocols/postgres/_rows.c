/* A masked session's result rows, a run at a time in C.
 *
 * A session bound by masking rules follows every message the target sends (`ServerStream` in
 * `session.py`), and a result is a run of messages, one per row: DataRows for a query, CopyData
 * for a COPY ... TO STDOUT. Walked in Python, a row costs about a microsecond with nothing to
 * mask and several with a masked column: far more than the client spends reading it. Both
 * functions here take a run from one offset of a buffer, frame its rows and give each cell
 * what the Python row path gives it, by a layout of one code per column:
 *
 *   0 PASS   the cell as it is
 *   1 EMAIL  a text column masked by name whose value is a plain email: "j***@example.com"
 *   2 STAR   a text column masked as derived: "****"
 *   3 NULL   a masked column of a type no mask is a valid value of: SQL NULL
 *   4 DETECT a column the session's detectors scan: the cell as it is
 *   5 MASKED a text column masked by name, without email shapes: "****"
 *
 * DETECT and MASKED give those cells what the row path gives a cell in which none of the
 * detectors' triggers occurs (`Scanner.segments_with_triggers`); rows with one are the row
 * path's.
 * C cannot tell, so a caller with such codes first collects the run's scanned cells with
 * `scanned_cells`, finds the rows with a trigger, and passes the first one's offset as
 * `mask_data_rows`'s `stop`.
 *
 * `mask_data_rows` takes DataRows with any code (`lockgate.masking.data_rows` makes the layout;
 * NULL cells stay NULL, columns past the layout pass). `mask_copy_rows` takes text COPY rows
 * with PASS, EMAIL, DETECT and MASKED, rows of one line with exactly one field per code; the row
 * path gives a field as it came (escaped), and leaves `\N` (NULL) as it is.
 *
 * A run ends before the first message the row path must see: another type, an incomplete
 * message, a length the codec refuses, a row that is not as described (cells that do not fill
 * their message exactly, a NULL length other than -1, a COPY row of another width or with a
 * newline inside), an EMAIL cell that is not a plain email. The caller's row path takes that
 * message, then calls again, so what the row path would do with any of them stays its own.
 * Tests hold both paths to the same bytes on generated results.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "_buf.h"

enum { PASS = 0, EMAIL = 1, STAR = 2, NULLED = 3, DETECT = 4, MASKED = 5, CODES };

#define CODE(c) (1u << (c))
#define DATA_ROW_CODES (CODE(CODES) - 1)
#define COPY_ROW_CODES (CODE(PASS) | CODE(EMAIL) | CODE(DETECT) | CODE(MASKED))

/* Whether a cell of this code is scanned for triggers before C may take its row. */
static inline int scanned(unsigned char code) { return code == DETECT || code == MASKED; }

static const unsigned char NULL_LENGTH[4] = {0xff, 0xff, 0xff, 0xff};

/* `masks._PLAIN_EMAIL`: [A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,} */
static unsigned char LOCAL[256];  /* [A-Za-z0-9._%+-] */
static unsigned char LABEL[256];  /* [A-Za-z0-9-] */
static unsigned char ALPHA[256];  /* [A-Za-z] */

static void init_tables(void) {
    for (int c = 0; c < 256; c++) {
        int alpha = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
        int alnum = alpha || (c >= '0' && c <= '9');
        ALPHA[c] = (unsigned char)alpha;
        LABEL[c] = (unsigned char)(alnum || c == '-');
        LOCAL[c] = (unsigned char)(alnum || c == '.' || c == '_' || c == '%' || c == '+' || c == '-');
    }
}

/* Where the domain of a plain email starts (after its one "@"), or 0 if `s` is not one. The
 * domain's labels have no "." in them, so the regular expression's split into labels is the
 * only one: two or more non-empty labels, the last of two or more letters. */
static Py_ssize_t plain_email(const unsigned char *s, Py_ssize_t n) {
    Py_ssize_t i = 0;
    while (i < n && LOCAL[s[i]])
        i++;
    if (i == 0 || i == n || s[i] != '@')
        return 0;
    Py_ssize_t domain = ++i, start = i, last = i, labels = 0;
    for (; i <= n; i++) {
        if (i == n || s[i] == '.') {
            if (i == start)
                return 0; /* an empty label */
            labels++;
            last = start;
            start = i + 1;
        } else if (!LABEL[s[i]]) {
            return 0;
        }
    }
    if (labels < 2 || n - last < 2)
        return 0;
    for (Py_ssize_t k = last; k < n; k++)
        if (!ALPHA[s[k]])
            return 0;
    return domain;
}

/* Whether the row b[body:end] is one this function takes: 1 (with `masked` counting the cells
 * it masks) or 0. */
static int scan_row(const unsigned char *b, Py_ssize_t body, Py_ssize_t end,
                    const unsigned char *codes, Py_ssize_t ncodes, Py_ssize_t *masked) {
    if (end - body < 2)
        return 0;
    Py_ssize_t cells = ((Py_ssize_t)b[body] << 8) | b[body + 1];
    Py_ssize_t q = body + 2;
    *masked = 0;
    for (Py_ssize_t i = 0; i < cells; i++) {
        if (end - q < 4)
            return 0;
        int32_t size = (int32_t)be32(b + q);
        q += 4;
        if (size < 0) {
            if (size != -1)
                return 0;
            continue; /* NULL stays NULL, whatever the column's code */
        }
        if (size > end - q)
            return 0;
        unsigned char code = i < ncodes ? codes[i] : PASS;
        if (code == EMAIL && plain_email(b + q, size) == 0)
            return 0;
        if (code != PASS && code != DETECT)
            (*masked)++;
        q += size;
    }
    return q == end;
}

/* Appends a plain email's mask (one `plain_email` took): the local part's first character,
 * "***@", the domain; at most three bytes more than the email. */
static inline void put_masked_email(Buf *out, const unsigned char *email, Py_ssize_t n) {
    Py_ssize_t domain = plain_email(email, n);
    put(out, email, 1);
    put(out, "***@", 4);
    put(out, email + domain, n - domain);
}

/* Appends the masked DataRow for the message body b[body:end] (a row `scan_row` took). */
static int put_row(Buf *out, const unsigned char *b, Py_ssize_t body, Py_ssize_t end,
                   const unsigned char *codes, Py_ssize_t ncodes) {
    /* A masked cell is never longer than the original but for "****" and an email's "***":
     * each at most four bytes more. */
    Py_ssize_t cells = ((Py_ssize_t)b[body] << 8) | b[body + 1];
    if (buf_reserve(out, 5 + (end - body) + 4 * cells) < 0)
        return -1;
    Py_ssize_t start = out->len;
    out->p[out->len++] = 'D';
    out->len += 4; /* the length, once known */
    put(out, b + body, 2);
    Py_ssize_t q = body + 2;
    for (Py_ssize_t i = 0; i < cells; i++) {
        int32_t size = (int32_t)be32(b + q);
        unsigned char code = i < ncodes ? codes[i] : PASS;
        if (size < 0 || code == PASS || code == DETECT) {
            Py_ssize_t whole = 4 + (size < 0 ? 0 : size);
            put(out, b + q, whole);
            q += whole;
            continue;
        }
        const unsigned char *cell = b + q + 4;
        q += 4 + size;
        if (code == NULLED) {
            put(out, NULL_LENGTH, 4);
        } else if (code == STAR || code == MASKED) {
            put_be32(out->p + out->len, 4);
            out->len += 4;
            put(out, "****", 4);
        } else { /* EMAIL */
            Py_ssize_t at = out->len;
            out->len += 4; /* the cell's length, once known */
            put_masked_email(out, cell, size);
            put_be32(out->p + at, (uint32_t)(out->len - at - 4));
        }
    }
    put_be32(out->p + start + 1, (uint32_t)(out->len - start - 1));
    return 0;
}

/* Whether the COPY field b[field:end] is `\N`, a NULL. */
static inline int null_field(const unsigned char *b, Py_ssize_t field, Py_ssize_t end) {
    return end - field == 2 && b[field] == '\\' && b[field + 1] == 'N';
}

/* Whether the text COPY row b[body:end] is one this function takes: one row ending with its
 * only newline, exactly as many tab-separated fields as the layout has codes, a plain email in
 * every EMAIL field (so nothing in it is escaped, and its mask needs no escaping). */
static int scan_copy_row(const unsigned char *b, Py_ssize_t body, Py_ssize_t end,
                         const unsigned char *codes, Py_ssize_t ncodes, Py_ssize_t *masked) {
    if (end == body || b[end - 1] != '\n' || memchr(b + body, '\n', end - 1 - body) != NULL)
        return 0;
    *masked = 0;
    Py_ssize_t field = body, i = 0;
    for (Py_ssize_t q = body; q < end; q++) {
        if (b[q] != '\t' && b[q] != '\n')
            continue;
        if (i == ncodes)
            return 0; /* a field too many */
        if (codes[i] == EMAIL) {
            if (plain_email(b + field, q - field) == 0)
                return 0;
            (*masked)++;
        } else if (codes[i] == MASKED && !null_field(b, field, q)) {
            (*masked)++;
        }
        i++;
        field = q + 1;
    }
    return i == ncodes;
}

/* Appends the masked CopyData message for the row b[body:end] (one `scan_copy_row` took). */
static int put_copy_row(Buf *out, const unsigned char *b, Py_ssize_t body, Py_ssize_t end,
                        const unsigned char *codes, Py_ssize_t ncodes) {
    /* A masked email is at most three bytes longer ("***"), "****" four. */
    if (buf_reserve(out, 5 + (end - body) + 4 * ncodes) < 0)
        return -1;
    Py_ssize_t start = out->len;
    out->p[out->len++] = 'd';
    out->len += 4; /* the length, once known */
    Py_ssize_t field = body, i = 0;
    for (Py_ssize_t q = body; q < end; q++) {
        if (b[q] != '\t' && b[q] != '\n')
            continue;
        if (codes[i] == EMAIL) {
            put_masked_email(out, b + field, q - field);
            put(out, b + q, 1); /* its tab or newline */
        } else if (codes[i] == MASKED && !null_field(b, field, q)) {
            put(out, "****", 4);
            put(out, b + q, 1);
        } else {
            put(out, b + field, q + 1 - field);
        }
        i++;
        field = q + 1;
    }
    put_be32(out->p + start + 1, (uint32_t)(out->len - start - 1));
    return 0;
}

typedef int (*ScanRow)(const unsigned char *, Py_ssize_t, Py_ssize_t, const unsigned char *,
                       Py_ssize_t, Py_ssize_t *);
typedef int (*PutRow)(Buf *, const unsigned char *, Py_ssize_t, Py_ssize_t,
                      const unsigned char *, Py_ssize_t);

/* The layout's codes (NULL and 0 for None); -1 with an exception when one is not in the
 * `allowed` set (a mask of CODE bits) or the layout is not bytes. */
static int get_codes(PyObject *layout, unsigned int allowed, const unsigned char **codes,
                     Py_ssize_t *ncodes) {
    *codes = NULL;
    *ncodes = 0;
    if (layout == Py_None)
        return 0;
    if (!PyBytes_Check(layout)) {
        PyErr_SetString(PyExc_TypeError, "layout must be bytes or None");
        return -1;
    }
    *codes = (const unsigned char *)PyBytes_AS_STRING(layout);
    *ncodes = PyBytes_GET_SIZE(layout);
    for (Py_ssize_t i = 0; i < *ncodes; i++) {
        if ((*codes)[i] >= CODES || !(allowed & CODE((*codes)[i]))) {
            PyErr_Format(PyExc_ValueError, "cell code %d is not one of these rows'", (*codes)[i]);
            return -1;
        }
    }
    return 0;
}

/* 0 when `pos` lies in the buffer; else -1, with ValueError set and the buffer released. */
static int check_pos(Py_buffer *view, Py_ssize_t pos) {
    if (pos >= 0 && pos <= view->len)
        return 0;
    PyBuffer_Release(view);
    PyErr_SetString(PyExc_ValueError, "pos is outside the buffer");
    return -1;
}

/* The message at b[pos] as one of a run of `kind`: its end, or 0 where the run stops (another
 * type, an incomplete message, a length the codec refuses). */
static inline Py_ssize_t run_message(const unsigned char *b, Py_ssize_t n, Py_ssize_t pos,
                                     unsigned char kind, Py_ssize_t max_length) {
    if (n - pos < 5 || b[pos] != kind)
        return 0;
    uint32_t length = be32(b + pos + 1);
    if (length < 4 || (Py_ssize_t)length > max_length || (Py_ssize_t)length > n - pos - 1)
        return 0;
    return pos + 1 + (Py_ssize_t)length;
}

/* The run of `kind` messages from buf[pos], up to `stop` at most: (end, masked bytes or None,
 * rows, cells), with codes of the `allowed` set; a layout of None passes every row. */
static PyObject *mask_run(PyObject *args, unsigned char kind, unsigned int allowed, ScanRow scan,
                          PutRow put_masked) {
    Py_buffer view;
    Py_ssize_t pos, max_length, stop = PY_SSIZE_T_MAX;
    PyObject *layout;
    if (!PyArg_ParseTuple(args, "y*nOn|n", &view, &pos, &layout, &max_length, &stop))
        return NULL;
    const unsigned char *codes;
    Py_ssize_t ncodes;
    if (get_codes(layout, allowed, &codes, &ncodes) < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    if (check_pos(&view, pos) < 0)
        return NULL;
    const unsigned char *b = view.buf;
    Py_ssize_t n = view.len;
    Buf out = {0};
    Py_ssize_t copied = pos, rows = 0, masked = 0;
    int any = 0;
    Py_ssize_t end;
    while (pos < stop && (end = run_message(b, n, pos, kind, max_length)) > 0) {
        Py_ssize_t body = pos + 5;
        if (codes != NULL) {
            Py_ssize_t cells;
            if (!scan(b, body, end, codes, ncodes, &cells))
                break;
            if (cells > 0) {
                if ((pos > copied && buf_add(&out, b + copied, pos - copied) < 0) ||
                    put_masked(&out, b, body, end, codes, ncodes) < 0) {
                    PyMem_Free(out.p);
                    PyBuffer_Release(&view);
                    return NULL;
                }
                copied = end;
                masked += cells;
                any = 1;
            }
        }
        rows++;
        pos = end;
    }
    PyObject *bytes = Py_None;
    Py_INCREF(Py_None);
    if (any) {
        Py_DECREF(Py_None);
        bytes = NULL;
        if (pos == copied || buf_add(&out, b + copied, pos - copied) == 0)
            bytes = PyBytes_FromStringAndSize((const char *)out.p, out.len);
    }
    PyMem_Free(out.p);
    PyBuffer_Release(&view);
    if (bytes == NULL)
        return NULL;
    return Py_BuildValue("nNnn", pos, bytes, rows, masked);
}

static PyObject *mask_data_rows(PyObject *module, PyObject *args) {
    return mask_run(args, 'D', DATA_ROW_CODES, scan_row, put_row);
}

static PyObject *mask_copy_rows(PyObject *module, PyObject *args) {
    return mask_run(args, 'd', COPY_ROW_CODES, scan_copy_row, put_copy_row);
}

/* Appends the DETECT and MASKED cells of the DataRow b[body:end] (one `scan_row` took), each
 * followed by a NUL. */
static int add_scanned_cells(Buf *text, const unsigned char *b, Py_ssize_t body, Py_ssize_t end,
                             const unsigned char *codes, Py_ssize_t ncodes) {
    Py_ssize_t cells = ((Py_ssize_t)b[body] << 8) | b[body + 1];
    Py_ssize_t q = body + 2;
    for (Py_ssize_t i = 0; i < cells; i++) {
        int32_t size = (int32_t)be32(b + q);
        q += 4;
        if (size < 0)
            continue;
        if (i < ncodes && scanned(codes[i]) &&
            (buf_add(text, b + q, size) < 0 || buf_add(text, "", 1) < 0))
            return -1;
        q += size;
    }
    return 0;
}

/* The same for the fields of the COPY row b[body:end] (one `scan_copy_row` took). */
static int add_scanned_fields(Buf *text, const unsigned char *b, Py_ssize_t body, Py_ssize_t end,
                              const unsigned char *codes, Py_ssize_t ncodes) {
    Py_ssize_t field = body, i = 0;
    for (Py_ssize_t q = body; q < end; q++) {
        if (b[q] != '\t' && b[q] != '\n')
            continue;
        if (scanned(codes[i]) &&
            (buf_add(text, b + field, q - field) < 0 || buf_add(text, "", 1) < 0))
            return -1;
        i++;
        field = q + 1;
    }
    return 0;
}

typedef int (*AddScanned)(Buf *, const unsigned char *, Py_ssize_t, Py_ssize_t,
                          const unsigned char *, Py_ssize_t);

/* The DETECT and MASKED cells of the run at buf[pos] (DataRows, or CopyData rows) that
 * `mask_data_rows` or `mask_copy_rows` would take: (end, text, rows). `text` holds those cells,
 * each followed by a NUL (which no trigger matches and no PostgreSQL text holds), row after row;
 * `rows` is a native int64 pair a row that has any: the row's offset in buf, its first cell's
 * in `text`. */
static PyObject *scanned_cells(PyObject *module, PyObject *args) {
    Py_buffer view;
    Py_ssize_t pos, max_length;
    PyObject *layout;
    if (!PyArg_ParseTuple(args, "y*nOn", &view, &pos, &layout, &max_length))
        return NULL;
    if (check_pos(&view, pos) < 0)
        return NULL;
    const unsigned char *b = view.buf;
    Py_ssize_t n = view.len;
    int copy = pos < n && b[pos] == 'd';
    const unsigned char *codes;
    Py_ssize_t ncodes;
    if (get_codes(layout, copy ? COPY_ROW_CODES : DATA_ROW_CODES, &codes, &ncodes) < 0 ||
        codes == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "scanned_cells needs a layout");
        PyBuffer_Release(&view);
        return NULL;
    }
    ScanRow scan = copy ? scan_copy_row : scan_row;
    AddScanned add = copy ? add_scanned_fields : add_scanned_cells;
    Buf text = {0}, rows = {0};
    Py_ssize_t end;
    while ((end = run_message(b, n, pos, copy ? 'd' : 'D', max_length)) > 0) {
        Py_ssize_t masked;
        if (!scan(b, pos + 5, end, codes, ncodes, &masked))
            break;
        int64_t at[2] = {(int64_t)pos, (int64_t)text.len};
        if (add(&text, b, pos + 5, end, codes, ncodes) < 0 ||
            (text.len > at[1] && buf_add(&rows, at, sizeof at) < 0)) {
            PyMem_Free(text.p);
            PyMem_Free(rows.p);
            PyBuffer_Release(&view);
            return NULL;
        }
        pos = end;
    }
    PyBuffer_Release(&view);
    PyObject *result = Py_BuildValue("ny#y#", pos, text.p ? (const char *)text.p : "",
                                     text.len, rows.p ? (const char *)rows.p : "", rows.len);
    PyMem_Free(text.p);
    PyMem_Free(rows.p);
    return result;
}

static PyMethodDef module_methods[] = {
    {"mask_data_rows", mask_data_rows, METH_VARARGS,
     "mask_data_rows(buf, pos, layout, max_length[, stop]) -> (end, masked, rows, cells): the "
     "run of DataRow messages from buf[pos] up to `end` (not past `stop`), masked by `layout` "
     "(one code a column, or None to pass every cell); `masked` is the run's bytes when a cell "
     "changed, else None."},
    {"scanned_cells", scanned_cells, METH_VARARGS,
     "scanned_cells(buf, pos, layout, max_length) -> (end, text, rows): the DETECT and MASKED "
     "cells of the run mask_data_rows or mask_copy_rows would take (DataRows or CopyData, by "
     "the message at pos), NUL after each, and for each row with any, its offset in buf and "
     "its first cell's in text (native int64 pairs)."},
    {"mask_copy_rows", mask_copy_rows, METH_VARARGS,
     "mask_copy_rows(buf, pos, layout, max_length) -> (end, masked, rows, cells): the same for "
     "the CopyData messages of a text COPY, with PASS, EMAIL, DETECT and MASKED codes, one a "
     "field."},
    {NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "data_plane.protocols.postgres._rows",
    .m_doc = "A masked session's result rows, a run at a time (see the module).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__rows(void) {
    init_tables();
    return PyModule_Create(&module_def);
}
