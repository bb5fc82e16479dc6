/* Org time zones: an IANA name from payguard.yaml is read from the tz
 * database directory (/usr/share/zoneinfo, or $TZDIR) into memory and parsed
 * by policy/tz.c, which never touches files itself. The loaded zone lives in
 * the config, so budget windows never depend on the machine's own TZ. */
#include "common/pg.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config_int.h"
#include "policy/tz.h"

/* The largest compiled zone Debian ships is under 4 KiB; anything near this
 * is not a zone file. */
#define ZONE_MAX_BYTES (256u << 10)

static const char *const not_known = "is not a timezone known to this machine's tz database "
                                     "(expected an IANA name like Europe/Paris or UTC)";

/* Reads the whole zone file into a malloc'd buffer. 0, PG_ENOTFOUND (no such
 * zone, a directory, or too large), PG_ENOMEM. */
static int read_zone(const char *name, uint8_t **data, size_t *len)
{
    const char *dir = getenv("TZDIR");
    char path[512];
    struct stat st;

    if (!dir || dir[0] != '/')
        dir = "/usr/share/zoneinfo";
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path)
        return PG_ENOTFOUND;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0 && errno == ELOOP) /* Debian links aliases; follow those */
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return PG_ENOTFOUND;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 ||
        (uintmax_t)st.st_size > ZONE_MAX_BYTES) {
        close(fd);
        return PG_ENOTFOUND;
    }
    size_t cap = (size_t)st.st_size, got = 0;
    uint8_t *buf = malloc(cap);
    if (!buf) {
        close(fd);
        return PG_ENOMEM;
    }
    while (got < cap) {
        ssize_t r = read(fd, buf + got, cap - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break; /* an error or a file that shrank: parse what is there */
        got += (size_t)r;
    }
    close(fd);
    *data = buf;
    *len = got;
    return 0;
}

int cfg_zone_load(const char *name, struct pg_tz **out, const char **why)
{
    uint8_t *data = NULL;
    size_t len = 0;

    *why = NULL;
    if (strcmp(name, "UTC") == 0 || strcmp(name, "Etc/UTC") == 0)
        return pg_tz_utc(out);
    *why = cfg_timezone_check(name);
    if (*why)
        return PG_EPARSE;
    int rc = read_zone(name, &data, &len);
    if (rc == PG_ENOMEM)
        return rc;
    /* zone.tab, leapseconds and friends sit in the same directory. */
    if (rc != 0 || len < 4 || memcmp(data, "TZif", 4) != 0) {
        free(data);
        *why = not_known;
        return PG_EPARSE;
    }
    rc = pg_tz_parse(name, data, len, out);
    free(data);
    if (rc == PG_ENOMEM)
        return rc;
    if (rc != 0) {
        *why = "names a zone file whose TZif data payguard cannot parse "
               "(a damaged or unsupported tz database file)";
        return PG_EPARSE;
    }
    return 0;
}
