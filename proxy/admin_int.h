/* Internals of the admin API shared by admin.c (routing, replies, caller
 * authentication, the thread-pool jobs), admin_auth.c (login, refresh,
 * logout) and admin_views.c (approvals, agents, audit, policy dry runs).
 *
 * Every route that touches the ledger or runs something slow (bcrypt, a
 * write transaction, a chain walk) is a job: the loop thread parses and
 * authenticates, the job's `work` runs in libuv's thread pool and fills a
 * JSON answer, and the answer is sent back on the loop thread. The job holds
 * a reference to its config generation, so a reload never frees what it
 * reads. */
#ifndef PG_PROXY_ADMIN_INT_H
#define PG_PROXY_ADMIN_INT_H

#include <jansson.h>

#include "auth/human.h"
#include "proxy/proxy_int.h"

#define ADMIN_ISS "payguard"
#define ADMIN_AUD "payguard-admin"
#define ADMIN_REFRESH_TTL_S (12u * 3600u)  /* a refresh token lives 12 h */
#define ADMIN_BODY_MAX 16384               /* admin request bodies, bytes */
#define ADMIN_LOGIN_FAILS 5                /* per account per minute */

/* State of the admin API for the life of the server. Loop thread, except
 * the key and the dummy hash, which are read-only once made. */
struct admin {
    uint8_t jwt_key[PG_SESSION_KEY_LEN];
    struct pg_auth_limiter *by_addr;       /* failed logins per client address */
    struct pg_auth_limiter *by_account;    /* failed logins per email (hashed) */
};

struct admin_job;
typedef void (*admin_work_fn)(struct admin_job *j);

struct admin_job {
    uv_work_t req;
    struct conn *c;
    struct server *srv;
    struct runtime *rt;                    /* held until the answer is sent */
    admin_work_fn work;                    /* thread pool */
    admin_work_fn done;                    /* loop thread, before the answer (may be NULL) */
    /* the caller (authenticated routes) */
    const struct pg_user *user;            /* in rt->cfg */
    char actor[300];                       /* "user:EMAIL" */
    /* the request */
    json_t *in;                            /* parsed body, or NULL */
    char id[PG_ID_MAX + 1];                /* path parameter */
    int verb;                              /* route-specific: approve/deny, revoke/restore */
    uint64_t after;
    size_t limit;
    bool only_pending;
    struct sockaddr_storage peer;
    char email[PG_SESSION_USER_MAX + 1];   /* login: as given, for the limiter */
    /* the answer */
    int status;
    json_t *out;                           /* body on success */
    const char *err_code;                  /* set: an error answer */
    char err_msg[300];
    uint32_t retry_after;                  /* with a 429 */
    bool auth_failed;                      /* count it against the limiters */
    /* a text answer (/metrics) instead of JSON */
    const char *text_ctype;
    struct pg_buf text;
    struct metrics_ledger mledger;
};

/* admin.c */
void admin_job_error(struct admin_job *j, int status, const char *code, const char *message);
/* Queues the job; on failure answers 503 and frees it. */
void admin_job_start(struct admin_job *j);
/* A job for `work` that owns `in` (may be NULL); when it cannot be made,
 * answers 503, releases `in` and returns NULL. */
struct admin_job *admin_job_new(struct conn *c, admin_work_fn work, json_t *in);
/* Sends a JSON error straight away (loop thread). */
void admin_reply_error(struct conn *c, int status, const char *code, const char *message,
                       uint32_t retry_after_s);
/* The user in cfg with this email (ASCII case-insensitive), or NULL. */
const struct pg_user *admin_find_user(const struct pg_config *cfg, const char *email);
const char *admin_role_name(enum pg_role r);
/* A strict JSON object body: NULL (and the 400 answered) when the body is
 * not one JSON object within ADMIN_BODY_MAX, or names a key not in `keys`
 * (NULL-terminated). An empty body is an empty object when empty_ok. */
json_t *admin_body_or_reply(struct conn *c, const char *const *keys, bool empty_ok);

/* admin_auth.c: POST /v1/auth/login, /v1/auth/refresh, /v1/auth/logout */
void admin_login(struct conn *c);
void admin_refresh(struct conn *c);
void admin_logout(struct conn *c);

/* admin_views.c: the routes behind a signed-in user; `j` carries the
 * caller, the path id and the parsed body. */
void admin_approvals_list(struct admin_job *j);
void admin_approval_get(struct admin_job *j);
void admin_approval_decide(struct admin_job *j);
void admin_agents_list(struct admin_job *j);
void admin_agent_get(struct admin_job *j);
void admin_agent_revoke(struct admin_job *j);
void admin_audit_page(struct admin_job *j);
void admin_audit_verify(struct admin_job *j);
void admin_policy_test(struct admin_job *j);
void admin_metrics(struct admin_job *j);

#endif /* PG_PROXY_ADMIN_INT_H */
