/* godwit eval: RULER-style tasks, passkey retrieval, the needle-in-a-haystack
 * grid, and reports over result files.
 *
 * A run's path: for each (task, length, depth, sample index) not already in
 * the results file -> gw_eval_sample_make (src/eval/ruler.c: prompt fitted to the
 * length with the model's own tokenizer) -> gw_eval_generate (greedy,
 * src/eval/harness.c) -> gw_eval_sample_score -> one JSON line appended to the
 * results file. The summary is then computed from the file's records. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "eval/harness.h"
#include "eval/ruler.h"
#include "godwit.h"

#define MAX_LIST 64

typedef enum { MODE_RULER, MODE_PASSKEY, MODE_NEEDLE } eval_mode;

typedef struct {
    eval_mode mode;
    const char *model;
    const char *out;          /* results file (JSON lines), NULL: none */
    const char *config;       /* label of the engine configuration */
    const char *haystack;     /* essay haystack text file */
    const char *grid;         /* needle: output prefix for .json / .svg */
    bool tasks[GW_TASK_COUNT];
    int lengths[MAX_LIST], n_lengths;
    double depths[MAX_LIST];
    int n_depths;
    int samples;
    uint64_t seed;
    int threads, batch, kv_block, kv_type, device;
    gw_kv_select select;
    int stream_sink, stream_window; /* --streaming S,W; window 0: off */
    bool no_template;
    bool quiet;
} eval_options;

static void usage_eval(FILE *f) {
    fprintf(f,
            "usage: godwit eval ruler   [-m MODEL] --tasks LIST --length L[,L...] [options]\n"
            "       godwit eval passkey [-m MODEL] --length L[,L...] [options]\n"
            "       godwit eval needle  [-m MODEL] --length L[,L...] [--depths N|LIST] [--grid PREFIX] [options]\n"
            "       godwit eval report  FILE...\n"
            "       godwit eval compare FILE_A FILE_B\n\n"
            "Long-context evaluation with greedy decoding. 'ruler' runs re-implementations of\n"
            "RULER's synthetic tasks; 'passkey' LM-Infinite's passkey retrieval; 'needle' a grid\n"
            "of single needles (niah_single_2) over lengths x depths, written as JSON and an SVG\n"
            "heatmap. Each prompt is fitted with the model's tokenizer so that prompt + answer\n"
            "budget <= L tokens, wrapped in the model's chat template with the answer prefix\n"
            "after it. Score: percentage of reference strings found in the output.\n"
            "Results go to --out as one JSON line per sample; rerunning with the same --out\n"
            "skips the samples already there (resume). 'report' prints the summary of result\n"
            "files, 'compare' two of them side by side.\n\n"
            "  -m, --model FILE        model (default: the SmolLM2 default model)\n"
            "      --tasks LIST        comma-separated tasks or 'all' (ruler):\n"
            "                          niah_single_1, niah_single_2, niah_single_3, niah_single_words,\n"
            "                          niah_multikey_1, niah_multikey_2, niah_multikey_3,\n"
            "                          niah_multivalue, niah_multiquery, vt, cwe, fwe\n"
            "  -l, --length LIST       prompt + answer lengths in tokens, e.g. 1k,2k,4k (required)\n"
            "      --samples N         samples per task and length (default: 10; needle: 1 per cell)\n"
            "      --depths N|LIST     needle: N depths evenly from 0 to 1, or a list such as\n"
            "                          0,0.25,0.5 (default: 11)\n"
            "      --seed N            seed of the generators (default: 42)\n"
            "  -o, --out FILE          append results to FILE (JSON lines) and resume from it\n"
            "      --grid PREFIX       needle: write PREFIX.json and PREFIX.svg (default: from --out,\n"
            "                          else needle-grid)\n"
            "      --config NAME       label for this engine configuration (default: dense, or the\n"
            "                          --kv-type when it is not f16)\n"
            "      --haystack FILE     essay text (default: ../shared/data/war_and_peace.txt)\n"
            "      --no-template       do not apply the chat template\n"
            "  -t, --threads N         threads (default: all cores)\n"
            "  -b, --batch N           tokens per forward pass while prefilling (default: 512)\n"
            KV_HELP KV_SELECT_HELP
            "      --streaming S,W     attention sinks + a sliding window (StreamingLLM): keep the first\n"
            "                          S tokens and the last W of the prompt, evict the middle as it\n"
            "                          is fed (f16 KV; default: off)\n"
            DEVICE_HELP
            "  -q, --quiet             no per-sample progress lines\n");
}

