/* Helpers shared by the command-line verbs (proxy/main.c and friends). */
#ifndef PG_PROXY_CLI_H
#define PG_PROXY_CLI_H

#include <stdbool.h>

/* Prints "payguard: MSG[: ARG] (see payguard help)" on stderr; returns 2. */
int pg_cli_usage_error(const char *msg, const char *arg);
bool pg_cli_is_help(const char *arg);
/* "NAME VALUE" or "NAME=VALUE" at argv[*i]: 1 with *out set (and *i past the
 * value), 0 when argv[*i] is not NAME, -1 after a usage line when the value
 * is missing. */
int pg_cli_take_value(int argc, char **argv, int *i, const char *name, const char **out);

/* `payguard policy|audit|ledger|approvals ...`; each returns the exit status. */
int pg_cli_policy(int argc, char **argv);
int pg_cli_audit(int argc, char **argv);
int pg_cli_ledger(int argc, char **argv);
int pg_cli_approvals(int argc, char **argv);
int pg_cli_agent(int argc, char **argv);
int pg_cli_webhooks(int argc, char **argv);

/* `payguard seal`: the exit status. Reads the secret from stdin. */
int pg_cli_seal(int argc, char **argv);

/* `payguard user passwd|totp` (proxy/user_cli.c): the exit status. Reads a
 * password from the terminal or stdin, never from argv. */
int pg_cli_user(int argc, char **argv);

#endif
