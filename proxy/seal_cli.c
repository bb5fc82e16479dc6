/* `payguard seal`: encrypts one secret read from stdin into a sealed:v1:
 * value for payguard.yaml, bound to the config path it will sit at. The
 * secret never travels in argv, and only the sealed value is printed. */
#include "common/pg.h"
#include "config/config.h"
#include "crypto/crypto.h"
#include "proxy/cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <openssl/crypto.h>

#define DEFAULT_MASTER_ENV "PAYGUARD_MASTER_KEY"
/* Shorter passphrases fall to a guessing attack even at scrypt's cost. */
#define MIN_PASSPHRASE 12

static const char usage_seal[] =
    "Usage: payguard seal --path KEY [-c FILE | --master-env NAME] < SECRET\n"
    "\n"
    "Encrypts the secret read from stdin (to end of input; one trailing newline\n"
    "is dropped) under the master passphrase and prints a sealed:v1: value to\n"
    "write in payguard.yaml at KEY. The value opens only at that key.\n"
    "  --path KEY    rails.NAME.secret, or webhooks[I].secret (I counts from 0)\n"
    "  -c FILE       take master_key_env from FILE and check that KEY is in it\n"
    "  --master-env  without -c: the variable holding the passphrase\n"
    "                (default " DEFAULT_MASTER_ENV ")\n"
    "The passphrase is read from that variable, never from the command line, and\n"
    "must be at least 12 characters. Example (printf is a shell builtin, so the\n"
    "key stays out of the process list):\n"
    "  printf %s \"$STRIPE_SECRET_KEY\" | payguard seal -c payguard.yaml --path "
    "rails.stripe.secret\n"
    "Exit status: 0 sealed, 1 failure, 2 bad usage, input or environment.\n";

static bool env_name_ok(const char *s)
{
    if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_'))
        return false;
    for (; *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
              *s == '_'))
            return false;
    return true;
}

/* The shape of a path the loader unseals, for use without -c:
 * "rails.NAME.secret" (NAME as the loader allows rail names) or
 * "webhooks[I].secret" (I in decimal, no leading zero). */
static bool path_shape_ok(const char *p)
{
    static const char rails[] = "rails.", hooks[] = "webhooks[", tail[] = ".secret";
    size_t len = strlen(p), t = sizeof(tail) - 1;

    if (len <= t || strcmp(p + len - t, tail) != 0)
        return false;
    len -= t;
    if (strncmp(p, rails, sizeof(rails) - 1) == 0) {
        const char *name = p + sizeof(rails) - 1;
        size_t n = len - (sizeof(rails) - 1);
        if (n == 0 || n > 64)
            return false;
        for (size_t i = 0; i < n; i++) {
            char c = name[i];
            bool alnum = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
            if (!alnum && (i == 0 || (c != '_' && c != '-' && c != '.')))
                return false;
        }
        return true;
    }
    if (strncmp(p, hooks, sizeof(hooks) - 1) == 0) {
        const char *d = p + sizeof(hooks) - 1, *end = p + len - 1; /* at ']' */
        if (*end != ']' || d == end || (*d == '0' && d + 1 != end) || end - d > 9)
            return false;
        for (; d < end; d++)
            if (*d < '0' || *d > '9')
                return false;
        return true;
    }
    return false;
}

/* With -c: KEY must be one of the file's secrets, since a value sealed for
 * a path that is not there can never be opened. Prints why and returns 2, or
 * 0 with *master_env pointing into *cfg (caller frees cfg). */
static int check_against_config(const char *file, const char *key, struct pg_config **cfg,
                                const char **master_env)
{
    struct pg_config_errors errs = {0};
    char path[128];

    if (pg_config_load(file, false, cfg, &errs) != 0) {
        for (size_t i = 0; i < errs.count; i++)
            fprintf(stderr, "%s\n", errs.msgs[i]);
        pg_config_errors_free(&errs);
        return 2;
    }
    *master_env = (*cfg)->master_key_env;
    for (size_t i = 0; i < (*cfg)->nrails; i++) {
        snprintf(path, sizeof(path), "rails.%s.secret", (*cfg)->rails[i].name);
        if (strcmp(path, key) == 0)
            return 0;
    }
    for (size_t i = 0; i < (*cfg)->nwebhooks; i++) {
        snprintf(path, sizeof(path), "webhooks[%zu].secret", i);
        if (strcmp(path, key) == 0)
            return 0;
    }
    fprintf(stderr, "payguard: %s has no secret at %s; its secrets are:", file, key);
    for (size_t i = 0; i < (*cfg)->nrails; i++)
        fprintf(stderr, " rails.%s.secret", (*cfg)->rails[i].name);
    for (size_t i = 0; i < (*cfg)->nwebhooks; i++)
        fprintf(stderr, " webhooks[%zu].secret", i);
    fputc('\n', stderr);
    return 2;
}