static void parse_lengths(const char *s, eval_options *o) {
    char *list = strdup(s), *save = NULL;
    o->n_lengths = 0;
    for (char *p = strtok_r(list, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
        if (o->n_lengths == MAX_LIST) die("%s", "at most 64 lengths");
        int v = parse_size(p, "--length");
        if (v < 64) die("%s", "--length must be at least 64 tokens");
        o->lengths[o->n_lengths++] = v;
    }
    free(list);
}

static void parse_depths(const char *s, eval_options *o) {
    if (!strchr(s, ',') && !strchr(s, '.')) {
        int n = parse_int(s, "--depths");
        if (n < 1 || n > MAX_LIST) die("%s", "--depths N must be in 1..64");
        o->n_depths = n;
        for (int i = 0; i < n; i++) o->depths[i] = n == 1 ? 0.5 : (double)i / (n - 1);
        return;
    }
    char *list = strdup(s), *save = NULL;
    o->n_depths = 0;
    for (char *p = strtok_r(list, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
        if (o->n_depths == MAX_LIST) die("%s", "at most 64 depths");
        double d = parse_float(p, "--depths");
        if (d < 0 || d > 1) die("%s", "depths must be in [0, 1]");
        o->depths[o->n_depths++] = d;
    }
    free(list);
}

static void parse_tasks(const char *s, eval_options *o) {
    char *list = strdup(s), *save = NULL;
    for (char *p = strtok_r(list, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
        int t = gw_task_lookup(p);
        if (t < 0 || t == GW_TASK_PASSKEY) die("unknown task '%s' (see godwit eval --help)", p);
        if (t == GW_TASK_COUNT) {
            for (int i = 0; i < GW_TASK_COUNT; i++) o->tasks[i] = i != GW_TASK_PASSKEY;
        } else {
            o->tasks[t] = true;
        }
    }
    free(list);
}

static void parse_eval_options(int argc, char **argv, eval_mode mode, eval_options *o) {
    memset(o, 0, sizeof *o);
    o->mode = mode;
    o->config = NULL;
    o->samples = -1;
    o->seed = 42;
    o->batch = 512;
    const char *tasks = NULL, *depths = "11";
    for (int i = 3; i < argc; i++) {
        const char *a = argv[i];
#define NEXT() (i + 1 < argc ? argv[++i] : (die("option %s needs a value", a), ""))
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage_eval(stdout);
            exit(0);
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) o->model = NEXT();
        else if (!strcmp(a, "--tasks") && o->mode == MODE_RULER) tasks = NEXT();
        else if (!strcmp(a, "-l") || !strcmp(a, "--length") || !strcmp(a, "--lengths")) parse_lengths(NEXT(), o);
        else if (!strcmp(a, "--samples")) o->samples = parse_int(NEXT(), a);
        else if (!strcmp(a, "--depths") && o->mode == MODE_NEEDLE) depths = NEXT();
        else if (!strcmp(a, "--seed")) o->seed = strtoull(NEXT(), NULL, 10);
        else if (!strcmp(a, "-o") || !strcmp(a, "--out")) o->out = NEXT();
        else if (!strcmp(a, "--grid") && o->mode == MODE_NEEDLE) o->grid = NEXT();
        else if (!strcmp(a, "--config")) o->config = NEXT();
        else if (!strcmp(a, "--haystack")) o->haystack = NEXT();
        else if (!strcmp(a, "--no-template")) o->no_template = true;
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) o->threads = parse_int(NEXT(), a);
        else if (!strcmp(a, "-b") || !strcmp(a, "--batch")) o->batch = parse_int(NEXT(), a);
        else if (!strcmp(a, "--kv-block")) o->kv_block = parse_int(NEXT(), a);
        else if (!strcmp(a, "--kv-type")) o->kv_type = parse_kv_type(NEXT());
        else if (!strcmp(a, "--kv-select")) parse_kv_select(NEXT(), &o->select);
        else if (!strcmp(a, "--streaming")) parse_streaming(NEXT(), &o->stream_sink, &o->stream_window);
        else if (!strcmp(a, "--device")) o->device = parse_device(NEXT());
        else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) o->quiet = true;
        else {
            fprintf(stderr, "godwit eval: unknown option '%s'\n\n", a);
            usage_eval(stderr);
            exit(2);
        }
#undef NEXT
    }
    if (o->mode == MODE_RULER) {
        if (!tasks) die("%s", "give the tasks with --tasks LIST (or --tasks all)");
        parse_tasks(tasks, o);
    } else if (o->mode == MODE_PASSKEY) {
        o->tasks[GW_TASK_PASSKEY] = true;
    } else {
        o->tasks[GW_TASK_NIAH_SINGLE_2] = true;
        parse_depths(depths, o);
    }
    if (o->n_lengths == 0) die("%s", "give the lengths with --length L[,L...]");
    if (o->samples < 0) o->samples = o->mode == MODE_NEEDLE ? 1 : 10;
    if (o->samples == 0) die("%s", "--samples must be >= 1");
    if (!o->config) {
        static char label[64];
        if (o->select.policy != GW_SELECT_NONE || o->stream_window > 0)
            describe_kv_policy(&o->select, o->stream_sink, o->stream_window, label, sizeof label);
        else snprintf(label, sizeof label, "%s", o->kv_type == GW_KV_F16 ? "dense" : gw_kv_type_name(o->kv_type));
        o->config = label;
    }
    if (o->select.policy != GW_SELECT_NONE && o->kv_type != GW_KV_F16 && o->device == GW_DEVICE_CUDA)
        die("%s", "--kv-select with --kv-type int8/int4 is not available with --device cuda yet");
    if (o->stream_window > 0 && (o->select.policy != GW_SELECT_NONE || o->kv_type != GW_KV_F16))
        die("%s", "--streaming needs the f16 KV cache and no --kv-select for now");
    if (o->threads < 0 || o->batch <= 0 || o->kv_block < 0 || o->kv_block > 4096)
        die("%s", "invalid --threads, --batch or --kv-block");
}

