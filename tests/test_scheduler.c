/* The continuous-batching scheduler on the real default model: several
 * prompts run concurrently give, token for token, what each gives alone (a
 * plain prefill + decode loop over gw_forward), whatever the token budget
 * (prefill chunk size), with requests arriving mid-flight, and when a KV pool
 * too small for all of them forces preemption and recompute. Also: stop
 * strings, cancellation frees the KV, the context limit and overload are
 * refused, and the text-stream helper (stop-string hold-back, UTF-8). */
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include "godwit.h"
#include "server/scheduler.h"
#include "server/text_stream.h"
#include "test.h"
#include "tokenizer/tokenizer.h"

#define N_PROMPTS 5
#define MAX_GEN 20

static const char *prompts[N_PROMPTS] = {
    "The bar-tailed godwit is a bird that",
    "Write a short poem about the sea.\nThe sea",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "Once upon a time, in a small village at the edge of a great forest, there lived an old woodcutter "
    "and his three daughters. The youngest daughter was known throughout the land for",
    "1, 2, 3, 4, 5,",
};
static const int max_gen[N_PROMPTS] = {MAX_GEN, MAX_GEN, MAX_GEN, MAX_GEN, 12};

typedef struct {
    int32_t ids[512];
    int n_ids;             /* tokens reported with logprobs (end-of-generation not included) */
    int completion_tokens; /* from FINISH */
    gw_finish_reason why;
    char text[4096];
    size_t text_len;
} result;

static gw_model *model;
static const gw_tokenizer *tok;
static int32_t *prompt_ids[N_PROMPTS];
static int prompt_len[N_PROMPTS];

/* ---------------------------------------------------------- text stream */

static void test_text_stream(void) {
    gw_text_stream ts;
    const char *stops[] = {"STOP", "\n\n", ""};
    CHECK(gw_text_stream_init(&ts, stops, 3) == 0);
    const char *out;
    size_t len;
    char sent[256] = {0};
#define ADD(piece, fin) (gw_text_stream_add(&ts, piece, strlen(piece), fin, &out, &len) ? \
                         (strncat(sent, out, len), 1) : (strncat(sent, out, len), 0))
    CHECK(ADD("Hello", false) == 0 && !strcmp(sent, "Hello"));
    CHECK(ADD(" ST", false) == 0 && !strcmp(sent, "Hello ")); /* "ST" may start STOP */
    CHECK(ADD("ORM", false) == 0 && !strcmp(sent, "Hello STORM"));
    CHECK(ADD(" S", false) == 0 && !strcmp(sent, "Hello STORM "));
    CHECK(ADD("TO", false) == 0 && !strcmp(sent, "Hello STORM "));
    CHECK(ADD("P and more", false) == 1 && !strcmp(sent, "Hello STORM "));
    CHECK(ADD("later", false) == 1 && !strcmp(sent, "Hello STORM ")); /* closed */
    gw_text_stream_free(&ts);

    CHECK(gw_text_stream_init(&ts, stops, 2) == 0);
    sent[0] = 0;
    CHECK(ADD("a\n", false) == 0 && !strcmp(sent, "a"));
    CHECK(ADD("b\n", true) == 0 && !strcmp(sent, "a\nb\n")); /* final releases all */
    gw_text_stream_free(&ts);

    /* UTF-8: "é" = C3 A9 split across pieces is held until complete */
    CHECK(gw_text_stream_init(&ts, NULL, 0) == 0);
    sent[0] = 0;
    CHECK(ADD("caf\xC3", false) == 0 && !strcmp(sent, "caf"));
    CHECK(ADD("\xA9!", false) == 0 && !strcmp(sent, "caf\xC3\xA9!"));
    CHECK(ADD("\xF0\x9F", false) == 0 && !strcmp(sent, "caf\xC3\xA9!"));
    CHECK(ADD("\x98\x80", false) == 0 && !strcmp(sent, "caf\xC3\xA9!\xF0\x9F\x98\x80"));
    gw_text_stream_free(&ts);
