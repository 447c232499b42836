#include "server/openai.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/text_stream.h"
#include "tokenizer/tokenizer.h"

/* ------------------------------------------------------------------ errors */

void gw_api_set_error(gw_api_error *e, int status, const char *type, const char *param, const char *code,
                      const char *fmt, ...) {
    e->status = status;
    e->type = type;
    e->param = param;
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
}

/* A string for JSON: ill-formed UTF-8 replaced by U+FFFD. */
static cJSON *json_str(const char *s, size_t n) {
    char *clean = gw_utf8_sanitize(s, n, NULL);
    if (!clean) return NULL;
    cJSON *j = cJSON_CreateString(clean);
    free(clean);
    return j;
}

static char *print_free(cJSON *root) {
    char *s = root ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return s;
}

static cJSON *error_object(const gw_api_error *e) {
    cJSON *root = cJSON_CreateObject(), *err = cJSON_AddObjectToObject(root, "error");
    cJSON_AddItemToObject(err, "message", json_str(e->message, strlen(e->message)));
    cJSON_AddStringToObject(err, "type", e->type ? e->type : "invalid_request_error");
    if (e->param) cJSON_AddStringToObject(err, "param", e->param);
    else cJSON_AddNullToObject(err, "param");
    if (e->code) cJSON_AddStringToObject(err, "code", e->code);
    else cJSON_AddNullToObject(err, "code");
    return root;
}

char *gw_api_error_json(const gw_api_error *e) { return print_free(error_object(e)); }

static char *sse_wrap(char *json) {
    if (!json) return NULL;
    size_t n = strlen(json);
    char *s = malloc(n + 9);
    if (s) {
        memcpy(s, "data: ", 6);
        memcpy(s + 6, json, n);
        memcpy(s + 6 + n, "\n\n", 3);
    }
    cJSON_free(json);
    return s;
}

char *gw_api_error_sse(const gw_api_error *e) { return sse_wrap(gw_api_error_json(e)); }

const char *gw_api_finish_name(gw_finish_reason f) {
    switch (f) {
    case GW_FINISH_STOP: return "stop";
    case GW_FINISH_LENGTH: return "length";
    case GW_FINISH_ABORT: return "abort";
    default: return "error";
    }
}

/* ----------------------------------------------------------------- parsing */

/* A 400 about a field; returns -1 so that parsers can `return BAD(...)`. */
__attribute__((format(printf, 3, 4))) static int bad(gw_api_error *err, const char *param, const char *fmt, ...) {
    err->status = 400;
    err->type = "invalid_request_error";
    err->param = param;
    err->code = NULL;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return -1;
}
#define BAD(param, ...) bad(err, param, __VA_ARGS__)

static bool is_int(const cJSON *j) {
    return cJSON_IsNumber(j) && j->valuedouble == floor(j->valuedouble) && fabs(j->valuedouble) < 9.0e15;
}
static bool is_null_or_absent(const cJSON *j) { return !j || cJSON_IsNull(j); }

/* number field in [lo, hi] (absent or null: keep *out) */
static int get_number(const cJSON *root, const char *name, double lo, double hi, double *out, gw_api_error *err) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, name);
    if (is_null_or_absent(j)) return 0;
    if (!cJSON_IsNumber(j)) return BAD(name, "'%s' must be a number", name);
    if (!(j->valuedouble >= lo && j->valuedouble <= hi))
        return BAD(name, "'%s' must be between %g and %g (got %g)", name, lo, hi, j->valuedouble);
    *out = j->valuedouble;
    return 0;
}

static int get_int(const cJSON *root, const char *name, long lo, long hi, long *out, gw_api_error *err) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, name);
    if (is_null_or_absent(j)) return 0;
    if (!is_int(j)) return BAD(name, "'%s' must be an integer", name);
    if (j->valuedouble < lo || j->valuedouble > hi)
        return BAD(name, "'%s' must be between %ld and %ld (got %.0f)", name, lo, hi, j->valuedouble);
    *out = (long)j->valuedouble;
    return 0;
}

