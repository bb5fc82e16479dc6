/* payguard's command line: run, check, token, version, help. Usage errors
 * print one line and exit 2; every verb answers --help. */
#include "common/pg.h"
#include "auth/auth.h"
#include "config/config.h"
#include "proxy/cli.h"
#include "proxy/proxy.h"

#include <stdio.h>
#include <stdlib.h>

#include <openssl/crypto.h>
#include <uv.h>

#ifndef PG_VERSION
#define PG_VERSION "0.1.0"
#endif

#define DEFAULT_CONFIG "payguard.yaml"

static const char usage_main[] =
    "payguard — spending-policy sidecar proxy for AI agents' payment calls\n"
    "\n"
    "Usage: payguard <command> [options]\n"
    "\n"
    "Commands:\n"
    "  run    -c FILE            serve agents and the admin API (foreground)\n"
    "  check  -c FILE            validate a config file; prints ok or every problem\n"
    "  token new --agent ID      make a new agent token and its bcrypt hash\n"
    "  policy test ...           dry-run one request through the policy rules\n"
    "  approvals list|approve|deny   held payments waiting for a human\n"
    "  audit verify|export       check or export the hash-chained audit log\n"
    "  ledger show [--agent ID]  spend per window, pending reservations, decisions\n"
    "  agent revoke|reinstate ID stop an agent at its next request, or let it back\n"
    "  webhooks list|enable      webhook endpoints; let a disabled (410) one back\n"
    "  seal --path KEY [-c FILE] encrypt a secret (stdin) into a sealed:v1: value\n"
    "  user passwd|totp          hash a password, or make a TOTP seed (users[])\n"
    "  version                   print the version\n"
    "  help [COMMAND]            show help for a command\n"
    "\n"
    "Each command also takes --help. -c defaults to ./" DEFAULT_CONFIG ".\n";

static const char usage_run[] =
    "Usage: payguard run [-c FILE]\n"
    "\n"
    "Serves agents (listen.agents) and humans (listen.admin) until SIGTERM or\n"
    "SIGINT, which stop accepting and let in-flight requests finish (up to\n"
    "limits.drain_timeout_ms). SIGHUP reloads FILE: a file that fails to load is\n"
    "logged and the previous config keeps serving. Logs are JSON lines on stderr.\n"
    "Exit status: 0 after a clean stop, 1 on a runtime failure, 2 on a bad config.\n";

static const char usage_check[] =
    "Usage: payguard check [-c FILE] [--no-env]\n"
    "\n"
    "Loads FILE as `payguard run` would and prints `ok`, or every problem as\n"
    "FILE:LINE:COL: message. --no-env skips resolving env: and sealed: secrets, for\n"
    "checking a file on a machine that does not hold them or the master key.\n"
    "Exit status: 0 when the file is valid, 2 otherwise.\n";

static const char usage_token[] =
    "Usage: payguard token new --agent ID\n"
    "\n"
    "Prints a new agent token (pgt_..., 256 random bits) once, and the bcrypt\n"
    "hash to paste into payguard.yaml as the agent's `token:`. payguard keeps\n"
    "only the hash; give the token to the agent as its API key.\n";

#define usage_error pg_cli_usage_error
#define is_help pg_cli_is_help

/* Parses `-c FILE` / `--config FILE` / `--config=FILE`; other flags are
 * accepted only if listed in `extra`. */
static int parse_config_flag(int argc, char **argv, const char *usage, const char **path,
                             const char *extra, bool *extra_set)
{
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (is_help(a)) {
            fputs(usage, stdout);
            return 1;
        }
        if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) {
            if (i + 1 >= argc) {
                usage_error("missing file after", a);
                return -1;
            }
            *path = argv[++i];
        } else if (strncmp(a, "--config=", 9) == 0) {
            *path = a + 9;
        } else if (extra && strcmp(a, extra) == 0) {
            *extra_set = true;
        } else {
            usage_error("unknown option", a);
            return -1;
        }
    }
    return 0;
}

static int cmd_run(int argc, char **argv)
{
    const char *path = DEFAULT_CONFIG;
    int rc = parse_config_flag(argc, argv, usage_run, &path, NULL, NULL);
    if (rc)
        return rc > 0 ? 0 : 2;
    rc = pg_proxy_run(path);
    /* Join libuv's pool threads while OpenSSL is still up: at exit its own
     * cleanup runs first, and what admin jobs and reloads left in those
     * threads' OpenSSL state (error queue, random generator) was lost. */
    uv_library_shutdown();
    return rc;
}

static int cmd_check(int argc, char **argv)
{
    const char *path = DEFAULT_CONFIG;
    bool no_env = false;
    int rc = parse_config_flag(argc, argv, usage_check, &path, "--no-env", &no_env);
    if (rc)
        return rc > 0 ? 0 : 2;
    struct pg_config *cfg = NULL;
    struct pg_config_errors errs = { 0 };
    if (pg_config_load(path, !no_env, &cfg, &errs) != 0) {
        for (size_t i = 0; i < errs.count; i++)
            fprintf(stderr, "%s\n", errs.msgs[i]);
        pg_config_errors_free(&errs);
        return 2;
    }
    pg_config_free(cfg);
    puts("ok");
    return 0;
}