#undef ADD
    CHECK(gw_utf8_complete_prefix("ab\xE2\x82", 4) == 2);
    CHECK(gw_utf8_complete_prefix("ab\xE2\x82\xAC", 5) == 5);
    CHECK(gw_utf8_complete_prefix("ab\xFF", 3) == 3);
    size_t n;
    char *san = gw_utf8_sanitize("a\xFF" "b\xE2\x82", 5, &n);
    CHECK(san && !strcmp(san, "a\xEF\xBF\xBD" "b\xEF\xBF\xBD") && n == 8);
    free(san);
    san = gw_utf8_sanitize("\xED\xA0\x80x", 4, &n); /* a surrogate: 3 ill-formed bytes, 3 U+FFFD */
    CHECK(san && n == 10 && !strcmp(san + 9, "x"));
    free(san);
}

/* --------------------------------------------------------- reference run */

/* One prompt alone: prefill in one pass, then one token per pass, sampling
 * as the scheduler does (history = every token so far). */
static void run_alone_ids(const int32_t *ids, int n_ids, int n_gen, const gw_sampler_params *sp, result *res) {
    char err[256];
    gw_context_params cp = gw_context_default_params();
    cp.n_ctx = 1024;
    cp.n_batch = 512;
    gw_context *c = gw_context_new(model, &cp, err, sizeof err);
    CHECK_MSG(c != NULL, "%s", err);
    const int V = gw_model_n_vocab(model);
    float *logits = malloc(sizeof(float) * V);
    int32_t hist[1024], seqv[512], pos[512];
    int8_t want[512];
    int n = n_ids;
    memcpy(hist, ids, sizeof(int32_t) * n);
    int seq = gw_seq_open(c);
    for (int i = 0; i < n; i++) seqv[i] = seq, pos[i] = i, want[i] = i == n - 1;
    gw_batch b = {n, hist, seqv, pos, want};
    CHECK_MSG(gw_forward(c, &b, logits, err, sizeof err) == 0, "%s", err);
    gw_sampler *smp = gw_sampler_new(sp, V);
    memset(res, 0, sizeof *res);
    res->why = GW_FINISH_LENGTH;
    for (int g = 0; g < n_gen; g++) {
        int32_t t = gw_sample(smp, logits, hist, n);
        hist[n++] = t;
        res->completion_tokens++;
        if (gw_token_is_eog(tok, t)) {
            res->why = GW_FINISH_STOP;
            break;
        }
        res->ids[res->n_ids++] = t;
        if (g == n_gen - 1) break;
        int32_t s1 = seq, p1 = n - 1;
        int8_t w1 = 1;
        gw_batch b1 = {1, &hist[n - 1], &s1, &p1, &w1};
        CHECK_MSG(gw_forward(c, &b1, logits, err, sizeof err) == 0, "%s", err);
    }
    char *text = gw_detokenize(tok, res->ids, (size_t)res->n_ids, false, &res->text_len);
    memcpy(res->text, text, res->text_len + 1);
    free(text);
    gw_sampler_free(smp);
    free(logits);
    gw_context_free(c);
}

static void run_alone(int p, const gw_sampler_params *sp, result *res) {
    run_alone_ids(prompt_ids[p], prompt_len[p], max_gen[p], sp, res);
}

/* ------------------------------------------------------ scheduler runs */

static gw_gen_params gen_params(int p, const gw_sampler_params *sp) {
    gw_gen_params g = {.prompt = prompt_ids[p], .n_prompt = prompt_len[p], .sp = *sp, .max_tokens = max_gen[p],
                       .logprobs = 0, .index = p};
    return g;
}

/* Reads events of ch until `count` requests have finished. */
static void drain(gw_channel *ch, result *res, int count) {
    int finished = 0;
    while (finished < count) {
        gw_event *e = gw_channel_next(ch, 120.0);
        CHECK_MSG(e != NULL, "no event within 120 s");
        if (!e) return;
        result *r = &res[e->index];
        if (e->type == GW_EV_TEXT) {
            for (int i = 0; i < e->n_lp && r->n_ids < 512; i++) r->ids[r->n_ids++] = e->lp[i].id;
            if (r->text_len + e->len < sizeof r->text) {
                memcpy(r->text + r->text_len, e->text, e->len);
                r->text_len += e->len;
                r->text[r->text_len] = 0;
            }
        } else {
            r->why = e->finish;
            r->completion_tokens = e->completion_tokens;
            finished++;
        }
        gw_event_free(e);
    }
}

/* All prompts through a scheduler with these settings; `staggered`: the
 * last two arrive after the first ones have produced tokens. Returns the
 * number of preemptions. */
