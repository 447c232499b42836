/* Helpers shared by the CLI's commands. */
#include "cli/cli.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "godwit.h"

double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

void die(const char *fmt, const char *arg) {
    fprintf(stderr, "godwit: ");
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    exit(1);
}

int parse_int(const char *s, const char *name) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < INT_MIN || v > INT_MAX) die("invalid integer for %s", name);
    return (int)v;
}

float parse_float(const char *s, const char *name) {
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || *end) die("invalid number for %s", name);
    return v;
}

/* Writes DIR_OF_EXECUTABLE/rel/name into path; true if that file is readable. */
static bool exe_relative(const char *rel, const char *name, char *path, size_t cap) {
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return false;
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (!slash) return false;
    *slash = 0;
    snprintf(path, cap, "%s/%s/%s", exe, rel, name);
    return access(path, R_OK) == 0;
}

/* Finds the default model when -m is not given. */
const char *resolve_model(const char *given) {
    if (given) return given;
    const char *env = getenv("GODWIT_MODEL");
    if (env && *env) return env;
    static char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "models/%s", DEFAULT_MODEL_FILE);
    if (access(path, R_OK) == 0) return path;
    /* next to the executable: build/godwit -> ../models */
    if (exe_relative("../models", DEFAULT_MODEL_FILE, path, sizeof path)) return path;
    die("no model given and the default model was not found (models/%s): pass -m FILE or run "
        "scripts/fetch_model.sh",
        DEFAULT_MODEL_FILE);
    return NULL;
}

char *read_file(const char *path, size_t *len) {
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) die("cannot open prompt file '%s'", path);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (n + 1 >= cap) buf = realloc(buf, cap *= 2);
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        if (r == 0) break;
        n += r;
    }
    if (f != stdin) fclose(f);
    buf[n] = 0;
    *len = n;
    return buf;
}


int parse_size(const char *s, const char *name) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!errno && (*end == 'k' || *end == 'K') && end[1] == 0) {
        v *= 1024;
        end++;
    }
    if (errno || end == s || *end || v < INT_MIN || v > INT_MAX) die("invalid size for %s", name);
    return (int)v;
}

const char *resolve_data_file(const char *name) {
    static char path[PATH_MAX + 128];
    const char *env = getenv("GODWIT_DATA");
    if (env && *env) {
        snprintf(path, sizeof path, "%s/%s", env, name);
        if (access(path, R_OK) == 0) return path;
    }
    const char *dirs[] = {"../shared/data", "shared/data"};
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) {
        snprintf(path, sizeof path, "%s/%s", dirs[i], name);
        if (access(path, R_OK) == 0) return path;
    }
    /* build/godwit -> ../../shared/data (the repo's sibling) */
    if (exe_relative("../../shared/data", name, path, sizeof path)) return path;
    return NULL;
}

int parse_device(const char *s) {
    if (!strcmp(s, "cpu")) return GW_DEVICE_CPU;
    if (!strcmp(s, "cuda") || !strcmp(s, "gpu")) {
        if (!gw_cuda_available())
            die("%s", "--device cuda: this godwit was built without the CUDA backend (build with "
                      "cmake -DGODWIT_CUDA=ON, or make CUDA=1)");
        return GW_DEVICE_CUDA;
    }
    die("--device must be cpu or cuda, not '%s'", s);
    return GW_DEVICE_CPU;
}

int parse_kv_type(const char *s) {
    if (!strcmp(s, "f16") || !strcmp(s, "none")) return GW_KV_F16;
    if (!strcmp(s, "int8") || !strcmp(s, "q8")) return GW_KV_INT8;
    if (!strcmp(s, "int4") || !strcmp(s, "q4")) return GW_KV_INT4;
    die("--kv-type must be f16, int8 or int4, not '%s'", s);
    return GW_KV_F16;
}

void parse_kv_select(const char *s, gw_kv_select *out) {
    if (gw_kv_select_parse(s, out) != 0)
        die("--kv-select takes none, snapkv:B or h2o:B with B a token budget (1024) or a reduction (4x), "
            "and for snapkv an odd pooling width (snapkv:4x,pool=15), not '%s'", s);
}

void describe_kv_policy(const gw_kv_select *sel, int stream_sink, int stream_window, char *buf, size_t buflen) {
    if (stream_window > 0) snprintf(buf, buflen, "streaming:%d,%d", stream_sink, stream_window);
    else gw_kv_select_describe(sel, buf, buflen);
}

void parse_streaming(const char *s, int *n_sink, int *n_window) {
    char *end;
    errno = 0;
    long sink = strtol(s, &end, 10), window = -1;
    if (!errno && end != s && *end == ',') {
        const char *w = end + 1;
        window = strtol(w, &end, 10);
        if (errno || end == w || *end) window = -1;
    }
    if (window < 0 || sink < 0 || sink > 1 << 24 || window > 1 << 24 || (window == 0 && sink != 0))
        die("--streaming takes S,W: S attention sinks >= 0 and a window of W >= 1 tokens (e.g. 4,1020; 0,0 "
            "for off), not '%s'", s);
    *n_sink = (int)sink;
    *n_window = (int)window;
}