static int get_bool(const cJSON *root, const char *name, bool *out, gw_api_error *err) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, name);
    if (is_null_or_absent(j)) return 0;
    if (!cJSON_IsBool(j)) return BAD(name, "'%s' must be a boolean", name);
    *out = cJSON_IsTrue(j);
    return 0;
}

/* A fresh seed for requests without one: splitmix64 over time, pid and a
 * counter. */
static uint64_t random_seed(void) {
    static atomic_uint_fast64_t counter;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t z = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ ((uint64_t)getpid() << 48) ^
                 (atomic_fetch_add(&counter, 1) * 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int add_prompt(gw_api_request *rq, int32_t *ids, int n) {
    int32_t **np = realloc(rq->prompts, (size_t)(rq->n_prompts + 1) * sizeof *np);
    if (!np) return -1;
    rq->prompts = np;
    int *nl = realloc(rq->prompt_lens, (size_t)(rq->n_prompts + 1) * sizeof *nl);
    if (!nl) return -1;
    rq->prompt_lens = nl;
    rq->prompts[rq->n_prompts] = ids;
    rq->prompt_lens[rq->n_prompts++] = n;
    return 0;
}

static int tokenize_into(gw_api_request *rq, const gw_tokenizer *tok, const char *text, bool add_bos,
                         gw_api_error *err) {
    int32_t *ids = NULL;
    int64_t n = gw_tokenize(tok, text, strlen(text), add_bos, true, &ids);
    if (n < 0 || add_prompt(rq, ids, (int)n) != 0) {
        free(ids);
        gw_api_set_error(err, 500, "server_error", NULL, NULL, "out of memory while tokenizing");
        return -1;
    }
    return 0;
}

/* An array of token ids as one prompt. */
static int ids_prompt(gw_api_request *rq, const cJSON *arr, int n_vocab, gw_api_error *err) {
    int n = cJSON_GetArraySize(arr);
    int32_t *ids = malloc((size_t)(n > 0 ? n : 1) * sizeof(int32_t));
    if (!ids) return BAD("prompt", "out of memory");
    int i = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, arr) {
        if (!is_int(t) || t->valuedouble < 0 || t->valuedouble >= n_vocab) {
            free(ids);
            return BAD("prompt", "token ids in 'prompt' must be integers in [0, %d)", n_vocab);
        }
        ids[i++] = (int32_t)t->valuedouble;
    }
    if (add_prompt(rq, ids, n) != 0) {
        free(ids);
        return BAD("prompt", "out of memory");
    }
    return 0;
}

static int parse_prompt(gw_api_request *rq, const cJSON *p, const gw_model *m, gw_api_error *err) {
    const gw_tokenizer *tok = gw_model_tokenizer(m);
    bool add_bos = gw_tokenizer_add_bos(tok);
    if (!p) return BAD("prompt", "'prompt' is required");
    if (cJSON_IsString(p)) return tokenize_into(rq, tok, p->valuestring, add_bos, err);
    if (!cJSON_IsArray(p) || cJSON_GetArraySize(p) == 0)
        return BAD("prompt", "'prompt' must be a string, an array of strings, or an array of token ids");
    const cJSON *first = cJSON_GetArrayItem(p, 0);
    if (cJSON_IsNumber(first)) return ids_prompt(rq, p, gw_model_n_vocab(m), err);
    const cJSON *item;
    cJSON_ArrayForEach(item, p) {
        if (cJSON_IsString(item)) {
            if (tokenize_into(rq, tok, item->valuestring, add_bos, err) != 0) return -1;
        } else if (cJSON_IsArray(item)) {
            if (ids_prompt(rq, item, gw_model_n_vocab(m), err) != 0) return -1;
        } else
            return BAD("prompt", "'prompt' must be a string, an array of strings, or an array of token ids");
    }
    return 0;
}

/* Message content: a string, or an array of {"type": "text", "text": ...}
 * parts (joined). Returns a malloc'd string. */
static char *message_content(const cJSON *c, int i, gw_api_error *err) {
    if (is_null_or_absent(c)) return strdup("");
    if (cJSON_IsString(c)) return strdup(c->valuestring);
    if (!cJSON_IsArray(c)) {
        BAD("messages", "messages[%d].content must be a string or an array of text parts", i);
        return NULL;
    }
    size_t len = 0;
    char *out = calloc(1, 1);
    const cJSON *part;
    cJSON_ArrayForEach(part, c) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(part, "text");
        if (!cJSON_IsString(type) || strcmp(type->valuestring, "text") || !cJSON_IsString(text)) {
            free(out);
            BAD("messages", "messages[%d].content: only parts of type \"text\" are supported", i);
            return NULL;
        }
        size_t n = strlen(text->valuestring);
        char *no = out ? realloc(out, len + n + 1) : NULL;
        if (!no) {
            free(out);
            BAD("messages", "out of memory");
            return NULL;
        }
        out = no;
        memcpy(out + len, text->valuestring, n + 1);
        len += n;
    }
    return out;
}

