#include "eval/harness.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ------------------------------------------------------------ the engine */

void gw_eval_engine_init(gw_eval_engine *e, gw_model *m, gw_context *c, bool use_template) {
    memset(e, 0, sizeof *e);
    e->model = m;
    e->ctx = c;
    e->tok = gw_model_tokenizer(m);
    e->tmpl = gw_model_chat_template(m);
    e->fmt = use_template && e->tmpl ? gw_chat_detect(e->tmpl) : GW_CHAT_UNKNOWN;
    e->add_bos = gw_tokenizer_add_bos(e->tok) && gw_tokenizer_bos(e->tok) >= 0;
}

int gw_eval_prompt_tokens(const gw_eval_engine *e, const char *input, const char *answer_prefix,
                          int32_t **ids) {
    *ids = NULL;
    char *rendered = NULL;
    bool add_bos = e->add_bos;
    if (e->fmt != GW_CHAT_UNKNOWN) {
        gw_chat_msg msg = {"user", input};
        rendered = gw_chat_render(e->fmt, e->tmpl, &msg, 1, true);
        if (!rendered) return -1;
        add_bos = false; /* templates that want BOS write it themselves */
    } else {
        rendered = strdup(input);
        if (!rendered) return -1;
    }
    size_t a = strlen(rendered), b = strlen(answer_prefix);
    char *text = malloc(a + b + 1);
    if (!text) {
        free(rendered);
        return -1;
    }
    memcpy(text, rendered, a);
    memcpy(text + a, answer_prefix, b + 1);
    free(rendered);
    /* parse_special only where a template made the text: the task text itself
     * is data, but it is inside the rendered string, so with a template the
     * whole string is parsed; RULER's haystacks contain no special tokens. */
    int64_t n = gw_tokenize(e->tok, text, a + b, add_bos, e->fmt != GW_CHAT_UNKNOWN, ids);
    free(text);
    if (n < 0 || n > INT32_MAX) {
        free(*ids);
        *ids = NULL;
        return -1;
    }
    return (int)n;
}

int gw_eval_count_tokens(const char *input, const char *answer_prefix, void *user) {
    int32_t *ids = NULL;
    int n = gw_eval_prompt_tokens((const gw_eval_engine *)user, input, answer_prefix, &ids);
    free(ids);
    return n;
}

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

