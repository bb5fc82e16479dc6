/* The data plane: agent listener, admin listener, and the `payguard run`
 * entry point. */
#ifndef PG_PROXY_H
#define PG_PROXY_H

#include "common/pg.h"

/* Loads `config_path`, binds both listeners and serves until SIGTERM/SIGINT
 * drains the in-flight requests. Returns the process exit code: 0 after a
 * clean drain, 1 on a runtime failure, 2 when the config does not load.
 * Blocks; call from the main thread only. */
int pg_proxy_run(const char *config_path);

#endif /* PG_PROXY_H */
