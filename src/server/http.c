#include "server/http.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "server/openai.h"
#include "tokenizer/tokenizer.h"

#define KEEPALIVE_S 2.0   /* SSE comment after this long without tokens */
#define POLL_S 0.25       /* non-streamed requests: how often the socket is checked */

struct gw_server {
    struct MHD_Daemon *d;
    gw_sched *sched;
    gw_model *model;
    gw_metrics *metrics;
    char *model_name;
    char *api_key;
    size_t max_body;
    int port;
    int verbose;
    time_t started;
    atomic_uint_fast64_t next_id;
};

/* Per-request state kept across the handler's calls (the body arrives in
 * pieces). */
typedef struct {
    char *body;
    size_t len, cap;
    bool too_large;
} conn_state;

static double mono_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ------------------------------------------------------------- responses */

static enum MHD_Result send_body(struct MHD_Connection *c, unsigned status, char *body, const char *type) {
    if (!body) return MHD_NO;
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, char *body) {
    return send_body(c, status, body, "application/json");
}

static enum MHD_Result send_api_error(struct MHD_Connection *c, const gw_api_error *e) {
    return send_json(c, (unsigned)e->status, gw_api_error_json(e));
}

static enum MHD_Result send_error(struct MHD_Connection *c, int status, const char *type, const char *code,
                                  const char *msg) {
    gw_api_error e;
    gw_api_set_error(&e, status, type, NULL, code, "%s", msg);
    return send_api_error(c, &e);
}

/* ---------------------------------------------------------------- helpers */

/* Constant-time comparison of the bearer token with the key. */
static bool auth_ok(struct MHD_Connection *c, const char *key) {
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) return false;
    const char *given = h + 7;
    while (*given == ' ') given++;
    size_t n = strlen(given), k = strlen(key);
    unsigned diff = (unsigned)(n ^ k);
    for (size_t i = 0; i < k; i++) diff |= (unsigned char)key[i] ^ (unsigned char)(i < n ? given[i] : 0);
    return diff == 0;
}

/* True when the client has closed its end (read gives EOF) or the socket
 * failed. */
