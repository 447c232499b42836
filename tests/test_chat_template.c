/* Chat templates: gw_chat_render must give exactly what transformers'
 * jinja2 rendering of the template gives (goldens made by
 * scripts/make_tokenizer_golden.py): SmolLM2's template as stored in its
 * GGUF, Qwen2.5-style and plain ChatML, Llama 3, Llama 2, Mistral and Gemma,
 * over conversations with and without a system message, multi-turn, with
 * and without the generation prompt. Also: detection from the real SmolLM2
 * GGUF's template, and the rendered prompt tokenizes with the special
 * tokens recognised. */
#include "test.h"

#include <stdbool.h>
#include <stdint.h>

#include "model/gguf.h"
#include "tokenizer/tokenizer.h"

static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) { free(s); s = NULL; }
    fclose(f);
    if (s) s[n] = 0;
    return s;
}

enum { MAX_T = 16, MAX_M = 16 };
static char *tname[MAX_T], *ttext[MAX_T];
static int n_templates;

static const char *find_template(const char *name) {
    for (int i = 0; i < n_templates; i++)
        if (strcmp(tname[i], name) == 0) return ttext[i];
    return NULL;
}

static void load_templates(void) {
    char *s = read_file(test_path("tests/data/tokenizer/chat_templates.txt"));
    CHECK_MSG(s != NULL, "chat_templates.txt missing");
    if (!s) return;
    char *save = NULL;
    for (char *line = strtok_r(s, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "template ", 9) == 0 && n_templates < MAX_T) {
            tname[n_templates] = strdup(line + 9);
            char *body = strtok_r(NULL, "\n", &save);
            ttext[n_templates] = test_unescape(body ? body : "", NULL);
            n_templates++;
        }
    }
    free(s);
}

static void expect_format(const char *name, gw_chat_format want) {
    const char *t = find_template(name);
    CHECK_MSG(t && gw_chat_detect(t) == want, "template %s detected as %d", name, t ? (int)gw_chat_detect(t) : -1);
}

static void run_golden(void) {
    char *s = read_file(test_path("tests/data/tokenizer/chat_golden.txt"));
    CHECK_MSG(s != NULL, "chat_golden.txt missing");
    if (!s) return;
    gw_chat_msg msgs[MAX_M];
    char *owned[2 * MAX_M];
    size_t n = 0, n_owned = 0;
    char tmpl_name[64] = "";
    int add_gen = 0, cases = 0, bad = 0;
    char *save = NULL;
    for (char *line = strtok_r(s, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "case ", 5) == 0) {
            CHECK(sscanf(line + 5, "%63s %d", tmpl_name, &add_gen) == 2);
            n = 0;
        } else if (strncmp(line, "msg ", 4) == 0 && n < MAX_M) {
            char *sp = strchr(line + 4, ' ');
            /* "msg ROLE " with empty content has the space; be lenient */
            char *role = line + 4, *content = sp ? sp + 1 : (char *)"";
            if (sp) *sp = 0;
            msgs[n].role = owned[n_owned++] = strdup(role);
            msgs[n].content = owned[n_owned++] = test_unescape(content, NULL);
            n++;
        } else if (strncmp(line, "expect ", 7) == 0 || strcmp(line, "expect") == 0) {
            char *want = test_unescape(line[6] ? line + 7 : "", NULL);
            const char *tmpl = find_template(tmpl_name);
            gw_chat_format fmt = gw_chat_detect(tmpl);
            char *got = gw_chat_render(fmt, tmpl, msgs, n, add_gen != 0);
            cases++;
            if (!got || strcmp(got, want) != 0) {
                if (bad++ < 6)
                    fprintf(stderr, "template %s (gen %d, %zu msgs):\n  want '%s'\n  got  '%s'\n", tmpl_name, add_gen, n,
                            want, got ? got : "(null)");
            }
            free(got);
            free(want);
            for (size_t i = 0; i < n_owned; i++) free(owned[i]);
            n_owned = 0;
            n = 0;
        }
    }
    CHECK_MSG(cases >= 100, "only %d chat cases", cases);
    CHECK_MSG(bad == 0, "%d of %d chat renders differ from jinja2", bad, cases);
    printf("chat templates: %d renders compared with transformers/jinja2 (%d templates), %d differ\n", cases, n_templates,
           bad);
    free(s);
}

/* The real GGUF's template, end to end: detect, render, tokenize. */
static void smollm2_end_to_end(void) {
    char err[256];
    gguf_file *f = gguf_open(test_model_path(), err, sizeof err);
    CHECK_MSG(f != NULL, "%s", err);
    if (!f) return;
    const char *tmpl = gguf_get_str(f, "tokenizer.chat_template");
    CHECK(tmpl != NULL);
    CHECK(gw_chat_detect(tmpl) == GW_CHAT_CHATML);
    gw_tokenizer *t = gw_tokenizer_from_gguf(f, err, sizeof err);
    CHECK(t != NULL);
    gw_chat_msg m[] = {{"user", "Hi"}};
    char *p = gw_chat_render(GW_CHAT_CHATML, tmpl, m, 1, true);
    CHECK(p && strcmp(p, "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
                         "Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n") == 0);
    if (t && p) {
        int32_t *ids;
        int64_t n = gw_tokenize(t, p, strlen(p), gw_tokenizer_add_bos(t), true, &ids);
        int n_start = 0, n_end = 0;
        for (int64_t i = 0; i < n; i++) {
            n_start += ids[i] == gw_token_lookup(t, "<|im_start|>");
            n_end += ids[i] == gw_token_lookup(t, "<|im_end|>");
        }
        CHECK(n > 0 && ids[0] == 1 && n_start == 3 && n_end == 2);
        CHECK(gw_token_is_eog(t, gw_token_lookup(t, "<|im_end|>")));
        free(ids);
    }
    free(p);
    gw_tokenizer_free(t);
    gguf_close(f);
}

int main(void) {
    CHECK(gw_chat_detect(NULL) == GW_CHAT_UNKNOWN);
    CHECK(gw_chat_detect("{{ messages }}") == GW_CHAT_UNKNOWN);
    gw_chat_msg one[] = {{"user", "x"}};
    CHECK(gw_chat_render(GW_CHAT_UNKNOWN, NULL, one, 1, true) == NULL);
    char *p = gw_chat_render(GW_CHAT_CHATML, NULL, NULL, 0, false);
    CHECK(p && p[0] == 0);
    free(p);
    load_templates();
    expect_format("smollm2", GW_CHAT_CHATML);
    expect_format("qwen25", GW_CHAT_CHATML);
    expect_format("chatml", GW_CHAT_CHATML);
    expect_format("llama3", GW_CHAT_LLAMA3);
    expect_format("llama2", GW_CHAT_LLAMA2);
    expect_format("mistral", GW_CHAT_LLAMA2);
    expect_format("gemma", GW_CHAT_GEMMA);
    run_golden();
    smollm2_end_to_end();
    for (int i = 0; i < n_templates; i++) { free(tname[i]); free(ttext[i]); }
    return test_finish("test_chat_template");
}
