/* godwit command-line interface.
 *   godwit run   -m MODEL -p PROMPT [options]   generate a continuation
 *   godwit chat  -m MODEL [options]             interactive chat (chat template, KV kept)
 *   godwit info  -m MODEL                       print the model's metadata and tensors
 *   godwit ppl / bench / eval                   perplexity, speed, long-context tasks (eval.c)
 * A request's path: text -> gw_tokenize -> gw_forward over prompt chunks
 * (prefill) -> gw_sample -> gw_forward one token at a time (decode) ->
 * gw_token_to_piece -> stdout. */
#include <errno.h>
#include <math.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "eval/ppl.h"
#include "godwit.h"
#include "model/gguf.h"
#include "model/tensor_types.h"
#include "tokenizer/tokenizer.h"

#define MAX_STOPS 8

typedef struct {
    const char *model;
    const char *prompt;
    const char *prompt_file;
    const char *system;
    int n_predict;
    int n_ctx;
    int n_batch;
    int n_threads;
    int kv_block;         /* 0: the library's default */
    int kv_type;
    gw_kv_select select;  /* run: compress the prompt's KV */
    int device;
    int stream_sink, stream_window; /* --streaming S,W; window 0: off */
    bool chat_template;   /* run: wrap the prompt as one user turn */
    bool no_bos;
    bool verbose;
    const char *stops[MAX_STOPS];
    int n_stops;
    gw_sampler_params sp;
} options;

/* ------------------------------------------------------------------ usage */

#define STREAMING_HELP \
    "      --streaming S,W     keep the first S tokens (attention sinks) and the last W, evict\n" \
    "                          the middle (StreamingLLM; e.g. 4,1020): the KV cache holds S+W\n" \
    "                          tokens and -c is not used; 0,0 = off (default: off)\n"

static const char *common_help =
    "  -m, --model FILE        GGUF model (default: $GODWIT_MODEL, else models/" DEFAULT_MODEL_FILE
    ",\n"
    "                          fetched by scripts/fetch_model.sh)\n"
    "  -t, --threads N         threads (default: all cores)\n"
    "  -c, --ctx N             context size in tokens (default: 4096, at most the model's)\n"
    "  -b, --batch N           tokens per forward pass while prefilling (default: 512)\n"
    KV_HELP
    STREAMING_HELP
    DEVICE_HELP
    "  -n, --n-predict N       tokens to generate (default: 128 for run, 512 per chat turn)\n"
    "      --temp T            temperature; 0 = greedy (default: 0.8)\n"
    "      --top-k K           keep the K most likely tokens; 0 = off (default: 40)\n"
    "      --top-p P           nucleus sampling; 1 = off (default: 0.95)\n"
    "      --min-p P           drop tokens below P x the top probability; 0 = off (default: 0.05)\n"
    "      --repeat-penalty R  penalize recent tokens; 1 = off (default: 1.0)\n"
    "      --repeat-last-n N   how many recent tokens the penalty looks at (default: 64)\n"
    "  -s, --seed N            random seed (default: fixed, so runs repeat)\n"
    "      --stop STR          stop when STR is generated (repeatable, up to 8)\n"
    "  -v, --verbose           print the model description and timings in detail\n"
    "  -h, --help              this help\n";

static void usage_main(FILE *f) {
    fprintf(f,
            "godwit - long-context LLM inference engine\n\n"
            "usage: godwit <command> [options]\n\n"
            "commands:\n"
            "  run    generate a continuation of a prompt\n"
            "  chat   interactive chat with the model's chat template\n"
            "  ppl    perplexity of a text file (llama.cpp's chunks or sliding windows)\n"
            "  bench  prompt-processing and generation speed (llama-bench's tests)\n"
            "  logits raw logits of a token-id prompt and its greedy continuation (for checks)\n"
            "  eval   long-context evaluation: RULER-style tasks, passkey, needle grid\n"
            "  serve  OpenAI-compatible HTTP server with continuous batching\n"
            "  info   print a GGUF file's metadata and tensors\n\n"
            "Run 'godwit <command> --help' for a command's options.\n");
}

static void usage_run(FILE *f) {
    fprintf(f,
            "usage: godwit run [-m MODEL] (-p PROMPT | -f FILE) [options]\n\n"
            "Generates a continuation of PROMPT and streams it to stdout; speed figures go to\n"
            "stderr at the end.\n\n"
            "  -p, --prompt TEXT       the prompt\n"
            "  -f, --file FILE         read the prompt from FILE ('-' for stdin)\n"
            "      --chat              wrap the prompt as a user turn with the chat template\n"
            "      --system TEXT       system message (with --chat)\n"
            "      --no-bos            do not add the BOS token even if the model asks for it\n"
            KV_SELECT_HELP
            "%s",
            common_help);
}

static void usage_chat(FILE *f) {
    fprintf(f,
            "usage: godwit chat [-m MODEL] [options]\n\n"
            "Interactive chat: type a message and press Enter; an empty line or EOF (Ctrl-D)\n"
            "ends the chat, '/reset' clears the conversation. The conversation's KV cache is\n"
            "kept between turns, so only new text is prefilled.\n\n"
            "      --system TEXT       system message\n"
            KV_SELECT_HELP
            "                          chat: after each turn's prompt the whole conversation's KV is\n"
            "                          compressed to the budget (B tokens, or 1/Nth of it)\n"
            "%s",
            common_help);
}

static void usage_info(FILE *f) {
    fprintf(f, "usage: godwit info [-m MODEL] [--tensors]\n\n"
               "Prints the GGUF file's metadata (and with --tensors every tensor).\n");
}

/* ---------------------------------------------------------------- options */