static uint64_t run_sched(int batch_tokens, int max_running, int n_ctx, bool staggered, bool prefix_cache,
                          const gw_sampler_params *sp, result *res) {
    char err[256];
    gw_sched_params p = gw_sched_default_params();
    p.prefix_cache = prefix_cache;
    p.n_ctx = n_ctx;
    p.batch_tokens = batch_tokens;
    p.max_running = max_running;
    gw_sched *s = gw_sched_new(model, &p, err, sizeof err);
    CHECK_MSG(s != NULL, "%s", err);
    if (!s) return 0;
    memset(res, 0, sizeof(result) * N_PROMPTS);
    gw_channel *ch = gw_channel_new();
    gw_gen_params g[N_PROMPTS];
    for (int i = 0; i < N_PROMPTS; i++) g[i] = gen_params(i, sp);
    int first = staggered ? N_PROMPTS - 2 : N_PROMPTS;
    CHECK(gw_sched_submit(s, ch, g, first, err, sizeof err) == GW_SUBMIT_OK);
    int finished = 0;
    if (staggered) {
        /* wait for a first token, then the rest arrive */
        gw_event *e = gw_channel_next(ch, 120.0);
        CHECK(e != NULL);
        if (e) {
            result *r = &res[e->index];
            if (e->type == GW_EV_TEXT) {
                for (int i = 0; i < e->n_lp; i++) r->ids[r->n_ids++] = e->lp[i].id;
                memcpy(r->text + r->text_len, e->text, e->len);
                r->text_len += e->len;
            } else {
                r->why = e->finish, r->completion_tokens = e->completion_tokens, finished++;
            }
            gw_event_free(e);
        }
        CHECK(gw_sched_submit(s, ch, g + first, N_PROMPTS - first, err, sizeof err) == GW_SUBMIT_OK);
    }
    drain(ch, res, N_PROMPTS - finished);
    gw_channel_release(ch);
    gw_sched_stats st;
    gw_sched_get_stats(s, &st);
    CHECK(st.running == 0 && st.waiting == 0);
    CHECK_MSG(st.kv_free_tokens == st.kv_total_tokens, "KV not all free after the run: %d of %d",
              st.kv_free_tokens, st.kv_total_tokens);
    gw_sched_free(s);
    return st.preemptions;
}

static bool same(const result *a, const result *b, const char *what, int p) {
    bool ok = a->n_ids == b->n_ids && !memcmp(a->ids, b->ids, sizeof(int32_t) * a->n_ids) &&
              a->completion_tokens == b->completion_tokens && a->why == b->why && a->text_len == b->text_len &&
              !memcmp(a->text, b->text, a->text_len);
    if (!ok) {
        fprintf(stderr, "%s: prompt %d differs (%d vs %d ids, %d vs %d tokens, finish %d vs %d)\n", what, p,
                a->n_ids, b->n_ids, a->completion_tokens, b->completion_tokens, a->why, b->why);
        for (int i = 0; i < a->n_ids || i < b->n_ids; i++)
            fprintf(stderr, "  %d: %d %d\n", i, i < a->n_ids ? a->ids[i] : -1, i < b->n_ids ? b->ids[i] : -1);
    }
    return ok;
}

static void compare_all(const result *ref, const result *got, const char *what) {
    for (int p = 0; p < N_PROMPTS; p++) CHECK_MSG(same(&ref[p], &got[p], what, p), "%s", what);
}