static bool peer_closed(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return false;
    char b;
    ssize_t r = recv(ci->connect_fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

static void make_meta(gw_server *srv, gw_api_kind kind, gw_api_meta *meta) {
    uint64_t n = atomic_fetch_add(&srv->next_id, 1);
    snprintf(meta->id, sizeof meta->id, "%s-%08llx%08llx", kind == GW_API_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)(srv->started & 0xffffffff), (unsigned long long)n);
    meta->created = time(NULL);
    meta->model_name = srv->model_name;
    meta->tok = gw_model_tokenizer(srv->model);
}

/* -------------------------------------------------------------- streaming */

typedef struct {
    gw_server *srv;
    gw_channel *ch;
    gw_api_request rq;
    gw_api_meta meta;
    int count, finished, prompt_tokens, completion_tokens;
    size_t *offsets;     /* per choice: completions' logprobs text_offset */
    bool started, done, error_sent;
    char *out;
    size_t out_len, out_pos, out_cap;
    double t0;
} stream_state;

static void out_append(stream_state *st, char *s) {
    if (!s) return;
    size_t n = strlen(s);
    if (st->out_len + n > st->out_cap) {
        size_t cap = (st->out_len + n) * 2;
        char *no = realloc(st->out, cap);
        if (!no) {
            free(s);
            return;
        }
        st->out = no;
        st->out_cap = cap;
    }
    memcpy(st->out + st->out_len, s, n);
    st->out_len += n;
    free(s);
}

/* Fills the output with the next server-sent events; blocks until there
 * are some (or a keep-alive is due). */
static void stream_produce(stream_state *st) {
    if (!st->started) {
        st->started = true;
        if (st->rq.kind == GW_API_CHAT)
            for (int i = 0; i < st->count; i++) out_append(st, gw_api_role_chunk_sse(&st->rq, &st->meta, i));
        return;
    }
    if (st->finished == st->count) {
        if (st->rq.include_usage)
            out_append(st, gw_api_usage_chunk_sse(&st->rq, &st->meta, st->prompt_tokens, st->completion_tokens));
        out_append(st, strdup("data: [DONE]\n\n"));
        st->done = true;
        return;
    }
    gw_event *e = gw_channel_next(st->ch, KEEPALIVE_S);
    if (!e) {
        /* an SSE comment: clients ignore it; a closed connection fails on it */
        out_append(st, strdup(": keep-alive\n\n"));
        return;
    }
    if (e->type == GW_EV_FINISH) {
        st->finished++;
        st->completion_tokens += e->completion_tokens;
        if (e->finish == GW_FINISH_ERROR || e->finish == GW_FINISH_ABORT) {
            if (!st->error_sent) {
                gw_api_error err;
                if (e->finish == GW_FINISH_ERROR)
                    gw_api_set_error(&err, 500, "server_error", NULL, NULL, "engine error: %s", e->error);
                else
                    gw_api_set_error(&err, 503, "server_error", NULL, "shutting_down",
                                     "the request was aborted: the server is shutting down");
                out_append(st, gw_api_error_sse(&err));
                st->error_sent = true;
            }
            gw_event_free(e);
            return;
        }
    }
    out_append(st, gw_api_chunk_sse(&st->rq, &st->meta, e, &st->offsets[e->index]));
    gw_event_free(e);
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    stream_state *st = cls;
    while (st->out_pos >= st->out_len) {
        st->out_pos = st->out_len = 0;
        if (st->done) return MHD_CONTENT_READER_END_OF_STREAM;
        stream_produce(st);
    }
    size_t n = st->out_len - st->out_pos;
    if (n > max) n = max;
    memcpy(buf, st->out + st->out_pos, n);
    st->out_pos += n;
    return (ssize_t)n;
}

/* Called when MHD is done with the response: finished, or the client went
 * away. In the second case the requests are still running: cancel them. */
static void stream_free(void *cls) {
    stream_state *st = cls;
    if (!st->done) gw_channel_cancel(st->ch);
    if (st->srv->verbose)
        fprintf(stderr, "godwit serve: stream %s %s after %.2f s, %d completion tokens\n", st->meta.id,
                st->done ? "done" : "cancelled (client gone)", mono_now() - st->t0, st->completion_tokens);
    gw_channel_release(st->ch);
    gw_api_request_free(&st->rq);
    free(st->offsets);
    free(st->out);
    free(st);
}

/* ------------------------------------------------------------- generation */

static enum MHD_Result handle_generate(gw_server *srv, struct MHD_Connection *c, gw_api_kind kind, conn_state *cs) {
    gw_api_request rq;
    gw_api_error e;
    if (gw_api_parse(kind, cs->body ? cs->body : "", cs->len, srv->model, gw_sched_max_len(srv->sched), &rq, &e) != 0)
        return send_api_error(c, &e);
    int count;
    gw_gen_params *g = gw_api_gen_params(&rq, &count);
    gw_channel *ch = g ? gw_channel_new() : NULL;
    if (!ch) {
        free(g);
        gw_api_request_free(&rq);
        return send_error(c, 500, "server_error", NULL, "out of memory");
    }
    char msg[256];
    gw_submit_status st = gw_sched_submit(srv->sched, ch, g, count, msg, sizeof msg);
    free(g);
    if (st != GW_SUBMIT_OK) {
        gw_channel_release(ch);
        gw_api_request_free(&rq);
        if (st == GW_SUBMIT_OVERLOADED) return send_error(c, 429, "rate_limit_error", "server_overloaded", msg);
        if (st == GW_SUBMIT_SHUTDOWN) return send_error(c, 503, "server_error", "shutting_down", msg);
        if (st == GW_SUBMIT_INVALID) return send_error(c, 400, "invalid_request_error", NULL, msg);
        return send_error(c, 500, "server_error", NULL, msg);
    }
    int prompt_tokens = 0;
    for (int i = 0; i < rq.n_prompts; i++) prompt_tokens += rq.prompt_lens[i];
    gw_api_meta meta;
    make_meta(srv, kind, &meta);
    double t0 = mono_now();

    if (rq.stream) {
        stream_state *s = calloc(1, sizeof *s);
        size_t *offsets = calloc((size_t)count, sizeof *offsets);
        struct MHD_Response *r = NULL;
        if (s && offsets) {
            *s = (stream_state){.srv = srv, .ch = ch, .rq = rq, .meta = meta, .count = count,
                                .prompt_tokens = prompt_tokens, .offsets = offsets, .t0 = t0};
            s->rq.gen.stops = (const char *const *)s->rq.stops; /* moved: point into the copy */
            r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, s, stream_free);
        }
        if (!r) {
            gw_channel_cancel(ch);
            gw_channel_release(ch);
            gw_api_request_free(&rq);
            free(s);
            free(offsets);
            return send_error(c, 500, "server_error", NULL, "out of memory");
        }
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, r);
        MHD_destroy_response(r); /* stream_free runs when MHD lets go of it */
        return ret;
    }

    /* Not streamed: gather every choice, checking now and then that the
     * client is still there. */
    gw_api_choice *choices = calloc((size_t)count, sizeof *choices);
    int finished = 0;
    bool gone = false, oom = !choices;
    double next_check = mono_now() + POLL_S;
    while (finished < count && !oom) {
        gw_event *ev = gw_channel_next(ch, POLL_S);
        if (mono_now() >= next_check) { /* tokens may come faster than POLL_S */
            next_check = mono_now() + POLL_S;
            if (peer_closed(c)) {
                gw_event_free(ev);
                gone = true;
                break;
            }
        }
        if (!ev) continue;
        if (gw_api_choice_add(&choices[ev->index], ev) != 0) oom = true;
        finished += ev->type == GW_EV_FINISH;
        gw_event_free(ev);
    }
    enum MHD_Result ret;
    if (gone || oom) {
        gw_channel_cancel(ch);
        if (srv->verbose) fprintf(stderr, "godwit serve: %s cancelled (client gone)\n", meta.id);
        ret = oom ? send_error(c, 500, "server_error", NULL, "out of memory") : MHD_NO; /* MHD_NO closes */
    } else {
        const gw_api_choice *bad = NULL;
        for (int i = 0; i < count; i++)
            if (choices[i].finish == GW_FINISH_ERROR || choices[i].finish == GW_FINISH_ABORT) bad = &choices[i];
        int completion = 0;
        for (int i = 0; i < count; i++) completion += choices[i].completion_tokens;
        if (bad && bad->finish == GW_FINISH_ERROR) {
            char m[256];
            snprintf(m, sizeof m, "engine error: %s", bad->error);
            ret = send_error(c, 500, "server_error", NULL, m);
        } else if (bad) {
            ret = send_error(c, 503, "server_error", "shutting_down",
                             "the request was aborted: the server is shutting down");
        } else {
            ret = send_json(c, MHD_HTTP_OK, gw_api_response_json(&rq, &meta, choices, count, prompt_tokens));
        }
        if (srv->verbose)
            fprintf(stderr, "godwit serve: %s %d prompt + %d completion tokens in %.2f s\n", meta.id, prompt_tokens,
                    completion, mono_now() - t0);
    }
    for (int i = 0; choices && i < count; i++) gw_api_choice_free(&choices[i]);
    free(choices);
    gw_channel_release(ch);
    gw_api_request_free(&rq);
    return ret;
}

