/* Chat templates. A GGUF carries its chat template as a Jinja string; rather
 * than embedding a Jinja interpreter we recognise the handful of formats the
 * supported models use and render them in C, byte for byte as the Jinja
 * templates would (tests/test_chat_template.c checks this against jinja2
 * renderings made by scripts/make_tokenizer_golden.py). */
#define GW_TOKENIZER_INTERNAL
#include "tokenizer/tokenizer.h"

#include <stdlib.h>
#include <string.h>

gw_chat_format gw_chat_detect(const char *tmpl) {
    if (!tmpl) return GW_CHAT_UNKNOWN;
    if (strstr(tmpl, "<|im_start|>")) return GW_CHAT_CHATML;
    if (strstr(tmpl, "<|start_header_id|>")) return GW_CHAT_LLAMA3;
    if (strstr(tmpl, "<start_of_turn>")) return GW_CHAT_GEMMA;
    if (strstr(tmpl, "[INST]")) return GW_CHAT_LLAMA2;
    return GW_CHAT_UNKNOWN;
}

/* ---- a growable string ---- */

typedef struct { char *s; size_t n, cap; bool oom; } sbuf;

static void sb_add(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) { b->oom = true; return; }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}

static void sb_str(sbuf *b, const char *s) { sb_add(b, s ? s : "", s ? strlen(s) : 0); }

/* Python's str.isspace for the code point at s (Jinja's trim and Python's
 * strip remove these); returns its byte length, 0 if not a space. */
static size_t space_len(const unsigned char *s, size_t n) {
    if (n == 0) return 0;
    unsigned c = s[0];
    if ((c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20)) return 1;
    if (c == 0xC2 && n >= 2 && (s[1] == 0x85 || s[1] == 0xA0)) return 2;
    if (c == 0xE1 && n >= 3 && s[1] == 0x9A && s[2] == 0x80) return 3;               /* U+1680 */
    if (c == 0xE2 && n >= 3 && s[1] == 0x80 && (s[2] <= 0x8A || s[2] == 0xA8 || s[2] == 0xA9 || s[2] == 0xAF))
        return 3;                                                                    /* U+2000..200A, 2028, 2029, 202F */
    if (c == 0xE2 && n >= 3 && s[1] == 0x81 && s[2] == 0x9F) return 3;               /* U+205F */
    if (c == 0xE3 && n >= 3 && s[1] == 0x80 && s[2] == 0x80) return 3;               /* U+3000 */
    return 0;
}

/* Appends s with leading and trailing white space removed. */
static void sb_trimmed(sbuf *b, const char *s) {
    if (!s) return;
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s), i = 0, k;
    while ((k = space_len(p + i, n - i)) > 0) i += k;
    size_t end = i, j = i;
    /* the end of the last non-space character */
    while (j < n) {
        k = space_len(p + j, n - j);
        if (k) { j += k; continue; }
        j++;
        while (j < n && (p[j] & 0xC0) == 0x80) j++;
        end = j;
    }
    sb_add(b, s + i, end - i);
}

static bool is_role(const gw_chat_msg *m, const char *role) {
    return m->role && strcmp(m->role, role) == 0;
}

/* The default system prompt a ChatML template writes as a literal
 * '<|im_start|>system\n...<|im_end|>' (SmolLM2, Qwen2.5), with Jinja string
 * escapes undone; NULL if there is none. *in_loop: the literal sits inside
 * the "for message in messages" loop (SmolLM2), so that an empty
 * conversation gets none. */
static char *chatml_default_system(const char *tmpl, bool *in_loop) {
    *in_loop = false;
    if (!tmpl) return NULL;
    static const char *const marks[] = {"<|im_start|>system\n", "<|im_start|>system\\n"};
    for (const char *p = tmpl; *p; p++) {
        size_t ml = 0;
        for (int k = 0; k < 2; k++)
            if (strncmp(p, marks[k], strlen(marks[k])) == 0) ml = strlen(marks[k]);
        if (!ml) continue;
        /* p must begin a string literal: the character before is a quote */
        if (p == tmpl || (p[-1] != '\'' && p[-1] != '"')) continue;
        char quote = p[-1];
        const char *s = p + ml, *e = strstr(s, "<|im_end|>");
        if (!e) return NULL;
        /* the literal must run on to <|im_end|>: no closing quote before it
         * (otherwise this is "'<|im_start|>system\n' + messages[0]...") */
        bool literal = true;
        for (const char *q = s; q < e; q++) {
            if (*q == '\\' && q + 1 < e) { q++; continue; }
            if (*q == quote) { literal = false; break; }
        }
        if (!literal) continue;
        char *out = malloc((size_t)(e - s) + 1);
        if (!out) return NULL;
        size_t o = 0;
        for (const char *q = s; q < e; q++) {
            if (*q == '\\' && q + 1 < e) {
                q++;
                out[o++] = *q == 'n' ? '\n' : *q == 't' ? '\t' : *q == 'r' ? '\r' : *q;
            } else out[o++] = *q;
        }
        out[o] = 0;
        const char *loop = strstr(tmpl, "for message in messages");
        *in_loop = loop && loop < p;
        return out;
    }
    return NULL;
}

