/* The evaluation harness's bookkeeping, without a model: result records
 * written and read back, an unfinished last line repaired for resuming,
 * grouping into summaries, the side-by-side comparison, the needle grid's
 * JSON and SVG. (Generation with a model is covered by tests/test_eval.sh.) */
#include <unistd.h>

#include "eval/harness.h"
#include "test.h"

static char tmpdir[] = "/tmp/godwit_harness_XXXXXX";

static const char *tmp(const char *name) {
    static char buf[256];
    snprintf(buf, sizeof buf, "%s/%s", tmpdir, name);
    return buf;
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc(n + 1);
    s[fread(s, 1, n, f)] = 0;
    fclose(f);
    return s;
}

static gw_eval_record rec(const char *task, int length, int index, double score) {
    gw_eval_record r = {.model = "m.gguf", .config = "dense", .task = (char *)task, .length = length,
                        .index = index, .seed = 42, .depth = -1, .score = score, .n_prompt_tokens = length - 100,
                        .n_generated = 10, .prefill_tok_s = 1000, .decode_tok_s = 50};
    return r;
}

static void test_write_read(void) {
    const char *path = tmp("a.jsonl");
    FILE *f = fopen(path, "wb");
    char *refs[] = {"1234567", "quote \" and \\ and\nnewline"};
    gw_eval_sample s = {.refs = refs, .n_refs = 2};
    gw_eval_record r = rec("niah_single_1", 1024, 0, 100);
    r.seed = 18446744073709551615ull; /* beyond 2^53: must survive exactly */
    CHECK(gw_eval_record_write(f, &r, "The number is 1234567.\n", &s) == 0);
    r = rec("niah_single_1", 1024, 1, 50);
    CHECK(gw_eval_record_write(f, &r, "", &s) == 0);
    fclose(f);

    gw_eval_records rs;
    char err[256];
    CHECK(gw_eval_records_load(path, false, &rs, err, sizeof err) == 0);
    CHECK(rs.n == 2);
    if (rs.n == 2) {
        CHECK(rs.v[0].seed == 18446744073709551615ull);
        CHECK(!strcmp(rs.v[0].task, "niah_single_1"));
        CHECK(rs.v[0].length == 1024 && rs.v[1].index == 1);
        CHECK(rs.v[0].score == 100 && rs.v[1].score == 50);
        CHECK(rs.v[0].depth == -1);
        CHECK(gw_eval_records_find(&rs, "m.gguf", "dense", "niah_single_1", 1024, 1, 42, -1) == &rs.v[1]);
        CHECK(gw_eval_records_find(&rs, "m.gguf", "dense", "niah_single_1", 1024, 2, 42, -1) == NULL);
        CHECK(gw_eval_records_find(&rs, "m.gguf", "int8", "niah_single_1", 1024, 1, 42, -1) == NULL);
    }
    gw_eval_records_free(&rs);

    /* a missing file is an empty set, not an error */
    CHECK(gw_eval_records_load(tmp("none.jsonl"), false, &rs, err, sizeof err) == 0 && rs.n == 0);
    gw_eval_records_free(&rs);
}

/* A run stopped in the middle of writing a line leaves a partial line; the
 * resuming run drops it (and only it) and appends cleanly. */
static void test_repair(void) {
    const char *path = tmp("b.jsonl");
    FILE *f = fopen(path, "wb");
    gw_eval_record r = rec("vt", 2048, 0, 80);
    gw_eval_record_write(f, &r, "x", NULL);
    r.index = 1;
    gw_eval_record_write(f, &r, "y", NULL);
    fputs("{\"model\":\"m.gguf\",\"config\":\"dense\",\"task\":\"vt\",\"len", f);
    fclose(f);
    char *before = slurp(path);
    gw_eval_records rs;
    char err[256];
    CHECK(gw_eval_records_load(path, false, &rs, err, sizeof err) == 0 && rs.n == 2);
    gw_eval_records_free(&rs);
    char *same = slurp(path);
    CHECK(!strcmp(before, same)); /* repair = false never changes the file */
    CHECK(gw_eval_records_load(path, true, &rs, err, sizeof err) == 0 && rs.n == 2);
    gw_eval_records_free(&rs);
    char *after = slurp(path);
    CHECK(strlen(after) < strlen(before));
    CHECK(after[strlen(after) - 1] == '\n');
    f = fopen(path, "ab");
    r.index = 2;
    gw_eval_record_write(f, &r, "z", NULL);
    fclose(f);
    CHECK(gw_eval_records_load(path, true, &rs, err, sizeof err) == 0 && rs.n == 3);
    gw_eval_records_free(&rs);
    free(before);
    free(same);
    free(after);
}