/* Parses argv[2..]; returns false if --help was asked. */
static bool parse_options(int argc, char **argv, options *o, void (*usage)(FILE *), bool is_run) {
    memset(o, 0, sizeof *o);
    o->n_predict = is_run ? 128 : 512;
    o->n_ctx = 4096;
    o->n_batch = 512;
    o->sp = gw_sampler_default_params();
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
#define NEXT() (i + 1 < argc ? argv[++i] : (die("option %s needs a value", a), ""))
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return false;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) o->model = NEXT();
        else if (is_run && (!strcmp(a, "-p") || !strcmp(a, "--prompt"))) o->prompt = NEXT();
        else if (is_run && (!strcmp(a, "-f") || !strcmp(a, "--file"))) o->prompt_file = NEXT();
        else if (is_run && !strcmp(a, "--chat")) o->chat_template = true;
        else if (is_run && !strcmp(a, "--no-bos")) o->no_bos = true;
        else if (!strcmp(a, "--kv-select")) parse_kv_select(NEXT(), &o->select);
        else if (!strcmp(a, "--system")) o->system = NEXT();
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) o->n_threads = parse_int(NEXT(), a);
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) o->n_ctx = parse_int(NEXT(), a);
        else if (!strcmp(a, "-b") || !strcmp(a, "--batch")) o->n_batch = parse_int(NEXT(), a);
        else if (!strcmp(a, "--kv-block")) o->kv_block = parse_int(NEXT(), a);
        else if (!strcmp(a, "--kv-type")) o->kv_type = parse_kv_type(NEXT());
        else if (!strcmp(a, "--device")) o->device = parse_device(NEXT());
        else if (!strcmp(a, "--streaming")) parse_streaming(NEXT(), &o->stream_sink, &o->stream_window);
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) o->n_predict = parse_int(NEXT(), a);
        else if (!strcmp(a, "--temp")) o->sp.temperature = parse_float(NEXT(), a);
        else if (!strcmp(a, "--top-k")) o->sp.top_k = parse_int(NEXT(), a);
        else if (!strcmp(a, "--top-p")) o->sp.top_p = parse_float(NEXT(), a);
        else if (!strcmp(a, "--min-p")) o->sp.min_p = parse_float(NEXT(), a);
        else if (!strcmp(a, "--repeat-penalty")) o->sp.repeat_penalty = parse_float(NEXT(), a);
        else if (!strcmp(a, "--repeat-last-n")) o->sp.repeat_last_n = parse_int(NEXT(), a);
        else if (!strcmp(a, "-s") || !strcmp(a, "--seed")) o->sp.seed = strtoull(NEXT(), NULL, 10);
        else if (!strcmp(a, "--stop")) {
            if (o->n_stops == MAX_STOPS) die("too many --stop strings (at most %s)", "8");
            o->stops[o->n_stops++] = NEXT();
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) o->verbose = true;
        else {
            fprintf(stderr, "godwit: unknown option '%s'\n\n", a);
            usage(stderr);
            exit(2);
        }
#undef NEXT
    }
    if (o->n_threads < 0) die("%s", "--threads must be >= 0");
    if (o->n_ctx <= 0) die("%s", "--ctx must be positive");
    if (o->n_batch <= 0) die("%s", "--batch must be positive");
    if (o->kv_block < 0 || o->kv_block > 4096) die("%s", "--kv-block must be in 1..4096");
    if (o->select.policy != GW_SELECT_NONE && o->stream_window > 0)
        die("%s", "--kv-select cannot be combined with --streaming");
    if (o->select.policy != GW_SELECT_NONE && o->kv_type != GW_KV_F16 && o->device == GW_DEVICE_CUDA)
        die("%s", "--kv-select with --kv-type int8/int4 is not available with --device cuda yet");
    if (o->kv_type != GW_KV_F16 && o->stream_window > 0)
        die("%s", "--streaming cannot be combined with --kv-type int8/int4 yet (keys are re-rotated in place)");
    if (o->n_predict < 0) die("%s", "--n-predict must be >= 0");
    if (o->sp.temperature < 0) die("%s", "--temp must be >= 0");
    if (o->sp.top_p <= 0 || o->sp.top_p > 1) die("%s", "--top-p must be in (0, 1]");
    if (o->sp.min_p < 0 || o->sp.min_p > 1) die("%s", "--min-p must be in [0, 1]");
    if (o->sp.repeat_penalty <= 0) die("%s", "--repeat-penalty must be > 0");
    return true;
}

/* ------------------------------------------------------------- generation */

typedef struct {
    gw_model *model;
    gw_context *ctx;
    const gw_tokenizer *tok;
    int seq;
    int32_t *history;   /* every token fed to the sequence, in order (in its KV cache unless
                         * streaming evicted it) */
    bool streaming;
    int n_history, cap_history;
    float *logits;      /* n_vocab */
    double prefill_s, decode_s;
    long prefill_tokens, decode_tokens;
} session;

/* The position of the sequence's next token: what its cache holds plus what
 * KV compression dropped (streaming moves positions itself). */
static int next_pos(const session *s) { return gw_seq_len(s->ctx, s->seq) + gw_seq_kv_compressed(s->ctx, s->seq); }

static void history_push(session *s, int32_t t) {
    if (s->n_history == s->cap_history) {
        s->cap_history = s->cap_history ? 2 * s->cap_history : 1024;
        s->history = realloc(s->history, (size_t)s->cap_history * sizeof(int32_t));
    }
    s->history[s->n_history++] = t;
}

/* Feeds tokens[0..n) after what the sequence holds, in chunks of n_batch,
 * leaving the last token's logits in s->logits. */
static void prefill(session *s, const int32_t *tokens, int n, bool progress) {
    int B = gw_context_n_batch(s->ctx);
    int32_t *seq = malloc((size_t)B * sizeof(int32_t)), *pos = malloc((size_t)B * sizeof(int32_t));
    int8_t *want = calloc((size_t)B, 1);
    double t0 = now_s();
    char err[256];
    for (int done = 0; done < n;) {
        int m = n - done < B ? n - done : B;
        int base = next_pos(s);
        for (int i = 0; i < m; i++) {
            seq[i] = s->seq;
            pos[i] = base + i;
            want[i] = (done + i == n - 1);
        }
        gw_batch b = {m, tokens + done, seq, pos, want};
        if (gw_forward(s->ctx, &b, s->logits, err, sizeof err) != 0) die("%s", err);
        for (int i = 0; i < m; i++) history_push(s, tokens[done + i]);
        done += m;
        if (progress) {
            double el = now_s() - t0;
            fprintf(stderr, "\rprefill %d/%d tokens (%.0f tok/s)   ", done, n, done / (el > 0 ? el : 1e-9));
        }
    }
    if (progress) fputc('\n', stderr);
    s->prefill_s += now_s() - t0;
    s->prefill_tokens += n;
    free(seq);
    free(pos);
    free(want);
}

/* Writes text while holding back any tail that could begin a stop string.
 * Returns true when a stop string was completed (text up to it is written). */
typedef struct {
    char *buf;
    size_t len, cap;
    size_t flushed;
} text_stream;

