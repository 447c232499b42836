/* GGUF reader, versions 2 and 3 (little-endian only).
 *
 * Layout of a GGUF file (all integers little-endian):
 *
 *   magic "GGUF" | u32 version | u64 n_tensors | u64 n_kv
 *   n_kv times:      string key | u32 value type | value
 *   n_tensors times: string name | u32 n_dims | u64 ne[n_dims] | u32 type | u64 offset
 *   padding up to a multiple of general.alignment (default 32)
 *   data section: tensor data, each tensor at its offset from the section start
 *
 * where a string is a u64 byte length followed by that many bytes (no NUL),
 * and an array value is u32 element type | u64 count | elements.
 *
 * Everything is parsed up front by gguf_open*, so that getters never touch
 * unchecked bytes. The parser reads through a cursor that checks every read
 * against the remaining length; counts read from the file are compared with
 * the bytes left *before* anything is allocated or looped over, so memory and
 * time are bounded by a small multiple of the file size whatever the header
 * claims. Keys and strings are copied into one arena per file (a vocabulary
 * of 150k tokens costs a few chunk allocations, not 150k mallocs); numeric
 * values and tensor data stay in the mapping and are decoded on access. */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* mmap, fstat when built as strict C17 */
#endif
#include "model/gguf.h"
#include "model/tensor_types.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define GGUF_DEFAULT_ALIGNMENT 32
/* Arrays of arrays are parsed and skipped recursively; bound the depth so a
 * hostile file cannot exhaust the stack (each level costs only 12 bytes). */
#define GGUF_MAX_NESTING 16
/* Smallest possible encodings, used to bound counts before allocating. */
#define GGUF_MIN_KV_BYTES 13     /* u64 key length + u32 type + 1-byte value */
#define GGUF_MIN_TENSOR_BYTES 32 /* u64 name length + u32 n_dims + u64 ne + u32 type + u64 offset */
#define GGUF_N_VTYPES 13

/* ---------------------------------------------------------------- arena */

/* Bump allocator over a list of chunks that grow geometrically, so a tiny
 * fuzz input costs one small malloc and a real vocabulary a handful. */
typedef struct arena_chunk {
    struct arena_chunk *next;
    size_t used, cap;
    /* data follows, aligned for any type */
} arena_chunk;

typedef struct {
    arena_chunk *head;
    size_t next_cap;
} arena;

#define ARENA_HDR ((sizeof(arena_chunk) + 15) & ~(size_t)15)
#define ARENA_MIN_CHUNK ((size_t)16 << 10)
#define ARENA_MAX_CHUNK ((size_t)8 << 20)

static void *arena_alloc(arena *a, size_t n, size_t align) {
    arena_chunk *c = a->head;
    if (c) {
        size_t at = (c->used + align - 1) & ~(align - 1);
        if (at <= c->cap && n <= c->cap - at) {
            c->used = at + n;
            return (char *)c + ARENA_HDR + at;
        }
    }
    size_t cap = a->next_cap ? a->next_cap : ARENA_MIN_CHUNK;
    if (cap < ARENA_MAX_CHUNK) a->next_cap = cap * 2;
    if (n > cap) cap = n; /* callers have bounded n by the file size */
    if (cap > SIZE_MAX - ARENA_HDR) return NULL;
    c = malloc(ARENA_HDR + cap);
    if (!c) return NULL;
    c->next = a->head;
    c->used = n;
    c->cap = cap;
    a->head = c;
    return (char *)c + ARENA_HDR;
}

