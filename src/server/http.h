/* The HTTP front end (libmicrohttpd): OpenAI-compatible endpoints over the
 * scheduler.
 *
 *   POST /v1/completions         POST /v1/chat/completions   (stream: SSE)
 *   GET  /v1/models              GET  /health                GET /metrics
 *
 * One thread per connection (MHD_USE_THREAD_PER_CONNECTION): a handler may
 * block waiting for its request's tokens without holding anyone else up,
 * and the engine never waits for a client. Errors are OpenAI-style JSON
 * ({"error": {"message", "type", "param", "code"}}): 400 malformed JSON or
 * fields and prompts longer than the context (the limit is named), 401 a
 * missing or wrong API key (on /v1/ only), 404/405 unknown paths/methods,
 * 413 a body over max_body, 429 when the scheduler's waiting queue is full,
 * 503 while shutting down, 500 engine failures.
 *
 * A client that goes away is noticed and its requests cancelled (KV freed
 * at the engine's next step): for streams when a write fails (a keep-alive
 * comment is sent after 2 s without tokens, so a queued request notices
 * too), for plain responses by polling the socket while waiting. */
#ifndef GODWIT_SERVER_HTTP_H
#define GODWIT_SERVER_HTTP_H
#include <stddef.h>

#include "server/metrics.h"
#include "server/scheduler.h"

typedef struct gw_server gw_server;

typedef struct {
    const char *host;        /* address to bind: numeric IPv4/IPv6 or a name */
    int port;                /* 0: any free port (see gw_server_port) */
    const char *api_key;     /* NULL: no authentication */
    size_t max_body;         /* bytes; larger bodies get 413 */
    const char *model_name;  /* served name: /v1/models and "model" in responses */
    int verbose;             /* one log line per request on stderr */
} gw_server_params;

gw_server *gw_server_start(gw_sched *s, gw_metrics *m, const gw_server_params *p, char *err, size_t errlen);
int gw_server_port(const gw_server *srv);
/* Stops accepting connections; open ones are still served. */
void gw_server_quiesce(gw_server *srv);
/* Closes every connection (waiting for their handlers) and frees. */
void gw_server_stop(gw_server *srv);
#endif