static bool stream_add(text_stream *ts, const char *piece, size_t n, const options *o, bool final) {
    if (ts->len + n + 1 > ts->cap) {
        ts->cap = (ts->len + n + 1) * 2;
        ts->buf = realloc(ts->buf, ts->cap);
    }
    memcpy(ts->buf + ts->len, piece, n);
    ts->len += n;
    ts->buf[ts->len] = 0;
    size_t safe = ts->len;
    for (int i = 0; i < o->n_stops; i++) {
        const char *hit = strstr(ts->buf + (ts->flushed > strlen(o->stops[i]) ? ts->flushed - strlen(o->stops[i]) : 0), o->stops[i]);
        if (hit) {
            size_t end = (size_t)(hit - ts->buf);
            if (end > ts->flushed) fwrite(ts->buf + ts->flushed, 1, end - ts->flushed, stdout);
            ts->flushed = end > ts->flushed ? end : ts->flushed;
            fflush(stdout);
            return true;
        }
        /* hold back the longest suffix that is a prefix of the stop string */
        size_t sl = strlen(o->stops[i]);
        for (size_t k = sl - 1; k > 0; k--) {
            if (k <= ts->len && memcmp(ts->buf + ts->len - k, o->stops[i], k) == 0) {
                if (ts->len - k < safe) safe = ts->len - k;
                break;
            }
        }
    }
    if (final) safe = ts->len;
    if (safe > ts->flushed) {
        fwrite(ts->buf + ts->flushed, 1, safe - ts->flushed, stdout);
        ts->flushed = safe;
        fflush(stdout);
    }
    return false;
}

/* Samples and decodes up to n_predict tokens after a prefill, streaming the
 * text to stdout. Returns the text written (malloc'd; stop string excluded). */
static char *generate(session *s, const options *o, gw_sampler *smp) {
    int V = gw_model_n_vocab(s->model);
    text_stream ts = {0};
    int n_gen = 0;
    bool stopped = false;
    char piece[256];
    char err[256];
    double t0 = now_s();
    int n_ctx = gw_context_n_ctx(s->ctx);
    while (n_gen < o->n_predict) {
        int32_t t = gw_sample(smp, s->logits, s->history, s->n_history);
        if (gw_token_is_eog(s->tok, t)) break;
        n_gen++;
        size_t pl = gw_token_to_piece(s->tok, t, false, piece, sizeof piece);
        if (pl > sizeof piece) pl = sizeof piece;
        if (stream_add(&ts, piece, pl, o, false)) {
            stopped = true;
            break;
        }
        if (n_gen == o->n_predict) break;
        if (!s->streaming && next_pos(s) >= n_ctx) {
            fprintf(stderr, "\n[context full: %d tokens]\n", n_ctx);
            break;
        }
        int32_t seq = s->seq, pos = next_pos(s);
        int8_t want = 1;
        gw_batch b = {1, &t, &seq, &pos, &want};
        if (gw_forward(s->ctx, &b, s->logits, err, sizeof err) != 0) die("%s", err);
        history_push(s, t);
    }
    if (!stopped) stream_add(&ts, "", 0, o, true);
    (void)V;
    s->decode_s += now_s() - t0;
    s->decode_tokens += n_gen;
    if (!ts.buf) return strdup("");
    ts.buf[ts.flushed] = 0;
    return ts.buf;
}

static void print_speed(const session *s) {
    fprintf(stderr, "\nprefill: %ld tokens in %.3f s (%.1f tok/s); decode: %ld tokens in %.3f s (%.1f tok/s)\n",
            s->prefill_tokens, s->prefill_s, s->prefill_s > 0 ? s->prefill_tokens / s->prefill_s : 0.0,
            s->decode_tokens, s->decode_s, s->decode_s > 0 ? s->decode_tokens / s->decode_s : 0.0);
    if (s->streaming) {
        gw_streaming_stats st;
        gw_seq_streaming_stats(s->ctx, s->seq, &st);
        fprintf(stderr, "streaming: %d tokens in the KV cache, %lld evicted in %lld moves of the window\n",
                gw_seq_len(s->ctx, s->seq), (long long)st.evicted_tokens, (long long)st.evictions);
    }
}

static void open_session(session *s, const options *o) {
    memset(s, 0, sizeof *s);
    const char *path = resolve_model(o->model);
    char err[512];
    double t0 = now_s();
    fprintf(stderr, "loading %s ...", path);
    s->model = gw_model_load(path, err, sizeof err);
    if (!s->model) {
        fputc('\n', stderr);
        die("%s", err);
    }
    int n_ctx = o->n_ctx, n_batch = o->n_batch;
    s->streaming = o->stream_window > 0;
    if (s->streaming) {
        /* The cache holds the sinks and the window; positions stay below S + W,
         * which must be within what the model was trained on. A prefill chunk
         * must fit in the window. */
        if ((int64_t)o->stream_sink + o->stream_window > gw_model_n_ctx_train(s->model)) {
            fputc('\n', stderr);
            char msg[96];
            snprintf(msg, sizeof msg, "%d + %d exceeds the model's trained context %d", o->stream_sink,
                     o->stream_window, gw_model_n_ctx_train(s->model));
            die("--streaming: %s", msg);
        }
        n_ctx = o->stream_sink + o->stream_window;
        if (n_batch > o->stream_window) n_batch = o->stream_window;
    } else if (n_ctx > gw_model_n_ctx_train(s->model)) {
        fprintf(stderr, "\n--ctx %d exceeds the model's trained context; using %d", n_ctx,
                gw_model_n_ctx_train(s->model));
        n_ctx = gw_model_n_ctx_train(s->model);
    }
    gw_context_params cp = {.n_ctx = n_ctx, .n_batch = n_batch, .n_threads = o->n_threads,
                            .kv_block_size = o->kv_block, .device = o->device, .kv_type = o->kv_type};
    s->ctx = gw_context_new(s->model, &cp, err, sizeof err);
    if (!s->ctx) {
        fputc('\n', stderr);
        die("%s", err);
    }
    s->tok = gw_model_tokenizer(s->model);
    s->seq = gw_seq_open(s->ctx);
    if (s->streaming && gw_seq_set_streaming(s->ctx, s->seq, o->stream_sink, o->stream_window) != 0) {
        fputc('\n', stderr);
        die("%s", "--streaming: cannot stream this sequence");
    }
    s->logits = malloc((size_t)gw_model_n_vocab(s->model) * sizeof(float));
    fprintf(stderr, " done in %.2f s (%d threads)\n", now_s() - t0, gw_context_n_threads(s->ctx));
    if (s->streaming)
        fprintf(stderr, "streaming: %d sinks + a window of %d tokens (KV cache of %d tokens, %.1f MiB)\n",
                o->stream_sink, o->stream_window, n_ctx,
                (double)n_ctx * gw_context_kv_bytes_per_token(s->ctx) / 1048576.0);
    if (o->verbose) {
        char desc[512];
        gw_model_describe(s->model, desc, sizeof desc);
        fprintf(stderr, "%s\n", desc);
    }
}

static void close_session(session *s) {
    free(s->history);
    free(s->logits);
    gw_context_free(s->ctx);
    gw_model_free(s->model);
}

static int32_t *tokenize_or_die(const gw_tokenizer *tok, const char *text, size_t len, bool add_bos,
                                bool special, int *n) {
    int32_t *ids = NULL;
    int64_t k = gw_tokenize(tok, text, len, add_bos, special, &ids);
    if (k < 0) die("%s", "tokenization failed");
    *n = (int)k;
    return ids;
}