/* stdin to end of input into buf, with read(2): no stdio buffer keeps a copy. */
static int read_all(char *buf, size_t cap, size_t *len)
{
    size_t n = 0;
    for (;;) {
        if (n == cap)
            return PG_ETOOBIG;
        ssize_t r = read(STDIN_FILENO, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            break;
        n += (size_t)r;
    }
    *len = n;
    return 0;
}

/* The secret, read and checked, into buf; 0 or an exit status after saying why. */
static int read_secret(char *buf, size_t cap, size_t *len)
{
    if (isatty(STDIN_FILENO))
        fputs("Type or paste the secret, then Enter and Ctrl-D. It shows as you type;\n"
              "piping it in keeps it off the screen.\n",
              stderr);
    int rc = read_all(buf, cap, len);
    if (rc == PG_ETOOBIG) {
        fprintf(stderr, "payguard: the secret on stdin is longer than %d bytes\n",
                PG_SEAL_MAX_PLAINTEXT);
        return 2;
    }
    if (rc != 0) {
        fprintf(stderr, "payguard: cannot read stdin: %s\n", pg_strerror(rc));
        return 1;
    }
    if (*len > 0 && buf[*len - 1] == '\n')
        (*len)--;
    if (*len > 0 && buf[*len - 1] == '\r')
        (*len)--;
    if (*len == 0) {
        fputs("payguard: the secret on stdin is empty\n", stderr);
        return 2;
    }
    if (*len > PG_SEAL_MAX_PLAINTEXT) {
        fprintf(stderr, "payguard: the secret on stdin is longer than %d bytes\n",
                PG_SEAL_MAX_PLAINTEXT);
        return 2;
    }
    /* It will travel in an HTTP header; the loader refuses these too. */
    for (size_t i = 0; i < *len; i++) {
        unsigned char c = (unsigned char)buf[i];
        if (c < 0x20 || c == 0x7f) {
            fputs("payguard: the secret on stdin holds a control character or a second "
                  "line; rail keys and signing secrets are one line of text\n",
                  stderr);
            return 2;
        }
    }
    return 0;
}

int pg_cli_seal(int argc, char **argv)
{
    const char *file = NULL, *key = NULL, *master_env = NULL;
    struct pg_config *cfg = NULL;
    /* The secret plus a CR LF to strip, and one byte to notice more. */
    char secret[PG_SEAL_MAX_PLAINTEXT + 3];
    char sealed[PG_SEAL_TEXT_BUF];
    const char *pass;
    size_t len = 0;
    int rc, n;

    for (int i = 0; i < argc; i++) {
        if (pg_cli_is_help(argv[i])) {
            fputs(usage_seal, stdout);
            return 0;
        }
        if ((rc = pg_cli_take_value(argc, argv, &i, "-c", &file)) == 0 &&
            (rc = pg_cli_take_value(argc, argv, &i, "--config", &file)) == 0 &&
            (rc = pg_cli_take_value(argc, argv, &i, "--path", &key)) == 0 &&
            (rc = pg_cli_take_value(argc, argv, &i, "--master-env", &master_env)) == 0)
            return pg_cli_usage_error("unknown option", argv[i]);
        if (rc < 0)
            return 2;
    }
    if (!key)
        return pg_cli_usage_error("seal needs the config path the value is for", "--path KEY");
    if (file && master_env)
        return pg_cli_usage_error("give -c FILE (its master_key_env) or --master-env, not both",
                                  NULL);
    if (!path_shape_ok(key))
        return pg_cli_usage_error("--path is rails.NAME.secret or webhooks[I].secret, not", key);
    if (master_env && !env_name_ok(master_env))
        return pg_cli_usage_error("--master-env is not a variable name", master_env);
    if (file) {
        rc = check_against_config(file, key, &cfg, &master_env);
        if (rc != 0)
            goto out;
    }
    if (!master_env)
        master_env = DEFAULT_MASTER_ENV;

    pass = getenv(master_env);
    if (!pass || !*pass) {
        fprintf(stderr, "payguard: %s is %s; export the master passphrase in it first\n",
                master_env, pass ? "empty" : "not set");
        rc = 2;
        goto out;
    }
    if (strlen(pass) < MIN_PASSPHRASE) {
        fprintf(stderr,
                "payguard: %s is shorter than %d characters; use a long random passphrase\n",
                master_env, MIN_PASSPHRASE);
        rc = 2;
        goto out;
    }
    rc = read_secret(secret, sizeof(secret), &len);
    if (rc != 0)
        goto out;
    n = pg_seal(pg_slice_cstr(pass), pg_slice_cstr(key), pg_slice_of(secret, len), sealed,
                sizeof(sealed));
    if (n < 0) {
        fprintf(stderr, "payguard: cannot seal: %s\n", pg_strerror(n));
        rc = 1;
        goto out;
    }
    printf("%s\n", sealed);
    rc = fflush(stdout) == 0 ? 0 : 1;

out:
    OPENSSL_cleanse(secret, sizeof(secret));
    pg_config_free(cfg);
    return rc;
}