static int parse_messages(gw_api_request *rq, const cJSON *msgs, const gw_model *m, gw_api_error *err) {
    if (!cJSON_IsArray(msgs) || cJSON_GetArraySize(msgs) == 0)
        return BAD("messages", "'messages' must be a non-empty array");
    int n = cJSON_GetArraySize(msgs);
    gw_chat_msg *cm = calloc((size_t)n, sizeof *cm);
    char **texts = calloc((size_t)n, sizeof *texts);
    int rc = -1, i = 0;
    if (!cm || !texts) {
        BAD("messages", "out of memory");
        goto out;
    }
    const cJSON *msg;
    cJSON_ArrayForEach(msg, msgs) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(msg, "role");
        if (!cJSON_IsObject(msg) || !cJSON_IsString(role)) {
            BAD("messages", "messages[%d] must be an object with a string 'role'", i);
            goto out;
        }
        const char *r = role->valuestring;
        if (!strcmp(r, "developer")) r = "system"; /* OpenAI's newer name for it */
        if (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant")) {
            BAD("messages", "messages[%d].role '%s' is not supported (system, developer, user, assistant)", i,
                role->valuestring);
            goto out;
        }
        if (!(texts[i] = message_content(cJSON_GetObjectItemCaseSensitive(msg, "content"), i, err))) goto out;
        cm[i] = (gw_chat_msg){r, texts[i]};
        i++;
    }
    const char *tmpl = gw_model_chat_template(m);
    char *rendered = gw_chat_render(gw_chat_detect(tmpl), tmpl, cm, (size_t)n, true);
    if (!rendered) {
        BAD("messages", "the model has no chat template godwit can render; use /v1/completions");
        goto out;
    }
    /* the rendering starts with BOS text where the template has it */
    rc = tokenize_into(rq, gw_model_tokenizer(m), rendered, false, err);
    free(rendered);
out:
    if (texts)
        for (int k = 0; k < n; k++) free(texts[k]);
    free(texts);
    free(cm);
    return rc;
}

static int parse_stop(gw_api_request *rq, const cJSON *stop, gw_api_error *err) {
    if (is_null_or_absent(stop)) return 0;
    if (cJSON_IsString(stop)) {
        if (!(rq->stops[0] = strdup(stop->valuestring))) return BAD("stop", "out of memory");
        rq->gen.n_stops = 1;
        return 0;
    }
    if (!cJSON_IsArray(stop)) return BAD("stop", "'stop' must be a string or an array of strings");
    if (cJSON_GetArraySize(stop) > GW_MAX_STOPS) return BAD("stop", "at most %d stop strings", GW_MAX_STOPS);
    const cJSON *s;
    cJSON_ArrayForEach(s, stop) {
        if (!cJSON_IsString(s)) return BAD("stop", "'stop' must be a string or an array of strings");
        if (!(rq->stops[rq->gen.n_stops++] = strdup(s->valuestring))) return BAD("stop", "out of memory");
    }
    return 0;
}

/* Fields that would change the output and that godwit does not implement
 * are refused rather than ignored. */