/* ------------------------------------------------------------------- run */

static int cmd_run(int argc, char **argv) {
    options o;
    if (!parse_options(argc, argv, &o, usage_run, true)) return 0;
    if (!o.prompt && !o.prompt_file) {
        fprintf(stderr, "godwit run: give a prompt with -p TEXT or -f FILE\n\n");
        usage_run(stderr);
        return 2;
    }
    size_t plen;
    char *ptext = o.prompt ? strdup(o.prompt) : read_file(o.prompt_file, &plen);
    session s;
    open_session(&s, &o);
    char *rendered = NULL;
    const char *text = ptext;
    if (o.chat_template) {
        gw_chat_msg msgs[2];
        size_t nm = 0;
        if (o.system) msgs[nm++] = (gw_chat_msg){"system", o.system};
        msgs[nm++] = (gw_chat_msg){"user", ptext};
        const char *tmpl = gw_model_chat_template(s.model);
        rendered = gw_chat_render(gw_chat_detect(tmpl), tmpl, msgs, nm, true);
        if (!rendered) die("%s", "the model has no chat template godwit can render");
        text = rendered;
    }
    int n;
    bool add_bos = !o.no_bos && gw_tokenizer_add_bos(s.tok) && !o.chat_template;
    /* special-token text such as <|im_start|> in a prompt is parsed, as llama.cpp does */
    int32_t *ids = tokenize_or_die(s.tok, text, strlen(text), add_bos, true, &n);
    if (n == 0) die("%s", "the prompt is empty");
    if (!s.streaming && n >= gw_context_n_ctx(s.ctx)) {
        char msg[128];
        snprintf(msg, sizeof msg, "%d tokens, context %d", n, gw_context_n_ctx(s.ctx));
        die("the prompt is longer than the context (%s): raise --ctx", msg);
    }
    if (!o.chat_template) fwrite(text, 1, strlen(text), stdout);
    fflush(stdout);
    if (gw_kv_select_begin(s.ctx, s.seq, &o.select, n) != 0) die("%s", "--kv-select: cannot start the policy");
    prefill(&s, ids, n, n >= 1024 && isatty(2));
    if (o.select.policy != GW_SELECT_NONE) {
        if (gw_kv_select_end(s.ctx, s.seq, &o.select, n) != 0) die("%s", "--kv-select: compression failed");
        char d[64];
        gw_kv_select_describe(&o.select, d, sizeof d);
        fprintf(stderr, "\nkv-select %s: kept the KV of %d of %d prompt tokens (%.1f MiB)\n", d,
                gw_seq_len(s.ctx, s.seq), n,
                (double)gw_seq_len(s.ctx, s.seq) * gw_context_kv_bytes_per_token(s.ctx) / 1048576.0);
    }
    gw_sampler *smp = gw_sampler_new(&o.sp, gw_model_n_vocab(s.model));
    free(generate(&s, &o, smp));
    printf("\n");
    print_speed(&s);
    gw_sampler_free(smp);
    free(ids);
    free(rendered);
    free(ptext);
    close_session(&s);
    return 0;
}

/* ------------------------------------------------------------------ chat */

static int cmd_chat(int argc, char **argv) {
    options o;
    if (!parse_options(argc, argv, &o, usage_chat, false)) return 0;
    session s;
    open_session(&s, &o);
    const char *tmpl = gw_model_chat_template(s.model);
    gw_chat_format fmt = gw_chat_detect(tmpl);
    gw_sampler *smp = gw_sampler_new(&o.sp, gw_model_n_vocab(s.model));
    gw_chat_msg *msgs = NULL;
    size_t n_msgs = 0, cap = 0;
    char **owned = NULL;  /* message texts we allocated */
    size_t n_owned = 0;
    if (o.system) {
        msgs = realloc(msgs, (cap = 16) * sizeof *msgs);
        msgs[n_msgs++] = (gw_chat_msg){"system", o.system};
    }
    char *line = NULL;
    size_t line_cap = 0;
    bool tty = isatty(0);
    for (;;) {
        if (tty) fprintf(stderr, "> ");
        ssize_t r = getline(&line, &line_cap, stdin);
        if (r < 0) break;
        while (r > 0 && (line[r - 1] == '\n' || line[r - 1] == '\r')) line[--r] = 0;
        if (r == 0) break;
        if (!strcmp(line, "/reset")) {
            n_msgs = o.system ? 1 : 0;
            gw_seq_truncate(s.ctx, s.seq, 0);
            s.n_history = 0;
            fprintf(stderr, "[conversation cleared]\n");
            continue;
        }
        if (n_msgs + 2 > cap) msgs = realloc(msgs, (cap = cap ? cap * 2 : 16) * sizeof *msgs);
        owned = realloc(owned, (n_owned + 2) * sizeof *owned);
        owned[n_owned] = strdup(line);
        msgs[n_msgs++] = (gw_chat_msg){"user", owned[n_owned++]};
        char *prompt = gw_chat_render(fmt, tmpl, msgs, n_msgs, true);
        if (!prompt) die("%s", "the model has no chat template godwit can render");
        int n;
        int32_t *ids = tokenize_or_die(s.tok, prompt, strlen(prompt), false, true, &n);
        /* Reuse the cached prefix: keep the KV of the longest common prefix of
         * the new rendering and what the cache holds. */
        int common = 0;
        while (common < n && common < s.n_history && ids[common] == s.history[common]) common++;
        if (common == n) common--; /* need at least one token to get logits */
        /* Streaming: history[h] is in slot h for the sinks (h < S), evicted
         * for h < S + evicted, else in slot h - evicted. A rendering that
         * departs from what was fed where that was evicted (rare: a reply that
         * tokenizes differently) cannot be cut there; the whole conversation
         * is then fed again. */
        int evicted = s.n_history - gw_seq_len(s.ctx, s.seq), keep = common;
        if (s.streaming && evicted > 0 && common > o.stream_sink) {
            keep = common - evicted;
            if (keep < o.stream_sink) keep = common = 0;
        }
        /* KV selection: a compressed cache keeps some slots of the history,
         * not a prefix of it, so it is cut nowhere but at its end; a
         * rendering that departs from the history is fed again in full. */
        if (gw_seq_kv_compressed(s.ctx, s.seq) > 0) {
            if (common < s.n_history) keep = common = 0;
            else keep = gw_seq_len(s.ctx, s.seq);
        }
        gw_seq_truncate(s.ctx, s.seq, keep);
        s.n_history = common;
        if (!s.streaming && n + o.n_predict > gw_context_n_ctx(s.ctx)) {
            fprintf(stderr, "[context full: %d + %d tokens > %d; use /reset or a larger --ctx]\n", n,
                    o.n_predict, gw_context_n_ctx(s.ctx));
            free(ids);
            free(prompt);
            n_msgs--;
            continue;
        }
        if (gw_kv_select_begin(s.ctx, s.seq, &o.select, n) != 0) die("%s", "--kv-select: cannot start the policy");
        prefill(&s, ids + common, n - common, n - common >= 1024 && isatty(2));
        if (o.select.policy != GW_SELECT_NONE) {
            if (gw_kv_select_end(s.ctx, s.seq, &o.select, n) != 0) die("%s", "--kv-select: compression failed");
            if (o.verbose)
                fprintf(stderr, "[kv-select: the KV of %d of the conversation's %d tokens kept]\n",
                        gw_seq_len(s.ctx, s.seq), n);
        }
        /* The reply joins the conversation; the next turn's rendering
         * re-tokenizes it, and the prefix match above reuses its KV. */
        char *reply = generate(&s, &o, smp);
        printf("\n");
        owned = realloc(owned, (n_owned + 1) * sizeof *owned);
        owned[n_owned] = reply;
        msgs[n_msgs++] = (gw_chat_msg){"assistant", owned[n_owned++]};
        free(ids);
        free(prompt);
        if (o.verbose) print_speed(&s);
    }
    print_speed(&s);
    for (size_t i = 0; i < n_owned; i++) free(owned[i]);
    free(owned);
    free(msgs);
    free(line);
    gw_sampler_free(smp);
    close_session(&s);
    return 0;
}


