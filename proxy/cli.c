/* Helpers every command-line verb shares (proxy/cli.h). In the library, not
 * in main.c, so a verb's code links alone in its tests. */
#include "common/pg.h"
#include "proxy/cli.h"

#include <stdio.h>

int pg_cli_usage_error(const char *msg, const char *arg)
{
    fprintf(stderr, "payguard: %s%s%s (see payguard help)\n", msg, arg ? ": " : "", arg ? arg : "");
    return 2;
}

bool pg_cli_is_help(const char *a)
{
    return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0;
}

int pg_cli_take_value(int argc, char **argv, int *i, const char *name, const char **out)
{
    const char *a = argv[*i];
    size_t n = strlen(name);

    if (strcmp(a, name) == 0) {
        if (*i + 1 >= argc) {
            (void)pg_cli_usage_error("missing value after", a);
            return -1;
        }
        *out = argv[++*i];
        return 1;
    }
    if (strncmp(a, name, n) == 0 && a[n] == '=') {
        *out = a + n + 1;
        return 1;
    }
    return 0;
}