/* One unit of work: a sample of a task at a length (and depth). */
typedef struct {
    gw_task task;
    int length, index;
    double depth;
} job;

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s && s[1] ? s + 1 : path;
}

static void fmt_duration(double s, char *buf, size_t n) {
    if (s < 60) snprintf(buf, n, "%.0fs", s);
    else if (s < 3600) snprintf(buf, n, "%dm%02ds", (int)s / 60, (int)s % 60);
    else snprintf(buf, n, "%dh%02dm", (int)s / 3600, (int)s % 3600 / 60);
}

/* Appends a copy of r (its strings duplicated). */
static void add_record(gw_eval_records *rs, const gw_eval_record *r) {
    if (rs->n == rs->cap) {
        rs->cap = rs->cap ? 2 * rs->cap : 64;
        rs->v = realloc(rs->v, sizeof *rs->v * rs->cap);
    }
    gw_eval_record c = *r;
    c.model = strdup(r->model);
    c.config = strdup(r->config);
    c.task = strdup(r->task);
    rs->v[rs->n++] = c;
}

/* Keeps the records of this run's model/config/seed and tasks/lengths. */
static void select_records(const gw_eval_records *all, const eval_options *o, const char *model,
                           gw_eval_records *out) {
    memset(out, 0, sizeof *out);
    for (int i = 0; i < all->n; i++) {
        const gw_eval_record *r = &all->v[i];
        int t = gw_task_lookup(r->task);
        bool len_ok = false;
        for (int li = 0; li < o->n_lengths; li++) len_ok |= r->length == o->lengths[li];
        if (t < 0 || t >= GW_TASK_COUNT || !o->tasks[t] || !len_ok || r->seed != o->seed ||
            strcmp(r->model, model) || strcmp(r->config, o->config))
            continue;
        if (o->mode == MODE_NEEDLE) {
            bool depth_ok = false;
            for (int di = 0; di < o->n_depths; di++) depth_ok |= fabs(r->depth - o->depths[di]) < 1e-9;
            if (!depth_ok) continue;
        } else if (r->index >= o->samples) {
            continue;
        }
        add_record(out, r);
    }
}


/* Whether a sample is in the results file already. Needle records carry the
 * requested depth; ruler/passkey records the depth the generator chose, so
 * those match on everything else. */
static bool already_done(const gw_eval_records *done, const eval_options *o, const char *model, gw_task t,
                         int length, int index, double depth) {
    if (o->mode == MODE_NEEDLE)
        return gw_eval_records_find(done, model, o->config, gw_task_name(t), length, index, o->seed, depth) != NULL;
    for (int i = 0; i < done->n; i++) {
        const gw_eval_record *r = &done->v[i];
        if (r->length == length && r->index == index && r->seed == o->seed && !strcmp(r->task, gw_task_name(t)) &&
            !strcmp(r->model, model) && !strcmp(r->config, o->config))
            return true;
    }
    return false;
}

