/* `payguard user passwd|totp`: what an operator pastes into users[] for a
 * human on the admin API. passwd turns a password (typed without echo, or
 * one line of stdin) into its bcrypt hash; totp makes a fresh TOTP seed,
 * sealed for the user's place in the file, and ten recovery codes with
 * their hashes. Secrets never travel in argv. */
#include "common/pg.h"
#include "auth/auth.h"
#include "auth/human.h"
#include "config/config.h"
#include "crypto/crypto.h"
#include "proxy/cli.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>

#define DEFAULT_CONFIG "payguard.yaml"
#define DEFAULT_ISSUER "payguard"
/* As `payguard seal`: shorter passphrases fall to guessing even at scrypt's cost. */
#define MIN_PASSPHRASE 12
/* One byte past the longest password, to notice a longer one. */
#define PW_BUF (PG_PASSWORD_MAX_BYTES + 2)

static const char usage_user[] =
    "Usage: payguard user passwd [--stdin]\n"
    "       payguard user totp [-c FILE] --email EMAIL [--issuer NAME]\n"
    "\n"
    "Prepares what payguard.yaml holds for a human on the admin API (users[]).\n"
    "\n"
    "passwd   asks for a new password twice without echo (or reads one line from\n"
    "         stdin with --stdin) and prints its bcrypt hash (cost 12) as the\n"
    "         users[].password line. A password is 10 to 72 bytes of UTF-8 with\n"
    "         at least 10 characters, a letter and a digit.\n"
    "totp     makes a fresh TOTP seed for the user with that email in FILE and\n"
    "         prints the otpauth:// URI to scan into an authenticator app, the\n"
    "         seed sealed under the master passphrase (the variable FILE's\n"
    "         master_key_env names) for users[I].totp, ten recovery codes shown\n"
    "         only once, and their hashes for users[I].recovery_codes. The sealed\n"
    "         seed opens only at that place in the list: make a new one after\n"
    "         reordering users[].\n"
    "  -c FILE        the config (default ./" DEFAULT_CONFIG ")\n"
    "  --email EMAIL  the user, as written in users[] (case does not matter)\n"
    "  --issuer NAME  the name the authenticator app shows (default " DEFAULT_ISSUER ")\n"
    "Exit status: 0 done, 1 a refused password or a failure, 2 bad usage, config\n"
    "or environment.\n";

/* ---- passwd ----------------------------------------------------------------- */

/* The terminal's settings while echo is off, so a signal can put them back. */
static struct termios saved_tty;
static volatile sig_atomic_t tty_saved;

static void restore_tty_and_die(int sig)
{
    if (tty_saved)
        (void)tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tty);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* One line from fd with read(2) (no stdio buffer keeps a copy): at most
 * PW_BUF - 1 bytes are kept, so a longer line reads as too long; the rest of
 * the line is consumed. CR LF or LF ends it. 0, or 1 at end of input with
 * nothing read, or -errno. */
static int read_line(int fd, char buf[PW_BUF], size_t *len)
{
    size_t n = 0;
    bool any = false;

    for (;;) {
        char c;
        ssize_t r = read(fd, &c, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            break;
        any = true;
        if (c == '\n')
            break;
        if (n < PW_BUF - 1)
            buf[n++] = c;
    }
    if (n > 0 && n < PW_BUF - 1 && buf[n - 1] == '\r')
        n--;
    *len = n;
    return any ? 0 : 1;
}

/* Prompts on stderr and reads a line from the terminal on stdin with echo
 * off, restoring the terminal however the read ends. 0, 1 at end of input,
 * or -errno. */
static int read_hidden(const char *prompt, char buf[PW_BUF], size_t *len)
{
    struct termios quiet;
    struct sigaction sa, old_int, old_term, old_quit;

    if (tcgetattr(STDIN_FILENO, &saved_tty) != 0)
        return -errno;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = restore_tty_and_die;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    sigaction(SIGQUIT, &sa, &old_quit);
    quiet = saved_tty;
    quiet.c_lflag &= ~(tcflag_t)ECHO;
    quiet.c_lflag |= ECHONL;
    tty_saved = 1;
    fputs(prompt, stderr);
    fflush(stderr);
    int rc = tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) != 0 ? -errno : 0;
    if (rc == 0)
        rc = read_line(STDIN_FILENO, buf, len);
    (void)tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tty);
    tty_saved = 0;
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGQUIT, &old_quit, NULL);
    return rc;
}

