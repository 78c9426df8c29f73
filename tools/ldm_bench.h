/* ldm_bench.h: `ldm bench` (ldm_bench.c), dispatched from ldm.c. */
#pragma once

/* argv[0] is "bench". Returns the exit status. */
int ldm_command_bench (int argc, char **argv);
/* This process's peak resident memory in MB (its own, not its parent's at fork). */
double ldm_peak_rss_mb (void);