static void test_groups_and_compare(void) {
    gw_eval_record a[] = {rec("niah_single_1", 1024, 0, 100), rec("niah_single_1", 1024, 1, 50),
                          rec("vt", 1024, 0, 20), rec("niah_single_1", 2048, 0, 0)};
    gw_eval_records ra = {a, 4, 4};
    gw_eval_groups ga;
    gw_eval_group_records(&ra, false, &ga);
    CHECK(ga.n == 3);
    if (ga.n == 3) {
        CHECK(ga.v[0].n == 2 && ga.v[0].score_sum == 150);
        CHECK(!strcmp(ga.v[1].task, "vt") && ga.v[1].length == 1024);
        CHECK(ga.v[2].length == 2048);
    }
    gw_eval_record b[] = {rec("niah_single_1", 1024, 0, 100), rec("cwe", 1024, 0, 40)};
    gw_eval_records rb = {b, 2, 2};
    gw_eval_groups gb;
    gw_eval_group_records(&rb, false, &gb);

    FILE *f = fopen(tmp("cmp.txt"), "wb");
    gw_eval_print_compare(f, &ga, "A.jsonl", &gb, "B.jsonl");
    gw_eval_print_summary(f, &ga);
    fclose(f);
    char *txt = slurp(tmp("cmp.txt"));
    /* niah_single_1@1024: A 75, B 100, +25; vt only in A; cwe only in B */
    CHECK(strstr(txt, "niah_single_1         1024      75.0     100.0    +25.0") != NULL);
    CHECK(strstr(txt, "vt                    1024      20.0         -") != NULL);
    CHECK(strstr(txt, "cwe                   1024         -      40.0") != NULL);
    /* summary: mean 75 with standard error 25 over 2 samples; mean of tasks at 1024 = (75+20)/2 */
    CHECK(strstr(txt, "75.0 ± 25.0") != NULL);
    CHECK(strstr(txt, "(mean of tasks)       1024             47.5") != NULL);
    if (test_failures) fputs(txt, stderr);
    free(txt);
    gw_eval_groups_free(&ga);
    gw_eval_groups_free(&gb);
}

static void test_grid(void) {
    int lengths[] = {1024, 2048};
    double depths[] = {0, 0.5, 1};
    double scores[] = {100, 50, 0, NAN, 100, 100}; /* [length][depth] */
    CHECK(gw_eval_write_grid_json(tmp("g.json"), "m.gguf", "dense", lengths, 2, depths, 3, scores) == 0);
    CHECK(gw_eval_write_grid_svg(tmp("g.svg"), "NIAH <m>", lengths, 2, depths, 3, scores) == 0);
    char *js = slurp(tmp("g.json")), *svg = slurp(tmp("g.svg"));
    CHECK(js && strstr(js, "\"lengths\":"));
    /* rows are depths: depth 0 -> [100, null] */
    CHECK(js && strstr(js, "[100, null]"));
    CHECK(js && strstr(js, "[50, 100]"));
    CHECK(svg && strstr(svg, "<svg") && strstr(svg, "</svg>"));
    CHECK(svg && strstr(svg, "NIAH &lt;m&gt;")); /* title escaped */
    CHECK(svg && strstr(svg, ">2k</text>"));
    int rects = 0;
    for (const char *p = svg; p && (p = strstr(p, "<rect x=")); p++) rects++;
    CHECK(rects == 6);
    free(js);
    free(svg);
}

int main(void) {
    if (!mkdtemp(tmpdir)) return 1;
    test_write_read();
    test_repair();
    test_groups_and_compare();
    test_grid();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return test_finish("test_harness");
}