static int user_passwd(int argc, char **argv)
{
    char pw[PW_BUF], again[PW_BUF], hash[PG_BCRYPT_BUF];
    size_t len = 0, len2 = 0;
    bool from_stdin = false;
    const char *why = NULL;
    int rc;

    for (int i = 0; i < argc; i++) {
        if (pg_cli_is_help(argv[i])) {
            fputs(usage_user, stdout);
            return 0;
        }
        if (strcmp(argv[i], "--stdin") == 0)
            from_stdin = true;
        else
            return pg_cli_usage_error("unknown option", argv[i]);
    }
    if (!from_stdin && !isatty(STDIN_FILENO))
        return pg_cli_usage_error("stdin is not a terminal; to pipe the password in, add",
                                  "--stdin");
    if (from_stdin) {
        rc = read_line(STDIN_FILENO, pw, &len);
    } else {
        rc = read_hidden("New password: ", pw, &len);
        if (rc == 0)
            rc = read_hidden("Same again: ", again, &len2);
    }
    if (rc < 0) {
        fprintf(stderr, "payguard: cannot read the password: %s\n", pg_strerror(rc));
        rc = 1;
        goto out;
    }
    if (rc > 0) {
        fputs("payguard: no password given (end of input)\n", stderr);
        rc = 2;
        goto out;
    }
    if (!from_stdin && (len != len2 || CRYPTO_memcmp(pw, again, len) != 0)) {
        fputs("payguard: the two passwords differ; nothing changed\n", stderr);
        rc = 1;
        goto out;
    }
    if (pg_password_check(pg_slice_of(pw, len), &why) != 0) {
        fprintf(stderr, "payguard: password refused: %s\n", why);
        rc = 1;
        goto out;
    }
    rc = pg_auth_bcrypt_hash(pg_slice_of(pw, len), PG_PASSWORD_BCRYPT_COST, hash, sizeof hash);
    if (rc != 0) {
        fprintf(stderr, "payguard: cannot hash the password: %s\n", pg_strerror(rc));
        rc = 1;
        goto out;
    }
    printf("password: \"%s\"\n", hash);
    rc = fflush(stdout) == 0 ? 0 : 1;
out:
    OPENSSL_cleanse(pw, sizeof pw);
    OPENSSL_cleanse(again, sizeof again);
    return rc;
}

/* ---- totp ------------------------------------------------------------------- */

/* The authenticator's label puts a ':' between issuer and account, so the
 * issuer holds none; printable ASCII keeps it readable in every app. */
static bool issuer_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return false;
    for (; *s; s++)
        if (*s < 0x20 || *s > 0x7e || *s == ':')
            return false;
    return true;
}

/* Loads FILE without resolving secrets (the operator's machine may not hold
 * the rails' keys) and finds the user: its index, or -1 after saying why
 * (exit status 2). */
static long find_user(const char *file, const char *email, struct pg_config **cfg)
{
    struct pg_config_errors errs = {0};

    if (pg_config_load(file, false, cfg, &errs) != 0) {
        for (size_t i = 0; i < errs.count; i++)
            fprintf(stderr, "%s\n", errs.msgs[i]);
        pg_config_errors_free(&errs);
        return -1;
    }
    for (size_t i = 0; i < (*cfg)->nusers; i++)
        if ((*cfg)->users[i].email && strcasecmp((*cfg)->users[i].email, email) == 0)
            return (long)i;
    fprintf(stderr, "payguard: %s has no user %s in users[]; add the user first\n", file, email);
    return -1;
}