/* ------------------------------------------------------------------- ppl */

static void usage_ppl(FILE *f) {
    fprintf(f,
            "usage: godwit ppl [-m MODEL] -f FILE [--ctx N] [--stride S | --streaming S,W] [--chunks K]\n"
            "                  [-t THREADS]\n\n"
            "Perplexity of FILE. Without --stride, llama.cpp's llama-perplexity protocol: the\n"
            "tokenized text is cut into chunks of --ctx tokens (default 2048), each evaluated\n"
            "from an empty cache with BOS first when the model adds one, and the second half\n"
            "of each chunk scored. With --stride S, the sliding-window protocol of Hugging\n"
            "Face's perplexity guide: windows of --ctx tokens every S tokens, each scoring\n"
            "the tokens the previous window did not reach (every token once, with at least\n"
            "ctx - S tokens of context). Prints the running figure per chunk or window and\n"
            "the final one with its standard error.\n\n"
            "With --streaming S,W, StreamingLLM's long-text protocol: the whole text goes\n"
            "through one sequence in chunks of -b tokens (at most W), every token scored, with\n"
            "S attention sinks and a window of W tokens, so the KV cache holds S+W tokens\n"
            "however long the text (--ctx is not used). Progress lines show the KV cache in\n"
            "use. --streaming 0,0 runs the same stream on the dense model, whose cache holds\n"
            "--ctx tokens (default: the model's trained context); it stops with an error\n"
            "when the cache is full, after printing the figure up to there.\n\n"
            "  -f, --file FILE         text to score\n"
            "  -c, --ctx N             chunk or window size in tokens (default: 2048)\n"
            "      --stride S          sliding windows every S tokens (1..ctx; default: chunks)\n"
            "      --streaming S,W     the streaming protocol with S sinks and a window of W\n"
            "      --chunks K          evaluate at most K chunks or windows (default: all)\n"
            "  -t, --threads N         threads (default: all cores)\n"
            "  -b, --batch N           tokens per forward pass (default: 512)\n"
            KV_HELP DEVICE_HELP);
}

static void ppl_progress(int done, int total, double ppl, void *user) {
    double t0 = *(double *)user, el = now_s() - t0;
    fprintf(stderr, "[%d/%d] ppl %.4f  (%.1f s, ETA %.0f s)\n", done, total, ppl, el,
            el / done * (total - done));
}

/* The streaming protocol's progress: about 64 lines per run, each with the
 * KV cache in use (the whole pool holds only the stream's sequence). */
typedef struct {
    double t0;
    const gw_context *c;
    int batch;
    long n_tokens;
} stream_progress;

static void ppl_stream_progress(int done, int total, double ppl, void *user) {
    const stream_progress *p = user;
    int every = (total + 63) / 64;
    if (done % every && done != total) return;
    const gw_context *c = p->c;
    int bs = gw_context_kv_block_size(c), pool = (gw_context_n_ctx(c) + bs - 1) / bs * bs;
    int used = pool - gw_context_kv_free_tokens(c);
    long fed = (long)done * p->batch < p->n_tokens ? (long)done * p->batch : p->n_tokens;
    double el = now_s() - p->t0;
    fprintf(stderr, "[%d/%d] %ld tokens  ppl %.4f  KV %d blocks (%.2f MiB)  %.1f tok/s  ETA %.0f s\n", done, total,
            fed, ppl, used / bs, (double)used * gw_context_kv_bytes_per_token(c) / 1048576.0, fed / el,
            el / done * (total - done));
}

/* godwit ppl --streaming S,W (see usage_ppl); frees ids, text and the model. */
static int ppl_streaming(gw_model *m, int32_t *ids, int64_t n_tokens, int dense_ctx, int batch, int n_chunks,
                         int threads, int kv_block, int device, int sink, int window, char *text) {
    bool dense = window == 0;
    /* the cache: sinks + window, or the dense context; chunks fit in the window */
    int n_ctx = dense ? dense_ctx : sink + window;
    if (!dense && (int64_t)sink + window > gw_model_n_ctx_train(m)) {
        char msg[96];
        snprintf(msg, sizeof msg, "%d + %d exceeds the model's trained context %d", sink, window,
                 gw_model_n_ctx_train(m));
        die("--streaming: %s", msg);
    }
    int max_batch = dense ? n_ctx : window;
    if (batch > max_batch) batch = max_batch;
    char err[512];
    gw_context_params cp = {.n_ctx = n_ctx, .n_batch = batch, .n_threads = threads, .kv_block_size = kv_block,
                            .device = device};
    gw_context *c = gw_context_new(m, &cp, err, sizeof err);
    if (!c) die("%s", err);
    const double mib_per_token = gw_context_kv_bytes_per_token(c) / 1048576.0;
    if (dense)
        fprintf(stderr, "dense stream: one sequence, chunks of %d, KV cache of %d tokens (%.1f MiB)\n", batch, n_ctx,
                n_ctx * mib_per_token);
    else
        fprintf(stderr, "streaming: %d sinks + a window of %d, chunks of %d, KV cache of %d tokens (%.1f MiB)\n",
                sink, window, batch, n_ctx, n_ctx * mib_per_token);
    stream_progress prog = {now_s(), c, batch, (long)n_tokens};
    gw_ppl_params pp = {.n_chunks = n_chunks, .bos = -1, .stream = 1, .n_sink = sink, .n_window = window};
    gw_ppl_result r;
    int rc = gw_perplexity(c, gw_model_n_vocab(m), ids, n_tokens, &pp, ppl_stream_progress, &prog, &r, err,
                           sizeof err);
    int bs = gw_context_kv_block_size(c);
    int kv_blocks = (r.kv_tokens_max + bs - 1) / bs;
    if (r.n_scored > 0) {
        char what[128];
        if (dense) snprintf(what, sizeof what, "dense stream");
        else snprintf(what, sizeof what, "streaming %d sinks + window %d", sink, window);
        printf("ppl %.4f +/- %.4f over %ld tokens (%s, chunks of %d; KV cache at most %d tokens = %d blocks, "
               "%.2f MiB; %lld evicted) in %.1f s (%.1f tok/s)\n",
               r.ppl, r.ppl_err, r.n_scored, what, batch, r.kv_tokens_max, kv_blocks,
               kv_blocks * bs * mib_per_token, (long long)r.evicted, r.seconds, r.n_evaluated / r.seconds);
        fflush(stdout);
    }
    if (rc != 0 && dense && r.n_evaluated > 0) {
        fprintf(stderr,
                "godwit: %s\ngodwit: the dense model stops here: its cache holds %d tokens (the model was trained "
                "on %d); --streaming S,W keeps the cache bounded\n",
                err, n_ctx, gw_model_n_ctx_train(m));
        exit(1);
    }
    if (rc != 0) die("%s", err);
    free(ids);
    free(text);
    gw_context_free(c);
    gw_model_free(m);
    return 0;
}

