#include "util/file.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"

char *gw_read_small_file(const char *who, const char *path, size_t max, size_t *len, char *err, size_t errlen) {
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        gw_set_err(err, errlen, "%s: cannot open %s: %s", who, path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 14, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        n += fread(buf + n, 1, cap - n, fp);
        if (n < cap) break;
        if (cap >= max) {
            free(buf);
            fclose(fp);
            gw_set_err(err, errlen, "%s: %s is larger than %zu bytes", who, path, max);
            return NULL;
        }
        cap *= 2;
        char *nb = realloc(buf, cap + 1);
        if (!nb) free(buf);
        buf = nb;
    }
    bool ioerr = ferror(fp);
    fclose(fp);
    if (!buf || ioerr) {
        free(buf);
        gw_set_err(err, errlen, "%s: %s %s", who, ioerr ? "error reading" : "out of memory reading", path);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}