static int user_totp(int argc, char **argv)
{
    const char *file = DEFAULT_CONFIG, *email = NULL, *issuer = DEFAULT_ISSUER;
    struct pg_config *cfg = NULL;
    uint8_t seed[PG_TOTP_SECRET_LEN];
    char b32[(PG_TOTP_SECRET_LEN * 8 + 4) / 5 + 1];
    char uri[1024], aad[64], sealed[PG_SEAL_TEXT_LEN(sizeof b32) + 1];
    char codes[PG_RECOVERY_CODES][PG_RECOVERY_CODE_BUF], hashes[PG_RECOVERY_CODES][65];
    int rc;

    for (int i = 0; i < argc; i++) {
        if (pg_cli_is_help(argv[i])) {
            fputs(usage_user, stdout);
            return 0;
        }
        if ((rc = pg_cli_take_value(argc, argv, &i, "-c", &file)) == 0 &&
            (rc = pg_cli_take_value(argc, argv, &i, "--config", &file)) == 0 &&
            (rc = pg_cli_take_value(argc, argv, &i, "--email", &email)) == 0 &&
            (rc = pg_cli_take_value(argc, argv, &i, "--issuer", &issuer)) == 0)
            return pg_cli_usage_error("unknown option", argv[i]);
        if (rc < 0)
            return 2;
    }
    if (!email)
        return pg_cli_usage_error("user totp needs the user", "--email EMAIL");
    if (!issuer_ok(issuer))
        return pg_cli_usage_error("--issuer is 1-64 printable characters without ':', not",
                                  issuer);

    long idx = find_user(file, email, &cfg);
    if (idx < 0) {
        pg_config_free(cfg);
        return 2;
    }
    const struct pg_user *u = &cfg->users[idx];
    const char *env = cfg->master_key_env;
    const char *pass = getenv(env);
    if (!pass || !*pass) {
        fprintf(stderr, "payguard: %s is %s; export the master passphrase in it first\n", env,
                pass ? "empty" : "not set");
        pg_config_free(cfg);
        return 2;
    }
    if (strlen(pass) < MIN_PASSPHRASE) {
        fprintf(stderr,
                "payguard: %s is shorter than %d characters; use a long random passphrase\n",
                env, MIN_PASSPHRASE);
        pg_config_free(cfg);
        return 2;
    }

    snprintf(aad, sizeof aad, "users[%ld].totp", idx);
    rc = pg_random(seed, sizeof seed);
    if (rc == 0)
        rc = pg_base32_encode(seed, sizeof seed, b32, sizeof b32);
    if (rc == 0)
        rc = pg_totp_uri(issuer, u->email, seed, sizeof seed, uri, sizeof uri);
    if (rc == 0) {
        int n = pg_seal(pg_slice_cstr(pass), pg_slice_cstr(aad), pg_slice_cstr(b32), sealed,
                        sizeof sealed);
        rc = n < 0 ? n : 0;
    }
    for (size_t i = 0; rc == 0 && i < PG_RECOVERY_CODES; i++) {
        rc = pg_recovery_code_new(codes[i]);
        if (rc == 0)
            rc = pg_recovery_code_hash(pg_slice_cstr(codes[i]), hashes[i]);
    }
    if (rc != 0) {
        fprintf(stderr, "payguard: cannot make the TOTP seed: %s\n", pg_strerror(rc));
        rc = 1;
        goto out;
    }
    if (u->totp_ref)
        fprintf(stderr, "payguard: note: users[%ld] already has a totp; the new one replaces it "
                        "once pasted, and the old recovery codes go with it\n",
                idx);

    printf("Scan this into %s's authenticator app (it holds the secret; keep it off "
           "screenshots):\n\n  %s\n\n",
           u->email, uri);
    printf("Or type the secret in by hand (TOTP, SHA-1, 6 digits, 30 s): %s\n\n", b32);
    printf("Recovery codes for %s, shown only this once; each works once in place of a code:\n\n",
           u->email);
    for (size_t i = 0; i < PG_RECOVERY_CODES; i++)
        printf("  %s\n", codes[i]);
    printf("\nPut these lines under users[%ld] (%s) in %s:\n\n", idx, u->email, file);
    printf("    totp: %s\n    recovery_codes: [", sealed);
    for (size_t i = 0; i < PG_RECOVERY_CODES; i++)
        printf("%s%s", i ? ", " : "", hashes[i]);
    printf("]\n");
    rc = fflush(stdout) == 0 ? 0 : 1;
out:
    OPENSSL_cleanse(seed, sizeof seed);
    OPENSSL_cleanse(b32, sizeof b32);
    OPENSSL_cleanse(uri, sizeof uri);
    OPENSSL_cleanse(codes, sizeof codes);
    pg_config_free(cfg);
    return rc;
}

int pg_cli_user(int argc, char **argv)
{
    if (argc == 0)
        return pg_cli_usage_error("user needs a subcommand", "passwd or totp");
    if (pg_cli_is_help(argv[0])) {
        fputs(usage_user, stdout);
        return 0;
    }
    if (strcmp(argv[0], "passwd") == 0)
        return user_passwd(argc - 1, argv + 1);
    if (strcmp(argv[0], "totp") == 0)
        return user_totp(argc - 1, argv + 1);
    return pg_cli_usage_error("unknown user subcommand", argv[0]);
}
