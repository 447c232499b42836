/* safetensors reader: see safetensors.h for the format and what is checked.
 *
 * The JSON header is parsed with cJSON over the mapped bytes (length-bounded,
 * no copy); numbers arrive as doubles, so integers are accepted only when
 * integral and below 2^53 (exact), which covers any file that fits in memory.
 * Tensor names are copied out; the parsed JSON is freed before open returns. */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif
#include "model/safetensors.h"
#include "model/tensor_types.h"
#include "util/error.h"
#include "util/file.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    char *key, *value;
} st_meta;

struct st_file {
    const uint8_t *base;
    size_t size;
    bool mapped;
    st_tensor *tensors; /* sorted by name */
    int64_t n_tensors;
    st_meta *meta;
    int64_t n_meta;
};

const char *st_dtype_name(uint32_t type) {
    switch (type) {
    case GW_TYPE_F32: return "F32";
    case GW_TYPE_F16: return "F16";
    case GW_TYPE_BF16: return "BF16";
    default: return "?";
    }
}

/* dtypes of the format that godwit does not compute with, named in errors */
static const char *const other_dtypes[] = {"BOOL", "U8", "I8", "U16", "I16", "U32", "I32", "U64", "I64",
                                           "F64", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F4", "F6_E2M3",
                                           "F6_E3M2", "C64", NULL};

/* Reads a JSON number that must be an integer in [0, 2^53]. */
static bool json_uint(const cJSON *j, int64_t *out) {
    if (!cJSON_IsNumber(j)) return false;
    double d = j->valuedouble;
    if (!(d >= 0) || d > 9007199254740992.0 || floor(d) != d) return false;
    *out = (int64_t)d;
    return true;
}

static int cmp_tensor(const void *a, const void *b) {
    return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

void st_close(st_file *f) {
    if (!f) return;
    for (int64_t i = 0; i < f->n_tensors; i++) free((char *)f->tensors[i].name);
    free(f->tensors);
    for (int64_t i = 0; i < f->n_meta; i++) {
        free(f->meta[i].key);
        free(f->meta[i].value);
    }
    free(f->meta);
    if (f->mapped) munmap((void *)f->base, f->size);
    free(f);
}

/* Parses one header entry into t. */
static bool parse_entry(const cJSON *e, const uint8_t *data, size_t data_size, st_tensor *t, char *err,
                        size_t errlen) {
    const char *name = t->name;
    if (!cJSON_IsObject(e)) {
        gw_set_err(err, errlen, "safetensors: entry '%s' is not an object", name);
        return false;
    }
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt) || !dt->valuestring) {
        gw_set_err(err, errlen, "safetensors: tensor '%s' has no dtype string", name);
        return false;
    }
    size_t esize;
    if (strcmp(dt->valuestring, "F32") == 0) {
        t->type = GW_TYPE_F32;
        esize = 4;
    } else if (strcmp(dt->valuestring, "F16") == 0) {
        t->type = GW_TYPE_F16;
        esize = 2;
    } else if (strcmp(dt->valuestring, "BF16") == 0) {
        t->type = GW_TYPE_BF16;
        esize = 2;
    } else {
        bool known = false;
        for (int i = 0; other_dtypes[i]; i++) known |= strcmp(dt->valuestring, other_dtypes[i]) == 0;
        gw_set_err(err, errlen, "safetensors: tensor '%s' has %s dtype '%.32s' (supported: BF16, F16, F32)",
                   name, known ? "unsupported" : "unknown", dt->valuestring);
        return false;
    }
    if (!cJSON_IsArray(sh)) {
        gw_set_err(err, errlen, "safetensors: tensor '%s' has no shape array", name);
        return false;
    }
    int nd = cJSON_GetArraySize(sh);
    if (nd > ST_MAX_DIMS) {
        gw_set_err(err, errlen, "safetensors: tensor '%s' has %d dimensions (at most %d)", name, nd, ST_MAX_DIMS);
        return false;
    }
    t->n_dims = nd;
    for (int d = 0; d < ST_MAX_DIMS; d++) t->shape[d] = 1;
    /* element count, computed only while it stays within what the data
     * section could hold, so it cannot overflow */
    const uint64_t limit = data_size / esize;
    uint64_t n = 1;
    bool zero = false, too_big = false;
    int d = 0;
    for (const cJSON *x = sh->child; x; x = x->next, d++) {
        int64_t v;
        if (!json_uint(x, &v)) {
            gw_set_err(err, errlen, "safetensors: tensor '%s' has a shape entry that is not a non-negative integer",
                       name);
            return false;
        }
        t->shape[d] = v;
        if (v == 0) zero = true;
        else if (!too_big) {
            if ((uint64_t)v > limit / n) too_big = true;
            else n *= (uint64_t)v;
        }
    }
    if (zero) n = 0, too_big = false;
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2) {
        gw_set_err(err, errlen, "safetensors: tensor '%s' has no data_offsets [begin, end]", name);
        return false;
    }
    int64_t b, en;
    if (!json_uint(off->child, &b) || !json_uint(off->child->next, &en)) {
        gw_set_err(err, errlen, "safetensors: tensor '%s' has data_offsets that are not non-negative integers",
                   name);
        return false;
    }
    if (b > en || (uint64_t)en > data_size) {
        gw_set_err(err, errlen,
                   "safetensors: tensor '%s' has data_offsets [%lld, %lld] outside the data section (%zu bytes)",
                   name, (long long)b, (long long)en, data_size);
        return false;
    }
    if (too_big || (uint64_t)(en - b) != n * esize) {
        char shape[160];
        size_t o = 0;
        shape[0] = 0;
        for (int k = 0; k < nd && o < sizeof shape - 24; k++)
            o += (size_t)snprintf(shape + o, sizeof shape - o, "%s%lld", k ? ", " : "", (long long)t->shape[k]);
        if (too_big)
            gw_set_err(err, errlen, "safetensors: tensor '%s' of shape [%s] and dtype %s is larger than the data "
                       "section (%zu bytes)", name, shape, dt->valuestring, data_size);
        else
            gw_set_err(err, errlen, "safetensors: tensor '%s' has %lld bytes of data but shape [%s] of %s needs %llu",
                       name, (long long)(en - b), shape, dt->valuestring, (unsigned long long)(n * esize));
        return false;
    }
    t->n_elements = (int64_t)n;
    t->nbytes = (size_t)(en - b);
    t->data = data + b;
    return true;
}

