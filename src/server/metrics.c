#include "server/metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BUCKETS 24

typedef struct {
    const char *name, *help;
    const double *bounds; /* upper bounds, ascending; +Inf is implicit */
    int n_bounds;
} hist_def;

/* vLLM's bucket boundaries (vllm/v1/metrics/loggers.py), so histograms from
 * the two servers can be compared bucket by bucket. */
static const double ttft_b[] = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75,
                                1.0,   2.5,   5.0,  7.5,  10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0};
static const double itl_b[] = {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2,  0.3,  0.4,  0.5,
                               0.75, 1.0,   2.5,  5.0,   7.5, 10.0, 20.0, 40.0, 80.0};
static const double e2e_b[] = {0.3,  0.5,  0.8,  1.0,  1.5,  2.0,   2.5,   5.0,   10.0,  15.0,  20.0,
                               30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};
static const double tok_b[] = {1,    2,    5,     10,    20,    50,     100,    200,    500,
                               1000, 2000, 5000, 10000, 20000, 50000, 100000, 200000};

static const hist_def hists[GW_HIST_COUNT] = {
    [GW_HIST_TTFT] = {"vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.",
                      ttft_b, sizeof ttft_b / sizeof *ttft_b},
    [GW_HIST_ITL] = {"vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", itl_b,
                     sizeof itl_b / sizeof *itl_b},
    [GW_HIST_E2E] = {"vllm:e2e_request_latency_seconds",
                     "Histogram of end to end request latency in seconds.", e2e_b, sizeof e2e_b / sizeof *e2e_b},
    [GW_HIST_QUEUE] = {"vllm:request_queue_time_seconds",
                       "Histogram of time spent waiting before first being scheduled in seconds.", e2e_b,
                       sizeof e2e_b / sizeof *e2e_b},
    [GW_HIST_PROMPT_TOKENS] = {"vllm:request_prompt_tokens", "Number of prefill tokens processed.", tok_b,
                               sizeof tok_b / sizeof *tok_b},
    [GW_HIST_GEN_TOKENS] = {"vllm:request_generation_tokens", "Number of generation tokens processed.", tok_b,
                            sizeof tok_b / sizeof *tok_b},
};

typedef struct {
    uint64_t bucket[MAX_BUCKETS + 1]; /* counts per bucket (not cumulative); last = +Inf */
    uint64_t count;
    double sum;
} hist;

struct gw_metrics {
    pthread_mutex_t mu;
    char *model_name;
    hist h[GW_HIST_COUNT];
    uint64_t ctr[GW_CTR_COUNT];
};

gw_metrics *gw_metrics_new(const char *model_name) {
    gw_metrics *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->model_name = strdup(model_name ? model_name : "");
    if (!m->model_name) {
        free(m);
        return NULL;
    }
    pthread_mutex_init(&m->mu, NULL);
    return m;
}

void gw_metrics_free(gw_metrics *m) {
    if (!m) return;
    pthread_mutex_destroy(&m->mu);
    free(m->model_name);
    free(m);
}

void gw_metrics_observe(gw_metrics *m, gw_hist_id id, double v) {
    if (!m) return;
    const hist_def *d = &hists[id];
    int b = 0;
    while (b < d->n_bounds && v > d->bounds[b]) b++;
    pthread_mutex_lock(&m->mu);
    m->h[id].bucket[b]++;
    m->h[id].count++;
    m->h[id].sum += v;
    pthread_mutex_unlock(&m->mu);
}

void gw_metrics_add(gw_metrics *m, gw_counter_id c, uint64_t n) {
    if (!m) return;
    pthread_mutex_lock(&m->mu);
    m->ctr[c] += n;
    pthread_mutex_unlock(&m->mu);
}

uint64_t gw_metrics_counter(gw_metrics *m, gw_counter_id c) {
    if (!m) return 0;
    pthread_mutex_lock(&m->mu);
    uint64_t v = m->ctr[c];
    pthread_mutex_unlock(&m->mu);
    return v;
}

/* ---------------------------------------------------------------- render */

typedef struct {
    char *buf;
    size_t len, cap;
    int oom;
} strbuf;

static void sb_printf(strbuf *sb, const char *fmt, ...) {
    if (sb->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(sb->buf + sb->len, sb->cap - sb->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            sb->oom = 1;
            return;
        }
        if ((size_t)n < sb->cap - sb->len) {
            sb->len += (size_t)n;
            return;
        }
        size_t cap = (sb->cap + (size_t)n + 1) * 2;
        char *nb = realloc(sb->buf, cap);
        if (!nb) {
            sb->oom = 1;
            return;
        }
        sb->buf = nb;
        sb->cap = cap;
    }
}

/* Label values escape \, " and newline. */
static char *escape_label(const char *s) {
    size_t n = strlen(s);
    char *o = malloc(2 * n + 1), *p = o;
    if (!o) return NULL;
    for (; *s; s++) {
        if (*s == '\\' || *s == '"') *p++ = '\\', *p++ = *s;
        else if (*s == '\n') *p++ = '\\', *p++ = 'n';
        else *p++ = *s;
    }
    *p = 0;
    return o;
}