static int refuse_unsupported(const cJSON *root, gw_api_kind kind, gw_api_error *err) {
    static const char *const penalties[] = {"frequency_penalty", "presence_penalty"};
    for (int i = 0; i < 2; i++) {
        const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, penalties[i]);
        if (!is_null_or_absent(j) && !(cJSON_IsNumber(j) && j->valuedouble == 0))
            return BAD(penalties[i], "'%s' is not supported (use repetition_penalty)", penalties[i]);
    }
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, "logit_bias");
    if (!is_null_or_absent(j) && !(cJSON_IsObject(j) && !j->child)) return BAD("logit_bias", "'logit_bias' is not supported");
    if (kind == GW_API_COMPLETIONS) {
        j = cJSON_GetObjectItemCaseSensitive(root, "echo");
        if (cJSON_IsTrue(j)) return BAD("echo", "'echo' is not supported");
        j = cJSON_GetObjectItemCaseSensitive(root, "suffix");
        if (!is_null_or_absent(j) && !(cJSON_IsString(j) && !j->valuestring[0]))
            return BAD("suffix", "'suffix' is not supported");
        j = cJSON_GetObjectItemCaseSensitive(root, "best_of");
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(root, "n");
        if (!is_null_or_absent(j) && !(is_int(j) && j->valuedouble == (is_int(n) ? n->valuedouble : 1)))
            return BAD("best_of", "'best_of' other than n is not supported");
    } else {
        static const char *const fields[] = {"tools", "functions", "tool_choice", "function_call"};
        for (int i = 0; i < 4; i++) {
            j = cJSON_GetObjectItemCaseSensitive(root, fields[i]);
            if (!is_null_or_absent(j) && !(cJSON_IsArray(j) && !j->child) &&
                !(cJSON_IsString(j) && !strcmp(j->valuestring, "none")))
                return BAD(fields[i], "'%s' is not supported", fields[i]);
        }
        j = cJSON_GetObjectItemCaseSensitive(root, "response_format");
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "type");
        if (!is_null_or_absent(j) && !(cJSON_IsString(t) && !strcmp(t->valuestring, "text")))
            return BAD("response_format", "only response_format {\"type\": \"text\"} is supported");
    }
    return 0;
}