st_file *st_open_memory(const void *buf, size_t size, char *err, size_t errlen) {
    const uint8_t *p = buf;
    if (size < 8) {
        gw_set_err(err, errlen, "safetensors: file is truncated (%zu bytes, less than the 8-byte header length)",
                   size);
        return NULL;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | p[i];
    if (hlen > size - 8) {
        gw_set_err(err, errlen, "safetensors: header length %llu exceeds the file (%zu bytes after the length): "
                   "truncated or not a safetensors file", (unsigned long long)hlen, size - 8);
        return NULL;
    }
    if (hlen > ST_MAX_HEADER) {
        gw_set_err(err, errlen, "safetensors: header length %llu is over the %u-byte limit",
                   (unsigned long long)hlen, ST_MAX_HEADER);
        return NULL;
    }
    if (hlen < 2) {
        gw_set_err(err, errlen, "safetensors: header of %llu bytes cannot be a JSON object", (unsigned long long)hlen);
        return NULL;
    }
    const char *json = (const char *)p + 8;
    const uint8_t *data = p + 8 + hlen;
    size_t data_size = size - 8 - (size_t)hlen;

    st_file *f = calloc(1, sizeof *f);
    if (!f) {
        gw_set_err(err, errlen, "safetensors: out of memory");
        return NULL;
    }
    f->base = p;
    f->size = size;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, (size_t)hlen, &end, 0);
    if (!root) {
        size_t at = end && end >= json && end <= json + hlen ? (size_t)(end - json) : 0;
        gw_set_err(err, errlen, "safetensors: header is not valid JSON (error at byte %zu of %llu)", at,
                   (unsigned long long)hlen);
        goto fail;
    }
    for (const char *q = end ? end : json + hlen; q < json + hlen; q++) {
        if (*q != ' ' && *q != '\t' && *q != '\n' && *q != '\r' && *q != '\0') {
            gw_set_err(err, errlen, "safetensors: header has trailing data after the JSON object (byte %zu)",
                       (size_t)(q - json));
            goto fail_json;
        }
    }
    if (!cJSON_IsObject(root)) {
        gw_set_err(err, errlen, "safetensors: header is not a JSON object");
        goto fail_json;
    }
    int64_t n = 0;
    for (const cJSON *e = root->child; e; e = e->next) n++;
    f->tensors = calloc((size_t)n + 1, sizeof *f->tensors);
    if (!f->tensors) {
        gw_set_err(err, errlen, "safetensors: out of memory");
        goto fail_json;
    }
    for (const cJSON *e = root->child; e; e = e->next) {
        if (!e->string) {
            gw_set_err(err, errlen, "safetensors: header entry without a name");
            goto fail_json;
        }
        if (strcmp(e->string, "__metadata__") == 0) {
            if (f->meta) {
                gw_set_err(err, errlen, "safetensors: two __metadata__ entries");
                goto fail_json;
            }
            if (!cJSON_IsObject(e)) {
                gw_set_err(err, errlen, "safetensors: __metadata__ is not an object");
                goto fail_json;
            }
            int64_t nm = 0;
            for (const cJSON *m = e->child; m; m = m->next) nm++;
            f->meta = calloc((size_t)nm + 1, sizeof *f->meta);
            if (!f->meta) {
                gw_set_err(err, errlen, "safetensors: out of memory");
                goto fail_json;
            }
            for (const cJSON *m = e->child; m; m = m->next) {
                if (!m->string || !cJSON_IsString(m) || !m->valuestring) {
                    gw_set_err(err, errlen, "safetensors: __metadata__ value '%.64s' is not a string",
                               m->string ? m->string : "");
                    goto fail_json;
                }
                st_meta *mm = &f->meta[f->n_meta++];
                mm->key = strdup(m->string);
                mm->value = strdup(m->valuestring);
                if (!mm->key || !mm->value) {
                    gw_set_err(err, errlen, "safetensors: out of memory");
                    goto fail_json;
                }
            }
            continue;
        }
        st_tensor *t = &f->tensors[f->n_tensors];
        t->name = strdup(e->string);
        if (!t->name) {
            gw_set_err(err, errlen, "safetensors: out of memory");
            goto fail_json;
        }
        f->n_tensors++;
        if (!parse_entry(e, data, data_size, t, err, errlen)) goto fail_json;
    }
    cJSON_Delete(root);
    root = NULL;
    qsort(f->tensors, (size_t)f->n_tensors, sizeof *f->tensors, cmp_tensor);
    for (int64_t i = 1; i < f->n_tensors; i++) {
        if (strcmp(f->tensors[i - 1].name, f->tensors[i].name) == 0) {
            gw_set_err(err, errlen, "safetensors: tensor '%s' appears twice in the header", f->tensors[i].name);
            goto fail;
        }
    }
    return f;

fail_json:
    cJSON_Delete(root);
fail:
    st_close(f);
    return NULL;
}