static void test_equivalence(void) {
    gw_sampler_params greedy = gw_sampler_default_params();
    greedy.temperature = 0;
    result ref[N_PROMPTS], got[N_PROMPTS];
    for (int p = 0; p < N_PROMPTS; p++) {
        run_alone(p, &greedy, &ref[p]);
        CHECK(ref[p].completion_tokens > 0);
    }
    printf("reference: %s|%s\n", prompts[0], ref[0].text);

    double t0 = (double)clock() / CLOCKS_PER_SEC;
    /* all at once, several token budgets (= prefill chunk sizes); the
     * prefix cache off for the first (the plain path), on for the others */
    static const int budgets[] = {512, 64, 7};
    for (size_t i = 0; i < sizeof budgets / sizeof *budgets; i++) {
        char what[64];
        snprintf(what, sizeof what, "batched, budget %d", budgets[i]);
        uint64_t pre = run_sched(budgets[i], 8, 2048, false, i > 0, &greedy, got);
        CHECK(pre == 0);
        compare_all(ref, got, what);
    }
    /* a pool of 8 blocks of 16 tokens: the prompts take all 8, their
     * completions need several more, so sequences are preempted and
     * recomputed (prefix cache off) */
    uint64_t pre = run_sched(64, 8, 128, false, false, &greedy, got);
    CHECK_MSG(pre > 0, "expected preemptions with a 128-token pool, got %llu", (unsigned long long)pre);
    compare_all(ref, got, "preemption");
    printf("preemptions with a 128-token pool: %llu\n", (unsigned long long)pre);
    /* the same with a budget of 7 tokens, the last two prompts arriving
     * while the first ones decode (prefix cache on) */
    pre = run_sched(7, 8, 128, true, true, &greedy, got);
    CHECK(pre > 0);
    compare_all(ref, got, "preemption, budget 7, staggered arrivals");

    /* seeded sampling: the same draws batched as alone */
    gw_sampler_params sampled = gw_sampler_default_params();
    sampled.temperature = 0.9f;
    sampled.seed = 1234;
    for (int p = 0; p < N_PROMPTS; p++) run_alone(p, &sampled, &ref[p]);
    run_sched(64, 8, 2048, false, true, &sampled, got);
    compare_all(ref, got, "sampled, batched");
    pre = run_sched(64, 8, 128, false, true, &sampled, got);
    compare_all(ref, got, "sampled, preemption");
    printf("scheduler runs: %.1f s CPU\n", (double)clock() / CLOCKS_PER_SEC - t0);
}

/* ------------------------------------------- stop, cancel, limits, load */

static gw_sched *new_sched(int n_ctx, int max_running, int max_waiting) {
    char err[256];
    gw_sched_params p = gw_sched_default_params();
    p.n_ctx = n_ctx;
    p.batch_tokens = 64;
    p.max_running = max_running;
    p.max_waiting = max_waiting;
    gw_sched *s = gw_sched_new(model, &p, err, sizeof err);
    CHECK_MSG(s != NULL, "%s", err);
    return s;
}

static void wait_idle(gw_sched *s, gw_sched_stats *st) {
    for (int i = 0; i < 2000; i++) {
        gw_sched_get_stats(s, st);
        if (st->running == 0 && st->waiting == 0) return;
        usleep(10000);
    }
}

