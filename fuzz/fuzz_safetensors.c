/* libFuzzer target for the safetensors reader: opens the input with
 * st_open_memory and, when it opens, reads every tensor byte and metadata
 * value through the public interface, so the sanitizers see any read outside
 * the input. Built and run by scripts/fuzz.sh. */
#include "model/safetensors.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ASSERT(c) do { if (!(c)) abort(); } while (0)

static volatile unsigned sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *copy = malloc(size ? size : 1); /* ends exactly at size: ASan sees a read past it */
    if (!copy) return 0;
    memcpy(copy, data, size);
    char err[256];
    st_file *f = st_open_memory(copy, size, err, sizeof err);
    if (f) {
        for (int64_t i = 0; i < st_n_tensors(f); i++) {
            const st_tensor *t = st_tensor_at(f, i);
            ASSERT(t && t->name && st_find(f, t->name) == t);
            ASSERT((const uint8_t *)t->data >= copy && t->nbytes <= size &&
                   (const uint8_t *)t->data + t->nbytes <= copy + size);
            const uint8_t *p = t->data;
            for (size_t k = 0; k < t->nbytes; k++) sink += p[k];
        }
        const char *fmt = st_metadata(f, "format");
        if (fmt) sink += (unsigned)strlen(fmt);
        st_close(f);
    } else {
        ASSERT(strncmp(err, "safetensors: ", 13) == 0);
    }
    free(copy);
    return 0;
}