st_file *st_open(const char *path, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        gw_set_err(err, errlen, "safetensors: cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        gw_set_err(err, errlen, "safetensors: %s is not a regular file", path);
        close(fd);
        return NULL;
    }
    size_t size = (size_t)st.st_size;
    if (size < 8) {
        close(fd);
        gw_set_err(err, errlen, "safetensors: %s is truncated (%zu bytes, less than the 8-byte header length)",
                   path, size);
        return NULL;
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    close(fd);
    if (map == MAP_FAILED) {
        gw_set_err(err, errlen, "safetensors: cannot mmap %s: %s", path, strerror(map_errno));
        return NULL;
    }
    char sub[400];
    st_file *f = st_open_memory(map, size, sub, sizeof sub);
    if (!f) {
        munmap(map, size);
        /* name the file: "safetensors: PATH: problem" */
        gw_set_err(err, errlen, "safetensors: %s: %s", path,
                   strncmp(sub, "safetensors: ", 13) == 0 ? sub + 13 : sub);
        return NULL;
    }
    f->mapped = true;
    return f;
}

int64_t st_n_tensors(const st_file *f) { return f->n_tensors; }

const st_tensor *st_tensor_at(const st_file *f, int64_t i) {
    return i >= 0 && i < f->n_tensors ? &f->tensors[i] : NULL;
}

const st_tensor *st_find(const st_file *f, const char *name) {
    st_tensor key = {.name = name};
    return bsearch(&key, f->tensors, (size_t)f->n_tensors, sizeof *f->tensors, cmp_tensor);
}

const char *st_metadata(const st_file *f, const char *key) {
    for (int64_t i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta[i].key, key) == 0) return f->meta[i].value;
    return NULL;
}

/* ------------------------------------------------------------ checkpoints */

struct st_checkpoint {
    st_file **files;
    char **file_names;
    int n_files;
};

void st_checkpoint_close(st_checkpoint *c) {
    if (!c) return;
    for (int i = 0; i < c->n_files; i++) {
        st_close(c->files[i]);
        free(c->file_names[i]);
    }
    free(c->files);
    free(c->file_names);
    free(c);
}

int st_checkpoint_n_files(const st_checkpoint *c) { return c->n_files; }
const st_file *st_checkpoint_file(const st_checkpoint *c, int i) {
    return i >= 0 && i < c->n_files ? c->files[i] : NULL;
}

const st_tensor *st_checkpoint_find(const st_checkpoint *c, const char *name) {
    for (int i = 0; i < c->n_files; i++) {
        const st_tensor *t = st_find(c->files[i], name);
        if (t) return t;
    }
    return NULL;
}