int gw_eval_generate(gw_eval_engine *e, const gw_eval_sample *s, gw_eval_output *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    int32_t *ids = NULL;
    int n = gw_eval_prompt_tokens(e, s->input, s->answer_prefix, &ids);
    if (n <= 0) {
        free(ids);
        snprintf(err, errlen, "eval: could not tokenize the prompt");
        return -1;
    }
    const int n_ctx = gw_context_n_ctx(e->ctx);
    if (n + s->max_new_tokens > n_ctx) {
        free(ids);
        snprintf(err, errlen, "eval: prompt of %d tokens + %d to generate exceeds the context of %d", n,
                 s->max_new_tokens, n_ctx);
        return -1;
    }
    const int V = gw_model_n_vocab(e->model), B = gw_context_n_batch(e->ctx);
    float *logits = malloc(sizeof(float) * V);
    int32_t *seqv = malloc(sizeof(int32_t) * B), *pos = malloc(sizeof(int32_t) * B);
    int8_t *want = malloc((size_t)B);
    int32_t *gen = malloc(sizeof(int32_t) * (s->max_new_tokens + 1));
    int seq = gw_seq_open(e->ctx);
    int rc = 0;
    if (!logits || !seqv || !pos || !want || !gen || seq < 0) {
        snprintf(err, errlen, seq < 0 ? "eval: no free sequence" : "eval: out of memory");
        rc = -1;
        goto done;
    }
    double t0 = now_s();
    if (e->stream_window > 0 && gw_seq_set_streaming(e->ctx, seq, e->stream_sink, e->stream_window) != 0) {
        snprintf(err, errlen, "eval: cannot stream this sequence (needs an f16 KV cache)");
        rc = -1;
    }
    if (rc == 0 && gw_kv_select_begin(e->ctx, seq, &e->select, n) != 0) {
        snprintf(err, errlen, "eval: cannot start the KV selection policy (needs an f16 KV cache)");
        rc = -1;
    }
    /* positions follow the cache: a streaming sequence's stay within its sinks + window
     * (gw_seq_len after its evictions), a compressed one's count what was dropped */
    for (int d = 0; d < n && rc == 0;) {
        int m = n - d < B ? n - d : B;
        const int base = gw_seq_len(e->ctx, seq) + gw_seq_kv_compressed(e->ctx, seq);
        for (int i = 0; i < m; i++) {
            seqv[i] = seq;
            pos[i] = base + i;
            want[i] = (d + i == n - 1);
        }
        gw_batch b = {m, ids + d, seqv, pos, want};
        rc = gw_forward(e->ctx, &b, logits, err, errlen);
        d += m;
    }
    if (rc == 0 && gw_kv_select_end(e->ctx, seq, &e->select, n) != 0) {
        snprintf(err, errlen, "eval: KV compression failed");
        rc = -1;
    }
    const int n_kept = gw_seq_len(e->ctx, seq);
    double t1 = now_s();
    int n_gen = 0;
    while (rc == 0 && n_gen < s->max_new_tokens) {
        int32_t t = argmax(logits, V);
        if (gw_token_is_eog(e->tok, t)) break;
        gen[n_gen++] = t;
        if (n_gen == s->max_new_tokens) break;
        int32_t p = gw_seq_len(e->ctx, seq) + gw_seq_kv_compressed(e->ctx, seq);
        int8_t w = 1;
        gw_batch b = {1, &t, &seq, &p, &w};
        rc = gw_forward(e->ctx, &b, logits, err, errlen);
    }
    double t2 = now_s();
    if (rc == 0) {
        out->prediction = gw_detokenize(e->tok, gen, (size_t)n_gen, false, NULL);
        if (!out->prediction) {
            snprintf(err, errlen, "eval: out of memory");
            rc = -1;
        }
        out->n_prompt = n;
        out->n_kv_kept = n_kept;
        out->n_generated = n_gen;
        out->prefill_s = t1 - t0;
        out->decode_s = t2 - t1;
    }
done:
    if (seq >= 0) gw_seq_close(e->ctx, seq);
    free(ids);
    free(logits);
    free(seqv);
    free(pos);
    free(want);
    free(gen);
    return rc;
}

void gw_eval_output_free(gw_eval_output *o) {
    free(o->prediction);
    o->prediction = NULL;
}

/* --------------------------------------------------------------- records */

int gw_eval_record_write(FILE *f, const gw_eval_record *r, const char *prediction, const gw_eval_sample *s) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return -1;
    cJSON_AddStringToObject(o, "model", r->model);
    cJSON_AddStringToObject(o, "config", r->config);
    cJSON_AddStringToObject(o, "task", r->task);
    cJSON_AddNumberToObject(o, "length", r->length);
    cJSON_AddNumberToObject(o, "index", r->index);
    /* seeds can exceed 2^53: keep them exact as a string of digits */
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)r->seed);
    cJSON_AddStringToObject(o, "seed", seed);
    cJSON_AddNumberToObject(o, "depth", r->depth);
    cJSON_AddNumberToObject(o, "score", r->score);
    cJSON_AddNumberToObject(o, "n_prompt_tokens", r->n_prompt_tokens);
    cJSON_AddNumberToObject(o, "n_generated", r->n_generated);
    cJSON_AddNumberToObject(o, "prefill_tok_s", round(r->prefill_tok_s * 100) / 100);
    cJSON_AddNumberToObject(o, "decode_tok_s", round(r->decode_tok_s * 100) / 100);
    if (r->kv_type) {
        cJSON_AddStringToObject(o, "kv_type", r->kv_type);
        cJSON_AddNumberToObject(o, "kv_bytes_per_token", r->kv_bytes_per_token);
    }
    if (r->kv_select) {
        cJSON_AddStringToObject(o, "kv_select", r->kv_select);
        cJSON_AddNumberToObject(o, "n_kv_kept", r->n_kv_kept);
    }
    if (prediction) cJSON_AddStringToObject(o, "prediction", prediction);
    if (s) {
        cJSON *refs = cJSON_AddArrayToObject(o, "refs");
        for (int i = 0; i < s->n_refs; i++) cJSON_AddItemToArray(refs, cJSON_CreateString(s->refs[i]));
    }
    char *line = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!line) return -1;
    int rc = fprintf(f, "%s\n", line) < 0 || fflush(f) != 0 ? -1 : 0;
    free(line);
    return rc;
}

