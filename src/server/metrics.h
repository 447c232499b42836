/* Server metrics in Prometheus' text exposition format (version 0.0.4),
 * with vLLM's metric names where vLLM has one, so that dashboards made for
 * vLLM work unchanged:
 *   vllm:time_to_first_token_seconds      histogram  arrival -> first token
 *   vllm:inter_token_latency_seconds      histogram  between consecutive tokens
 *   vllm:time_per_output_token_seconds    histogram  the same observations (vLLM's older name)
 *   vllm:e2e_request_latency_seconds      histogram  arrival -> finish
 *   vllm:request_queue_time_seconds       histogram  arrival -> first scheduled
 *   vllm:request_prompt_tokens            histogram  prompt length of finished requests
 *   vllm:request_generation_tokens        histogram  generated tokens of finished requests
 *   vllm:prompt_tokens_total              counter    prompt tokens of requests that started
 *   vllm:generation_tokens_total          counter    generated tokens
 *   vllm:num_preemptions_total            counter    sequences preempted (recomputed later)
 *   vllm:prefix_cache_queries_total       counter    tokens of requests looked up in the prefix
 *                                                    cache at admission (as vLLM v1 counts them)
 *   vllm:prefix_cache_hits_total          counter    of those, tokens found cached (not computed);
 *                                                    a preempted request counts again when readmitted
 *   vllm:request_success_total{finished_reason=stop|length|abort}  counter
 *   vllm:num_requests_running / _waiting  gauge      (from the scheduler at scrape time)
 *   vllm:kv_cache_usage_perc              gauge      fraction 0..1 of KV blocks in use, as vLLM
 * Every series carries model_name="...". Thread-safe: the engine thread
 * records, HTTP threads render. */
#ifndef GODWIT_SERVER_METRICS_H
#define GODWIT_SERVER_METRICS_H
#include <stdint.h>

typedef struct gw_metrics gw_metrics;

typedef enum {
    GW_HIST_TTFT,
    GW_HIST_ITL,
    GW_HIST_E2E,
    GW_HIST_QUEUE,
    GW_HIST_PROMPT_TOKENS,
    GW_HIST_GEN_TOKENS,
    GW_HIST_COUNT
} gw_hist_id;

typedef enum {
    GW_CTR_PROMPT_TOKENS,
    GW_CTR_GEN_TOKENS,
    GW_CTR_PREEMPTIONS,
    GW_CTR_FINISHED_STOP,
    GW_CTR_FINISHED_LENGTH,
    GW_CTR_FINISHED_ABORT,
    GW_CTR_PREFIX_QUERIES,
    GW_CTR_PREFIX_HITS,
    GW_CTR_COUNT
} gw_counter_id;

/* The gauges, sampled when the metrics are rendered. */
typedef struct {
    int running, waiting;
    double kv_usage; /* 0..1 */
} gw_metrics_gauges;

gw_metrics *gw_metrics_new(const char *model_name);
void gw_metrics_free(gw_metrics *m);
void gw_metrics_observe(gw_metrics *m, gw_hist_id h, double value);
void gw_metrics_add(gw_metrics *m, gw_counter_id c, uint64_t n);
uint64_t gw_metrics_counter(gw_metrics *m, gw_counter_id c);
/* The exposition text (malloc'd, NUL-terminated), or NULL on out of memory. */
char *gw_metrics_render(gw_metrics *m, const gw_metrics_gauges *g);
#endif