static void test_stop_cancel_limits(void) {
    char err[256];
    gw_sampler_params greedy = gw_sampler_default_params();
    greedy.temperature = 0;
    result ref;
    run_alone(0, &greedy, &ref);
    gw_sched *s = new_sched(256, 4, 0);
    if (!s) return;

    /* a stop string from the middle of the known continuation */
    CHECK(ref.text_len > 12);
    char stop[8];
    memcpy(stop, ref.text + 8, 4);
    stop[4] = 0;
    const char *stops[] = {stop};
    gw_gen_params g = gen_params(0, &greedy);
    g.stops = stops;
    g.n_stops = 1;
    g.index = 0;
    result got[1] = {0};
    gw_channel *ch = gw_channel_new();
    CHECK(gw_sched_submit(s, ch, &g, 1, err, sizeof err) == GW_SUBMIT_OK);
    drain(ch, got, 1);
    gw_channel_release(ch);
    const char *hit = strstr(ref.text, stop);
    CHECK(hit != NULL);
    CHECK_MSG(got[0].why == GW_FINISH_STOP && got[0].text_len == (size_t)(hit - ref.text) &&
                  !memcmp(got[0].text, ref.text, got[0].text_len),
              "stop '%s': got '%s'", stop, got[0].text);

    /* cancellation: a long generation is dropped and its KV freed, and so is
     * one still waiting (max_running 1 below keeps it waiting) */
    gw_sched_stats st;
    gw_sched_get_stats(s, &st);
    int idle_free = st.kv_free_tokens;
    CHECK(idle_free == st.kv_total_tokens);
    g = gen_params(3, &greedy);
    g.max_tokens = 500;
    g.stops = NULL;
    g.n_stops = 0;
    g.index = 0;
    ch = gw_channel_new();
    CHECK(gw_sched_submit(s, ch, &g, 1, err, sizeof err) == GW_SUBMIT_OK);
    int texts = 0;
    gw_event *e;
    while (texts < 3 && (e = gw_channel_next(ch, 120.0))) {
        texts += e->type == GW_EV_TEXT;
        CHECK(e->type == GW_EV_TEXT);
        gw_event_free(e);
    }
    gw_sched_get_stats(s, &st);
    CHECK(st.running == 1 && st.kv_free_tokens < idle_free);
    gw_channel_cancel(ch);
    gw_finish_reason why = GW_FINISH_STOP;
    while ((e = gw_channel_next(ch, 120.0))) {
        bool fin = e->type == GW_EV_FINISH;
        if (fin) why = e->finish;
        gw_event_free(e);
        if (fin) break;
    }
    CHECK(why == GW_FINISH_ABORT);
    gw_channel_release(ch);
    wait_idle(s, &st);
    CHECK_MSG(st.running == 0 && st.kv_free_tokens == idle_free, "after cancel: %d running, %d of %d tokens free",
              st.running, st.kv_free_tokens, idle_free);

    /* the context limit */
    int32_t *longp = malloc(sizeof(int32_t) * 256);
    for (int i = 0; i < 256; i++) longp[i] = prompt_ids[3][i % prompt_len[3]];
    g = gen_params(0, &greedy);
    g.prompt = longp;
    g.n_prompt = gw_sched_max_len(s);
    ch = gw_channel_new();
    CHECK(gw_sched_submit(s, ch, &g, 1, err, sizeof err) == GW_SUBMIT_INVALID);
    CHECK_MSG(strstr(err, "maximum context length is 256") != NULL, "%s", err);
    /* one token short of the limit: a single token of completion, "length" */
    g.n_prompt = gw_sched_max_len(s) - 1;
    g.max_tokens = 100;
    CHECK(gw_sched_submit(s, ch, &g, 1, err, sizeof err) == GW_SUBMIT_OK);
    result lim[1] = {0};
    drain(ch, lim, 1);
    CHECK_MSG(lim[0].completion_tokens == 1 && (lim[0].why == GW_FINISH_LENGTH || lim[0].why == GW_FINISH_STOP),
              "%d tokens, finish %d", lim[0].completion_tokens, lim[0].why);
    gw_channel_release(ch);
    free(longp);
    gw_sched_free(s);

    /* overload: one running, at most 2 waiting */
    s = new_sched(1024, 1, 2);
    if (!s) return;
    ch = gw_channel_new();
    g = gen_params(3, &greedy);
    g.max_tokens = 400;
    CHECK(gw_sched_submit(s, ch, &g, 1, err, sizeof err) == GW_SUBMIT_OK);
    for (int i = 0; i < 2000; i++) { /* until it runs */
        gw_sched_get_stats(s, &st);
        if (st.running == 1) break;
        usleep(10000);
    }
    gw_gen_params three[3] = {g, g, g};
    CHECK(gw_sched_submit(s, ch, three, 3, err, sizeof err) == GW_SUBMIT_OVERLOADED);
    CHECK(strstr(err, "overloaded") != NULL);
    CHECK(gw_sched_submit(s, ch, three, 2, err, sizeof err) == GW_SUBMIT_OK);
    /* shutting down: new work refused, queued work aborted */
    gw_sched_close(s);
    CHECK(gw_sched_submit(s, ch, three, 1, err, sizeof err) == GW_SUBMIT_SHUTDOWN);
    gw_sched_abort_all(s);
    wait_idle(s, &st);
    CHECK(st.running == 0 && st.waiting == 0 && st.kv_free_tokens == st.kv_total_tokens);
    int aborted = 0;
    while ((e = gw_channel_next(ch, 0.5))) {
        aborted += e->type == GW_EV_FINISH && e->finish == GW_FINISH_ABORT;
        gw_event_free(e);
    }
    CHECK_MSG(aborted == 3, "%d aborted", aborted);
    gw_channel_release(ch);
    gw_sched_free(s);
}


/* ------------------------------------------------------------ prefix cache */

#define N_SHARED 4
#define SHARED_GEN 16
static const char *shared_prefix =
    "You are a careful assistant. Answer the question about the bar-tailed godwit in one sentence, using "
    "only facts from the passage.\nPassage: The bar-tailed godwit is a large wader that breeds on the Arctic "
    "tundra and spends the winter on the coasts of Australia and New Zealand. It makes the longest known "
    "non-stop flight of any bird.\nQuestion: ";