static char *json_str(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? strdup(v->valuestring) : NULL;
}

static double json_num(const cJSON *o, const char *key, double dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

static bool parse_record(const char *line, gw_eval_record *r) {
    memset(r, 0, sizeof *r);
    cJSON *o = cJSON_Parse(line);
    if (!o) return false;
    r->model = json_str(o, "model");
    r->config = json_str(o, "config");
    r->task = json_str(o, "task");
    const cJSON *score = cJSON_GetObjectItemCaseSensitive(o, "score");
    const cJSON *length = cJSON_GetObjectItemCaseSensitive(o, "length");
    bool ok = r->model && r->config && r->task && cJSON_IsNumber(score) && cJSON_IsNumber(length);
    if (ok) {
        r->length = (int)json_num(o, "length", 0);
        r->index = (int)json_num(o, "index", 0);
        const cJSON *seed = cJSON_GetObjectItemCaseSensitive(o, "seed");
        r->seed = cJSON_IsString(seed) ? strtoull(seed->valuestring, NULL, 10)
                                        : (uint64_t)json_num(o, "seed", 0);
        r->depth = json_num(o, "depth", -1);
        r->score = score->valuedouble;
        r->n_prompt_tokens = (int)json_num(o, "n_prompt_tokens", 0);
        r->n_generated = (int)json_num(o, "n_generated", 0);
        r->prefill_tok_s = json_num(o, "prefill_tok_s", 0);
        r->decode_tok_s = json_num(o, "decode_tok_s", 0);
    } else {
        free(r->model);
        free(r->config);
        free(r->task);
    }
    cJSON_Delete(o);
    return ok;
}

int gw_eval_records_load(const char *path, bool repair, gw_eval_records *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT) return 0;
        snprintf(err, errlen, "cannot open results file '%s': %s", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long good_end = 0; /* byte offset just after the last complete, valid line */
    long offset = 0;
    int line_no = 0;
    while ((len = getline(&line, &cap, f)) > 0) {
        line_no++;
        offset += len;
        bool complete = line[len - 1] == '\n';
        gw_eval_record r;
        if (complete && parse_record(line, &r)) {
            if (out->n == out->cap) {
                out->cap = out->cap ? 2 * out->cap : 64;
                out->v = realloc(out->v, sizeof *out->v * out->cap);
            }
            out->v[out->n++] = r;
            good_end = offset;
        } else if (complete && len > 1) {
            /* a bad line in the middle is kept (not ours to delete) but skipped */
            fprintf(stderr, "%s:%d: not a result record, skipped\n", path, line_no);
            good_end = offset;
        }
    }
    free(line);
    fclose(f);
    if (repair && good_end < offset) {
        if (truncate(path, good_end) != 0) {
            snprintf(err, errlen, "cannot truncate the unfinished last line of '%s': %s", path, strerror(errno));
            gw_eval_records_free(out);
            return -1;
        }
        fprintf(stderr, "%s: dropped an unfinished last line\n", path);
    }
    return 0;
}

void gw_eval_records_free(gw_eval_records *r) {
    for (int i = 0; i < r->n; i++) {
        free(r->v[i].model);
        free(r->v[i].config);
        free(r->v[i].task);
    }
    free(r->v);
    memset(r, 0, sizeof *r);
}

static bool same_depth(double a, double b) { return fabs(a - b) < 1e-9 || (a < 0 && b < 0); }

const gw_eval_record *gw_eval_records_find(const gw_eval_records *r, const char *model, const char *config,
                                           const char *task, int length, int index, uint64_t seed,
                                           double depth) {
    for (int i = 0; i < r->n; i++) {
        const gw_eval_record *x = &r->v[i];
        if (x->length == length && x->index == index && x->seed == seed && !strcmp(x->task, task) &&
            !strcmp(x->model, model) && !strcmp(x->config, config) && same_depth(x->depth, depth))
            return x;
    }
    return NULL;
}

/* ------------------------------------------------------------- summaries */

void gw_eval_group_records(const gw_eval_records *r, bool by_depth, gw_eval_groups *out) {
    memset(out, 0, sizeof *out);
    for (int i = 0; i < r->n; i++) {
        const gw_eval_record *x = &r->v[i];
        double depth = by_depth ? x->depth : -1;
        gw_eval_group *g = NULL;
        for (int j = 0; j < out->n && !g; j++) {
            gw_eval_group *y = &out->v[j];
            if (y->length == x->length && same_depth(y->depth, depth) && !strcmp(y->task, x->task) &&
                !strcmp(y->model, x->model) && !strcmp(y->config, x->config))
                g = y;
        }
        if (!g) {
            if (out->n == out->cap) {
                out->cap = out->cap ? 2 * out->cap : 32;
                out->v = realloc(out->v, sizeof *out->v * out->cap);
            }
            g = &out->v[out->n++];
            memset(g, 0, sizeof *g);
            g->model = strdup(x->model);
            g->config = strdup(x->config);
            g->task = strdup(x->task);
            g->length = x->length;
            g->depth = depth;
        }
        g->n++;
        g->score_sum += x->score;
        g->score_sq += x->score * x->score;
        g->prefill_tok_s_sum += x->prefill_tok_s;
        g->decode_tok_s_sum += x->decode_tok_s;
    }
}

void gw_eval_groups_free(gw_eval_groups *g) {
    for (int i = 0; i < g->n; i++) {
        free(g->v[i].model);
        free(g->v[i].config);
        free(g->v[i].task);
    }
    free(g->v);
    memset(g, 0, sizeof *g);
}

static double group_mean(const gw_eval_group *g) { return g->n ? g->score_sum / g->n : NAN; }

/* Standard error of the mean score. */
static double group_se(const gw_eval_group *g) {
    if (g->n < 2) return NAN;
    double m = group_mean(g);
    double var = (g->score_sq - g->n * m * m) / (g->n - 1);
    return var > 0 ? sqrt(var / g->n) : 0;
}

static int cmp_int(const void *a, const void *b) { return (*(const int *)a > *(const int *)b) - (*(const int *)a < *(const int *)b); }

/* The distinct lengths of a set of groups, sorted. */
static int distinct_lengths(const gw_eval_groups *g, int *lengths, int cap) {
    int n = 0;
    for (int i = 0; i < g->n; i++) {
        bool seen = false;
        for (int j = 0; j < n; j++) seen |= lengths[j] == g->v[i].length;
        if (!seen && n < cap) lengths[n++] = g->v[i].length;
    }
    qsort(lengths, n, sizeof(int), cmp_int);
    return n;
}

void gw_eval_print_summary(FILE *f, const gw_eval_groups *g) {
    fprintf(f, "%-32s %-18s %7s %16s %4s %10s %9s\n", "model", "task", "length", "score", "n", "prefill/s",
            "decode/s");
    for (int i = 0; i < g->n; i++) {
        const gw_eval_group *x = &g->v[i];
        char score[32];
        double se = group_se(x);
        if (isnan(se)) snprintf(score, sizeof score, "%.1f", group_mean(x));
        else snprintf(score, sizeof score, "%.1f ± %.1f", group_mean(x), se);
        const char *base = strrchr(x->model, '/');
        fprintf(f, "%-32.32s %-18s %7d %16s %4d %10.1f %9.1f\n", base ? base + 1 : x->model, x->task, x->length,
                score, x->n, x->prefill_tok_s_sum / x->n, x->decode_tok_s_sum / x->n);
    }
    /* mean over tasks per length: the figure RULER reports per length */
    int lengths[64];
    int nl = distinct_lengths(g, lengths, 64);
    for (int li = 0; li < nl; li++) {
        double sum = 0;
        int n = 0;
        for (int i = 0; i < g->n; i++)
            if (g->v[i].length == lengths[li]) {
                sum += group_mean(&g->v[i]);
                n++;
            }
        fprintf(f, "%-32s %-18s %7d %16.1f %4d\n", "", "(mean of tasks)", lengths[li], sum / n, n);
    }
}

static const gw_eval_group *find_group(const gw_eval_groups *g, const char *task, int length) {
    for (int i = 0; i < g->n; i++)
        if (g->v[i].length == length && !strcmp(g->v[i].task, task)) return &g->v[i];
    return NULL;
}

void gw_eval_print_compare(FILE *f, const gw_eval_groups *a, const char *name_a, const gw_eval_groups *b,
                           const char *name_b) {
    fprintf(f, "A: %s\nB: %s\n", name_a, name_b);
    fprintf(f, "%-18s %7s %9s %9s %8s %5s %5s\n", "task", "length", "A", "B", "B-A", "n(A)", "n(B)");
    /* rows: A's groups in order, then B's that A lacks */
    for (int pass = 0; pass < 2; pass++) {
        const gw_eval_groups *src = pass == 0 ? a : b;
        for (int i = 0; i < src->n; i++) {
            const gw_eval_group *x = &src->v[i];
            /* one row per (task, length) even if several models/configs */
            bool dup = false;
            for (int j = 0; j < i; j++) dup |= src->v[j].length == x->length && !strcmp(src->v[j].task, x->task);
            if (dup) continue;
            if (pass == 1 && find_group(a, x->task, x->length)) continue;
            const gw_eval_group *ga = find_group(a, x->task, x->length);
            const gw_eval_group *gb = find_group(b, x->task, x->length);
            char sa[16] = "-", sb[16] = "-", sd[16] = "-", na[8] = "-", nb[8] = "-";
            if (ga) snprintf(sa, sizeof sa, "%.1f", group_mean(ga)), snprintf(na, sizeof na, "%d", ga->n);
            if (gb) snprintf(sb, sizeof sb, "%.1f", group_mean(gb)), snprintf(nb, sizeof nb, "%d", gb->n);
            if (ga && gb) snprintf(sd, sizeof sd, "%+.1f", group_mean(gb) - group_mean(ga));
            fprintf(f, "%-18s %7d %9s %9s %8s %5s %5s\n", x->task, x->length, sa, sb, sd, na, nb);
        }
    }
}

/* ------------------------------------------------------------ NIAH grid */

int gw_eval_write_grid_json(const char *path, const char *model, const char *config, const int *lengths,
                            int n_lengths, const double *depths, int n_depths, const double *scores) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "model", model);
    cJSON_AddStringToObject(o, "config", config);
    cJSON *L = cJSON_AddArrayToObject(o, "lengths");
    for (int i = 0; i < n_lengths; i++) cJSON_AddItemToArray(L, cJSON_CreateNumber(lengths[i]));
    cJSON *D = cJSON_AddArrayToObject(o, "depths");
    for (int i = 0; i < n_depths; i++) cJSON_AddItemToArray(D, cJSON_CreateNumber(depths[i]));
    /* scores[depth][length], null where no sample ran */
    cJSON *S = cJSON_AddArrayToObject(o, "scores");
    for (int di = 0; di < n_depths; di++) {
        cJSON *row = cJSON_CreateArray();
        for (int li = 0; li < n_lengths; li++) {
            double v = scores[li * n_depths + di];
            cJSON_AddItemToArray(row, isnan(v) ? cJSON_CreateNull() : cJSON_CreateNumber(v));
        }
        cJSON_AddItemToArray(S, row);
    }
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    FILE *f = text ? fopen(path, "wb") : NULL;
    int rc = f && fprintf(f, "%s\n", text) >= 0 ? 0 : -1;
    if (f && fclose(f) != 0) rc = -1;
    free(text);
    return rc;
}

