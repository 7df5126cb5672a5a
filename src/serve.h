/* serve: `sluice serve` — wires the stages together and runs the event loop.
 *
 * Opens the data dir, resolves the keys, opens the event log and the bad-event log
 * (recovering their tails), builds the enrichment chain, the collector and the HTTP
 * server, and routes requests: ingestion to collect, then the operational endpoints it
 * owns itself — /healthz (the process answers), /readyz (the log can take writes and the
 * server is not draining), /metrics (Prometheus text, read or admin key) and /version.
 * SIGTERM and SIGINT drain: stop accepting, finish in-flight requests (their log acks
 * included), sync and close the logs, exit 0. */
#ifndef SLUICE_SERVE_H
#define SLUICE_SERVE_H

#include "config.h"

#define SLUICE_VERSION "0.1.0"

/* Run the server until a termination signal. Returns the process exit code. */
int serve_run(config_t *cfg);

/* Options for opening the two logs from cfg; shared by serve and the offline tools. */
#include "log.h"
void serve_log_opts(const config_t *cfg, const char *subdir, uv_loop_t *loop,
                    log_opts_t *out /* OUT */, char *path, size_t pathlen);

#endif