static const char *shared_suffix[N_SHARED] = {
    "Where does it breed?\nAnswer:",
    "How far does it fly without stopping?\nAnswer:",
    "Where does it spend the winter?\nAnswer:",
    "What kind of bird is it?\nAnswer:",
};
static int32_t *sh_ids[N_SHARED];
static int sh_len[N_SHARED];
static result sh_ref[N_SHARED];

static gw_sched *prefix_sched(int n_ctx, int batch_tokens, int max_running) {
    char err[256];
    gw_sched_params p = gw_sched_default_params();
    p.n_ctx = n_ctx;
    p.batch_tokens = batch_tokens;
    p.max_running = max_running;
    CHECK(p.prefix_cache); /* on by default */
    gw_sched *s = gw_sched_new(model, &p, err, sizeof err);
    CHECK_MSG(s != NULL, "%s", err);
    return s;
}

/* Runs requests (prompt ids, lengths, optional stop string) through s at
 * once and waits for all of them. */
static void run_requests(gw_sched *s, int count, int32_t *const *ids, const int *lens, const char *stop,
                         result *res) {
    char err[256];
    gw_sampler_params greedy = gw_sampler_default_params();
    greedy.temperature = 0;
    gw_gen_params g[8];
    const char *stops[1] = {stop};
    for (int i = 0; i < count; i++) {
        g[i] = (gw_gen_params){.prompt = ids[i], .n_prompt = lens[i], .sp = greedy, .max_tokens = SHARED_GEN,
                               .logprobs = 0, .index = i, .stops = stop ? stops : NULL, .n_stops = stop ? 1 : 0};
    }
    memset(res, 0, sizeof(result) * count);
    gw_channel *ch = gw_channel_new();
    CHECK(gw_sched_submit(s, ch, g, count, err, sizeof err) == GW_SUBMIT_OK);
    drain(ch, res, count);
    gw_channel_release(ch);
}

static void sched_stats(gw_sched *s, gw_sched_stats *st) {
    wait_idle(s, st);
    gw_sched_get_stats(s, st);
}

/* Tokens the cache gives a prompt of n tokens when `cached` tokens of it
 * are in full cached blocks: whole blocks, never the last token. */
static int expect_hit(int n, int cached) {
    int blocks = (n - 1) / 16, have = cached / 16;
    return 16 * (blocks < have ? blocks : have);
}

/* Tokens a finished request computed: its prompt past the hit, and every
 * generated token but the last (which ended it). */
static int computed(int n_prompt, int hit, const result *r) { return n_prompt - hit + r->completion_tokens - 1; }

static int common_prefix(const int32_t *a, int na, const int32_t *b, int nb) {
    int i = 0;
    while (i < na && i < nb && a[i] == b[i]) i++;
    return i;
}