/* Red (0) -> yellow (50) -> green (100), as the usual NIAH plots. */
static void score_color(double s, char *buf, size_t n) {
    if (isnan(s)) {
        snprintf(buf, n, "#dddddd");
        return;
    }
    double t = s / 100;
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    int r = t < 0.5 ? 230 : (int)(230 - (t - 0.5) * 2 * 190);
    int g = t < 0.5 ? (int)(60 + t * 2 * 160) : (int)(220 - (t - 0.5) * 2 * 40);
    int b = 60;
    snprintf(buf, n, "#%02x%02x%02x", r, g, b);
}

static void fmt_length(int len, char *buf, size_t n) {
    if (len % 1024 == 0) snprintf(buf, n, "%dk", len / 1024);
    else snprintf(buf, n, "%d", len);
}

int gw_eval_write_grid_svg(const char *path, const char *title, const int *lengths, int n_lengths,
                           const double *depths, int n_depths, const double *scores) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    const int cw = 64, ch = 28, left = 70, top = 50, bottom = 50;
    int w = left + cw * n_lengths + 20, h = top + ch * n_depths + bottom;
    int title_w = left + (int)strlen(title) * 8 + 20; /* ~8 px per character at 14 px */
    if (w < title_w) w = title_w;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" "
               "font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", w, h);
    fprintf(f, "<text x=\"%d\" y=\"22\" font-size=\"14\">", left);
    for (const char *p = title; *p; p++) {
        if (*p == '<') fputs("&lt;", f);
        else if (*p == '>') fputs("&gt;", f);
        else if (*p == '&') fputs("&amp;", f);
        else fputc(*p, f);
    }
    fprintf(f, "</text>\n");
    for (int di = 0; di < n_depths; di++) {
        int y = top + di * ch;
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%.0f%%</text>\n", left - 8, y + ch / 2 + 4,
                depths[di] * 100);
        for (int li = 0; li < n_lengths; li++) {
            double s = scores[li * n_depths + di];
            char color[16];
            score_color(s, color, sizeof color);
            int x = left + li * cw;
            fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"%s\" stroke=\"white\"/>\n", x, y,
                    cw, ch, color);
            if (!isnan(s))
                fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%.0f</text>\n", x + cw / 2,
                        y + ch / 2 + 4, s);
        }
    }
    for (int li = 0; li < n_lengths; li++) {
        char lab[16];
        fmt_length(lengths[li], lab, sizeof lab);
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", left + li * cw + cw / 2,
                top + n_depths * ch + 18, lab);
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">context length (tokens)</text>\n",
            left + cw * n_lengths / 2, top + n_depths * ch + 38);
    fprintf(f, "<text x=\"14\" y=\"%d\" transform=\"rotate(-90 14 %d)\" text-anchor=\"middle\">needle depth</text>\n",
            top + n_depths * ch / 2, top + n_depths * ch / 2);
    fprintf(f, "</svg>\n");
    return fclose(f) == 0 ? 0 : -1;
}