/* ---------------------------------------------------------------- routing */

static enum MHD_Result handle_models(gw_server *srv, struct MHD_Connection *c) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "object", "list");
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "id", srv->model_name);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", (double)srv->started);
    cJSON_AddStringToObject(m, "owned_by", "godwit");
    cJSON_AddNumberToObject(m, "max_model_len", gw_sched_max_len(srv->sched));
    cJSON_AddItemToArray(cJSON_AddArrayToObject(root, "data"), m);
    char *body = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return send_json(c, MHD_HTTP_OK, body);
}

static enum MHD_Result handle_metrics(gw_server *srv, struct MHD_Connection *c) {
    gw_sched_stats st;
    gw_sched_get_stats(srv->sched, &st);
    gw_metrics_gauges g = {.running = st.running, .waiting = st.waiting,
                           .kv_usage = st.kv_total_tokens > 0
                                           ? 1.0 - (double)st.kv_free_tokens / st.kv_total_tokens
                                           : 0.0};
    return send_body(c, MHD_HTTP_OK, gw_metrics_render(srv->metrics, &g), "text/plain; version=0.0.4; charset=utf-8");
}

static bool is_v1(const char *url) { return !strncmp(url, "/v1/", 4); }

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
    (void)version;
    gw_server *srv = cls;
    conn_state *cs = *con_cls;
    if (!cs) {
        /* First call: headers only. Refuse early what can be refused
         * without reading the body. */
        cs = calloc(1, sizeof *cs);
        if (!cs) return MHD_NO;
        *con_cls = cs;
        if (srv->api_key && is_v1(url) && !auth_ok(c, srv->api_key))
            return send_error(c, 401, "invalid_request_error", "invalid_api_key",
                              "Incorrect or missing API key: send the header 'Authorization: Bearer KEY'");
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > srv->max_body) {
            char m[128];
            snprintf(m, sizeof m, "the request body is larger than the limit of %zu bytes", srv->max_body);
            return send_error(c, 413, "invalid_request_error", "request_too_large", m);
        }
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (cs->too_large) return MHD_YES;
        if (cs->len + n > srv->max_body) { /* chunked upload without Content-Length */
            cs->too_large = true;
            free(cs->body);
            cs->body = NULL;
            cs->len = cs->cap = 0;
            return MHD_YES;
        }
        if (cs->len + n + 1 > cs->cap) {
            size_t cap = (cs->len + n + 1) * 2;
            if (cap > srv->max_body + 1) cap = srv->max_body + 1;
            char *nb = realloc(cs->body, cap);
            if (!nb) return MHD_NO;
            cs->body = nb;
            cs->cap = cap;
        }
        memcpy(cs->body + cs->len, upload_data, n);
        cs->len += n;
        cs->body[cs->len] = 0;
        return MHD_YES;
    }
    if (cs->too_large) {
        char m[128];
        snprintf(m, sizeof m, "the request body is larger than the limit of %zu bytes", srv->max_body);
        return send_error(c, 413, "invalid_request_error", "request_too_large", m);
    }
    bool get = !strcmp(method, "GET") || !strcmp(method, "HEAD"), post = !strcmp(method, "POST");
    if (!strcmp(url, "/health")) {
        if (!get) return send_error(c, 405, "invalid_request_error", "method_not_allowed", "use GET /health");
        return send_json(c, MHD_HTTP_OK, strdup("{\"status\":\"ok\"}"));
    }
    if (!strcmp(url, "/metrics")) {
        if (!get) return send_error(c, 405, "invalid_request_error", "method_not_allowed", "use GET /metrics");
        return handle_metrics(srv, c);
    }
    if (!strcmp(url, "/v1/models")) {
        if (!get) return send_error(c, 405, "invalid_request_error", "method_not_allowed", "use GET /v1/models");
        return handle_models(srv, c);
    }
    gw_api_kind kind;
    if (!strcmp(url, "/v1/completions")) kind = GW_API_COMPLETIONS;
    else if (!strcmp(url, "/v1/chat/completions")) kind = GW_API_CHAT;
    else {
        char m[256];
        snprintf(m, sizeof m, "no such endpoint: %.160s %.40s", url, method);
        return send_error(c, 404, "invalid_request_error", "not_found", m);
    }
    if (!post) return send_error(c, 405, "invalid_request_error", "method_not_allowed", "use POST");
    return handle_generate(srv, c, kind, cs);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)cls, (void)c, (void)toe;
    conn_state *cs = *con_cls;
    if (!cs) return;
    free(cs->body);
    free(cs);
    *con_cls = NULL;
}

