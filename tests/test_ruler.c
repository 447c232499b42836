/* RULER-style task generators (src/eval/ruler.c):
 *  - the word lists: lowercase letters, no word twice across the three lists;
 *  - task names; corpus sentence splitting on a small hand-written text;
 *  - every task: same parameters -> byte-identical sample; another index or
 *    seed -> another input; the needles / chain / word counts the references
 *    rest on really are in the text; requested depths honoured (needle
 *    position counted in haystack units, and as a fraction of the text);
 *  - length fitting with a word-count counter and with SmolLM2's tokenizer
 *    through its chat template, as the eval harness counts:
 *    0.9 * length < n_prompt + max_new_tokens <= length;
 *  - errors: unknown task, essay task without corpus, length too small,
 *    corpus or word list too short, counter failure;
 *  - scoring (RULER's string_match_all).
 * The essay corpus is $GODWIT_ROOT/../shared/data/war_and_peace.txt; the
 * essay checks are skipped with a note when it is missing.
 * RULER_DUMP=1 prints niah_single_2 and vt at 1024 tokens (SmolLM2). */
#include "test.h"

#include <stdbool.h>
#include <stdint.h>

#include "eval/ruler.h"
#include "eval/words.h"
#include "model/gguf.h"
#include "tokenizer/tokenizer.h"

/* ------------------------------------------------------------- helpers */

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) {
        free(s);
        s = NULL;
    }
    fclose(f);
    if (s) {
        s[n] = 0;
        if (len) *len = (size_t)n;
    }
    return s;
}

static int count_occurrences(const char *hay, const char *needle) {
    int n = 0;
    size_t l = strlen(needle);
    for (const char *p = strstr(hay, needle); p; p = strstr(p + l, needle)) n++;
    return n;
}

/* Last occurrence of needle in hay, or NULL. */
static const char *find_last(const char *hay, const char *needle) {
    const char *last = NULL;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle)) last = p;
    return last;
}

/* A stand-in tokenizer: whitespace-separated words, plus a fixed overhead
 * for the template. fail makes it report an error. */
typedef struct { int overhead; bool fail; int calls; } word_counter;

static int count_words(const char *s) {
    int n = 0;
    bool in = false;
    for (; *s; s++) {
        bool sp = *s == ' ' || *s == '\n' || *s == '\t';
        if (!sp && !in) n++;
        in = !sp;
    }
    return n;
}

static int word_count(const char *input, const char *prefix, void *user) {
    word_counter *w = user;
    w->calls++;
    if (w->fail) return -1;
    return w->overhead + count_words(input) + count_words(prefix);
}

/* The real thing: SmolLM2's chat template and tokenizer, the way the eval
 * harness counts a prompt (rendered user turn + answer prefix, special
 * tokens parsed, no extra BOS). */
typedef struct {
    gw_tokenizer *tok;
    const char *tmpl;
    gw_chat_format fmt;
} tok_counter;

static int token_count(const char *input, const char *prefix, void *user) {
    tok_counter *tc = user;
    gw_chat_msg m = {"user", input};
    char *r = gw_chat_render(tc->fmt, tc->tmpl, &m, 1, true);
    if (!r) return -1;
    size_t a = strlen(r), b = strlen(prefix);
    char *text = malloc(a + b + 1);
    memcpy(text, r, a);
    memcpy(text + a, prefix, b + 1);
    free(r);
    int32_t *ids = NULL;
    int64_t n = gw_tokenize(tc->tok, text, a + b, false, true, &ids);
    free(ids);
    free(text);
    return (int)n;
}

static gw_corpus *g_corpus;   /* War and Peace, or NULL when missing */

static bool is_essay(gw_task t) {
    return t == GW_TASK_NIAH_SINGLE_2 || t == GW_TASK_NIAH_SINGLE_3 || t == GW_TASK_NIAH_SINGLE_WORDS ||
           t == GW_TASK_NIAH_MULTIKEY_1 || t == GW_TASK_NIAH_MULTIVALUE || t == GW_TASK_NIAH_MULTIQUERY;
}

static bool is_niah(gw_task t) { return t <= GW_TASK_NIAH_MULTIQUERY; }

/* Makes a sample; on failure the sample is zeroed and the error printed. */
static int make(gw_task t, int length, uint64_t seed, int index, double depth, gw_token_counter cnt,
                void *user, gw_eval_sample *s) {
    gw_eval_sample_params p = {.task = t, .length = length, .seed = seed, .index = index, .depth = depth,
                               .corpus = g_corpus, .count = cnt, .count_user = user};
    char err[256] = "";
    int rc = gw_eval_sample_make(&p, s, err, sizeof err);
    if (rc != 0) fprintf(stderr, "  %s @%d: %s\n", gw_task_name(t), length, err);
    return rc;
}

