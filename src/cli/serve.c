/* godwit serve: the OpenAI-compatible HTTP server (src/server/) over the
 * continuous-batching scheduler. The main thread only waits for SIGINT or
 * SIGTERM; the engine thread runs the model, libmicrohttpd's threads talk
 * HTTP. On the first signal the server stops accepting connections, lets
 * the requests in flight finish (at most --shutdown-timeout seconds, or
 * until a second signal), aborts the rest and exits 0. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "godwit.h"
#include "server/http.h"
#include "server/metrics.h"
#include "server/scheduler.h"

static void usage_serve(FILE *f) {
    fprintf(f,
            "usage: godwit serve [-m MODEL] [--host ADDR] [--port N] [--api-key KEY] [options]\n\n"
            "Serves the model over HTTP with an OpenAI-compatible API, batching concurrent\n"
            "requests continuously (decodes first, then prompt chunks, in one forward pass per\n"
            "step; the newest sequence is preempted and later recomputed when the KV cache\n"
            "runs out), and reusing the KV cache of prompt prefixes it has already computed.\n\n"
            "  POST /v1/completions          prompt: string, strings or token ids\n"
            "  POST /v1/chat/completions     messages, rendered with the model's chat template\n"
            "       fields: max_tokens (max_completion_tokens), temperature, top_p, top_k, min_p,\n"
            "       repetition_penalty, stop, seed, n, logprobs (+ top_logprobs for chat),\n"
            "       stream (server-sent events ending with 'data: [DONE]'),\n"
            "       stream_options.include_usage, ignore_eos; 'model' is not checked\n"
            "  GET  /v1/models, /health, /metrics (Prometheus text, vLLM's metric names)\n\n"
            "  -m, --model FILE        GGUF model (default: $GODWIT_MODEL, else models/" DEFAULT_MODEL_FILE ")\n"
            "      --host ADDR         address to listen on (default: 127.0.0.1)\n"
            "      --port N            port (default: 8080; 0 picks a free one, printed at start)\n"
            "      --api-key KEY       require 'Authorization: Bearer KEY' on /v1/ (default: none;\n"
            "                          also $GODWIT_API_KEY)\n"
            "      --served-model-name NAME  the model's name in the API (default: the file name)\n"
            "  -c, --ctx N             KV cache size in tokens, shared by all requests (default:\n"
            "                          8192); one request is limited to this or the model's\n"
            "                          trained context, whichever is smaller\n"
            "      --batch-tokens N    token budget of one step: decodes + prompt chunks\n"
            "                          (default: 512)\n"
            "      --max-running N     most sequences in the batch at once, 1..256 (default: 32)\n"
            "      --max-waiting N     requests queued beyond this get 429; 0 = no limit\n"
            "                          (default: 256)\n"
            "      --max-body BYTES    largest request body, k/M suffixes allowed (default: 8M);\n"
            "                          larger ones get 413\n"
            "  -t, --threads N         compute threads (default: all cores)\n"
            KV_HELP DEVICE_HELP
            "      --no-prefix-cache   do not reuse the KV of common prompt prefixes (by default\n"
            "                          full KV blocks stay cached by their tokens after a request\n"
            "                          and a request starts on the longest cached prefix; cached\n"
            "                          blocks nobody uses are reclaimed, least recently used\n"
            "                          first, when the KV cache runs short)\n"
            "      --shutdown-timeout S  on SIGINT/SIGTERM, wait up to S seconds for requests in\n"
            "                          flight (default: 10)\n"
            "  -v, --verbose           log every request on stderr\n"
            "  -h, --help              this help\n");
}

/* Bytes with an optional k or M suffix. */
static size_t parse_bytes(const char *s, const char *name) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end != s && (*end == 'k' || *end == 'K') && end[1] == 0) v <<= 10, end++;
    else if (end != s && (*end == 'm' || *end == 'M') && end[1] == 0) v <<= 20, end++;
    if (errno || end == s || *end || v == 0 || v > (1ull << 31)) die("invalid size for %s", name);
    return (size_t)v;
}

static const char *base_name(const char *path, char *buf, size_t cap) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    snprintf(buf, cap, "%s", b);
    size_t n = strlen(buf);
    if (n > 5 && !strcmp(buf + n - 5, ".gguf")) buf[n - 5] = 0;
    return buf;
}