static void print_needle_grid(const eval_options *o, const gw_eval_records *recs, const char *model) {
    int nl = o->n_lengths, nd = o->n_depths;
    double *scores = malloc(sizeof(double) * nl * nd);
    for (int li = 0; li < nl; li++)
        for (int di = 0; di < nd; di++) {
            double sum = 0;
            int n = 0;
            for (int i = 0; i < recs->n; i++)
                if (recs->v[i].length == o->lengths[li] && fabs(recs->v[i].depth - o->depths[di]) < 1e-9) {
                    sum += recs->v[i].score;
                    n++;
                }
            scores[li * nd + di] = n ? sum / n : NAN;
        }
    printf("needle grid (niah_single_2, mean score per cell), %s, config %s\n%8s", model, o->config, "depth");
    for (int li = 0; li < nl; li++) printf(" %7d", o->lengths[li]);
    printf("\n");
    for (int di = 0; di < nd; di++) {
        printf("%7.0f%%", o->depths[di] * 100);
        for (int li = 0; li < nl; li++) {
            double s = scores[li * nd + di];
            if (isnan(s)) printf(" %7s", "-");
            else printf(" %7.0f", s);
        }
        printf("\n");
    }
    char prefix[1024], json[1100], svg[1100], title[512];
    if (o->grid) {
        snprintf(prefix, sizeof prefix, "%s", o->grid);
    } else if (o->out) {
        snprintf(prefix, sizeof prefix, "%s", o->out);
        char *dot = strrchr(prefix, '.');
        if (dot && !strcmp(dot, ".jsonl")) *dot = 0;
        strncat(prefix, ".grid", sizeof prefix - strlen(prefix) - 1);
    } else {
        snprintf(prefix, sizeof prefix, "needle-grid");
    }
    snprintf(json, sizeof json, "%s.json", prefix);
    snprintf(svg, sizeof svg, "%s.svg", prefix);
    snprintf(title, sizeof title, "Needle in a haystack: %s (%s)", model, o->config);
    if (gw_eval_write_grid_json(json, model, o->config, o->lengths, nl, o->depths, nd, scores) != 0 ||
        gw_eval_write_grid_svg(svg, title, o->lengths, nl, o->depths, nd, scores) != 0)
        die("cannot write the grid files %s.{json,svg}", prefix);
    printf("grid written to %s and %s\n", json, svg);
    free(scores);
}

