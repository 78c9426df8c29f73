/* ldm_bench.h: `ldm bench` (ldm_bench.c), dispatched from ldm.c. */
#pragma once

/* argv[0] is "bench". Returns the exit status. */
int ldm_command_bench (int argc, char **argv);