static int cmd_ppl(int argc, char **argv) {
    const char *model = NULL, *file = NULL;
    int n_ctx = 2048, n_chunks = 0, threads = 0, batch = 512, kv_block = 0, stride = 0, device = GW_DEVICE_CPU;
    int stream_sink = 0, stream_window = 0, kv_type = GW_KV_F16;
    bool stream = false, ctx_given = false;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
#define NEXT() (i + 1 < argc ? argv[++i] : (die("option %s needs a value", a), ""))
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage_ppl(stdout);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) model = NEXT();
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) file = NEXT();
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) n_ctx = parse_int(NEXT(), a), ctx_given = true;
        else if (!strcmp(a, "--chunks")) n_chunks = parse_int(NEXT(), a);
        else if (!strcmp(a, "--streaming")) {
            parse_streaming(NEXT(), &stream_sink, &stream_window);
            stream = true;
        }
        else if (!strcmp(a, "--stride")) {
            stride = parse_int(NEXT(), a);
            if (stride <= 0) die("%s", "--stride must be >= 1");
        }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) threads = parse_int(NEXT(), a);
        else if (!strcmp(a, "-b") || !strcmp(a, "--batch")) batch = parse_int(NEXT(), a);
        else if (!strcmp(a, "--kv-block")) kv_block = parse_int(NEXT(), a);
        else if (!strcmp(a, "--kv-type")) kv_type = parse_kv_type(NEXT());
        else if (!strcmp(a, "--device")) device = parse_device(NEXT());
        else {
            fprintf(stderr, "godwit ppl: unknown option '%s'\n\n", a);
            usage_ppl(stderr);
            return 2;
        }
#undef NEXT
    }
    if (!file) {
        fprintf(stderr, "godwit ppl: give the text with -f FILE\n\n");
        usage_ppl(stderr);
        return 2;
    }
    if (n_ctx < 4 || batch <= 0 || threads < 0 || n_chunks < 0 || kv_block < 0)
        die("%s", "invalid --ctx, --batch, --threads, --chunks or --kv-block");
    if (stream && kv_type != GW_KV_F16)
        die("%s", "--streaming cannot be combined with --kv-type int8/int4 yet (keys are re-rotated in place)");
    if (stride > n_ctx) die("%s", "--stride must not exceed --ctx");
    if (stream && stride) die("%s", "--stride and --streaming are different protocols: give one");
    if (stream && stream_window > 0 && ctx_given)
        die("%s", "--ctx does not apply with --streaming S,W: the KV cache holds S+W tokens");
    size_t len;
    char *text = read_file(file, &len);
    const char *path = resolve_model(model);
    char err[512];
    gw_model *m = gw_model_load(path, err, sizeof err);
    if (!m) die("%s", err);
    const gw_tokenizer *tok = gw_model_tokenizer(m);
    bool add_bos = gw_tokenizer_add_bos(tok) && gw_tokenizer_bos(tok) >= 0;
    int64_t n_tokens;
    int32_t *ids = NULL;
    double t0 = now_s();
    n_tokens = gw_tokenize(tok, text, len, add_bos, false, &ids);
    if (n_tokens < 0) die("%s", "tokenization failed");
    fprintf(stderr, "%s: %lld tokens (tokenized in %.2f s)\n", file, (long long)n_tokens, now_s() - t0);
    if (stream) return ppl_streaming(m, ids, n_tokens, ctx_given ? n_ctx : gw_model_n_ctx_train(m), batch, n_chunks,
                                     threads, kv_block, device, stream_sink, stream_window, text);
    gw_context_params cp = {.n_ctx = n_ctx, .n_batch = batch < n_ctx ? batch : n_ctx, .n_threads = threads,
                            .kv_block_size = kv_block, .device = device, .kv_type = kv_type};
    gw_context *c = gw_context_new(m, &cp, err, sizeof err);
    if (!c) die("%s", err);
    gw_ppl_params pp = {.n_ctx = n_ctx, .n_chunks = n_chunks, .stride = stride,
                        .bos = add_bos ? gw_tokenizer_bos(tok) : -1};
    gw_ppl_result r;
    t0 = now_s();
    if (gw_perplexity(c, gw_model_n_vocab(m), ids, n_tokens, &pp, ppl_progress, &t0, &r, err, sizeof err) != 0)
        die("%s", err);
    if (stride == 0)
        printf("ppl %.4f +/- %.4f over %ld tokens (%d chunks of %d, second halves scored) in %.1f s (%.1f tok/s)",
               r.ppl, r.ppl_err, r.n_scored, r.n_chunks, n_ctx, r.seconds, r.n_evaluated / r.seconds);
    else
        printf("ppl %.4f +/- %.4f over %ld tokens (%d windows of %d, stride %d) in %.1f s (%.1f tok/s)",
               r.ppl, r.ppl_err, r.n_scored, r.n_chunks, n_ctx, stride, r.seconds, r.n_evaluated / r.seconds);
    printf("; KV %s, %zu bytes/token\n", gw_kv_type_name(kv_type), gw_context_kv_bytes_per_token(c));
    free(ids);
    free(text);
    gw_context_free(c);
    gw_model_free(m);
    return 0;
}