int gw_api_parse(gw_api_kind kind, const char *body, size_t len, const gw_model *m, int max_len,
                 gw_api_request *rq, gw_api_error *err) {
    memset(rq, 0, sizeof *rq);
    rq->kind = kind;
    rq->n = 1;
    rq->gen.sp = gw_sampler_default_params();
    /* the OpenAI API's defaults: plain sampling at temperature 1 */
    rq->gen.sp.temperature = 1.0f;
    rq->gen.sp.top_k = 0;
    rq->gen.sp.top_p = 1.0f;
    rq->gen.sp.min_p = 0.0f;
    rq->gen.sp.repeat_penalty = 1.0f;
    rq->gen.logprobs = -1;
    rq->gen.max_tokens = kind == GW_API_COMPLETIONS ? 16 : max_len; /* chat: up to the context limit */
    rq->gen.stops = (const char *const *)rq->stops;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(body, len, &end, false);
    if (!root) {
        size_t at = end && end >= body && end <= body + len ? (size_t)(end - body) : 0;
        gw_api_set_error(err, 400, "invalid_request_error", NULL, "invalid_json",
                         "the request body is not valid JSON (error near byte %zu)", at);
        return -1;
    }
    int rc = -1;
    if (!cJSON_IsObject(root)) {
        BAD(NULL, "the request body must be a JSON object");
        goto out;
    }
    if (refuse_unsupported(root, kind, err) != 0) goto out;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!is_null_or_absent(model) && !cJSON_IsString(model)) {
        BAD("model", "'model' must be a string");
        goto out;
    }
    double v;
    long iv;
    v = rq->gen.sp.temperature;
    if (get_number(root, "temperature", 0, 2, &v, err)) goto out;
    rq->gen.sp.temperature = (float)v;
    v = rq->gen.sp.top_p;
    if (get_number(root, "top_p", 1e-9, 1, &v, err)) goto out;
    rq->gen.sp.top_p = (float)v;
    v = rq->gen.sp.min_p;
    if (get_number(root, "min_p", 0, 1, &v, err)) goto out;
    rq->gen.sp.min_p = (float)v;
    v = rq->gen.sp.repeat_penalty;
    if (get_number(root, "repetition_penalty", 1e-3, 100, &v, err)) goto out;
    rq->gen.sp.repeat_penalty = (float)v;
    iv = 0;
    if (get_int(root, "top_k", -1, 1 << 30, &iv, err)) goto out;
    rq->gen.sp.top_k = iv < 0 ? 0 : (int)iv; /* vLLM: -1 = off */
    iv = 1;
    if (get_int(root, "n", 1, GW_API_MAX_N, &iv, err)) goto out;
    rq->n = (int)iv;
    const char *mt = kind == GW_API_CHAT && cJSON_GetObjectItemCaseSensitive(root, "max_completion_tokens")
                         ? "max_completion_tokens"
                         : "max_tokens";
    iv = rq->gen.max_tokens;
    if (get_int(root, mt, 1, 1L << 30, &iv, err)) goto out;
    rq->gen.max_tokens = (int)iv;
    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(root, "seed");
    if (!is_null_or_absent(seed)) {
        if (!is_int(seed)) {
            BAD("seed", "'seed' must be an integer");
            goto out;
        }
        rq->gen.sp.seed = (uint64_t)(int64_t)seed->valuedouble;
        rq->has_seed = true;
    }
    if (get_bool(root, "stream", &rq->stream, err) || get_bool(root, "ignore_eos", &rq->gen.ignore_eos, err))
        goto out;
    /* godwit extension: prompt compression, e.g. "kv_select": "snapkv:4x" */
    const cJSON *ks = cJSON_GetObjectItemCaseSensitive(root, "kv_select");
    if (!is_null_or_absent(ks) && (!cJSON_IsString(ks) || gw_kv_select_parse(ks->valuestring, &rq->gen.kv_select))) {
        BAD("kv_select", "'kv_select' must be \"none\", \"snapkv:B\" or \"h2o:B\" with B a token budget "
                         "(1024) or a reduction (4x), optionally \",pool=N\" (odd) for snapkv");
        goto out;
    }
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(root, "stream_options");
    if (!is_null_or_absent(so)) {
        if (!cJSON_IsObject(so)) {
            BAD("stream_options", "'stream_options' must be an object");
            goto out;
        }
        if (get_bool(so, "include_usage", &rq->include_usage, err)) goto out;
    }
    if (parse_stop(rq, cJSON_GetObjectItemCaseSensitive(root, "stop"), err)) goto out;
    if (kind == GW_API_COMPLETIONS) {
        iv = -1;
        if (get_int(root, "logprobs", 0, GW_MAX_TOP_LOGPROBS, &iv, err)) goto out;
        rq->gen.logprobs = (int)iv;
        rq->top_logprobs = (int)iv;
        if (parse_prompt(rq, cJSON_GetObjectItemCaseSensitive(root, "prompt"), m, err)) goto out;
    } else {
        bool lp = false;
        if (get_bool(root, "logprobs", &lp, err)) goto out;
        iv = 0;
        if (get_int(root, "top_logprobs", 0, GW_MAX_TOP_LOGPROBS, &iv, err)) goto out;
        if (iv > 0 && !lp) {
            BAD("top_logprobs", "'top_logprobs' needs 'logprobs': true");
            goto out;
        }
        rq->gen.logprobs = lp ? (int)iv : -1;
        rq->top_logprobs = (int)iv;
        if (parse_messages(rq, cJSON_GetObjectItemCaseSensitive(root, "messages"), m, err)) goto out;
    }
    if (rq->n_prompts * rq->n > GW_API_MAX_CHOICES) {
        BAD("n", "at most %d choices per request (prompts x n)", GW_API_MAX_CHOICES);
        goto out;
    }
    for (int i = 0; i < rq->n_prompts; i++) {
        if (rq->prompt_lens[i] == 0) {
            BAD(kind == GW_API_CHAT ? "messages" : "prompt", "the prompt is empty");
            goto out;
        }
        if (rq->prompt_lens[i] >= max_len) {
            gw_api_set_error(err, 400, "invalid_request_error", kind == GW_API_CHAT ? "messages" : "prompt",
                             "context_length_exceeded",
                             "This model's maximum context length is %d tokens. However, your prompt has %d "
                             "tokens (at least one token must be left for the completion).",
                             max_len, rq->prompt_lens[i]);
            goto out;
        }
    }
    if (!rq->has_seed) rq->gen.sp.seed = random_seed();
    rc = 0;
