/* The OpenAI-compatible API's JSON: request bodies of /v1/completions and
 * /v1/chat/completions parsed into scheduler requests, and the responses
 * (whole, or server-sent-event chunks) built from the scheduler's events.
 * No I/O here; http.c moves the bytes. */
#ifndef GODWIT_SERVER_OPENAI_H
#define GODWIT_SERVER_OPENAI_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "godwit.h"
#include "server/scheduler.h"

#define GW_API_MAX_N 16        /* n */
#define GW_API_MAX_CHOICES 64  /* prompts x n */

typedef enum { GW_API_COMPLETIONS, GW_API_CHAT } gw_api_kind;

/* An OpenAI-style error: {"error": {"message", "type", "param", "code"}}. */
typedef struct {
    int status;           /* HTTP status */
    const char *type;     /* "invalid_request_error", ... */
    const char *param;    /* the offending field or NULL */
    const char *code;     /* a short machine-readable code or NULL */
    char message[512];
} gw_api_error;

void gw_api_set_error(gw_api_error *e, int status, const char *type, const char *param, const char *code,
                      const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* The error's JSON body (malloc'd). */
char *gw_api_error_json(const gw_api_error *e);

typedef struct {
    gw_api_kind kind;
    bool stream, include_usage;
    int n;                    /* choices per prompt */
    int n_prompts;
    int32_t **prompts;        /* tokenized, owned */
    int *prompt_lens;
    gw_gen_params gen;        /* everything but the prompt and index */
    char *stops[GW_MAX_STOPS]; /* owned; gen.stops points here */
    bool has_seed;
    int top_logprobs;         /* chat: top_logprobs; completions: logprobs */
} gw_api_request;

/* Parses and validates a body, tokenizing the prompt(s) (chat: rendered
 * with the model's chat template). max_len: the longest sequence a request
 * may have; a prompt that long or longer is refused (400, naming the limit).
 * max_tokens is capped to what the context leaves. Returns 0, or -1 with
 * the error (400s) filled in. */
int gw_api_parse(gw_api_kind kind, const char *body, size_t len, const gw_model *m, int max_len,
                 gw_api_request *rq, gw_api_error *err);
void gw_api_request_free(gw_api_request *rq);
/* The scheduler requests of rq: prompts x n, choice index = prompt * n + i,
 * seeds seed + index (a random seed when none was given). *count gets their
 * number; the array is malloc'd and points into rq. */
gw_gen_params *gw_api_gen_params(const gw_api_request *rq, int *count);

/* One choice of a non-streamed response, gathered from events. */
typedef struct {
    char *text;
    size_t len, cap;
    gw_token_logprob *lp;
    int n_lp, cap_lp;
    bool finished;
    gw_finish_reason finish;
    int completion_tokens;
    char error[160];
} gw_api_choice;
/* Returns -1 on out of memory. */
int gw_api_choice_add(gw_api_choice *c, const gw_event *e);
void gw_api_choice_free(gw_api_choice *c);

/* Identity of one response: its id ("cmpl-..." / "chatcmpl-..."), creation
 * time and the model name echoed. */
typedef struct {
    char id[48];
    time_t created;
    const char *model_name;
    const struct gw_tokenizer *tok;
} gw_api_meta;

/* The whole response (malloc'd JSON). prompt_tokens: summed over prompts. */
char *gw_api_response_json(const gw_api_request *rq, const gw_api_meta *meta, const gw_api_choice *choices,
                           int n_choices, int prompt_tokens);
/* One server-sent event "data: {...}\n\n" for an event (NULL when it adds
 * nothing, e.g. an empty text event without logprobs). *text_offset (per
 * choice, completions' logprobs) advances. */
char *gw_api_chunk_sse(const gw_api_request *rq, const gw_api_meta *meta, const gw_event *e, size_t *text_offset);
/* Chat streams start with a chunk per choice carrying the role. */
char *gw_api_role_chunk_sse(const gw_api_request *rq, const gw_api_meta *meta, int index);
/* The usage chunk (stream_options.include_usage): choices [] and usage. */
char *gw_api_usage_chunk_sse(const gw_api_request *rq, const gw_api_meta *meta, int prompt_tokens,
                             int completion_tokens);
/* An error inside a stream: "data: {"error": ...}\n\n". */
char *gw_api_error_sse(const gw_api_error *e);
const char *gw_api_finish_name(gw_finish_reason f);
#endif