/* ------------------------------------------------------------------ start */

/* libmicrohttpd's messages, prefixed; the one it prints whenever a handler
 * returns MHD_NO (how a request of a client that went away is dropped) is
 * not an error here. */
static void mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (strstr(msg, "Application reported internal error")) return;
    fprintf(stderr, "godwit serve: libmicrohttpd: %s%s", msg, msg[0] && msg[strlen(msg) - 1] == '\n' ? "" : "\n");
}

gw_server *gw_server_start(gw_sched *s, gw_metrics *m, const gw_server_params *p, char *err, size_t errlen) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", p->port);
    int rc = getaddrinfo(p->host, port, &hints, &ai);
    if (rc != 0 || !ai) {
        snprintf(err, errlen, "cannot resolve --host '%s': %s", p->host, gai_strerror(rc));
        return NULL;
    }
    gw_server *srv = calloc(1, sizeof *srv);
    if (!srv) {
        freeaddrinfo(ai);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    srv->sched = s;
    srv->model = gw_sched_model(s);
    srv->metrics = m;
    srv->model_name = strdup(p->model_name ? p->model_name : "godwit");
    srv->api_key = p->api_key && *p->api_key ? strdup(p->api_key) : NULL;
    srv->max_body = p->max_body;
    srv->verbose = p->verbose;
    srv->started = time(NULL);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ITC |
                     MHD_USE_ERROR_LOG | MHD_USE_AUTO;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    /* the logger first: libmicrohttpd warns (on its own logger) otherwise */
    srv->d = MHD_start_daemon(flags, (uint16_t)p->port, NULL, NULL, on_request, srv, MHD_OPTION_EXTERNAL_LOGGER,
                              mhd_log, NULL, MHD_OPTION_SOCK_ADDR, ai->ai_addr, MHD_OPTION_NOTIFY_COMPLETED,
                              on_completed, srv, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)600, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!srv->d) {
        snprintf(err, errlen, "cannot listen on %s:%d (%s)", p->host, p->port,
                 errno ? strerror(errno) : "libmicrohttpd refused");
        gw_server_stop(srv);
        return NULL;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(srv->d, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = di ? di->port : p->port;
    return srv;
}

int gw_server_port(const gw_server *srv) { return srv->port; }

void gw_server_quiesce(gw_server *srv) {
    if (!srv->d) return;
    MHD_socket fd = MHD_quiesce_daemon(srv->d);
    if (fd != MHD_INVALID_SOCKET) close(fd);
}

void gw_server_stop(gw_server *srv) {
    if (!srv) return;
    if (srv->d) MHD_stop_daemon(srv->d);
    free(srv->model_name);
    free(srv->api_key);
    free(srv);
}