static bool same_sample(const gw_eval_sample *a, const gw_eval_sample *b) {
    if (strcmp(a->input, b->input) || strcmp(a->answer_prefix, b->answer_prefix)) return false;
    if (a->n_refs != b->n_refs || a->max_new_tokens != b->max_new_tokens) return false;
    if (a->n_prompt_tokens != b->n_prompt_tokens || a->depth != b->depth) return false;
    for (int i = 0; i < a->n_refs; i++)
        if (strcmp(a->refs[i], b->refs[i])) return false;
    return true;
}

/* -------------------------------------------------------------- checks */

static void test_words(void) {
    const char *const *lists[3] = {gw_adjectives, gw_nouns, gw_verbs};
    int ns[3] = {gw_n_adjectives, gw_n_nouns, gw_n_verbs};
    int total = ns[0] + ns[1] + ns[2];
    CHECK_MSG(ns[0] >= 300 && ns[1] >= 300 && total >= 1500, "word lists: %d %d %d", ns[0], ns[1], ns[2]);
    const char **all = malloc(sizeof *all * (size_t)total);
    int k = 0, bad = 0;
    for (int l = 0; l < 3; l++)
        for (int i = 0; i < ns[l]; i++) {
            const char *w = lists[l][i];
            bool ok = w[0] != 0;
            for (const char *c = w; *c; c++) ok = ok && *c >= 'a' && *c <= 'z';
            if (!ok) bad++;
            all[k++] = w;
        }
    CHECK_MSG(bad == 0, "%d words are not lowercase letters", bad);
    /* Insertion sort: a few thousand words, and no comparator casts. */
    for (int i = 1; i < total; i++)
        for (int j = i; j > 0 && strcmp(all[j - 1], all[j]) > 0; j--) {
            const char *t = all[j];
            all[j] = all[j - 1];
            all[j - 1] = t;
        }
    int dups = 0;
    for (int i = 1; i < total; i++)
        if (!strcmp(all[i - 1], all[i])) {
            if (dups++ < 5) fprintf(stderr, "  duplicate word: %s\n", all[i]);
        }
    CHECK_MSG(dups == 0, "%d duplicate words", dups);
    free(all);
}

static void test_names(void) {
    for (int t = 0; t < GW_TASK_COUNT; t++) CHECK(gw_task_lookup(gw_task_name((gw_task)t)) == t);
    CHECK(gw_task_lookup("all") == GW_TASK_COUNT);
    CHECK(gw_task_lookup("niah") == -1);
    CHECK(gw_task_lookup(NULL) == -1);
    CHECK(!strcmp(gw_task_name(GW_TASK_VT), "vt"));
    CHECK(!strcmp(gw_task_name(GW_TASK_NIAH_SINGLE_2), "niah_single_2"));
    CHECK(gw_task_name((gw_task)99) != NULL);
}

static void test_corpus(void) {
    const char text[] = "  Hello   world.  How are\n you? \"I am fine!\" she said.\n\n"
                        "It is 3.5 degrees... Really?\xE2\x80\x9D Yes.\xE2\x80\x99 (Maybe.) End";
    const char *want[] = {"Hello world.", "How are you?", "\"I am fine!\"", "she said.",
                          "It is 3.5 degrees...", "Really?\xE2\x80\x9D", "Yes.\xE2\x80\x99",
                          "(Maybe.) End"};
    /* ')' is not a closing quote: no split after "(Maybe.)" */
    const size_t n_want = sizeof want / sizeof want[0];
    gw_corpus *c = gw_corpus_new(text, sizeof text - 1);
    CHECK(c != NULL);
    if (!c) return;
    CHECK_MSG(gw_corpus_n_sentences(c) == n_want, "%zu sentences", gw_corpus_n_sentences(c));
    for (size_t i = 0; i < n_want && i < gw_corpus_n_sentences(c); i++)
        CHECK_MSG(!strcmp(gw_corpus_sentence(c, i), want[i]), "sentence %zu: [%s] want [%s]", i,
                  gw_corpus_sentence(c, i), want[i]);
    CHECK(gw_corpus_sentence(c, n_want) == NULL);
    gw_corpus_free(c);

    /* Only whitespace, empty, a NUL byte inside, no final punctuation. */
    c = gw_corpus_new(" \n\t ", 4);
    CHECK(c && gw_corpus_n_sentences(c) == 0);
    gw_corpus_free(c);
    c = gw_corpus_new("", 0);
    CHECK(c && gw_corpus_n_sentences(c) == 0);
    gw_corpus_free(c);
    c = gw_corpus_new("A b.\0C d. E", 11);
    CHECK(c && gw_corpus_n_sentences(c) == 3);
    if (c && gw_corpus_n_sentences(c) == 3) {
        CHECK(!strcmp(gw_corpus_sentence(c, 0), "A b."));
        CHECK(!strcmp(gw_corpus_sentence(c, 1), "C d."));
        CHECK(!strcmp(gw_corpus_sentence(c, 2), "E"));
    }
    gw_corpus_free(c);
    c = gw_corpus_new("Wait!!! Done?! ok", 17);
    CHECK(c && gw_corpus_n_sentences(c) == 3);
    gw_corpus_free(c);
    gw_corpus_free(NULL);
    CHECK(gw_corpus_n_sentences(NULL) == 0);
}

