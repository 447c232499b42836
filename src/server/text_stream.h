/* Incremental detokenized text with stop strings, for streaming.
 *
 * Generated token pieces are appended one at a time. Text is released only
 * when it can no longer change what is sent: a tail that could be the start
 * of a stop string is held back (if the stop string then completes, neither
 * it nor anything after it is ever sent), and so is a tail that is an
 * incomplete UTF-8 character (a piece may end in the middle of one; JSON
 * strings must be whole characters). The final call releases everything
 * still held.
 *
 * Used by the scheduler's engine thread, one stream per request; the
 * released text is what goes to the client, so a request preempted and
 * recomputed keeps its stream and never re-sends text. */
#ifndef GODWIT_SERVER_TEXT_STREAM_H
#define GODWIT_SERVER_TEXT_STREAM_H
#include <stdbool.h>
#include <stddef.h>

typedef struct {
    char *buf;            /* all text so far, NUL-terminated */
    size_t len, cap;
    size_t released;      /* bytes [0, released) have been handed out */
    char **stops;         /* owned copies, non-empty strings */
    int n_stops;
    bool stopped;         /* a stop string completed; the stream is closed */
} gw_text_stream;

/* Copies the stop strings (empty ones are ignored). Returns 0 or -1 (out of
 * memory). */
int gw_text_stream_init(gw_text_stream *ts, const char *const *stops, int n_stops);
void gw_text_stream_free(gw_text_stream *ts);

/* Appends a piece (final: no more pieces will come). Sets *out and *out_len to
 * the newly released text (a view into the stream, valid until the next
 * call). Returns true if a stop string completed: the text before it is
 * released and the stream takes no more pieces. -1 is never returned; on out
 * of memory the piece is dropped. */
bool gw_text_stream_add(gw_text_stream *ts, const char *piece, size_t n, bool final, const char **out,
                        size_t *out_len);

/* Length of the longest prefix of s[0..n) that does not end inside an
 * incomplete UTF-8 sequence (ill-formed bytes count as complete). */
size_t gw_utf8_complete_prefix(const char *s, size_t n);

/* A malloc'd NUL-terminated copy of s[0..n) with every ill-formed UTF-8
 * subsequence replaced by U+FFFD (so that it can go into a JSON string);
 * *out_len (may be NULL) gets its length. NULL on out of memory. */
char *gw_utf8_sanitize(const char *s, size_t n, size_t *out_len);
#endif