static void arena_free(arena *a) {
    arena_chunk *c = a->head;
    while (c) {
        arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
}

/* ---------------------------------------------------------------- name hash */

/* Open-addressing hash table from a name (bytes + length) to an index, used
 * for duplicate detection while parsing and for lookups afterwards. */
typedef struct {
    const char *s; /* NULL: empty slot */
    size_t len;
    int64_t idx;
} hslot;

typedef struct {
    hslot *slots;
    size_t cap; /* power of two, at least twice the entry count */
} htable;

static uint64_t hash_bytes(const char *s, size_t len) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

static bool htable_init(htable *t, uint64_t n) {
    size_t cap = 16;
    while (cap < n * 2) cap *= 2; /* n is bounded by file size / 13 */
    t->slots = calloc(cap, sizeof(hslot));
    t->cap = cap;
    return t->slots != NULL;
}

/* Index stored under the name, or -1. */
static int64_t htable_find(const htable *t, const char *s, size_t len) {
    if (!t->slots) return -1;
    size_t mask = t->cap - 1;
    for (size_t i = (size_t)hash_bytes(s, len) & mask;; i = (i + 1) & mask) {
        const hslot *e = &t->slots[i];
        if (!e->s) return -1;
        if (e->len == len && memcmp(e->s, s, len) == 0) return e->idx;
    }
}

/* Inserts the name; returns -1, or the index of an existing equal name. */
static int64_t htable_insert(htable *t, const char *s, size_t len, int64_t idx) {
    size_t mask = t->cap - 1;
    for (size_t i = (size_t)hash_bytes(s, len) & mask;; i = (i + 1) & mask) {
        hslot *e = &t->slots[i];
        if (!e->s) {
            e->s = s;
            e->len = len;
            e->idx = idx;
            return -1;
        }
        if (e->len == len && memcmp(e->s, s, len) == 0) return e->idx;
    }
}

/* ---------------------------------------------------------------- file */

typedef struct {
    const char *s; /* NUL-terminated copy in the arena */
    size_t len;    /* exact length; s may contain NUL bytes */
} gstr;

typedef struct {
    gstr key;
    gguf_vtype type;
    gguf_vtype elem_type; /* arrays only */
    uint64_t n;           /* arrays only: element count */
    const uint8_t *raw;   /* fixed-size scalars and arrays of them: bytes in the file */
    gstr str;             /* STRING */
    gstr *strs;           /* arrays of STRING: n entries in the arena */
} gguf_kv;

struct gguf_file {
    const uint8_t *base;
    size_t size;
    bool mapped; /* base is our mmap, unmapped by gguf_close */
    uint32_t version;
    size_t alignment;
    size_t data_offset; /* file offset of the data section */
    int64_t n_kv;
    gguf_kv *kv;
    int64_t n_tensors;
    gguf_tensor *tensors;
    htable kv_index, tensor_index;
    arena arena;
};

/* ---------------------------------------------------------------- reader */

typedef struct {
    const uint8_t *p;
    size_t size, pos;
    char *err;
    size_t errlen;
    arena *arena;
    /* What is being read, for error messages: e.g. section "tensor info",
     * index 12, name "blk.0.attn_q.weight", elem -1. Formatted only on error. */
    const char *section;
    int64_t index;
    const char *name;
    size_t name_len;
    int64_t elem;
} reader;

static bool fail(reader *r, const char *fmt, ...) {
    if (r->err && r->errlen) {
        int n = snprintf(r->err, r->errlen, "gguf: ");
        if (n >= 0 && (size_t)n < r->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(r->err + n, r->errlen - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return false;
}

/* Copies a name into buf for an error message, replacing unprintable bytes
 * (names come from the file and may be anything) and shortening long ones. */
static const char *printable(const char *s, size_t len, char *buf, size_t buflen) {
    size_t max = buflen - 4, j = 0;
    for (size_t i = 0; i < len && j < max; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[j++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (len > max) memcpy(buf + j, "...", 3), j += 3;
    buf[j] = '\0';
    return buf;
}

/* "tensor info 12 ('blk.0.attn_q.weight')", "key-value pair 3 ('x') element 5". */
static const char *where(const reader *r, char *buf, size_t buflen) {
    char name[80];
    int n;
    if (r->name)
        n = snprintf(buf, buflen, "%s %" PRId64 " ('%s')", r->section, r->index,
                     printable(r->name, r->name_len, name, sizeof name));
    else if (r->index >= 0)
        n = snprintf(buf, buflen, "%s %" PRId64, r->section, r->index);
    else
        n = snprintf(buf, buflen, "%s", r->section);
    if (r->elem >= 0 && n >= 0 && (size_t)n < buflen)
        snprintf(buf + n, buflen - (size_t)n, " element %" PRId64, r->elem);
    return buf;
}

/* Checks that n more bytes are present; `part` says which field (may be ""). */
static bool need(reader *r, uint64_t n, const char *part) {
    if (n <= r->size - r->pos) return true;
    char w[200];
    return fail(r, "truncated file: %s%s needs %" PRIu64 " bytes at offset %zu, file has %zu",
                where(r, w, sizeof w), part, n, r->pos, r->size);
}

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t le64(const uint8_t *p) { return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32; }

static bool rd_u32(reader *r, uint32_t *v, const char *part) {
    if (!need(r, 4, part)) return false;
    *v = le32(r->p + r->pos);
    r->pos += 4;
    return true;
}

static bool rd_u64(reader *r, uint64_t *v, const char *part) {
    if (!need(r, 8, part)) return false;
    *v = le64(r->p + r->pos);
    r->pos += 8;
    return true;
}

/* Reads a string and copies it NUL-terminated into the arena. */
static bool rd_str(reader *r, gstr *out, const char *part) {
    uint64_t len;
    if (!rd_u64(r, &len, part) || !need(r, len, part)) return false;
    char *s = arena_alloc(r->arena, (size_t)len + 1, 1);
    if (!s) return fail(r, "out of memory copying a %" PRIu64 "-byte string", len);
    memcpy(s, r->p + r->pos, (size_t)len);
    s[len] = '\0';
    r->pos += (size_t)len;
    out->s = s;
    out->len = (size_t)len;
    return true;
}

static const char *const vtype_names[GGUF_N_VTYPES] = {
    "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
    "bool", "string", "array", "uint64", "int64", "float64"};

/* Encoded size of a fixed-size value type; 0 for string, array, unknown. */
static size_t vtype_size(uint32_t t) {
    static const uint8_t sizes[GGUF_N_VTYPES] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return t < GGUF_N_VTYPES ? sizes[t] : 0;
}

static bool check_vtype(reader *r, uint32_t t, const char *what) {
    if (t < GGUF_N_VTYPES) return true;
    char w[200];
    return fail(r, "%s: unknown %s %" PRIu32 " at offset %zu", where(r, w, sizeof w), what, t,
                r->pos - 4);
}

/* Bools must be 0 or 1: anything else means the file is not what we think. */
static bool check_bools(reader *r, const uint8_t *p, uint64_t n) {
    for (uint64_t i = 0; i < n; i++) {
        if (p[i] > 1) {
            char w[200];
            return fail(r, "%s: bool value %u at offset %zu is not 0 or 1", where(r, w, sizeof w),
                        p[i], (size_t)(p + i - r->p));
        }
    }
    return true;
}

/* Checks that an array of n elements of at least min_bytes each can fit in
 * what remains, before anything is allocated or looped over. */
static bool check_count(reader *r, uint64_t n, size_t min_bytes, uint32_t elem_type) {
    if (n <= (r->size - r->pos) / min_bytes) return true;
    char w[200];
    return fail(r, "truncated file: %s: array of %" PRIu64 " %s elements needs at least %zu bytes "
                "each at offset %zu, file has %zu", where(r, w, sizeof w), n,
                vtype_names[elem_type], min_bytes, r->pos, r->size);
}

/* Validates and skips an array nested inside an array; nothing is kept. */
static bool skip_array(reader *r, int depth) {
    uint32_t et;
    uint64_t n;
    if (depth > GGUF_MAX_NESTING) {
        char w[200];
        return fail(r, "%s: arrays nested more than %d deep at offset %zu", where(r, w, sizeof w),
                    GGUF_MAX_NESTING, r->pos);
    }
    if (!rd_u32(r, &et, " nested array type") || !check_vtype(r, et, "array element type") ||
        !rd_u64(r, &n, " nested array length"))
        return false;
    size_t es = vtype_size(et);
    if (es) {
        if (!check_count(r, n, es, et)) return false;
        if (et == GGUF_VT_BOOL && !check_bools(r, r->p + r->pos, n)) return false;
        r->pos += (size_t)(n * es);
    } else if (et == GGUF_VT_STRING) {
        if (!check_count(r, n, 8, et)) return false;
        for (uint64_t i = 0; i < n; i++) {
            uint64_t len;
            if (!rd_u64(r, &len, " nested string length") || !need(r, len, " nested string"))
                return false;
            r->pos += (size_t)len;
        }
    } else {
        if (!check_count(r, n, 12, et)) return false;
        for (uint64_t i = 0; i < n; i++)
            if (!skip_array(r, depth + 1)) return false;
    }
    return true;
}

static bool parse_value(reader *r, gguf_kv *kv) {
    size_t es = vtype_size(kv->type);
    if (es) {
        if (!need(r, es, " value")) return false;
        kv->raw = r->p + r->pos;
        if (kv->type == GGUF_VT_BOOL && !check_bools(r, kv->raw, 1)) return false;
        r->pos += es;
        return true;
    }
    if (kv->type == GGUF_VT_STRING) return rd_str(r, &kv->str, " value");

    uint32_t et;
    if (!rd_u32(r, &et, " array type") || !check_vtype(r, et, "array element type") ||
        !rd_u64(r, &kv->n, " array length"))
        return false;
    kv->elem_type = (gguf_vtype)et;
    es = vtype_size(et);
    if (es) {
        if (!check_count(r, kv->n, es, et)) return false;
        kv->raw = r->p + r->pos;
        if (et == GGUF_VT_BOOL && !check_bools(r, kv->raw, kv->n)) return false;
        r->pos += (size_t)(kv->n * es);
    } else if (et == GGUF_VT_STRING) {
        /* Each string takes at least its 8-byte length, so this bounds the
         * index array to twice the remaining file bytes. */
        if (!check_count(r, kv->n, 8, et)) return false;
        kv->strs = arena_alloc(r->arena, (size_t)kv->n * sizeof(gstr), _Alignof(gstr));
        if (!kv->strs && kv->n) return fail(r, "out of memory for %" PRIu64 " strings", kv->n);
        for (uint64_t i = 0; i < kv->n; i++) {
            r->elem = (int64_t)i;
            if (!rd_str(r, &kv->strs[i], "")) return false;
        }
        r->elem = -1;
    } else {
        /* Arrays of arrays: validated and skipped; getters do not expose them. */
        if (!check_count(r, kv->n, 12, et)) return false;
        for (uint64_t i = 0; i < kv->n; i++) {
            r->elem = (int64_t)i;
            if (!skip_array(r, 2)) return false;
        }
        r->elem = -1;
    }
    return true;
}

/* Keys and tensor names are handed out as C strings without a length, so a
 * NUL inside one would make lookups ambiguous ("a\0x" and "a\0y" both read
 * as "a"); no valid file has one. String values may contain NULs. */
static bool check_no_nul(reader *r, gstr s, const char *what) {
    const char *z = memchr(s.s, '\0', s.len);
    if (!z) return true;
    char w[200];
    return fail(r, "%s: %s contains a NUL byte at offset %zu", where(r, w, sizeof w), what,
                r->pos - s.len + (size_t)(z - s.s));
}

/* ---------------------------------------------------------------- numbers */

/* A decoded numeric value. */
typedef struct {
    enum { NUM_SIGNED, NUM_UNSIGNED, NUM_FLOAT } kind;
    int64_t i;
    uint64_t u;
    double f;
} num;

/* Decodes element i of type t at p; false for non-numeric types (bool,
 * string, array). */
static bool num_at(gguf_vtype t, const uint8_t *p, uint64_t i, num *v) {
    uint32_t u32;
    uint64_t u64;
    float f32;
    double f64;
    switch (t) {
    case GGUF_VT_UINT8: v->kind = NUM_UNSIGNED; v->u = p[i]; return true;
    case GGUF_VT_INT8: v->kind = NUM_SIGNED; v->i = (int8_t)p[i]; return true;
    case GGUF_VT_UINT16: v->kind = NUM_UNSIGNED; v->u = le16(p + 2 * i); return true;
    case GGUF_VT_INT16: v->kind = NUM_SIGNED; v->i = (int16_t)le16(p + 2 * i); return true;
    case GGUF_VT_UINT32: v->kind = NUM_UNSIGNED; v->u = le32(p + 4 * i); return true;
    case GGUF_VT_INT32: v->kind = NUM_SIGNED; v->i = (int32_t)le32(p + 4 * i); return true;
    case GGUF_VT_UINT64: v->kind = NUM_UNSIGNED; v->u = le64(p + 8 * i); return true;
    case GGUF_VT_INT64: v->kind = NUM_SIGNED; v->i = (int64_t)le64(p + 8 * i); return true;
    case GGUF_VT_FLOAT32:
        u32 = le32(p + 4 * i);
        memcpy(&f32, &u32, 4);
        v->kind = NUM_FLOAT;
        v->f = f32;
        return true;
    case GGUF_VT_FLOAT64:
        u64 = le64(p + 8 * i);
        memcpy(&f64, &u64, 8);
        v->kind = NUM_FLOAT;
        v->f = f64;
        return true;
    default: return false;
    }
}

/* Integer in [lo, hi]? Floats never convert to integers. */
static bool num_to_i64(const num *v, int64_t lo, int64_t hi, int64_t *out) {
    if (v->kind == NUM_SIGNED) {
        if (v->i < lo || v->i > hi) return false;
        *out = v->i;
        return true;
    }
    if (v->kind == NUM_UNSIGNED) {
        if (v->u > (uint64_t)hi) return false; /* hi >= 0 in all uses */
        *out = (int64_t)v->u;
        return true;
    }
    return false;
}

/* Floats convert with rounding (a float64 0.1 gives the nearest float), but
 * a finite value beyond the float range is refused; integers convert only
 * when exact if `exact_ints` (a token id must not silently change). */
static bool num_to_f32(const num *v, bool exact_ints, float *out) {
    if (v->kind == NUM_FLOAT) {
        float f = (float)v->f;
        if (isinf(f) && !isinf(v->f)) return false;
        *out = f;
        return true;
    }
    /* |integer| < 2^63 after rounding to float, so the casts back are defined */
    float f = v->kind == NUM_SIGNED ? (float)v->i : (float)v->u;
    if (exact_ints) {
        if (v->kind == NUM_SIGNED && (f >= 0x1p63f || (int64_t)f != v->i)) return false;
        if (v->kind == NUM_UNSIGNED && (f >= 0x1p64f || (uint64_t)f != v->u)) return false;
    }
    *out = f;
    return true;
}

/* ---------------------------------------------------------------- parse */

static bool parse(gguf_file *f, reader *r) {
    r->section = "header";
    r->index = -1;
    r->elem = -1;

    if (!need(r, 4, " magic")) return false;
    if (memcmp(r->p, "GGUF", 4) != 0) {
        char m[16];
        return fail(r, "not a GGUF file: magic is '%s' (bytes %02x %02x %02x %02x), expected 'GGUF'",
                    printable((const char *)r->p, 4, m, sizeof m), r->p[0], r->p[1], r->p[2],
                    r->p[3]);
    }
    r->pos = 4;
    uint32_t version;
    if (!rd_u32(r, &version, " version")) return false;
    if (version == 1)
        return fail(r, "GGUF version 1 is not supported (only versions 2 and 3); "
                    "convert the file with a current llama.cpp");
    if (version != 2 && version != 3) {
        /* A big-endian v3 file stores the version byte-swapped. */
        uint32_t swapped = (version >> 24) | ((version >> 8) & 0xff00) |
                           ((version << 8) & 0xff0000) | (version << 24);
        if (swapped >= 1 && swapped <= 3)
            return fail(r, "big-endian GGUF file (version field reads 0x%08" PRIx32
                        "); only little-endian files are supported", version);
        return fail(r, "unsupported GGUF version %" PRIu32 " (only versions 2 and 3)", version);
    }
    f->version = version;

    uint64_t n_tensors, n_kv;
    if (!rd_u64(r, &n_tensors, " tensor count") || !rd_u64(r, &n_kv, " key-value count"))
        return false;
    size_t left = r->size - r->pos;
    if (n_kv > left / GGUF_MIN_KV_BYTES)
        return fail(r, "header claims %" PRIu64 " key-value pairs but only %zu bytes follow the "
                    "header at offset %zu (each pair needs at least %d)", n_kv, left, r->pos,
                    GGUF_MIN_KV_BYTES);
    if (n_tensors > left / GGUF_MIN_TENSOR_BYTES)
        return fail(r, "header claims %" PRIu64 " tensors but only %zu bytes follow the header at "
                    "offset %zu (each tensor info needs at least %d)", n_tensors, left, r->pos,
                    GGUF_MIN_TENSOR_BYTES);

    /* Key-value pairs. */
    f->kv = calloc(n_kv ? (size_t)n_kv : 1, sizeof(gguf_kv));
    if (!f->kv || !htable_init(&f->kv_index, n_kv)) return fail(r, "out of memory");
    r->section = "key-value pair";
    for (uint64_t i = 0; i < n_kv; i++) {
        gguf_kv *kv = &f->kv[i];
        uint32_t type;
        r->index = (int64_t)i;
        r->name = NULL;
        if (!rd_str(r, &kv->key, " key")) return false;
        r->name = kv->key.s;
        r->name_len = kv->key.len;
        f->n_kv = (int64_t)i + 1; /* so gguf_close sees what was filled */
        if (!check_no_nul(r, kv->key, "key")) return false;
        int64_t dup = htable_insert(&f->kv_index, kv->key.s, kv->key.len, (int64_t)i);
        if (dup >= 0) {
            char w[200];
            return fail(r, "%s: duplicate key (also key-value pair %" PRId64 ")",
                        where(r, w, sizeof w), dup);
        }
        if (!rd_u32(r, &type, " value type") || !check_vtype(r, type, "value type")) return false;
        kv->type = (gguf_vtype)type;
        if (!parse_value(r, kv)) return false;
    }
    r->name = NULL;

    /* general.alignment: ggml writes it as uint32; accept any integer type
     * holding a nonzero power of two. */
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    int64_t ai = gguf_find_key(f, "general.alignment");
    if (ai >= 0) {
        const gguf_kv *kv = &f->kv[ai];
        num v;
        int64_t a;
        if (!num_at(kv->type, kv->raw, 0, &v) || !num_to_i64(&v, 0, INT64_MAX, &a))
            return fail(r, "general.alignment has type %s, expected an unsigned integer",
                        vtype_names[kv->type]);
        if (a == 0 || (a & (a - 1)) != 0 || (uint64_t)a > SIZE_MAX / 2)
            return fail(r, "general.alignment is %" PRId64 ", must be a nonzero power of two", a);
        f->alignment = (size_t)a;
    }

    /* Tensor infos. Re-check the count now that the exact remainder is known. */
    left = r->size - r->pos;
    if (n_tensors > left / GGUF_MIN_TENSOR_BYTES)
        return fail(r, "header claims %" PRIu64 " tensors but only %zu bytes follow the metadata "
                    "at offset %zu (each tensor info needs at least %d)", n_tensors, left, r->pos,
                    GGUF_MIN_TENSOR_BYTES);
    f->tensors = calloc(n_tensors ? (size_t)n_tensors : 1, sizeof(gguf_tensor));
    if (!f->tensors || !htable_init(&f->tensor_index, n_tensors)) return fail(r, "out of memory");
    r->section = "tensor info";
    for (uint64_t i = 0; i < n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        gstr name;
        uint32_t n_dims;
        char w[200];
        r->index = (int64_t)i;
        r->name = NULL;
        if (!rd_str(r, &name, " name")) return false;
        t->name = name.s;
        r->name = name.s;
        r->name_len = name.len;
        f->n_tensors = (int64_t)i + 1;
        if (!check_no_nul(r, name, "tensor name")) return false;
        int64_t dup = htable_insert(&f->tensor_index, name.s, name.len, (int64_t)i);
        if (dup >= 0)
            return fail(r, "%s: duplicate tensor name (also tensor info %" PRId64 ")",
                        where(r, w, sizeof w), dup);
        if (!rd_u32(r, &n_dims, " dimension count")) return false;
        if (n_dims < 1 || n_dims > GGUF_MAX_DIMS)
            return fail(r, "%s: %" PRIu32 " dimensions at offset %zu, must be 1 to %d",
                        where(r, w, sizeof w), n_dims, r->pos - 4, GGUF_MAX_DIMS);
        t->n_dims = (int)n_dims;
        if (!need(r, 8 * (uint64_t)n_dims + 4 + 8, "")) return false;
        for (int d = 0; d < GGUF_MAX_DIMS; d++) {
            uint64_t ne = 1;
            if (d < t->n_dims) {
                ne = le64(r->p + r->pos);
                r->pos += 8;
            }
            if (ne > INT64_MAX)
                return fail(r, "%s: ne[%d] = %" PRIu64 " is too large", where(r, w, sizeof w), d, ne);
            t->ne[d] = (int64_t)ne;
        }
        t->type = le32(r->p + r->pos);
        r->pos += 4;
        /* only ggml's numbering: godwit's internal formats are not file types */
        if (t->type >= GW_TYPE_COUNT || !gw_type_info(t->type))
            return fail(r, "%s: unknown tensor type %" PRIu32 " at offset %zu",
                        where(r, w, sizeof w), t->type, r->pos - 4);
        t->offset = le64(r->p + r->pos);
        r->pos += 8;
    }

    /* The data section starts at the next multiple of the alignment. */
    uint64_t start = ((uint64_t)r->pos + f->alignment - 1) & ~((uint64_t)f->alignment - 1);
    if (start > r->size) {
        if (n_tensors > 0)
            return fail(r, "truncated file: data section starts at offset %" PRIu64 " (tensor infos "
                        "end at %zu, aligned to %zu), file has %zu", start, r->pos, f->alignment,
                        r->size);
        start = r->size; /* metadata-only file without final padding */
    }
    f->data_offset = (size_t)start;
    size_t data_size = r->size - f->data_offset;

    /* Sizes, alignment and bounds of every tensor. */
    for (int64_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        const gw_type_traits *tt = gw_type_info(t->type);
        char w[200];
        r->index = i;
        r->name = t->name;
        r->name_len = strlen(t->name); /* only for messages: a NUL cuts it short */
        where(r, w, sizeof w);
        if (t->ne[0] % tt->block_size != 0)
            return fail(r, "%s: ne[0] = %" PRId64 " is not a multiple of the %s block size %d", w,
                        t->ne[0], tt->name, tt->block_size);
        /* Element count must fit int64 (callers compute with it) and the byte
         * count size_t; test before multiplying. */
        int64_t nel = 1;
        for (int d = 0; d < GGUF_MAX_DIMS; d++) {
            if (t->ne[d] != 0 && nel > INT64_MAX / t->ne[d])
                return fail(r, "%s: element count overflows (ne = %" PRId64 " x %" PRId64 " x %"
                            PRId64 " x %" PRId64 ")", w, t->ne[0], t->ne[1], t->ne[2], t->ne[3]);
            nel *= t->ne[d];
        }
        /* Bytes = row bytes x rows, saturating at SIZE_MAX: anything that
         * large fails the bounds check below anyway. gw_row_bytes itself does
         * not check for overflow, hence the test before calling it. */
        size_t nbytes = SIZE_MAX;
        if ((uint64_t)(t->ne[0] / tt->block_size) <= SIZE_MAX / (size_t)tt->block_bytes) {
            nbytes = gw_row_bytes(t->type, t->ne[0]);
            for (int d = 1; d < GGUF_MAX_DIMS; d++) {
                if (t->ne[d] != 0 && (uint64_t)nbytes > SIZE_MAX / (uint64_t)t->ne[d]) {
                    nbytes = SIZE_MAX;
                    break;
                }
                nbytes *= (size_t)t->ne[d];
            }
        }
        if (t->offset % f->alignment != 0)
            return fail(r, "%s: data offset %" PRIu64 " is not a multiple of the alignment %zu", w,
                        t->offset, f->alignment);
        if (t->offset > data_size || nbytes > data_size - t->offset)
            return fail(r, "%s: %zu bytes of %s data at data offset %" PRIu64 " (file "
                        "offset %zu + %" PRIu64 ") extend past the end of the file (%zu bytes)",
                        w, nbytes, tt->name, t->offset, f->data_offset, t->offset, r->size);
        t->nbytes = nbytes;
        t->data = r->p + f->data_offset + t->offset;
    }
    r->name = NULL;
    return true;
}

typedef struct {
    uint64_t offset;
    size_t nbytes;
    int64_t idx;
} extent;

static int extent_cmp(const void *a, const void *b) {
    const extent *x = a, *y = b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Two tensors sharing bytes is a corrupt (or hostile) file: writing one
 * would change the other. Empty tensors occupy nothing and are skipped. */
static bool check_overlaps(gguf_file *f, reader *r) {
    if (f->n_tensors < 2) return true;
    extent *e = malloc((size_t)f->n_tensors * sizeof(extent));
    if (!e) return fail(r, "out of memory");
    size_t n = 0;
    for (int64_t i = 0; i < f->n_tensors; i++)
        if (f->tensors[i].nbytes)
            e[n++] = (extent){f->tensors[i].offset, f->tensors[i].nbytes, i};
    qsort(e, n, sizeof(extent), extent_cmp);
    for (size_t k = 1; k < n; k++) {
        const extent *a = &e[k - 1], *b = &e[k];
        if (a->offset + a->nbytes > b->offset) { /* in range: checked against the file size */
            char n1[80], n2[80];
            const char *s1 = f->tensors[a->idx].name, *s2 = f->tensors[b->idx].name;
            fail(r, "tensors %" PRId64 " ('%s', data bytes %" PRIu64 "..%" PRIu64 ") and %" PRId64
                 " ('%s', data bytes %" PRIu64 "..%" PRIu64 ") overlap",
                 a->idx, printable(s1, strlen(s1), n1, sizeof n1), a->offset,
                 a->offset + a->nbytes, b->idx, printable(s2, strlen(s2), n2, sizeof n2),
                 b->offset, b->offset + b->nbytes);
            free(e);
            return false;
        }
    }
    free(e);
    return true;
}

gguf_file *gguf_open_memory(const void *data, size_t size, char *err, size_t errlen) {
    if (err && errlen) err[0] = '\0';
    gguf_file *f = calloc(1, sizeof *f);
    if (!f) {
        if (err && errlen) snprintf(err, errlen, "gguf: out of memory");
        return NULL;
    }
    f->base = data;
    f->size = size;
    reader r = {.p = data, .size = size, .err = err, .errlen = errlen, .arena = &f->arena};
    if (!data) r.size = 0; /* a NULL buffer is an empty file */
    if (!parse(f, &r) || !check_overlaps(f, &r)) {
        gguf_close(f);
        return NULL;
    }
    return f;
}

gguf_file *gguf_open(const char *path, char *err, size_t errlen) {
    if (err && errlen) err[0] = '\0';
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (err && errlen) snprintf(err, errlen, "gguf: cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        if (err && errlen) snprintf(err, errlen, "gguf: cannot stat %s: %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        if (err && errlen) snprintf(err, errlen, "gguf: %s: not a regular file", path);
        close(fd);
        return NULL;
    }
    if (st.st_size == 0 || (uint64_t)st.st_size > SIZE_MAX) {
        if (err && errlen)
            snprintf(err, errlen, "gguf: %s: %s", path, st.st_size ? "file too large" : "empty file");
        close(fd);
        return NULL;
    }
    size_t size = (size_t)st.st_size;
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    close(fd); /* the mapping keeps the file alive */
    if (map == MAP_FAILED) {
        if (err && errlen) snprintf(err, errlen, "gguf: cannot mmap %s: %s", path, strerror(map_errno));
        return NULL;
    }
    char msg[512];
    gguf_file *f = gguf_open_memory(map, size, msg, sizeof msg);
    if (!f) {
        munmap(map, size);
        /* Say which file: "gguf: model.gguf: truncated file: ..." */
        if (err && errlen) snprintf(err, errlen, "gguf: %s: %s", path, msg + 6);
        return NULL;
    }
    f->mapped = true;
    return f;
}

void gguf_close(gguf_file *f) {
    if (!f) return;
    if (f->mapped) munmap((void *)f->base, f->size);
    free(f->kv);
    free(f->tensors);
    free(f->kv_index.slots);
    free(f->tensor_index.slots);
    arena_free(&f->arena);
    free(f);
}

/* ---------------------------------------------------------------- accessors */

uint32_t gguf_version(const gguf_file *f) { return f->version; }
size_t gguf_alignment(const gguf_file *f) { return f->alignment; }
size_t gguf_data_offset(const gguf_file *f) { return f->data_offset; }
size_t gguf_file_size(const gguf_file *f) { return f->size; }

const char *gguf_vtype_name(gguf_vtype t) {
    return (unsigned)t < GGUF_N_VTYPES ? vtype_names[t] : "unknown";
}

int64_t gguf_n_kv(const gguf_file *f) { return f->n_kv; }

const char *gguf_kv_key(const gguf_file *f, int64_t i) {
    return i >= 0 && i < f->n_kv ? f->kv[i].key.s : NULL;
}

gguf_vtype gguf_kv_type(const gguf_file *f, int64_t i) {
    /* Out of range has no good answer; UINT8 is harmless for a bad caller. */
    return i >= 0 && i < f->n_kv ? f->kv[i].type : GGUF_VT_UINT8;
}

int64_t gguf_find_key(const gguf_file *f, const char *key) {
    return htable_find(&f->kv_index, key, strlen(key));
}

static const gguf_kv *find_kv(const gguf_file *f, const char *key) {
    int64_t i = gguf_find_key(f, key);
    return i >= 0 ? &f->kv[i] : NULL;
}

/* Scalar numeric value of a key (not for bool, string or array keys). */
static bool scalar_num(const gguf_file *f, const char *key, num *v) {
    const gguf_kv *kv = find_kv(f, key);
    return kv && kv->type != GGUF_VT_BOOL && num_at(kv->type, kv->raw, 0, v);
}

bool gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out) {
    num v;
    int64_t x;
    if (!scalar_num(f, key, &v) || !num_to_i64(&v, 0, UINT32_MAX, &x)) return false;
    *out = (uint32_t)x;
    return true;
}

bool gguf_get_i64(const gguf_file *f, const char *key, int64_t *out) {
    num v;
    return scalar_num(f, key, &v) && num_to_i64(&v, INT64_MIN, INT64_MAX, out);
}

bool gguf_get_f32(const gguf_file *f, const char *key, float *out) {
    num v;
    return scalar_num(f, key, &v) && num_to_f32(&v, false, out);
}

bool gguf_get_bool(const gguf_file *f, const char *key, bool *out) {
    const gguf_kv *kv = find_kv(f, key);
    if (!kv || kv->type != GGUF_VT_BOOL) return false;
    *out = kv->raw[0] != 0;
    return true;
}

const char *gguf_get_str(const gguf_file *f, const char *key) {
    const gguf_kv *kv = find_kv(f, key);
    return kv && kv->type == GGUF_VT_STRING ? kv->str.s : NULL;
}

bool gguf_get_arr_info(const gguf_file *f, const char *key, gguf_vtype *elem_type, uint64_t *n) {
    const gguf_kv *kv = find_kv(f, key);
    if (!kv || kv->type != GGUF_VT_ARRAY) {
        if (elem_type) *elem_type = (gguf_vtype)0;
        if (n) *n = 0;
        return false;
    }
    if (elem_type) *elem_type = kv->elem_type;
    if (n) *n = kv->n;
    return true;
}

const void *gguf_get_arr_data(const gguf_file *f, const char *key, gguf_vtype *elem_type,
                              uint64_t *n) {
    const gguf_kv *kv = find_kv(f, key);
    if (!kv || kv->type != GGUF_VT_ARRAY || !vtype_size(kv->elem_type)) return NULL;
    if (elem_type) *elem_type = kv->elem_type;
    if (n) *n = kv->n;
    return kv->raw;
}

const char *gguf_get_arr_str(const gguf_file *f, const char *key, uint64_t i, size_t *len) {
    const gguf_kv *kv = find_kv(f, key);
    if (!kv || kv->type != GGUF_VT_ARRAY || kv->elem_type != GGUF_VT_STRING || i >= kv->n)
        return NULL;
    if (len) *len = kv->strs[i].len;
    return kv->strs[i].s;
}

/* Element i of a numeric array (not bool: a bool is not a number here). */
static bool arr_num(const gguf_file *f, const char *key, uint64_t i, num *v) {
    const gguf_kv *kv = find_kv(f, key);
    return kv && kv->type == GGUF_VT_ARRAY && kv->elem_type != GGUF_VT_BOOL && i < kv->n &&
           num_at(kv->elem_type, kv->raw, i, v);
}

bool gguf_get_arr_i32(const gguf_file *f, const char *key, uint64_t i, int32_t *out) {
    num v;
    int64_t x;
    if (!arr_num(f, key, i, &v) || !num_to_i64(&v, INT32_MIN, INT32_MAX, &x)) return false;
    *out = (int32_t)x;
    return true;
}

bool gguf_get_arr_f32(const gguf_file *f, const char *key, uint64_t i, float *out) {
    num v;
    return arr_num(f, key, i, &v) && num_to_f32(&v, true, out);
}

/* ---------------------------------------------------------------- rendering */

/* Appends to a fixed buffer, keeping it NUL-terminated; once full, ends the
 * text with "..." so a cut is visible. */
typedef struct {
    char *p;
    size_t cap, len;
    bool full;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) {
    if (b->full) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < b->cap - b->len) {
        b->len += (size_t)n;
        return;
    }
    b->full = true;
    b->len = b->cap - 1;
    if (b->cap >= 4) memcpy(b->p + b->cap - 4, "...", 3);
}

static void sb_quoted(sbuf *b, const char *s, size_t len) {
    sb_printf(b, "\"");
    for (size_t i = 0; i < len && !b->full; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') sb_printf(b, "\\%c", c);
        else if (c == '\n') sb_printf(b, "\\n");
        else if (c == '\t') sb_printf(b, "\\t");
        else if (c == '\r') sb_printf(b, "\\r");
        else if (c < 0x20 || c == 0x7f) sb_printf(b, "\\x%02x", c);
        else sb_printf(b, "%c", c);
    }
    sb_printf(b, "\"");
}

static void sb_num(sbuf *b, gguf_vtype t, const uint8_t *p, uint64_t i) {
    num v;
    if (t == GGUF_VT_BOOL) sb_printf(b, "%s", p[i] ? "true" : "false");
    else if (!num_at(t, p, i, &v)) sb_printf(b, "?");
    else if (v.kind == NUM_SIGNED) sb_printf(b, "%" PRId64, v.i);
    else if (v.kind == NUM_UNSIGNED) sb_printf(b, "%" PRIu64, v.u);
    else sb_printf(b, "%g", v.f);
}

void gguf_kv_to_string(const gguf_file *f, int64_t i, char *buf, size_t buflen) {
    if (!buf || buflen == 0) return;
    buf[0] = '\0';
    if (i < 0 || i >= f->n_kv) return;
    sbuf b = {buf, buflen, 0, false};
    const gguf_kv *kv = &f->kv[i];
    if (kv->type == GGUF_VT_STRING) {
        sb_quoted(&b, kv->str.s, kv->str.len);
    } else if (kv->type != GGUF_VT_ARRAY) {
        sb_num(&b, kv->type, kv->raw, 0);
    } else {
        enum { SHOW = 8 }; /* first elements shown */
        sb_printf(&b, "[%s x %" PRIu64 "]", vtype_names[kv->elem_type], kv->n);
        if (kv->elem_type == GGUF_VT_ARRAY || kv->n == 0) return;
        sb_printf(&b, " ");
        for (uint64_t k = 0; k < kv->n && k < SHOW; k++) {
            if (k) sb_printf(&b, ", ");
            if (kv->elem_type == GGUF_VT_STRING) sb_quoted(&b, kv->strs[k].s, kv->strs[k].len);
            else sb_num(&b, kv->elem_type, kv->raw, k);
        }
        if (kv->n > SHOW) sb_printf(&b, ", ...");
    }
}

/* ---------------------------------------------------------------- tensors */

int64_t gguf_n_tensors(const gguf_file *f) { return f->n_tensors; }

const gguf_tensor *gguf_tensor_at(const gguf_file *f, int64_t i) {
    return i >= 0 && i < f->n_tensors ? &f->tensors[i] : NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name) {
    int64_t i = htable_find(&f->tensor_index, name, strlen(name));
    return i >= 0 ? &f->tensors[i] : NULL;
}