out:
    cJSON_Delete(root);
    if (rc != 0) gw_api_request_free(rq);
    return rc;
}

void gw_api_request_free(gw_api_request *rq) {
    for (int i = 0; i < rq->n_prompts; i++) free(rq->prompts[i]);
    free(rq->prompts);
    free(rq->prompt_lens);
    for (int i = 0; i < GW_MAX_STOPS; i++) free(rq->stops[i]);
    memset(rq, 0, sizeof *rq);
}

gw_gen_params *gw_api_gen_params(const gw_api_request *rq, int *count) {
    *count = rq->n_prompts * rq->n;
    gw_gen_params *g = malloc((size_t)(*count > 0 ? *count : 1) * sizeof *g);
    if (!g) return NULL;
    for (int p = 0; p < rq->n_prompts; p++)
        for (int i = 0; i < rq->n; i++) {
            int k = p * rq->n + i;
            g[k] = rq->gen;
            g[k].prompt = rq->prompts[p];
            g[k].n_prompt = rq->prompt_lens[p];
            g[k].index = k;
            g[k].sp.seed = rq->gen.sp.seed + (uint64_t)k;
        }
    return g;
}

/* --------------------------------------------------------------- responses */

int gw_api_choice_add(gw_api_choice *c, const gw_event *e) {
    if (e->type == GW_EV_FINISH) {
        c->finished = true;
        c->finish = e->finish;
        c->completion_tokens = e->completion_tokens;
        snprintf(c->error, sizeof c->error, "%s", e->error);
        return 0;
    }
    if (c->len + e->len + 1 > c->cap) {
        size_t cap = (c->len + e->len + 1) * 2;
        char *nt = realloc(c->text, cap);
        if (!nt) return -1;
        c->text = nt;
        c->cap = cap;
    }
    memcpy(c->text + c->len, e->text, e->len);
    c->len += e->len;
    c->text[c->len] = 0;
    if (e->n_lp > 0) {
        if (c->n_lp + e->n_lp > c->cap_lp) {
            int cap = (c->n_lp + e->n_lp) * 2;
            gw_token_logprob *nl = realloc(c->lp, (size_t)cap * sizeof *nl);
            if (!nl) return -1;
            c->lp = nl;
            c->cap_lp = cap;
        }
        memcpy(c->lp + c->n_lp, e->lp, (size_t)e->n_lp * sizeof *e->lp);
        c->n_lp += e->n_lp;
    }
    return 0;
}

void gw_api_choice_free(gw_api_choice *c) {
    free(c->text);
    free(c->lp);
    memset(c, 0, sizeof *c);
}

/* A token's text as the logprobs show it (special tokens by name). */
static size_t token_text(const gw_tokenizer *tok, int32_t id, char *buf, size_t cap) {
    size_t n = gw_token_to_piece(tok, id, true, buf, cap - 1);
    if (n > cap - 1) n = cap - 1;
    buf[n] = 0;
    return n;
}

static cJSON *bytes_array(const char *s, size_t n) {
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber((unsigned char)s[i]));
    return a;
}