static int run_eval(const eval_options *o) {
    const char *path = resolve_model(o->model);
    const char *model_name = base_name(path);
    char err[512];

    /* results already there (resume) */
    gw_eval_records done = {0};
    if (o->out && gw_eval_records_load(o->out, true, &done, err, sizeof err) != 0) die("%s", err);

    /* the work list, minus what is done */
    int max_jobs = GW_TASK_COUNT * o->n_lengths * (o->mode == MODE_NEEDLE ? o->n_depths : 1) * o->samples;
    job *jobs = malloc(sizeof(job) * (max_jobs > 0 ? max_jobs : 1));
    int n_jobs = 0, n_skipped = 0, max_length = 0;
    bool need_corpus = false;
    for (int li = 0; li < o->n_lengths; li++) {
        if (o->lengths[li] > max_length) max_length = o->lengths[li];
        for (int t = 0; t < GW_TASK_COUNT; t++) {
            if (!o->tasks[t]) continue;
            int nd = o->mode == MODE_NEEDLE ? o->n_depths : 1;
            for (int di = 0; di < nd; di++)
                for (int k = 0; k < o->samples; k++) {
                    double depth = o->mode == MODE_NEEDLE ? o->depths[di] : -1;
                    if (already_done(&done, o, model_name, (gw_task)t, o->lengths[li], k, depth)) {
                        n_skipped++;
                        continue;
                    }
                    jobs[n_jobs++] = (job){t, o->lengths[li], k, depth};
                    if (t != GW_TASK_NIAH_SINGLE_1 && t != GW_TASK_NIAH_MULTIKEY_2 && t != GW_TASK_NIAH_MULTIKEY_3 &&
                        t != GW_TASK_VT && t != GW_TASK_CWE && t != GW_TASK_FWE && t != GW_TASK_PASSKEY)
                        need_corpus = true;
                }
        }
    }
    if (n_skipped) fprintf(stderr, "%s: %d samples already done, %d to run\n", o->out, n_skipped, n_jobs);

    gw_model *m = NULL;
    gw_context *ctx = NULL;
    gw_corpus *corpus = NULL;
    char *hay = NULL;
    FILE *out = NULL;
    if (n_jobs > 0) {
        if (need_corpus) {
            const char *hp = o->haystack ? o->haystack : resolve_data_file("war_and_peace.txt");
            if (!hp) die("%s", "the essay haystack ../shared/data/war_and_peace.txt was not found: pass --haystack FILE");
            size_t hl;
            hay = read_file(hp, &hl);
            corpus = gw_corpus_new(hay, hl);
            if (!corpus || gw_corpus_n_sentences(corpus) == 0) die("no sentences in the haystack file %s", hp);
        }
        double t0 = now_s();
        fprintf(stderr, "loading %s ...", path);
        m = gw_model_load(path, err, sizeof err);
        if (!m) {
            fputc('\n', stderr);
            die("%s", err);
        }
        if (max_length > gw_model_n_ctx_train(m)) {
            fputc('\n', stderr);
            snprintf(err, sizeof err, "length %d exceeds the model's trained context of %d tokens", max_length,
                     gw_model_n_ctx_train(m));
            die("%s", err);
        }
        if (o->stream_window > 0 && (int64_t)o->stream_sink + o->stream_window > gw_model_n_ctx_train(m)) {
            fputc('\n', stderr);
            snprintf(err, sizeof err, "--streaming: %d + %d exceeds the model's trained context %d", o->stream_sink,
                     o->stream_window, gw_model_n_ctx_train(m));
            die("%s", err);
        }
        /* streaming: a prefill chunk must fit in the window */
        const int batch = o->stream_window > 0 && o->batch > o->stream_window ? o->stream_window : o->batch;
        gw_context_params cp = {.n_ctx = max_length, .n_batch = batch, .n_threads = o->threads,
                                .kv_block_size = o->kv_block, .device = o->device, .kv_type = o->kv_type};
        ctx = gw_context_new(m, &cp, err, sizeof err);
        if (!ctx) {
            fputc('\n', stderr);
            die("%s", err);
        }
        fprintf(stderr, " done in %.2f s (%d threads)\n", now_s() - t0, gw_context_n_threads(ctx));
        if (o->out) {
            out = fopen(o->out, "ab");
            if (!out) die("cannot open the results file '%s' for appending", o->out);
        }
    }

    gw_eval_engine eng;
    if (m) gw_eval_engine_init(&eng, m, ctx, !o->no_template);
    eng.select = o->select;
    eng.stream_sink = o->stream_sink;
    eng.stream_window = o->stream_window;
    char select_desc[64];
    describe_kv_policy(&o->select, o->stream_sink, o->stream_window, select_desc, sizeof select_desc);
    if (m && eng.fmt == GW_CHAT_UNKNOWN && !o->no_template)
        fprintf(stderr, "note: the model has no chat template godwit knows; prompts are plain text\n");
    gw_eval_records fresh = {0};
    double t_start = now_s();
    for (int j = 0; j < n_jobs; j++) {
        const job *jb = &jobs[j];
        gw_eval_sample_params sp = {.task = jb->task, .length = jb->length, .seed = o->seed, .index = jb->index,
                               .depth = jb->depth, .corpus = corpus, .count = gw_eval_count_tokens,
                               .count_user = &eng};
        gw_eval_sample s;
        if (gw_eval_sample_make(&sp, &s, err, sizeof err) != 0) die("%s", err);
        gw_eval_output res;
        if (gw_eval_generate(&eng, &s, &res, err, sizeof err) != 0) die("%s", err);
        gw_eval_record r = {
            .model = (char *)model_name, .config = (char *)o->config, .task = (char *)gw_task_name(jb->task),
            .length = jb->length, .index = jb->index, .seed = o->seed, .depth = s.depth,
            .score = gw_eval_sample_score(&s, res.prediction), .n_prompt_tokens = res.n_prompt,
            .n_generated = res.n_generated,
            .prefill_tok_s = res.prefill_s > 0 ? res.n_prompt / res.prefill_s : 0,
            .decode_tok_s = res.decode_s > 0 && res.n_generated > 1 ? (res.n_generated - 1) / res.decode_s : 0,
            .kv_type = gw_kv_type_name(o->kv_type),
            .kv_bytes_per_token = (int)gw_context_kv_bytes_per_token(ctx),
            .kv_select = select_desc, .n_kv_kept = res.n_kv_kept};
        /* the needle grid's cells are the requested depths */
        if (o->mode == MODE_NEEDLE) r.depth = jb->depth;
        if (out && gw_eval_record_write(out, &r, res.prediction, &s) != 0)
            die("cannot write to the results file '%s'", o->out);
        add_record(&fresh, &r);
        if (!o->quiet) {
            double el = now_s() - t_start, eta = el / (j + 1) * (n_jobs - j - 1);
            char e1[32], e2[32];
            fmt_duration(el, e1, sizeof e1);
            fmt_duration(eta, e2, sizeof e2);
            fprintf(stderr, "[%d/%d] %-17s len %-6d #%-3d score %5.1f  (%d tokens, %.0f tok/s prefill)  %s, ETA %s\n",
                    j + 1, n_jobs, gw_task_name(jb->task), jb->length, jb->index, r.score, res.n_prompt,
                    r.prefill_tok_s, e1, e2);
        }
        gw_eval_output_free(&res);
        gw_eval_sample_free(&s);
    }
    if (out) fclose(out);

    /* summary over everything this run asked for: resumed + fresh records */
    gw_eval_records all = {0};
    for (int i = 0; i < done.n; i++) add_record(&all, &done.v[i]);
    for (int i = 0; i < fresh.n; i++) add_record(&all, &fresh.v[i]);
    gw_eval_records mine;
    select_records(&all, o, model_name, &mine);
    if (o->mode == MODE_NEEDLE) {
        print_needle_grid(o, &mine, model_name);
    } else {
        gw_eval_groups g;
        gw_eval_group_records(&mine, false, &g);
        gw_eval_print_summary(stdout, &g);
        gw_eval_groups_free(&g);
    }
    gw_eval_records_free(&mine);
    gw_eval_records_free(&all);
    gw_eval_records_free(&fresh);
    gw_eval_records_free(&done);
    free(jobs);
    gw_corpus_free(corpus);
    free(hay);
    if (ctx) gw_context_free(ctx);
    if (m) gw_model_free(m);
    return 0;
}