char *gw_metrics_render(gw_metrics *m, const gw_metrics_gauges *g) {
    strbuf sb = {malloc(8192), 0, 8192, 0};
    if (!sb.buf) return NULL;
    sb.buf[0] = 0;
    char *mn = escape_label(m->model_name);
    if (!mn) {
        free(sb.buf);
        return NULL;
    }
    /* a consistent copy; the lock is not held while formatting */
    hist hs[GW_HIST_COUNT];
    uint64_t cs[GW_CTR_COUNT];
    pthread_mutex_lock(&m->mu);
    memcpy(hs, m->h, sizeof hs);
    memcpy(cs, m->ctr, sizeof cs);
    pthread_mutex_unlock(&m->mu);

    sb_printf(&sb, "# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
                   "# TYPE vllm:num_requests_running gauge\n"
                   "vllm:num_requests_running{model_name=\"%s\"} %d\n", mn, g ? g->running : 0);
    sb_printf(&sb, "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n"
                   "# TYPE vllm:num_requests_waiting gauge\n"
                   "vllm:num_requests_waiting{model_name=\"%s\"} %d\n", mn, g ? g->waiting : 0);
    sb_printf(&sb, "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.\n"
                   "# TYPE vllm:kv_cache_usage_perc gauge\n"
                   "vllm:kv_cache_usage_perc{model_name=\"%s\"} %.6g\n", mn, g ? g->kv_usage : 0.0);
    static const struct { gw_counter_id id; const char *name, *help; } ctrs[] = {
        {GW_CTR_PROMPT_TOKENS, "vllm:prompt_tokens_total", "Number of prefill tokens processed."},
        {GW_CTR_GEN_TOKENS, "vllm:generation_tokens_total", "Number of generation tokens processed."},
        {GW_CTR_PREEMPTIONS, "vllm:num_preemptions_total", "Cumulative number of preemption from the engine."},
        {GW_CTR_PREFIX_QUERIES, "vllm:prefix_cache_queries_total",
         "Prefix cache queries, in terms of number of queried tokens."},
        {GW_CTR_PREFIX_HITS, "vllm:prefix_cache_hits_total", "Prefix cache hits, in terms of number of cached tokens."},
    };
    for (size_t i = 0; i < sizeof ctrs / sizeof *ctrs; i++)
        sb_printf(&sb, "# HELP %s %s\n# TYPE %s counter\n%s{model_name=\"%s\"} %llu\n", ctrs[i].name, ctrs[i].help,
                  ctrs[i].name, ctrs[i].name, mn, (unsigned long long)cs[ctrs[i].id]);
    sb_printf(&sb, "# HELP vllm:request_success_total Count of successfully processed requests.\n"
                   "# TYPE vllm:request_success_total counter\n");
    static const struct { gw_counter_id id; const char *reason; } fin[] = {
        {GW_CTR_FINISHED_STOP, "stop"}, {GW_CTR_FINISHED_LENGTH, "length"}, {GW_CTR_FINISHED_ABORT, "abort"}};
    for (size_t i = 0; i < sizeof fin / sizeof *fin; i++)
        sb_printf(&sb, "vllm:request_success_total{finished_reason=\"%s\",model_name=\"%s\"} %llu\n", fin[i].reason,
                  mn, (unsigned long long)cs[fin[i].id]);

    /* The inter-token latencies are also given under vLLM's older name,
     * time_per_output_token_seconds (the same observations). */
    hist_def tpot = hists[GW_HIST_ITL];
    tpot.name = "vllm:time_per_output_token_seconds";
    tpot.help = "Histogram of time per output token in seconds (the inter-token latencies).";
    for (int id = 0; id <= GW_HIST_COUNT; id++) {
        const hist_def *d = id < GW_HIST_COUNT ? &hists[id] : &tpot;
        const hist *h = &hs[id < GW_HIST_COUNT ? id : GW_HIST_ITL];
        sb_printf(&sb, "# HELP %s %s\n# TYPE %s histogram\n", d->name, d->help, d->name);
        uint64_t cum = 0;
        for (int b = 0; b <= d->n_bounds; b++) {
            cum += h->bucket[b];
            if (b < d->n_bounds)
                sb_printf(&sb, "%s_bucket{le=\"%g\",model_name=\"%s\"} %llu\n", d->name, d->bounds[b], mn,
                          (unsigned long long)cum);
            else
                sb_printf(&sb, "%s_bucket{le=\"+Inf\",model_name=\"%s\"} %llu\n", d->name, mn,
                          (unsigned long long)cum);
        }
        sb_printf(&sb, "%s_sum{model_name=\"%s\"} %.9g\n%s_count{model_name=\"%s\"} %llu\n", d->name, mn, h->sum,
                  d->name, mn, (unsigned long long)h->count);
    }
    free(mn);
    if (sb.oom) {
        free(sb.buf);
        return NULL;
    }
    return sb.buf;
}