/* The key a single-query niah sample asks for, from its answer prefix
 * " The special magic X for KEY mentioned in the provided text is". */
static void prefix_key(const gw_eval_sample *s, char *key, size_t cap) {
    key[0] = 0;
    const char *p = strstr(s->answer_prefix, " for ");
    const char *e = strstr(s->answer_prefix, " mentioned in");
    if (!p || !e || e < p + 5 || (size_t)(e - p - 5) >= cap) return;
    memcpy(key, p + 5, (size_t)(e - p - 5));
    key[e - p - 5] = 0;
}

/* The haystack region of a niah input: after the template's first line,
 * before its question. */
static void niah_region(const char *in, const char **start, const char **end) {
    const char *a = strstr(in, "afterwards.\n");
    *start = a ? a + strlen("afterwards.\n") : in;
    const char *q = find_last(in, "\nWhat ");
    *end = q ? q : in + strlen(in);
}

/* Walks an essay context sentence by sentence against the corpus: the
 * number of corpus sentences (n) and, for each needle met, how many
 * sentences came before it. Returns false if the text is not consecutive
 * corpus sentences and needles joined by single spaces. */
static bool essay_walk(const char *start, const char *end, long *n, long *before, int *n_needles) {
    *n = 0;
    *n_needles = 0;
    size_t ns = gw_corpus_n_sentences(g_corpus);
    const char *cur = start;
    long idx = -1;
    while (cur < end) {
        if (!strncmp(cur, "One of the special magic ", 25)) {
            const char *dot = strstr(cur, " is: ");
            if (!dot) return false;
            dot = strchr(dot + 5, '.');
            if (!dot) return false;
            before[(*n_needles)++] = *n;
            cur = dot + 1;
        } else {
            if (idx < 0) {   /* the first sentence: find it in the corpus */
                for (size_t i = 0; i < ns && idx < 0; i++) {
                    const char *s = gw_corpus_sentence(g_corpus, i);
                    size_t l = strlen(s);
                    if (!strncmp(cur, s, l) && (cur + l == end || cur[l] == ' ')) idx = (long)i;
                }
                if (idx < 0) return false;
            }
            const char *s = gw_corpus_sentence(g_corpus, (size_t)idx % ns);
            size_t l = strlen(s);
            if (strncmp(cur, s, l)) return false;
            cur += l;
            idx++;
            (*n)++;
        }
        if (cur < end) {
            if (*cur != ' ') return false;
            cur++;
        }
    }
    return true;
}

/* Offset of the needle with the given value as a fraction of the region. */
static double frac_of(const char *start, const char *end, const char *needle) {
    const char *p = strstr(start, needle);
    if (!p || p > end) return -1;
    return (double)(p - start) / (double)(end - start);
}

