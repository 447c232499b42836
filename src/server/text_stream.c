#include "server/text_stream.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Looks at the UTF-8 sequence starting at s[0] (n > 0 bytes available).
 * Returns its length if well-formed; 0 if the bytes available are a valid
 * but incomplete start (more bytes could complete it); otherwise -k where k
 * >= 1 is the length of the maximal ill-formed subpart (what one U+FFFD
 * replaces, as Unicode recommends). */
static int utf8_seq(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    int len;
    unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F; /* at most U+10FFFF */
    } else
        return -1;
    for (int i = 1; i < len; i++) {
        if ((size_t)i >= n) return 0;
        unsigned b = s[i];
        unsigned l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xBF;
        if (b < l || b > h) return -i;
    }
    return len;
}

size_t gw_utf8_complete_prefix(const char *s, size_t n) {
    /* Only the last character can be incomplete; it starts at most 3 bytes
     * before the end. */
    size_t start = n > 3 ? n - 3 : 0;
    for (size_t i = start; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0xC2 && c <= 0xF4 && utf8_seq((const unsigned char *)s + i, n - i) == 0) return i;
    }
    return n;
}

char *gw_utf8_sanitize(const char *s, size_t n, size_t *out_len) {
    /* Each ill-formed byte becomes at most 3 bytes. */
    char *out = malloc(3 * n + 1);
    if (!out) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        int k = utf8_seq((const unsigned char *)s + i, n - i);
        if (k > 0) {
            memcpy(out + o, s + i, (size_t)k);
            o += (size_t)k;
            i += (size_t)k;
        } else {
            /* incomplete at the end of the text, or ill-formed */
            size_t skip = k == 0 ? n - i : (size_t)-k;
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i += skip;
        }
    }
    out[o] = 0;
    if (out_len) *out_len = o;
    return out;
}

int gw_text_stream_init(gw_text_stream *ts, const char *const *stops, int n_stops) {
    memset(ts, 0, sizeof *ts);
    ts->cap = 256;
    ts->buf = malloc(ts->cap);
    ts->stops = calloc(n_stops > 0 ? (size_t)n_stops : 1, sizeof(char *));
    if (!ts->buf || !ts->stops) {
        gw_text_stream_free(ts);
        return -1;
    }
    ts->buf[0] = 0;
    for (int i = 0; i < n_stops; i++) {
        if (!stops[i] || !stops[i][0]) continue;
        if (!(ts->stops[ts->n_stops++] = strdup(stops[i]))) {
            gw_text_stream_free(ts);
            return -1;
        }
    }
    return 0;
}

void gw_text_stream_free(gw_text_stream *ts) {
    free(ts->buf);
    if (ts->stops)
        for (int i = 0; i < ts->n_stops; i++) free(ts->stops[i]);
    free(ts->stops);
    memset(ts, 0, sizeof *ts);
}

bool gw_text_stream_add(gw_text_stream *ts, const char *piece, size_t n, bool final, const char **out,
                        size_t *out_len) {
    *out = ts->buf + ts->released;
    *out_len = 0;
    if (ts->stopped) return true;
    if (ts->len + n + 1 > ts->cap) {
        size_t cap = (ts->len + n + 1) * 2;
        char *nb = realloc(ts->buf, cap);
        if (!nb) return false;
        ts->buf = nb;
        ts->cap = cap;
    }
    memcpy(ts->buf + ts->len, piece, n);
    ts->len += n;
    ts->buf[ts->len] = 0;
    size_t from = ts->released;
    *out = ts->buf + from;
    /* The earliest completed stop string. A match cannot begin before
     * `released`: a released tail never was a prefix of any stop string.
     * memmem, not strstr: token pieces may contain NUL bytes. */
    size_t stop_at = (size_t)-1;
    for (int i = 0; i < ts->n_stops; i++) {
        size_t sl = strlen(ts->stops[i]);
        const char *hit = memmem(ts->buf + from, ts->len - from, ts->stops[i], sl);
        if (hit && (size_t)(hit - ts->buf) < stop_at) stop_at = (size_t)(hit - ts->buf);
    }
    if (stop_at != (size_t)-1) {
        ts->released = stop_at;
        ts->stopped = true;
        *out_len = stop_at - from;
        return true;
    }
    size_t safe = ts->len;
    if (!final) {
        /* hold back the longest tail that is a proper prefix of a stop string */
        for (int i = 0; i < ts->n_stops; i++) {
            size_t sl = strlen(ts->stops[i]);
            for (size_t k = sl - 1; k > 0; k--) {
                if (k <= ts->len - from && memcmp(ts->buf + ts->len - k, ts->stops[i], k) == 0) {
                    if (ts->len - k < safe) safe = ts->len - k;
                    break;
                }
            }
        }
        safe = gw_utf8_complete_prefix(ts->buf, safe);
        if (safe < from) safe = from;
    }
    ts->released = safe;
    *out_len = safe - from;
    return false;
}