static void render_chatml(sbuf *b, const char *tmpl, const gw_chat_msg *m, size_t n, bool gen) {
    bool in_loop;
    char *def = chatml_default_system(tmpl, &in_loop);
    if (def && (n > 0 ? !is_role(&m[0], "system") : !in_loop)) {
        sb_str(b, "<|im_start|>system\n");
        sb_str(b, def);
        sb_str(b, "<|im_end|>\n");
    }
    free(def);
    for (size_t i = 0; i < n; i++) {
        sb_str(b, "<|im_start|>");
        sb_str(b, m[i].role);
        sb_str(b, "\n");
        sb_str(b, m[i].content);
        sb_str(b, "<|im_end|>\n");
    }
    if (gen) sb_str(b, "<|im_start|>assistant\n");
}

static void render_llama3(sbuf *b, const gw_chat_msg *m, size_t n, bool gen) {
    for (size_t i = 0; i < n; i++) {
        if (i == 0) sb_str(b, "<|begin_of_text|>");
        sb_str(b, "<|start_header_id|>");
        sb_str(b, m[i].role);
        sb_str(b, "<|end_header_id|>\n\n");
        sb_trimmed(b, m[i].content);
        sb_str(b, "<|eot_id|>");
    }
    if (gen) sb_str(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

/* Llama 2: the system prompt goes inside the first [INST] in <<SYS>> tags;
 * every user turn starts with <s>, every answer ends with </s>. Templates
 * without <<SYS>> are Mistral's: one <s>, the system prompt prepended to the
 * first user message. Neither has a generation prompt. */
static void render_llama2(sbuf *b, const char *tmpl, const gw_chat_msg *m, size_t n) {
    const char *sys = NULL;
    size_t first = 0;
    if (n > 0 && is_role(&m[0], "system")) { sys = m[0].content ? m[0].content : ""; first = 1; }
    bool mistral = tmpl && !strstr(tmpl, "<<SYS>>");
    if (mistral) sb_str(b, "<s>");
    for (size_t i = first; i < n; i++) {
        bool user = is_role(&m[i], "user"), asst = is_role(&m[i], "assistant");
        if (mistral) {
            if (user) {
                sb_str(b, " [INST] ");
                if (i == first && sys) { sb_str(b, sys); sb_str(b, "\n\n"); }
                sb_str(b, m[i].content);
                sb_str(b, " [/INST]");
            } else if (asst) {
                sb_str(b, " ");
                sb_str(b, m[i].content);
                sb_str(b, "</s>");
            }
            continue;
        }
        sbuf c = {0};
        if (i == first && sys) {
            sb_str(&c, "<<SYS>>\n");
            sb_str(&c, sys);
            sb_str(&c, "\n<</SYS>>\n\n");
        }
        sb_str(&c, m[i].content);
        if (user) {
            sb_str(b, "<s>[INST] ");
            sb_trimmed(b, c.s ? c.s : "");
            sb_str(b, " [/INST]");
        } else if (asst) {
            sb_str(b, " ");
            sb_trimmed(b, c.s ? c.s : "");
            sb_str(b, " </s>");
        }
        if (c.oom) b->oom = true;
        free(c.s);
    }
}

/* Gemma: the assistant is "model"; a system message is prepended to the
 * first user turn (Gemma 3's template; Gemma 1/2 reject system messages). */
static void render_gemma(sbuf *b, const gw_chat_msg *m, size_t n, bool gen) {
    const char *prefix = NULL;
    size_t first = 0;
    if (n > 0 && is_role(&m[0], "system")) { prefix = m[0].content ? m[0].content : ""; first = 1; }
    sb_str(b, "<bos>");
    for (size_t i = first; i < n; i++) {
        sb_str(b, "<start_of_turn>");
        sb_str(b, is_role(&m[i], "assistant") ? "model" : m[i].role);
        sb_str(b, "\n");
        if (i == first && prefix) { sb_str(b, prefix); sb_str(b, "\n\n"); }
        sb_trimmed(b, m[i].content);
        sb_str(b, "<end_of_turn>\n");
    }
    if (gen) sb_str(b, "<start_of_turn>model\n");
}

char *gw_chat_render(gw_chat_format fmt, const char *tmpl, const gw_chat_msg *msgs, size_t n, bool gen) {
    sbuf b = {0};
    sb_add(&b, "", 0); /* an empty render is "" rather than NULL */
    switch (fmt) {
    case GW_CHAT_CHATML: render_chatml(&b, tmpl, msgs, n, gen); break;
    case GW_CHAT_LLAMA3: render_llama3(&b, msgs, n, gen); break;
    case GW_CHAT_LLAMA2: render_llama2(&b, tmpl, msgs, n); break;
    case GW_CHAT_GEMMA: render_gemma(&b, msgs, n, gen); break;
    default: free(b.s); return NULL;
    }
    if (b.oom) { free(b.s); return NULL; }
    return b.s;
}