/* ----------------------------------------------------------------- bench */

static void usage_bench(FILE *f) {
    fprintf(f,
            "usage: godwit bench [-m MODEL] [--pp N] [--tg N] [--depth D[,D...]] [-t THREADS]\n"
            "                    [--reps R] [--json]\n\n"
            "Measures what llama-bench measures, on random tokens: prompt processing of N\n"
            "tokens (ppN) and generation of N tokens one at a time (tgN), each after D tokens\n"
            "already in the KV cache (depth, not timed). Prints mean and standard deviation\n"
            "over R repetitions, and for generation the bytes read per token (weights + KV)\n"
            "and the bandwidth that implies.\n\n"
            "      --pp N              prompt tokens (default: 512; 0 skips)\n"
            "      --tg N              generated tokens (default: 128; 0 skips)\n"
            "      --depth LIST        comma-separated depths (default: 0)\n"
            "      --reps R            repetitions (default: 3)\n"
            "      --json              one JSON object per test on stdout\n"
            "  -t, --threads N         threads (default: all cores)\n"
            "  -b, --batch N           tokens per forward pass (default: 512)\n"
            KV_HELP KV_SELECT_HELP STREAMING_HELP DEVICE_HELP);
}

static uint64_t bench_rng = 88172645463325252ull;
static int32_t random_token(int n_vocab) {
    bench_rng ^= bench_rng << 13;
    bench_rng ^= bench_rng >> 7;
    bench_rng ^= bench_rng << 17;
    return (int32_t)(bench_rng % (uint64_t)n_vocab);
}

/* Fills a fresh sequence with `depth` random tokens, then times either a
 * prefill of n tokens (pp) or n single-token decode steps (tg). One decode
 * step runs untimed before a tg measurement (on a GPU it captures the step's
 * CUDA graph). */
/* Times n prompt tokens (pp) or n decode steps after `depth` tokens of
 * context; with a KV selection policy the context is compressed first, and
 * *depth_kept (may be NULL) gets the context slots left. */
static double bench_once(gw_context *c, int n_vocab, int depth, int n, bool pp, const gw_kv_select *sel,
                         int stream_sink, int stream_window, int *depth_kept) {
    char err[256];
    int B = gw_context_n_batch(c);
    int32_t *tok = malloc(sizeof(int32_t) * B), *seqv = malloc(sizeof(int32_t) * B),
            *pos = malloc(sizeof(int32_t) * B);
    int8_t *want = calloc((size_t)B, 1);
    float *logits = malloc(sizeof(float) * n_vocab);
    int seq = gw_seq_open(c);
    if (stream_window > 0 && gw_seq_set_streaming(c, seq, stream_sink, stream_window) != 0)
        die("%s", "--streaming: cannot stream this sequence");
    double t_start = 0;
    const int warm = pp ? 0 : 1, timed_from = depth + warm;
    int total = timed_from + n;
    if (gw_kv_select_begin(c, seq, sel, depth) != 0) die("%s", "--kv-select: cannot start the policy");
    if (depth_kept) *depth_kept = depth;
    for (int done = 0; done < total;) {
        if (done == depth && depth > 0 && sel->policy != GW_SELECT_NONE) {
            if (gw_kv_select_end(c, seq, sel, depth) != 0) die("%s", "--kv-select: compression failed");
            if (depth_kept) *depth_kept = gw_seq_len(c, seq);
        }
        if (done == timed_from) t_start = now_s();
        if (done == depth && depth_kept && stream_window > 0) *depth_kept = gw_seq_len(c, seq);
        int limit = done < depth ? depth : total;
        if (done >= depth && done < timed_from) limit = timed_from;
        int m = limit - done;
        if (done >= depth && !pp) m = 1;
        if (m > B) m = B;
        if (stream_window > 0 && m > stream_window) m = stream_window; /* a chunk must fit in the window */
        /* positions follow the cache (streaming: within sinks + window) */
        const int base = gw_seq_len(c, seq) + gw_seq_kv_compressed(c, seq);
        for (int i = 0; i < m; i++) {
            tok[i] = random_token(n_vocab);
            seqv[i] = seq;
            pos[i] = base + i;
            want[i] = (i == m - 1);
        }
        gw_batch b = {m, tok, seqv, pos, want};
        if (gw_forward(c, &b, logits, err, sizeof err) != 0) die("%s", err);
        done += m;
    }
    double el = now_s() - t_start;
    gw_seq_close(c, seq);
    free(tok); free(seqv); free(pos); free(want); free(logits);
    return el;
}