static bool valid_agent_id(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = id[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_' || ch == '.'))
            return false;
    }
    return true;
}

static int cmd_token(int argc, char **argv)
{
    const char *agent = NULL;
    if (argc == 0)
        return usage_error("token needs a subcommand", "new");
    if (is_help(argv[0])) {
        fputs(usage_token, stdout);
        return 0;
    }
    if (strcmp(argv[0], "new") != 0)
        return usage_error("unknown token subcommand", argv[0]);
    for (int i = 1; i < argc; i++) {
        if (is_help(argv[i])) {
            fputs(usage_token, stdout);
            return 0;
        }
        if (strcmp(argv[i], "--agent") == 0 && i + 1 < argc)
            agent = argv[++i];
        else if (strncmp(argv[i], "--agent=", 8) == 0)
            agent = argv[i] + 8;
        else
            return usage_error("unknown option", argv[i]);
    }
    if (!agent)
        return usage_error("token new needs", "--agent ID");
    if (!valid_agent_id(agent))
        return usage_error("agent ids are 1-64 letters, digits, '-', '_' or '.'", agent);
    char token[PG_TOKEN_BUF], hash[PG_BCRYPT_BUF];
    if (pg_auth_token_new(token, sizeof(token)) != 0 ||
        pg_auth_bcrypt_hash(pg_slice_cstr(token), PG_TOKEN_BCRYPT_COST, hash, sizeof(hash)) != 0) {
        fprintf(stderr, "payguard: could not generate a token\n");
        return 1;
    }
    printf("token: %s\n"
           "\n"
           "Give the token to agent %s as its API key; it is shown only once.\n"
           "Put the hash in payguard.yaml under that agent:\n"
           "\n"
           "  - id: %s\n"
           "    token: \"%s\"\n",
           token, agent, agent, hash);
    OPENSSL_cleanse(token, sizeof(token));
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage_main, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (is_help(cmd)) {
        fputs(usage_main, stdout);
        return 0;
    }
    if (strcmp(cmd, "help") == 0) {
        const char *topic = argc > 2 ? argv[2] : "";
        if (strcmp(topic, "run") == 0)
            fputs(usage_run, stdout);
        else if (strcmp(topic, "check") == 0)
            fputs(usage_check, stdout);
        else if (strcmp(topic, "token") == 0)
            fputs(usage_token, stdout);
        else if (strcmp(topic, "policy") == 0)
            return pg_cli_policy(1, (char *[]){ (char *)"--help", NULL });
        else if (strcmp(topic, "audit") == 0)
            return pg_cli_audit(1, (char *[]){ (char *)"--help", NULL });
        else if (strcmp(topic, "ledger") == 0)
            return pg_cli_ledger(1, (char *[]){ (char *)"--help", NULL });
        else if (strcmp(topic, "approvals") == 0)
            return pg_cli_approvals(1, (char *[]){ (char *)"--help", NULL });
        else if (strcmp(topic, "seal") == 0)
            return pg_cli_seal(1, (char *[]){ (char *)"--help", NULL });
        else if (strcmp(topic, "agent") == 0)
            return pg_cli_agent(1, (char *[]){ (char *)"--help", NULL });
        else if (strcmp(topic, "user") == 0)
            return pg_cli_user(1, (char *[]){ (char *)"--help", NULL });
        else if (strcmp(topic, "webhooks") == 0)
            return pg_cli_webhooks(1, (char *[]){ (char *)"--help", NULL });
        else if (!*topic)
            fputs(usage_main, stdout);
        else
            return usage_error("no help for", topic);
        return 0;
    }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("payguard %s\n", PG_VERSION);
        return 0;
    }
    if (strcmp(cmd, "run") == 0)
        return cmd_run(argc - 2, argv + 2);
    if (strcmp(cmd, "check") == 0)
        return cmd_check(argc - 2, argv + 2);
    if (strcmp(cmd, "token") == 0)
        return cmd_token(argc - 2, argv + 2);
    if (strcmp(cmd, "policy") == 0)
        return pg_cli_policy(argc - 2, argv + 2);
    if (strcmp(cmd, "audit") == 0)
        return pg_cli_audit(argc - 2, argv + 2);
    if (strcmp(cmd, "ledger") == 0)
        return pg_cli_ledger(argc - 2, argv + 2);
    if (strcmp(cmd, "approvals") == 0)
        return pg_cli_approvals(argc - 2, argv + 2);
    if (strcmp(cmd, "seal") == 0)
        return pg_cli_seal(argc - 2, argv + 2);
    if (strcmp(cmd, "agent") == 0)
        return pg_cli_agent(argc - 2, argv + 2);
    if (strcmp(cmd, "user") == 0)
        return pg_cli_user(argc - 2, argv + 2);
    if (strcmp(cmd, "webhooks") == 0)
        return pg_cli_webhooks(argc - 2, argv + 2);
    return usage_error("unknown command", cmd);
}
