/* The agent-facing HTTP/1.1 request model: llhttp in strict mode plus
 * payguard's own checks (strict CRLF, no obs-fold, one Host, no CL+TE, no
 * Upgrade/CONNECT, origin-form targets only, header and body limits), and the
 * re-serialization of a request for the rail. Private to proxy/ and its tests. */
#ifndef PG_PROXY_HTTP_H
#define PG_PROXY_HTTP_H

#include <stdbool.h>
#include <sys/types.h>

#include "llhttp.h"

#include "common/buf.h"
#include "common/pg.h"
#include "config/config.h"

struct pg_hdr {
    uint32_t name_off, name_len;
    uint32_t val_off, val_len;
};

/* One parsed message. Names, values and the target live in `head`; offsets
 * rather than pointers so the buffer can grow while headers arrive. */
struct pg_msg {
    struct pg_buf head;
    struct pg_hdr *hdrs;
    uint32_t nhdrs, hdrs_cap;
    uint32_t target_off, target_len;  /* request target, or response reason */
    struct pg_buf body;
    bool in_value;                    /* last piece appended was a value */
    bool conn_custom;                 /* Connection lists names beyond close/keep-alive */
};

void pg_msg_reset(struct pg_msg *m);
void pg_msg_free(struct pg_msg *m);
struct pg_slice pg_msg_target(const struct pg_msg *m);
struct pg_slice pg_msg_name(const struct pg_msg *m, uint32_t i);
/* Value with surrounding optional white space removed. */
struct pg_slice pg_msg_value(const struct pg_msg *m, uint32_t i);
/* Index of the first header called `name` (any case), or -1. */
int pg_msg_find(const struct pg_msg *m, struct pg_slice name);
/* Notes whether the Connection header names other headers (to be dropped);
 * call once the headers are complete. */
void pg_msg_scan_connection(struct pg_msg *m);
/* Appends a piece of a header name or value as llhttp delivers them. */
PG_WUR int pg_msg_add_name(struct pg_msg *m, const char *p, size_t n, uint32_t max_hdrs);
PG_WUR int pg_msg_add_value(struct pg_msg *m, const char *p, size_t n);

/* Why a request was refused before it was understood. */
struct pg_http_reject {
    int status;               /* 400, 413, 431 */
    const char *code;         /* "payguard_bad_request", ... */
    const char *message;      /* for the agent; static storage */
};

struct pg_reqparser {
    llhttp_t llhttp;
    struct pg_msg msg;
    uint32_t header_bytes_max, max_headers, body_bytes_max;
    /* strict line scanner, run ahead of llhttp over the header block */
    uint32_t head_bytes;
    uint32_t line_len;
    uint32_t lines;
    bool saw_cr;
    bool headers_done;        /* the scanner saw the blank line */
    bool past_headers;        /* llhttp delivered the headers */
    bool started;             /* first byte of a request seen */
    bool complete;            /* a whole request is parsed and waits */
    bool expect_continue;
    bool keep_alive;
    struct pg_http_reject reject;
    char detail[160];         /* message storage for llhttp's own reasons */
};

void pg_reqparser_init(struct pg_reqparser *p, const struct pg_limits *limits);
void pg_reqparser_free(struct pg_reqparser *p);
/* Feeds bytes. Returns how many were consumed: it stops right after one
 * complete request (p->complete set) so pipelined requests are handled in
 * order. Returns -1 when the request must be refused (p->reject says why);
 * the connection must then be closed. */
ssize_t pg_reqparser_feed(struct pg_reqparser *p, const char *data, size_t len);
/* Readies the parser for the next request on the same connection. */
void pg_reqparser_next(struct pg_reqparser *p);
/* The method of the parsed request, e.g. "POST". */
const char *pg_reqparser_method(const struct pg_reqparser *p);

/* True for headers that must not cross the proxy (hop-by-hop, framing, the
 * agent's credentials and payguard's own control headers), including names
 * listed in the message's Connection header. */
bool pg_http_drop_header(const struct pg_msg *m, struct pg_slice name);

/* Writes the request for the rail from parsed fields: request line, Host set
 * to the upstream, the rail's secret as Authorization, end-to-end headers,
 * Content-Length from the buffered body, then the body. A non-NULL
 * `idempotency_key` replaces the agent's Idempotency-Key (the rail gets a key
 * derived from the agent and its key). 0 or PG_ENOMEM. */
PG_WUR int pg_http_serialize_request(const struct pg_reqparser *p, const struct pg_rail *rail,
                                     const char *idempotency_key, struct pg_buf *out);

/* Writes one of payguard's own answers, shaped like a Stripe error, with
 * Payguard-Decision/Payguard-Reason and Stripe-Should-Retry headers. A
 * message that is not UTF-8 (it may quote the agent's bytes) goes out with
 * '?' for every byte past ASCII. */
PG_WUR int pg_http_write_error(struct pg_buf *out, int status, const char *type,
                               const char *code, const char *message, bool close,
                               uint32_t retry_after_s);

/* Writes a policy verdict (deny or hold) in the rail's own error format:
 * Stripe-shaped for stripe and generic rails, Adyen-shaped for adyen rails.
 * `type` is the Stripe error type; `param` and `approval_id` may be NULL. */
PG_WUR int pg_http_write_verdict(struct pg_buf *out, enum pg_rail_preset preset, int status,
                                 const char *decision, const char *type, const char *code,
                                 const char *message, const char *param,
                                 const char *approval_id, bool close);

const char *pg_http_reason(int status);

#endif /* PG_PROXY_HTTP_H */