static int cmd_bench(int argc, char **argv) {
    const char *model = NULL;
    int pp = 512, tg = 128, reps = 3, threads = 0, batch = 512, kv_block = 0, device = GW_DEVICE_CPU;
    int kv_type = GW_KV_F16;
    gw_kv_select sel = {0};
    int stream_sink = 0, stream_window = 0;
    bool json = false;
    int depths[16] = {0}, n_depths = 1;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
#define NEXT() (i + 1 < argc ? argv[++i] : (die("option %s needs a value", a), ""))
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage_bench(stdout);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) model = NEXT();
        else if (!strcmp(a, "--pp")) pp = parse_int(NEXT(), a);
        else if (!strcmp(a, "--tg")) tg = parse_int(NEXT(), a);
        else if (!strcmp(a, "--reps")) reps = parse_int(NEXT(), a);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) threads = parse_int(NEXT(), a);
        else if (!strcmp(a, "-b") || !strcmp(a, "--batch")) batch = parse_int(NEXT(), a);
        else if (!strcmp(a, "--kv-block")) kv_block = parse_int(NEXT(), a);
        else if (!strcmp(a, "--kv-type")) kv_type = parse_kv_type(NEXT());
        else if (!strcmp(a, "--kv-select")) parse_kv_select(NEXT(), &sel);
        else if (!strcmp(a, "--streaming")) parse_streaming(NEXT(), &stream_sink, &stream_window);
        else if (!strcmp(a, "--device")) device = parse_device(NEXT());
        else if (!strcmp(a, "--json")) json = true;
        else if (!strcmp(a, "--depth")) {
            char *list = strdup(NEXT()), *save = NULL;
            n_depths = 0;
            for (char *p = strtok_r(list, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
                if (n_depths == 16) die("%s", "at most 16 depths");
                depths[n_depths++] = parse_int(p, "--depth");
            }
            free(list);
            if (n_depths == 0) die("%s", "--depth needs at least one value");
        } else {
            fprintf(stderr, "godwit bench: unknown option '%s'\n\n", a);
            usage_bench(stderr);
            return 2;
        }
#undef NEXT
    }
    if (pp < 0 || tg < 0 || reps <= 0 || threads < 0 || batch <= 0 || kv_block < 0)
        die("%s", "invalid --pp, --tg, --reps, --threads, --batch or --kv-block");
    int max_depth = 0;
    for (int i = 0; i < n_depths; i++) {
        if (depths[i] < 0) die("%s", "--depth must be >= 0");
        if (depths[i] > max_depth) max_depth = depths[i];
    }
    const char *path = resolve_model(model);
    char err[512];
    gw_model *m = gw_model_load(path, err, sizeof err);
    if (!m) die("%s", err);
    int n_ctx = max_depth + (pp > tg ? pp : tg) + 16;
    gw_context_params cp = {.n_ctx = n_ctx, .n_batch = batch, .n_threads = threads, .kv_block_size = kv_block,
                            .device = device, .kv_type = kv_type};
    gw_context *c = gw_context_new(m, &cp, err, sizeof err);
    if (!c) die("%s", err);
    const int V = gw_model_n_vocab(m);
    char desc[512];
    gw_model_describe(m, desc, sizeof desc);
    char dev[512];
    gw_context_describe_device(c, dev, sizeof dev);
    char sel_desc[64];
    describe_kv_policy(&sel, stream_sink, stream_window, sel_desc, sizeof sel_desc);
    if (sel.policy != GW_SELECT_NONE && kv_type != GW_KV_F16 && device == GW_DEVICE_CUDA)
        die("%s", "--kv-select with --kv-type int8/int4 is not available with --device cuda yet");
    if (stream_window > 0) {
        if (sel.policy != GW_SELECT_NONE || kv_type != GW_KV_F16)
            die("%s", "--streaming needs the f16 KV cache and no --kv-select for now");
    }
    if (!json)
        printf("%s\n%s, KV %s (%zu bytes/token), kv-select %s\n%-8s %6s %14s %10s\n", desc, dev,
               gw_kv_type_name(kv_type), gw_context_kv_bytes_per_token(c), sel_desc, "test", "depth", "tok/s",
               "GB/s");
    gw_kv_select none = {0};
    bench_once(c, V, 0, 16, true, &none, 0, 0, NULL); /* warm-up: page in the weights */
    for (int di = 0; di < n_depths; di++) {
        for (int kind = 0; kind < 2; kind++) {
            int n = kind == 0 ? pp : tg;
            if (n == 0) continue;
            double sum = 0, sum_sq = 0;
            int kept = depths[di];
            for (int r = 0; r < reps; r++) {
                double el = bench_once(c, V, depths[di], n, kind == 0, &sel, stream_sink, stream_window, &kept);
                double tps = n / el;
                sum += tps;
                sum_sq += tps * tps;
            }
            double mean = sum / reps, sd = reps > 1 ? sqrt(fmax(0, (sum_sq - sum * mean) / (reps - 1))) : 0;
            /* bytes a decode step reads: all weights plus the KV cache at the
             * average depth of the run */
            double bytes = (double)gw_model_weight_bytes(m) +
                           (double)gw_context_kv_bytes_per_token(c) * (kept + n / 2.0);
            double gbs = kind == 1 ? bytes * mean / 1e9 : 0;
            char test[32];
            snprintf(test, sizeof test, "%s%d", kind == 0 ? "pp" : "tg", n);
            if (json)
                printf("{\"test\":\"%s\",\"depth\":%d,\"n_tokens\":%d,\"threads\":%d,\"reps\":%d,"
                       "\"tokens_per_s\":%.3f,\"tokens_per_s_sd\":%.3f,\"bytes_per_token\":%.0f,"
                       "\"gb_per_s\":%.3f,\"device\":\"%s\",\"kv_type\":\"%s\",\"kv_bytes_per_token\":%zu,"
                       "\"kv_select\":\"%s\",\"depth_kept\":%d,\"model\":\"%s\"}\n",
                       test, depths[di], n, gw_context_n_threads(c), reps, mean, sd, kind == 1 ? bytes : 0.0,
                       gbs, device == GW_DEVICE_CUDA ? "cuda" : "cpu", gw_kv_type_name(kv_type),
                       gw_context_kv_bytes_per_token(c), sel_desc, kept, path);
            else
                printf("%-8s %6d %8.2f ± %-5.2f %10s\n", test, depths[di], mean, sd,
                       kind == 1 ? (snprintf(desc, sizeof desc, "%.2f", gbs), desc) : "-");
            fflush(stdout);
        }
    }
    gw_context_free(c);
    gw_model_free(m);
    return 0;
}

/* ------------------------------------------------------------------ info */

static int cmd_info(int argc, char **argv) {
    const char *model = NULL;
    bool tensors = false;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage_info(stdout);
            return 0;
        } else if ((!strcmp(argv[i], "-m") || !strcmp(argv[i], "--model")) && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "--tensors")) tensors = true;
        else {
            fprintf(stderr, "godwit info: unknown option '%s'\n", argv[i]);
            usage_info(stderr);
            return 2;
        }
    }
    const char *path = resolve_model(model);
    char err[512];
    gguf_file *f = gguf_open(path, err, sizeof err);
    if (!f) die("%s", err);
    printf("%s: GGUF v%u, %lld metadata keys, %lld tensors\n", path, gguf_version(f),
           (long long)gguf_n_kv(f), (long long)gguf_n_tensors(f));
    char buf[512];
    for (int64_t i = 0; i < gguf_n_kv(f); i++) {
        gguf_kv_to_string(f, i, buf, sizeof buf);
        printf("  %-40s %s\n", gguf_kv_key(f, i), buf);
    }
    if (tensors) {
        for (int64_t i = 0; i < gguf_n_tensors(f); i++) {
            const gguf_tensor *t = gguf_tensor_at(f, i);
            printf("  %-32s %-5s [%lld, %lld, %lld, %lld] %zu bytes\n", t->name, gw_type_name(t->type),
                   (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3],
                   t->nbytes);
        }
    }
    gguf_close(f);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage_main(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "run")) return cmd_run(argc, argv);
    if (!strcmp(argv[1], "chat")) return cmd_chat(argc, argv);
    if (!strcmp(argv[1], "info")) return cmd_info(argc, argv);
    if (!strcmp(argv[1], "ppl")) return cmd_ppl(argc, argv);
    if (!strcmp(argv[1], "bench")) return cmd_bench(argc, argv);
    if (!strcmp(argv[1], "logits")) return cmd_logits(argc, argv);
    if (!strcmp(argv[1], "eval")) return cmd_eval(argc, argv);
    if (!strcmp(argv[1], "serve")) return cmd_serve(argc, argv);
    fprintf(stderr, "godwit: unknown command '%s'\n\n", argv[1]);
    usage_main(stderr);
    return 2;
}