static void test_prefix_cache(void) {
    gw_sampler_params greedy = gw_sampler_default_params();
    greedy.temperature = 0;
    size_t pl = strlen(shared_prefix);
    for (int i = 0; i < N_SHARED; i++) {
        char text[1024];
        snprintf(text, sizeof text, "%s%s", shared_prefix, shared_suffix[i]);
        (void)pl;
        int64_t n = gw_tokenize(tok, text, strlen(text), gw_tokenizer_add_bos(tok), true, &sh_ids[i]);
        CHECK(n > 48);
        sh_len[i] = (int)n;
        run_alone_ids(sh_ids[i], sh_len[i], SHARED_GEN, &greedy, &sh_ref[i]);
    }
    int common01 = common_prefix(sh_ids[0], sh_len[0], sh_ids[1], sh_len[1]);
    printf("shared prompts: %d %d %d %d tokens, %d in common\n", sh_len[0], sh_len[1], sh_len[2], sh_len[3],
           common01);
    CHECK(common01 >= 48);
    result got[4];
    gw_sched_stats st0, st;

    /* cold, then the same prompt again: identical output, the full blocks of
     * the prompt come from the cache, and exactly that many fewer tokens are
     * computed */
    gw_sched *s = prefix_sched(1024, 64, 4);
    if (!s) return;
    sched_stats(s, &st0);
    run_requests(s, 1, &sh_ids[0], &sh_len[0], NULL, got);
    CHECK_MSG(same(&sh_ref[0], &got[0], "cold", 0), "cold");
    sched_stats(s, &st);
    CHECK_MSG(st.prefix_hits == 0 && st.prefix_queries == (uint64_t)sh_len[0], "cold: %llu hits of %llu",
              (unsigned long long)st.prefix_hits, (unsigned long long)st.prefix_queries);
    CHECK(st.batch_tokens_total - st0.batch_tokens_total == (uint64_t)computed(sh_len[0], 0, &got[0]));
    int cached0 = sh_len[0] + got[0].completion_tokens - 1; /* tokens whose KV it computed */
    CHECK_MSG(st.kv_cached_tokens == cached0 / 16 * 16 && st.kv_idle_tokens == st.kv_cached_tokens,
              "cached %d idle %d, expected %d", st.kv_cached_tokens, st.kv_idle_tokens, cached0 / 16 * 16);
    CHECK(st.kv_free_tokens == st.kv_total_tokens); /* idle cached blocks count as free */
    st0 = st;
    run_requests(s, 1, &sh_ids[0], &sh_len[0], NULL, got);
    CHECK_MSG(same(&sh_ref[0], &got[0], "cache hit", 0), "cache hit");
    sched_stats(s, &st);
    int hit = expect_hit(sh_len[0], cached0);
    CHECK_MSG(st.prefix_hits - st0.prefix_hits == (uint64_t)hit, "hit %llu tokens, expected %d",
              (unsigned long long)(st.prefix_hits - st0.prefix_hits), hit);
    CHECK_MSG(st.batch_tokens_total - st0.batch_tokens_total == (uint64_t)computed(sh_len[0], hit, &got[0]),
              "computed %llu tokens, expected %d", (unsigned long long)(st.batch_tokens_total - st0.batch_tokens_total),
              computed(sh_len[0], hit, &got[0]));
    printf("prefix cache: second run took %d of %d prompt tokens from the cache\n", hit, sh_len[0]);
    /* another question over the same passage: the common blocks */
    st0 = st;
    run_requests(s, 1, &sh_ids[1], &sh_len[1], NULL, got);
    CHECK_MSG(same(&sh_ref[1], &got[0], "shared prefix", 1), "shared prefix");
    sched_stats(s, &st);
    CHECK(st.prefix_hits - st0.prefix_hits == (uint64_t)expect_hit(sh_len[1], common01));

    /* right after a request that ended on a stop string: the same prompt
     * without it, and a prompt that continues into the stopped request's
     * generated tokens (their blocks are cached too) */
    char stop[8];
    CHECK(sh_ref[2].text_len > 24);
    memcpy(stop, sh_ref[2].text + sh_ref[2].text_len - 6, 4);
    stop[4] = 0;
    const char *at = strstr(sh_ref[2].text, stop);
    run_requests(s, 1, &sh_ids[2], &sh_len[2], stop, got);
    CHECK_MSG(got[0].why == GW_FINISH_STOP && at && got[0].text_len == (size_t)(at - sh_ref[2].text) &&
                  !memcmp(got[0].text, sh_ref[2].text, got[0].text_len),
              "stop '%s': got '%s'", stop, got[0].text);
    int stopped_kv = sh_len[2] + got[0].completion_tokens - 1;
    /* continuation: prompt + all but the last two reference tokens */
    int32_t cont[512];
    int n_cont = sh_len[2] + sh_ref[2].n_ids - 2;
    memcpy(cont, sh_ids[2], sizeof(int32_t) * sh_len[2]);
    memcpy(cont + sh_len[2], sh_ref[2].ids, sizeof(int32_t) * (sh_ref[2].n_ids - 2));
    result cref;
    run_alone_ids(cont, n_cont, SHARED_GEN, &greedy, &cref);
    sched_stats(s, &st0);
    int32_t *cp = cont;
    run_requests(s, 1, &cp, &n_cont, NULL, got);
    CHECK_MSG(same(&cref, &got[0], "continuation after a stop string", 0), "continuation");
    sched_stats(s, &st);
    int chit = expect_hit(n_cont, stopped_kv < n_cont ? stopped_kv : n_cont);
    CHECK_MSG(st.prefix_hits - st0.prefix_hits == (uint64_t)chit, "continuation: hit %llu, expected %d",
              (unsigned long long)(st.prefix_hits - st0.prefix_hits), chit);
    CHECK_MSG(chit > sh_len[2] / 16 * 16, "the continuation should reuse generated tokens (%d <= %d)", chit,
              sh_len[2] / 16 * 16);
    run_requests(s, 1, &sh_ids[2], &sh_len[2], NULL, got);
    CHECK_MSG(same(&sh_ref[2], &got[0], "after a stop string", 2), "after a stop string");
    gw_sched_free(s);

    /* prefix-aware admission: three requests at once, two the same and one
     * sharing the passage; the first computes the shared blocks, the others
     * wait a step and start on them (without waiting they would all be
     * admitted in the first step with nothing cached: 0 hits). An unrelated
     * request behind them is not held up. */
    s = prefix_sched(1024, 128, 4);
    if (!s) return;
    int32_t *ids3[4] = {sh_ids[0], sh_ids[0], sh_ids[3], prompt_ids[0]};
    int lens3[4] = {sh_len[0], sh_len[0], sh_len[3], prompt_len[0]};
    run_requests(s, 4, ids3, lens3, NULL, got);
    result ref0;
    run_alone_ids(prompt_ids[0], prompt_len[0], SHARED_GEN, &greedy, &ref0);
    CHECK_MSG(same(&sh_ref[0], &got[0], "grouped", 0) && same(&sh_ref[0], &got[1], "grouped", 1) &&
                  same(&sh_ref[3], &got[2], "grouped", 2) && same(&ref0, &got[3], "grouped", 3),
              "grouped requests");
    sched_stats(s, &st);
    int common03 = common_prefix(sh_ids[0], sh_len[0], sh_ids[3], sh_len[3]);
    uint64_t want = (uint64_t)(expect_hit(sh_len[0], sh_len[0]) + expect_hit(sh_len[3], common03));
    CHECK_MSG(st.prefix_hits == want, "grouped: %llu hits, expected %llu", (unsigned long long)st.prefix_hits,
              (unsigned long long)want);
    gw_sched_free(s);

    /* a pool of 10 blocks for four requests of ~6 blocks that share ~4:
     * preemption and eviction, twice over; outputs unchanged, and at the end
     * every block is free or idle in the cache */
    s = prefix_sched(160, 32, 4);
    if (!s) return;
    for (int round = 0; round < 2; round++) {
        run_requests(s, N_SHARED, sh_ids, sh_len, NULL, got);
        for (int i = 0; i < N_SHARED; i++) CHECK_MSG(same(&sh_ref[i], &got[i], "tiny pool", i), "tiny pool, round %d", round);
    }
    sched_stats(s, &st);
    printf("tiny pool: %llu preemptions, %llu blocks evicted, %llu of %llu prompt tokens from the cache\n",
           (unsigned long long)st.preemptions, (unsigned long long)st.prefix_evicted_blocks,
           (unsigned long long)st.prefix_hits, (unsigned long long)st.prefix_queries);
    CHECK(st.preemptions > 0 && st.prefix_evicted_blocks > 0 && st.prefix_hits > 0);
    CHECK_MSG(st.kv_free_tokens == st.kv_total_tokens && st.kv_idle_tokens == st.kv_cached_tokens &&
                  st.kv_cached_tokens > 0,
              "idle: %d of %d free, %d cached, %d idle", st.kv_free_tokens, st.kv_total_tokens, st.kv_cached_tokens,
              st.kv_idle_tokens);
    gw_sched_free(s);
    for (int i = 0; i < N_SHARED; i++) free(sh_ids[i]);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    test_text_stream();
    char err[256];
    model = gw_model_load(test_model_path(), err, sizeof err);
    CHECK_MSG(model != NULL, "%s", err);
    if (!model) return test_finish("test_scheduler");
    tok = gw_model_tokenizer(model);
    for (int p = 0; p < N_PROMPTS; p++) {
        int64_t n = gw_tokenize(tok, prompts[p], strlen(prompts[p]), gw_tokenizer_add_bos(tok), true,
                                &prompt_ids[p]);
        CHECK(n > 0);
        prompt_len[p] = (int)n;
        printf("prompt %d: %d tokens\n", p, prompt_len[p]);
    }
    test_equivalence();
    test_stop_cancel_limits();
    test_prefix_cache();
    for (int p = 0; p < N_PROMPTS; p++) free(prompt_ids[p]);
    gw_model_free(model);
    return test_finish("test_scheduler");
}
