/* A growable byte buffer for the C extensions (the PostgreSQL fast path's event encoding, the
 * audit spool's outbox, the split of audit uploads by session, masked result rows): reserve
 * room, then put bytes into it; and the big-endian int32 of PostgreSQL's wire format.
 * Header-only: each extension compiles its own static copy. */

#ifndef LOCKGATE_BUF_H
#define LOCKGATE_BUF_H

#include <Python.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    unsigned char *p;
    Py_ssize_t len, cap;
} Buf;

/* Room for `more` bytes after what the buffer holds: 0, or -1 with MemoryError set. */
static int buf_reserve(Buf *b, Py_ssize_t more) {
    if (b->len + more <= b->cap)
        return 0;
    Py_ssize_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + more)
        cap *= 2;
    unsigned char *p = PyMem_Realloc(b->p, (size_t)cap);
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

/* The puts need the room reserved first. */
static inline void put(Buf *b, const void *data, Py_ssize_t n) {
    memcpy(b->p + b->len, data, (size_t)n);
    b->len += n;
}

static inline void put_varint(Buf *b, uint64_t v) {
    while (v >= 0x80) {
        b->p[b->len++] = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    b->p[b->len++] = (unsigned char)v;
}

/* Reserve and put: 0, or -1 with MemoryError set (nothing added). */
static inline int buf_add(Buf *b, const void *data, Py_ssize_t n) {
    if (buf_reserve(b, n) < 0)
        return -1;
    put(b, data, n);
    return 0;
}

static inline uint32_t be32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline void put_be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

#endif