/* What the references rest on is in the text. */
static void check_content(gw_task t, const gw_eval_sample *s, int length) {
    const char *in = s->input;
    char buf[512], key[256];
    const char *name = gw_task_name(t);
    if (is_niah(t)) {
        const char *plural = t == GW_TASK_NIAH_SINGLE_3 || t == GW_TASK_NIAH_MULTIKEY_3 ? "uuids"
                             : t == GW_TASK_NIAH_SINGLE_WORDS                         ? "words"
                                                                                      : "numbers";
        prefix_key(s, key, sizeof key);
        CHECK_MSG(key[0], "%s: no key in prefix [%s]", name, s->answer_prefix);
        if (t == GW_TASK_NIAH_MULTIQUERY) {
            /* "a, b, c, and d": the i-th key holds the i-th reference. */
            CHECK(s->n_refs == 4);
            char *save = NULL, *k = strtok_r(key, ",", &save);
            int i = 0;
            for (; k && i < 4; k = strtok_r(NULL, ",", &save), i++) {
                while (*k == ' ') k++;
                if (!strncmp(k, "and ", 4)) k += 4;
                snprintf(buf, sizeof buf, "One of the special magic %s for %s is: %s.", plural, k, s->refs[i]);
                CHECK_MSG(count_occurrences(in, buf) == 1, "%s: needle [%s] not once", name, buf);
            }
            CHECK(i == 4);
            CHECK(strstr(s->answer_prefix, " The special magic numbers for ") == s->answer_prefix);
            CHECK(strstr(in, "Some special magic numbers are hidden") == in);
        } else {
            for (int i = 0; i < s->n_refs; i++) {
                snprintf(buf, sizeof buf, "One of the special magic %s for %s is: %s.", plural, key, s->refs[i]);
                CHECK_MSG(count_occurrences(in, buf) == 1, "%s: needle [%s] not once", name, buf);
            }
            snprintf(buf, sizeof buf, " for %s is: ", key);
            CHECK_MSG(count_occurrences(in, buf) == s->n_refs, "%s: key %s as a needle %d times", name, key,
                      count_occurrences(in, buf));
        }
        int n_needle_sent = count_occurrences(in, "One of the special magic ");
        if (t == GW_TASK_NIAH_MULTIKEY_1) CHECK_MSG(n_needle_sent == 4, "%s: %d needles", name, n_needle_sent);
        if (t == GW_TASK_NIAH_MULTIVALUE) CHECK(s->n_refs == 4 && n_needle_sent == 4);
        if (t == GW_TASK_NIAH_MULTIKEY_2 || t == GW_TASK_NIAH_MULTIKEY_3) {
            /* Every line is a needle; the distractors are many and other keys. */
            const char *a, *b;
            niah_region(in, &a, &b);
            int lines = 1;
            for (const char *p = a; p < b; p++) lines += *p == '\n';
            CHECK_MSG(n_needle_sent == lines && lines > 5, "%s: %d needles, %d lines", name, n_needle_sent, lines);
        }
        if (t == GW_TASK_NIAH_MULTIKEY_3) CHECK(strlen(key) == 36 && key[14] == '4');
        if (s->n_refs == 1 && t != GW_TASK_NIAH_MULTIQUERY) {
            CHECK(strstr(in, "A special magic ") == in);
            CHECK(strstr(s->answer_prefix, "mentioned in the provided text is") != NULL);
        }
        if (t == GW_TASK_NIAH_SINGLE_1 || t == GW_TASK_NIAH_SINGLE_2 || t == GW_TASK_NIAH_MULTIKEY_2)
            CHECK(strlen(s->refs[0]) == 7 && s->refs[0][0] >= '1');
    } else if (t == GW_TASK_PASSKEY) {
        CHECK(s->n_refs == 1 && strlen(s->refs[0]) == 5);
        snprintf(buf, sizeof buf, "The pass key is %s. Remember it. %s is the pass key.", s->refs[0], s->refs[0]);
        CHECK_MSG(count_occurrences(in, buf) == 1, "passkey: [%s] missing", buf);
        CHECK(strstr(in, "There is an important info hidden inside a lot of irrelevant text.") == in);
        CHECK(!strcmp(s->answer_prefix, " The pass key is"));
        CHECK(!strcmp(in + strlen(in) - strlen("\nWhat is the pass key?"), "\nWhat is the pass key?"));
    } else if (t == GW_TASK_VT) {
        CHECK(s->n_refs == 5);
        /* One-shot example first, then the task; the chain in order in the task. */
        const char *task = find_last(in, "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n");
        CHECK(task && task > in && count_occurrences(in, "Memorize and track") == 2);
        CHECK(strstr(in, "Memorize and track the chain(s) of variable assignment hidden in the following text. ") == in);
        const char *val = strstr(s->answer_prefix, "assigned the value ");
        CHECK(val && strstr(s->answer_prefix, "5 variables are assigned") != NULL);
        int value = val ? atoi(val + strlen("assigned the value ")) : 0;
        CHECK(value >= 10000 && value <= 99999);
        const char *cur = task ? task : in;
        for (int i = 0; i < 5; i++) {
            CHECK(strlen(s->refs[i]) == 5);
            if (i == 0) snprintf(buf, sizeof buf, "VAR %s = %d", s->refs[0], value);
            else snprintf(buf, sizeof buf, "VAR %s = VAR %s ", s->refs[i], s->refs[i - 1]);
            const char *p = strstr(cur, buf);
            CHECK_MSG(p != NULL, "vt: [%s] missing or out of order", buf);
            if (p) cur = p + strlen(buf);
        }
        snprintf(buf, sizeof buf, "\nQuestion: Find all variables that are assigned the value %d in the text above.", value);
        CHECK(!strcmp(in + strlen(in) - strlen(buf), buf));
    } else if (t == GW_TASK_CWE) {
        /* The task's list: each common word exactly freq_cw times, every
         * other word freq_ucw times, numbered 1..M. */
        int cw = length < 4096 ? 6 : 30, ucw = length < 4096 ? 1 : 3;
        CHECK(s->n_refs == 10);
        const char *head = find_last(in, "Memorize the ones that appear most often.\n");
        CHECK(head && head > in);
        if (!head) return;
        char *list = strdup(head + strlen("Memorize the ones that appear most often.\n"));
        char *q = strstr(list, "\nQuestion: What are the 10 most common words in the above list?");
        CHECK(q != NULL);
        if (q) *q = 0;
        typedef struct { char w[32]; int n; } wc;
        wc *counts = calloc(4096, sizeof *counts);
        int n_counts = 0, expect = 1, bad_number = 0;
        char *save = NULL;
        for (char *tok = strtok_r(list, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
            if (atoi(tok) != expect++) bad_number++;
            char *w = strtok_r(NULL, " ", &save);
            if (!w) break;
            int i = 0;
            while (i < n_counts && strcmp(counts[i].w, w)) i++;
            if (i == n_counts && n_counts < 4096) snprintf(counts[n_counts++].w, 32, "%s", w);
            if (i < 4096) counts[i].n++;
        }
        CHECK(bad_number == 0);
        int n_common = 0, bad = 0;
        for (int i = 0; i < n_counts; i++) {
            bool is_ref = false;
            for (int r = 0; r < s->n_refs; r++) is_ref = is_ref || !strcmp(s->refs[r], counts[i].w);
            n_common += is_ref;
            if (counts[i].n != (is_ref ? cw : ucw)) bad++;
        }
        CHECK_MSG(n_common == 10 && bad == 0 && n_counts > 20, "cwe: %d common, %d miscounted of %d", n_common, bad, n_counts);
        free(counts);
        free(list);
        CHECK(strstr(in, "are:1. ") != NULL);   /* the example's answer, glued on as RULER does */
    } else if (t == GW_TASK_FWE) {
        /* Ranks by count: "...." first, then the three references in order,
         * each strictly more frequent than the next. */
        CHECK(s->n_refs == 3);
        const char *a = strstr(in, "coded words. ");
        const char *b = strstr(in, "\nQuestion: Do not provide any explanation.");
        CHECK(a && b);
        if (!a || !b) return;
        a += strlen("coded words. ");
        char *text = strndup(a, (size_t)(b - a));
        typedef struct { char w[8]; int n; } wc;
        wc *counts = calloc(2048, sizeof *counts);
        int n_counts = 0;
        char *save = NULL;
        for (char *w = strtok_r(text, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
            int i = 0;
            while (i < n_counts && strcmp(counts[i].w, w)) i++;
            if (i == n_counts && n_counts < 2048) snprintf(counts[n_counts++].w, 8, "%s", w);
            if (i < 2048) counts[i].n++;
        }
        for (int i = 1; i < n_counts; i++)   /* by count, descending */
            for (int j = i; j > 0 && counts[j - 1].n < counts[j].n; j--) {
                wc tmp = counts[j];
                counts[j] = counts[j - 1];
                counts[j - 1] = tmp;
            }
        CHECK(n_counts >= 5 && !strcmp(counts[0].w, "...."));
        for (int r = 0; r < 3 && n_counts >= 5; r++) {
            CHECK_MSG(!strcmp(counts[r + 1].w, s->refs[r]), "fwe: rank %d is %s, ref %s", r + 2, counts[r + 1].w, s->refs[r]);
            CHECK(strlen(s->refs[r]) == 6);
            CHECK(counts[r + 1].n > counts[r + 2].n);
        }
        free(counts);
        free(text);
    }
}

/* Depth: the needle sits where it was asked to, in haystack units, and
 * (looser) as a fraction of the text. */
static void check_depth(gw_task t, const gw_eval_sample *s, double want) {
    const char *name = gw_task_name(t);
    CHECK_MSG(s->depth == want, "%s: depth %g, asked %g", name, s->depth, want);
    char needle[256];
    if (t == GW_TASK_PASSKEY) snprintf(needle, sizeof needle, "The pass key is %s.", s->refs[0]);
    else snprintf(needle, sizeof needle, " is: %s.", s->refs[0]);
    const char *a, *b;
    if (t == GW_TASK_PASSKEY) {
        a = strchr(s->input, '\n') + 1;
        b = find_last(s->input, "\nWhat is the pass key?");
    } else {
        niah_region(s->input, &a, &b);
    }
    double f = frac_of(a, b, needle);
    double tol = is_essay(t) ? 0.2 : 0.03;   /* essay sentences differ in length */
    CHECK_MSG(f >= 0 && fabs(f - want) <= tol, "%s: needle at %.3f of the haystack, asked %.3f", name, f, want);

    if (is_essay(t) && g_corpus) {
        long n, before[8];
        int nn;
        bool ok = essay_walk(a, b, &n, before, &nn);
        CHECK_MSG(ok && nn == 1, "%s: essay context is not corpus sentences + 1 needle", name);
        if (ok && nn == 1)
            CHECK_MSG(before[0] == (long)(want * n), "%s: needle after %ld of %ld sentences, asked %g", name,
                      before[0], n, want);
    } else if (t == GW_TASK_NIAH_SINGLE_1 || t == GW_TASK_NIAH_MULTIKEY_2 || t == GW_TASK_NIAH_MULTIKEY_3) {
        /* Lines: the needle's line number over the haystack lines. */
        const char *p = strstr(a, needle);
        long line = 0, lines = 0;
        for (const char *c = a; c < b; c++) {
            if (*c != '\n') continue;
            lines++;
            if (c < p) line++;
        }
        CHECK_MSG(p && line == (long)(want * lines), "%s: needle on line %ld of %ld, asked %g", name, line, lines, want);
    }
}

/* Several needles: spread evenly, at the middles of equal parts. */
static void check_spread(gw_task t, const gw_eval_sample *s) {
    if (!g_corpus) return;
    const char *a, *b;
    niah_region(s->input, &a, &b);
    long n, before[8];
    int nn;
    bool ok = essay_walk(a, b, &n, before, &nn);
    CHECK_MSG(ok && nn == 4, "%s: essay context is not corpus sentences + 4 needles", gw_task_name(t));
    for (int i = 0; ok && i < nn && i < 4; i++)
        CHECK_MSG(before[i] == (long)((i + 0.5) / 4 * n), "%s: needle %d after %ld of %ld sentences",
                  gw_task_name(t), i, before[i], n);
    CHECK(s->depth == 0.125 || s->depth == 0.375 || s->depth == 0.625 || s->depth == 0.875);
}

/* Everything that does not need the real tokenizer, with the word counter. */
static void test_tasks_words(void) {
    word_counter wc = {.overhead = 30};
    const int lengths[] = {1024, 4096};
    for (int t = 0; t < GW_TASK_COUNT; t++) {
        if (is_essay((gw_task)t) && !g_corpus) continue;
        for (int li = 0; li < 2; li++) {
            int L = lengths[li];
            gw_eval_sample a, b, c, d;
            int ra = make((gw_task)t, L, 7, 0, -1, word_count, &wc, &a);
            int rb = make((gw_task)t, L, 7, 0, -1, word_count, &wc, &b);
            int rc = make((gw_task)t, L, 7, 1, -1, word_count, &wc, &c);
            int rd = make((gw_task)t, L, 8, 0, -1, word_count, &wc, &d);
            CHECK(ra == 0 && rb == 0 && rc == 0 && rd == 0);
            if (ra == 0 && rb == 0) CHECK_MSG(same_sample(&a, &b), "%s: not deterministic", gw_task_name(t));
            if (ra == 0 && rc == 0) CHECK_MSG(strcmp(a.input, c.input) != 0, "%s: index ignored", gw_task_name(t));
            if (ra == 0 && rd == 0) CHECK_MSG(strcmp(a.input, d.input) != 0, "%s: seed ignored", gw_task_name(t));
            if (ra == 0) {
                int total = a.n_prompt_tokens + a.max_new_tokens;
                CHECK(word_count(a.input, a.answer_prefix, &wc) == a.n_prompt_tokens);
                CHECK_MSG(total <= L && total > 0.9 * L, "%s @%d: %d tokens", gw_task_name(t), L, total);
                check_content((gw_task)t, &a, L);
                int budget = t == GW_TASK_VT ? 30 : t == GW_TASK_CWE ? 120 : t == GW_TASK_FWE ? 50
                           : t == GW_TASK_PASSKEY ? 16 : 128;
                CHECK(a.max_new_tokens == budget);
                if (t == GW_TASK_CWE || t == GW_TASK_FWE) CHECK(a.depth == -1);
                else CHECK(a.depth >= 0 && a.depth <= 1);
            }
            gw_eval_sample_free(&a);
            gw_eval_sample_free(&b);
            gw_eval_sample_free(&c);
            gw_eval_sample_free(&d);
        }
    }

    /* Depths. */
    const gw_task single[] = {GW_TASK_NIAH_SINGLE_1, GW_TASK_NIAH_SINGLE_2, GW_TASK_NIAH_SINGLE_3,
                              GW_TASK_NIAH_SINGLE_WORDS, GW_TASK_NIAH_MULTIKEY_2, GW_TASK_NIAH_MULTIKEY_3,
                              GW_TASK_PASSKEY};
    const double depths[] = {0, 0.25, 0.5, 0.8, 1};
    for (size_t i = 0; i < sizeof single / sizeof single[0]; i++) {
        if (is_essay(single[i]) && !g_corpus) continue;
        for (size_t j = 0; j < sizeof depths / sizeof depths[0]; j++) {
            gw_eval_sample s;
            if (make(single[i], 4096, 3, (int)j, depths[j], word_count, &wc, &s) == 0) check_depth(single[i], &s, depths[j]);
            else CHECK(0);
            gw_eval_sample_free(&s);
        }
        /* No depth asked: one of RULER's 40 grid depths. */
        gw_eval_sample s;
        if (make(single[i], 2048, 3, 9, -1, word_count, &wc, &s) == 0) {
            double g = s.depth * 39.0;
            bool on_grid = false;
            for (int k = 0; k < 40; k++) on_grid = on_grid || fabs(s.depth - floor(100.0 * k / 39.0 + 0.5) / 100.0) < 1e-12;
            CHECK_MSG(on_grid, "%s: depth %g not on the grid (%g)", gw_task_name(single[i]), s.depth, g);
            check_depth(single[i], &s, s.depth);
        } else {
            CHECK(0);
        }
        gw_eval_sample_free(&s);
    }
    const gw_task multi[] = {GW_TASK_NIAH_MULTIKEY_1, GW_TASK_NIAH_MULTIVALUE, GW_TASK_NIAH_MULTIQUERY};
    for (size_t i = 0; i < 3 && g_corpus; i++) {
        gw_eval_sample s;
        if (make(multi[i], 4096, 5, 2, -1, word_count, &wc, &s) == 0) check_spread(multi[i], &s);
        else CHECK(0);
        gw_eval_sample_free(&s);
    }
    if (!g_corpus) printf("essay corpus missing: essay task checks skipped\n");
}

static void test_errors(void) {
    word_counter wc = {.overhead = 30};
    char err[256];
    gw_eval_sample s;
    gw_eval_sample_params p = {.task = GW_TASK_NIAH_SINGLE_2, .length = 4096, .depth = -1, .count = word_count,
                               .count_user = &wc};

    err[0] = 0;
    CHECK(gw_eval_sample_make(&p, &s, err, sizeof err) == -1 && strstr(err, "corpus"));
    CHECK(s.input == NULL && s.refs == NULL);
    gw_eval_sample_free(&s);

    p.task = (gw_task)77;
    err[0] = 0;
    CHECK(gw_eval_sample_make(&p, &s, err, sizeof err) == -1 && strstr(err, "unknown task"));
    CHECK(gw_eval_sample_make(NULL, &s, err, sizeof err) == -1);
    CHECK(gw_eval_sample_make(&p, NULL, err, sizeof err) == -1);
    CHECK(gw_eval_sample_make(&p, &s, NULL, 0) == -1);

    p.task = GW_TASK_NIAH_SINGLE_1;
    p.length = 100;   /* under the answer budget */
    err[0] = 0;
    CHECK(gw_eval_sample_make(&p, &s, err, sizeof err) == -1 && strstr(err, "too small"));
    p.length = 150;   /* over it, but the template alone does not fit */
    err[0] = 0;
    CHECK(gw_eval_sample_make(&p, &s, err, sizeof err) == -1 && strstr(err, "too small"));
    p.length = 0;
    CHECK(gw_eval_sample_make(&p, &s, err, sizeof err) == -1);
    p.length = 4096;
    p.count = NULL;
    CHECK(gw_eval_sample_make(&p, &s, err, sizeof err) == -1);
    p.count = word_count;
    wc.fail = true;
    err[0] = 0;
    CHECK(gw_eval_sample_make(&p, &s, err, sizeof err) == -1 && strstr(err, "counter"));
    wc.fail = false;
    p.task = GW_TASK_VT;
    p.length = 520;   /* the one-shot example alone takes most of 500 */
    err[0] = 0;
    CHECK(gw_eval_sample_make(&p, &s, err, sizeof err) == -1 && strstr(err, "too small"));

    /* A corpus of three sentences cannot fill 4096 tokens; nor can the word
     * list fill cwe at 200k. */
    gw_corpus *tiny = gw_corpus_new("One. Two. Three.", 16);
    p.task = GW_TASK_NIAH_SINGLE_3;
    p.length = 4096;
    p.corpus = tiny;
    err[0] = 0;
    CHECK(gw_eval_sample_make(&p, &s, err, sizeof err) == -1 && strstr(err, "too short"));
    gw_corpus *none = gw_corpus_new("   ", 3);
    p.corpus = none;
    CHECK(gw_eval_sample_make(&p, &s, err, sizeof err) == -1 && strstr(err, "no sentences"));
    gw_corpus_free(tiny);
    gw_corpus_free(none);
    p.corpus = NULL;
    p.task = GW_TASK_CWE;
    p.length = 200000;
    err[0] = 0;
    CHECK(gw_eval_sample_make(&p, &s, err, sizeof err) == -1 && strstr(err, "word list"));

    /* A depth out of range is clamped, NaN means "choose". */
    p.task = GW_TASK_PASSKEY;
    p.length = 1024;
    p.depth = 7;
    CHECK(gw_eval_sample_make(&p, &s, err, sizeof err) == 0 && s.depth == 1);
    gw_eval_sample_free(&s);
    p.depth = NAN;
    CHECK(gw_eval_sample_make(&p, &s, err, sizeof err) == 0 && s.depth >= 0 && s.depth <= 1);
    gw_eval_sample_free(&s);
    gw_eval_sample_free(NULL);
}

static void test_score(void) {
    char r0[] = "Apple", r1[] = "1234567", r2[] = "pear-tree", r3[] = "Zed";
    char *refs[] = {r0, r1, r2, r3};
    gw_eval_sample s = {.refs = refs, .n_refs = 4};
    CHECK_NEAR(gw_eval_sample_score(&s, "apple 1234567 PEAR-TREE zed"), 100, 1e-9);
    CHECK_NEAR(gw_eval_sample_score(&s, "an APPLE and 1234567"), 50, 1e-9);
    CHECK_NEAR(gw_eval_sample_score(&s, "x1234567x"), 25, 1e-9);
    CHECK_NEAR(gw_eval_sample_score(&s, "123456 pear tree"), 0, 1e-9);
    CHECK_NEAR(gw_eval_sample_score(&s, ""), 0, 1e-9);
    CHECK_NEAR(gw_eval_sample_score(&s, NULL), 0, 1e-9);
    CHECK_NEAR(gw_eval_sample_score(NULL, "apple"), 0, 1e-9);
    gw_eval_sample one = {.refs = refs, .n_refs = 1};
    CHECK_NEAR(gw_eval_sample_score(&one, "The answer is apple."), 100, 1e-9);
    gw_eval_sample empty = {0};
    CHECK_NEAR(gw_eval_sample_score(&empty, "apple"), 0, 1e-9);
}

/* The real tokenizer through the chat template: the fit lands within 10%
 * below the length, and the count agrees with an independent one. */
static void test_tasks_tokenizer(void) {
    char err[256];
    gguf_file *f = gguf_open(test_model_path(), err, sizeof err);
    CHECK_MSG(f != NULL, "%s", err);
    if (!f) return;
    tok_counter tc = {.tmpl = gguf_get_str(f, "tokenizer.chat_template")};
    tc.fmt = gw_chat_detect(tc.tmpl);
    tc.tok = gw_tokenizer_from_gguf(f, err, sizeof err);
    CHECK_MSG(tc.tok != NULL, "%s", err);
    if (!tc.tok) {
        gguf_close(f);
        return;
    }
    struct { gw_task t; int length; } runs[2 * GW_TASK_COUNT + 2];
    int n_runs = 0;
    for (int t = 0; t < GW_TASK_COUNT; t++) {
        runs[n_runs].t = (gw_task)t;
        runs[n_runs++].length = 1024;
        runs[n_runs].t = (gw_task)t;
        runs[n_runs++].length = 4096;
    }
    runs[n_runs].t = GW_TASK_NIAH_SINGLE_2;
    runs[n_runs++].length = 8192;
    runs[n_runs].t = GW_TASK_VT;
    runs[n_runs++].length = 8192;
    for (int i = 0; i < n_runs; i++) {
        gw_task t = runs[i].t;
        int L = runs[i].length;
        if (is_essay(t) && !g_corpus) continue;
        gw_eval_sample s;
        if (make(t, L, 42, i, -1, token_count, &tc, &s) != 0) {
            CHECK_MSG(0, "%s @%d failed", gw_task_name(t), L);
            continue;
        }
        int total = s.n_prompt_tokens + s.max_new_tokens;
        CHECK(token_count(s.input, s.answer_prefix, &tc) == s.n_prompt_tokens);
        CHECK_MSG(total <= L && total > 0.9 * L, "%s @%d: %d tokens", gw_task_name(t), L, total);
        check_content(t, &s, L);
        if (getenv("RULER_VERBOSE")) printf("  %-18s %5d: %5d tokens\n", gw_task_name(t), L, total);
        gw_eval_sample_free(&s);
    }

    if (getenv("RULER_DUMP")) {
        const gw_task dump[] = {GW_TASK_NIAH_SINGLE_2, GW_TASK_VT};
        for (int i = 0; i < 2; i++) {
            gw_eval_sample s;
            if (is_essay(dump[i]) && !g_corpus) continue;
            if (make(dump[i], 1024, 42, 0, -1, token_count, &tc, &s) != 0) continue;
            size_t n = strlen(s.input);
            printf("==== %s @1024: %d prompt tokens, depth %g, refs:", gw_task_name(dump[i]), s.n_prompt_tokens, s.depth);
            for (int r = 0; r < s.n_refs; r++) printf(" %s", s.refs[r]);
            printf("\n---- head:\n%.*s\n---- tail:\n%s\n---- answer prefix: [%s]\n", 300, s.input,
                   n > 300 ? s.input + n - 300 : s.input, s.answer_prefix);
            gw_eval_sample_free(&s);
        }
    }
    gw_tokenizer_free(tc.tok);
    gguf_close(f);
}

int main(void) {
    const char *root = getenv("GODWIT_ROOT");
    char path[4096];
    snprintf(path, sizeof path, "%s/../shared/data/war_and_peace.txt", root ? root : ".");
    size_t len = 0;
    char *text = read_file(path, &len);
    if (text) {
        g_corpus = gw_corpus_new(text, len);
        free(text);
        CHECK(g_corpus && gw_corpus_n_sentences(g_corpus) > 10000);
    } else {
        printf("note: %s missing, essay checks skipped\n", path);
    }

    test_words();
    test_names();
    test_corpus();
    test_score();
    test_errors();
    test_tasks_words();
    test_tasks_tokenizer();

    gw_corpus_free(g_corpus);
    return test_finish("test_ruler");
}