int cmd_serve(int argc, char **argv) {
    const char *model = NULL, *host = "127.0.0.1", *api_key = getenv("GODWIT_API_KEY"), *served = NULL;
    int port = 8080, verbose = 0;
    double shutdown_timeout = 10;
    size_t max_body = 8u << 20;
    gw_sched_params sp = gw_sched_default_params();
    sp.max_waiting = 256;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
#define NEXT() (i + 1 < argc ? argv[++i] : (die("option %s needs a value", a), ""))
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage_serve(stdout);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) model = NEXT();
        else if (!strcmp(a, "--host")) host = NEXT();
        else if (!strcmp(a, "--port")) port = parse_int(NEXT(), a);
        else if (!strcmp(a, "--api-key")) api_key = NEXT();
        else if (!strcmp(a, "--served-model-name")) served = NEXT();
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) sp.n_ctx = parse_size(NEXT(), a);
        else if (!strcmp(a, "--batch-tokens")) sp.batch_tokens = parse_int(NEXT(), a);
        else if (!strcmp(a, "--max-running")) sp.max_running = parse_int(NEXT(), a);
        else if (!strcmp(a, "--max-waiting")) sp.max_waiting = parse_int(NEXT(), a);
        else if (!strcmp(a, "--max-body")) max_body = parse_bytes(NEXT(), a);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) sp.n_threads = parse_int(NEXT(), a);
        else if (!strcmp(a, "--kv-block")) sp.kv_block_size = parse_int(NEXT(), a);
        else if (!strcmp(a, "--kv-type")) sp.kv_type = parse_kv_type(NEXT());
        else if (!strcmp(a, "--device")) sp.device = parse_device(NEXT());
        else if (!strcmp(a, "--no-prefix-cache")) sp.prefix_cache = false;
        else if (!strcmp(a, "--shutdown-timeout")) shutdown_timeout = parse_float(NEXT(), a);
        else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) verbose = 1;
        else {
            fprintf(stderr, "godwit serve: unknown option '%s'\n\n", a);
            usage_serve(stderr);
            return 2;
        }
#undef NEXT
    }
    if (port < 0 || port > 65535) die("%s", "--port must be in 0..65535");
    if (sp.n_ctx <= 0) die("%s", "--ctx must be positive");
    if (sp.batch_tokens <= 0) die("%s", "--batch-tokens must be positive");
    if (sp.max_running < 1 || sp.max_running > 256) die("%s", "--max-running must be in 1..256");
    if (sp.max_waiting < 0) die("%s", "--max-waiting must be >= 0");
    if (sp.n_threads < 0) die("%s", "--threads must be >= 0");
    if (sp.kv_block_size < 0 || sp.kv_block_size > 4096) die("%s", "--kv-block must be in 1..4096");
    if (shutdown_timeout < 0) die("%s", "--shutdown-timeout must be >= 0");

    /* Every thread created from here on (compute pool, engine, HTTP) inherits
     * this mask, so the signals reach only sigwait below. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    const char *path = resolve_model(model);
    char err[512], name[256];
    double t0 = now_s();
    gw_model *m = gw_model_load(path, err, sizeof err);
    if (!m) die("%s", err);
    if (!served) served = base_name(path, name, sizeof name);
    gw_metrics *metrics = gw_metrics_new(served);
    if (!metrics) die("%s", "out of memory");
    sp.metrics = metrics;
    gw_sched *sched = gw_sched_new(m, &sp, err, sizeof err);
    if (!sched) die("%s", err);
    gw_server_params hp = {.host = host, .port = port, .api_key = api_key, .max_body = max_body,
                           .model_name = served, .verbose = verbose};
    gw_server *srv = gw_server_start(sched, metrics, &hp, err, sizeof err);
    if (!srv) die("%s", err);
    char desc[512];
    gw_model_describe(m, desc, sizeof desc);
    fprintf(stderr,
            "godwit serve: %s\n"
            "godwit serve: loaded in %.2f s; KV cache %d tokens (%s), max %d per request, batch %d tokens, "
            "%d running at most, prefix cache %s\n"
            "godwit serve: listening on http://%s%s%s:%d%s\n",
            desc, now_s() - t0, sp.n_ctx, gw_kv_type_name(sp.kv_type), gw_sched_max_len(sched), sp.batch_tokens,
            sp.max_running,
            sp.prefix_cache ? "on" : "off",
            strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "", gw_server_port(srv),
            api_key && *api_key ? " (API key required)" : "");

    int sig = 0;
    while (sigwait(&sigs, &sig) != 0) {
    }
    fprintf(stderr, "godwit serve: %s: shutting down (waiting up to %.0f s for requests in flight; "
                    "signal again to stop now)\n",
            sig == SIGINT ? "SIGINT" : "SIGTERM", shutdown_timeout);
    gw_server_quiesce(srv);
    gw_sched_close(sched);
    double deadline = now_s() + shutdown_timeout;
    for (;;) {
        gw_sched_stats st;
        gw_sched_get_stats(sched, &st);
        if (st.running == 0 && st.waiting == 0) break;
        if (now_s() >= deadline) {
            fprintf(stderr, "godwit serve: aborting %d running and %d waiting requests\n", st.running, st.waiting);
            break;
        }
        struct timespec ts = {0, 100 * 1000 * 1000};
        if (sigtimedwait(&sigs, NULL, &ts) > 0) {
            fprintf(stderr, "godwit serve: second signal: aborting %d running and %d waiting requests\n",
                    st.running, st.waiting);
            break;
        }
    }
    gw_sched_abort_all(sched);
    gw_server_stop(srv);
    gw_sched_stats st;
    gw_sched_get_stats(sched, &st);
    fprintf(stderr,
            "godwit serve: stopped after %llu steps (%llu tokens computed, %llu preemptions, "
            "%llu of %llu prompt tokens from the prefix cache)\n",
            (unsigned long long)st.steps, (unsigned long long)st.batch_tokens_total,
            (unsigned long long)st.preemptions, (unsigned long long)st.prefix_hits,
            (unsigned long long)st.prefix_queries);
    gw_sched_free(sched);
    gw_metrics_free(metrics);
    gw_model_free(m);
    return 0;
}