/* Chat: {"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}]} */
static cJSON *chat_logprobs(const gw_tokenizer *tok, const gw_token_logprob *lp, int n) {
    cJSON *o = cJSON_CreateObject(), *content = cJSON_AddArrayToObject(o, "content");
    char buf[512];
    for (int i = 0; i < n; i++) {
        cJSON *t = cJSON_CreateObject();
        size_t len = token_text(tok, lp[i].id, buf, sizeof buf);
        cJSON_AddItemToObject(t, "token", json_str(buf, len));
        cJSON_AddNumberToObject(t, "logprob", lp[i].logprob);
        cJSON_AddItemToObject(t, "bytes", bytes_array(buf, len));
        cJSON *top = cJSON_AddArrayToObject(t, "top_logprobs");
        for (int k = 0; k < lp[i].n_top; k++) {
            cJSON *a = cJSON_CreateObject();
            size_t l2 = token_text(tok, lp[i].top_id[k], buf, sizeof buf);
            cJSON_AddItemToObject(a, "token", json_str(buf, l2));
            cJSON_AddNumberToObject(a, "logprob", lp[i].top_logprob[k]);
            cJSON_AddItemToObject(a, "bytes", bytes_array(buf, l2));
            cJSON_AddItemToArray(top, a);
        }
        cJSON_AddItemToArray(content, t);
    }
    return o;
}

/* Completions: {"tokens", "token_logprobs", "top_logprobs", "text_offset"} */
static cJSON *completion_logprobs(const gw_tokenizer *tok, const gw_token_logprob *lp, int n, size_t *offset) {
    cJSON *o = cJSON_CreateObject();
    cJSON *tokens = cJSON_AddArrayToObject(o, "tokens"), *tlp = cJSON_AddArrayToObject(o, "token_logprobs");
    cJSON *top = cJSON_AddArrayToObject(o, "top_logprobs"), *off = cJSON_AddArrayToObject(o, "text_offset");
    char buf[512];
    for (int i = 0; i < n; i++) {
        size_t len = token_text(tok, lp[i].id, buf, sizeof buf);
        cJSON_AddItemToArray(tokens, json_str(buf, len));
        cJSON_AddItemToArray(tlp, cJSON_CreateNumber(lp[i].logprob));
        cJSON *d = cJSON_CreateObject();
        for (int k = 0; k < lp[i].n_top; k++) {
            size_t l2 = token_text(tok, lp[i].top_id[k], buf, sizeof buf);
            char *key = gw_utf8_sanitize(buf, l2, NULL);
            if (key && !cJSON_GetObjectItemCaseSensitive(d, key))
                cJSON_AddNumberToObject(d, key, lp[i].top_logprob[k]);
            free(key);
        }
        cJSON_AddItemToArray(top, d);
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)*offset));
        *offset += gw_token_to_piece(tok, lp[i].id, false, buf, 0);
    }
    return o;
}

static cJSON *usage_object(int prompt_tokens, int completion_tokens) {
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "prompt_tokens", prompt_tokens);
    cJSON_AddNumberToObject(u, "completion_tokens", completion_tokens);
    cJSON_AddNumberToObject(u, "total_tokens", prompt_tokens + completion_tokens);
    return u;
}

static cJSON *envelope(const gw_api_request *rq, const gw_api_meta *meta, bool chunk) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "id", meta->id);
    cJSON_AddStringToObject(root, "object",
                            rq->kind == GW_API_CHAT ? (chunk ? "chat.completion.chunk" : "chat.completion")
                                                    : "text_completion");
    cJSON_AddNumberToObject(root, "created", (double)meta->created);
    cJSON_AddStringToObject(root, "model", meta->model_name);
    return root;
}