int64_t st_checkpoint_n_tensors(const st_checkpoint *c) {
    int64_t n = 0;
    for (int i = 0; i < c->n_files; i++) n += c->files[i]->n_tensors;
    return n;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static int add_file(st_checkpoint *c, const char *dir, const char *name, char *err, size_t errlen) {
    for (int i = 0; i < c->n_files; i++)
        if (strcmp(c->file_names[i], name) == 0) return i;
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path) {
        gw_set_err(err, errlen, "safetensors: path too long");
        return -1;
    }
    st_file **nf = realloc(c->files, (size_t)(c->n_files + 1) * sizeof *nf);
    if (nf) c->files = nf;
    char **nn = realloc(c->file_names, (size_t)(c->n_files + 1) * sizeof *nn);
    if (nn) c->file_names = nn;
    char *dup = strdup(name);
    if (!nf || !nn || !dup) {
        free(dup);
        gw_set_err(err, errlen, "safetensors: out of memory");
        return -1;
    }
    st_file *f = st_open(path, err, errlen);
    if (!f) {
        free(dup);
        return -1;
    }
    c->files[c->n_files] = f;
    c->file_names[c->n_files] = dup;
    return c->n_files++;
}

static bool load_index(st_checkpoint *c, const char *index_path, char *err, size_t errlen) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", index_path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    else snprintf(dir, sizeof dir, ".");
    size_t len;
    char *text = gw_read_small_file("safetensors", index_path, 64u << 20, &len, err, errlen);
    if (!text) return false;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    bool ok = false;
    if (!root || !cJSON_IsObject(root)) {
        gw_set_err(err, errlen, "safetensors: %s is not a JSON object", index_path);
        goto out;
    }
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(wm) || !wm->child) {
        gw_set_err(err, errlen, "safetensors: %s has no weight_map object", index_path);
        goto out;
    }
    for (const cJSON *e = wm->child; e; e = e->next) {
        if (!e->string || !cJSON_IsString(e) || !e->valuestring) {
            gw_set_err(err, errlen, "safetensors: %s: weight_map entry '%.64s' is not a file name", index_path,
                       e->string ? e->string : "");
            goto out;
        }
        const char *shard = e->valuestring;
        if (!*shard || strchr(shard, '/') || strcmp(shard, ".") == 0 || strcmp(shard, "..") == 0) {
            gw_set_err(err, errlen, "safetensors: %s: shard name '%.64s' is not a plain file name", index_path,
                       shard);
            goto out;
        }
        int fi = add_file(c, dir, shard, err, errlen);
        if (fi < 0) goto out;
        if (!st_find(c->files[fi], e->string)) {
            gw_set_err(err, errlen, "safetensors: %s: tensor '%.96s' is not in shard %s", index_path, e->string,
                       shard);
            goto out;
        }
    }
    /* a tensor in two shards would be ambiguous */
    for (int i = 0; i < c->n_files; i++)
        for (int64_t k = 0; k < c->files[i]->n_tensors; k++)
            for (int j = i + 1; j < c->n_files; j++)
                if (st_find(c->files[j], c->files[i]->tensors[k].name)) {
                    gw_set_err(err, errlen, "safetensors: tensor '%.96s' is in both %s and %s",
                               c->files[i]->tensors[k].name, c->file_names[i], c->file_names[j]);
                    goto out;
                }
    ok = true;
out:
    cJSON_Delete(root);
    free(text);
    return ok;
}

st_checkpoint *st_checkpoint_open(const char *path, char *err, size_t errlen) {
    st_checkpoint *c = calloc(1, sizeof *c);
    if (!c) {
        gw_set_err(err, errlen, "safetensors: out of memory");
        return NULL;
    }
    struct stat st;
    if (stat(path, &st) != 0) {
        gw_set_err(err, errlen, "safetensors: cannot open %s: %s", path, strerror(errno));
        goto fail;
    }
    if (S_ISDIR(st.st_mode)) {
        char p[4096];
        snprintf(p, sizeof p, "%s/model.safetensors.index.json", path);
        if (access(p, F_OK) == 0) {
            if (!load_index(c, p, err, errlen)) goto fail;
        } else {
            snprintf(p, sizeof p, "%s/model.safetensors", path);
            if (access(p, F_OK) != 0) {
                gw_set_err(err, errlen,
                           "safetensors: %s has neither model.safetensors nor model.safetensors.index.json", path);
                goto fail;
            }
            if (add_file(c, path, "model.safetensors", err, errlen) < 0) goto fail;
        }
    } else if (ends_with(path, ".json")) {
        if (!load_index(c, path, err, errlen)) goto fail;
    } else {
        const char *slash = strrchr(path, '/');
        char dir[4096];
        if (slash) snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
        else snprintf(dir, sizeof dir, ".");
        if (add_file(c, slash ? dir : ".", slash ? slash + 1 : path, err, errlen) < 0) goto fail;
    }
    return c;
fail:
    st_checkpoint_close(c);
    return NULL;
}