static int cmd_report(int argc, char **argv) {
    if (argc < 4) die("%s", "usage: godwit eval report FILE...");
    char err[512];
    for (int i = 3; i < argc; i++) {
        gw_eval_records r;
        if (gw_eval_records_load(argv[i], false, &r, err, sizeof err) != 0) die("%s", err);
        if (r.n == 0) die("no result records in '%s'", argv[i]);
        gw_eval_groups g;
        gw_eval_group_records(&r, false, &g);
        printf("%s\n", argv[i]);
        gw_eval_print_summary(stdout, &g);
        gw_eval_groups_free(&g);
        gw_eval_records_free(&r);
    }
    return 0;
}

static int cmd_compare(int argc, char **argv) {
    if (argc != 5) die("%s", "usage: godwit eval compare FILE_A FILE_B");
    char err[512];
    gw_eval_records ra, rb;
    if (gw_eval_records_load(argv[3], false, &ra, err, sizeof err) != 0) die("%s", err);
    if (gw_eval_records_load(argv[4], false, &rb, err, sizeof err) != 0) die("%s", err);
    if (ra.n == 0) die("no result records in '%s'", argv[3]);
    if (rb.n == 0) die("no result records in '%s'", argv[4]);
    gw_eval_groups ga, gb;
    gw_eval_group_records(&ra, false, &ga);
    gw_eval_group_records(&rb, false, &gb);
    gw_eval_print_compare(stdout, &ga, argv[3], &gb, argv[4]);
    gw_eval_groups_free(&ga);
    gw_eval_groups_free(&gb);
    gw_eval_records_free(&ra);
    gw_eval_records_free(&rb);
    return 0;
}

int cmd_eval(int argc, char **argv) {
    if (argc < 3 || !strcmp(argv[2], "-h") || !strcmp(argv[2], "--help")) {
        usage_eval(argc < 3 ? stderr : stdout);
        return argc < 3 ? 2 : 0;
    }
    const char *sub = argv[2];
    if (!strcmp(sub, "report")) return cmd_report(argc, argv);
    if (!strcmp(sub, "compare")) return cmd_compare(argc, argv);
    eval_mode mode;
    if (!strcmp(sub, "ruler")) mode = MODE_RULER;
    else if (!strcmp(sub, "passkey")) mode = MODE_PASSKEY;
    else if (!strcmp(sub, "needle")) mode = MODE_NEEDLE;
    else {
        fprintf(stderr, "godwit eval: unknown subcommand '%s'\n\n", sub);
        usage_eval(stderr);
        return 2;
    }
    eval_options o;
    parse_eval_options(argc, argv, mode, &o);
    return run_eval(&o);
}