char *gw_api_response_json(const gw_api_request *rq, const gw_api_meta *meta, const gw_api_choice *choices,
                           int n_choices, int prompt_tokens) {
    cJSON *root = envelope(rq, meta, false);
    cJSON *arr = cJSON_AddArrayToObject(root, "choices");
    int completion_tokens = 0;
    for (int i = 0; i < n_choices; i++) {
        const gw_api_choice *c = &choices[i];
        completion_tokens += c->completion_tokens;
        cJSON *ch = cJSON_CreateObject();
        cJSON_AddNumberToObject(ch, "index", i);
        if (rq->kind == GW_API_CHAT) {
            cJSON *msg = cJSON_AddObjectToObject(ch, "message");
            cJSON_AddStringToObject(msg, "role", "assistant");
            cJSON_AddItemToObject(msg, "content", json_str(c->text ? c->text : "", c->len));
            if (rq->gen.logprobs >= 0) cJSON_AddItemToObject(ch, "logprobs", chat_logprobs(meta->tok, c->lp, c->n_lp));
            else cJSON_AddNullToObject(ch, "logprobs");
        } else {
            cJSON_AddItemToObject(ch, "text", json_str(c->text ? c->text : "", c->len));
            size_t off = 0;
            if (rq->gen.logprobs >= 0)
                cJSON_AddItemToObject(ch, "logprobs", completion_logprobs(meta->tok, c->lp, c->n_lp, &off));
            else cJSON_AddNullToObject(ch, "logprobs");
        }
        cJSON_AddStringToObject(ch, "finish_reason", gw_api_finish_name(c->finish));
        cJSON_AddItemToArray(arr, ch);
    }
    cJSON_AddItemToObject(root, "usage", usage_object(prompt_tokens, completion_tokens));
    return print_free(root);
}

char *gw_api_chunk_sse(const gw_api_request *rq, const gw_api_meta *meta, const gw_event *e, size_t *text_offset) {
    if (e->type == GW_EV_TEXT && e->len == 0 && e->n_lp == 0) return NULL;
    cJSON *root = envelope(rq, meta, true);
    cJSON *arr = cJSON_AddArrayToObject(root, "choices");
    cJSON *ch = cJSON_CreateObject();
    cJSON_AddNumberToObject(ch, "index", e->index);
    bool fin = e->type == GW_EV_FINISH;
    if (rq->kind == GW_API_CHAT) {
        cJSON *delta = cJSON_AddObjectToObject(ch, "delta");
        if (!fin) cJSON_AddItemToObject(delta, "content", json_str(e->text, e->len));
        if (!fin && rq->gen.logprobs >= 0) cJSON_AddItemToObject(ch, "logprobs", chat_logprobs(meta->tok, e->lp, e->n_lp));
        else cJSON_AddNullToObject(ch, "logprobs");
    } else {
        cJSON_AddItemToObject(ch, "text", fin ? cJSON_CreateString("") : json_str(e->text, e->len));
        if (!fin && rq->gen.logprobs >= 0)
            cJSON_AddItemToObject(ch, "logprobs", completion_logprobs(meta->tok, e->lp, e->n_lp, text_offset));
        else cJSON_AddNullToObject(ch, "logprobs");
    }
    if (fin) cJSON_AddStringToObject(ch, "finish_reason", gw_api_finish_name(e->finish));
    else cJSON_AddNullToObject(ch, "finish_reason");
    cJSON_AddItemToArray(arr, ch);
    return sse_wrap(print_free(root));
}

char *gw_api_role_chunk_sse(const gw_api_request *rq, const gw_api_meta *meta, int index) {
    cJSON *root = envelope(rq, meta, true);
    cJSON *arr = cJSON_AddArrayToObject(root, "choices");
    cJSON *ch = cJSON_CreateObject();
    cJSON_AddNumberToObject(ch, "index", index);
    cJSON *delta = cJSON_AddObjectToObject(ch, "delta");
    cJSON_AddStringToObject(delta, "role", "assistant");
    cJSON_AddStringToObject(delta, "content", "");
    cJSON_AddNullToObject(ch, "logprobs");
    cJSON_AddNullToObject(ch, "finish_reason");
    cJSON_AddItemToArray(arr, ch);
    return sse_wrap(print_free(root));
}

char *gw_api_usage_chunk_sse(const gw_api_request *rq, const gw_api_meta *meta, int prompt_tokens,
                             int completion_tokens) {
    cJSON *root = envelope(rq, meta, true);
    cJSON_AddArrayToObject(root, "choices");
    cJSON_AddItemToObject(root, "usage", usage_object(prompt_tokens, completion_tokens));
    return sse_wrap(print_free(root));
}
