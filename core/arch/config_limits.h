/* config_limits.h (private to core/arch): the ranges a model config must keep, shared by the
 * config reader, the checks and recognition, so that every shape and name they compute stays
 * small and exact. */
#pragma once

#include "arch/model_config.h"

/* Ranges that keep every shape and name the enumerators compute small and exact. */
#define MAX_CHANNELS       8192
#define MAX_MULT           64
#define MAX_RES_BLOCKS     LDM_MAX_RES_BLOCKS
#define MAX_DEPTH          16
#define MAX_IO_CHANNELS    1024
#define MAX_HEADS          1024
#define MAX_CONTEXT_DIM    16384
#define MAX_CLASSES        (1 << 20)
#define MAX_CODES          (1 << 24)
#define MAX_RESOLUTION     (1 << 16)
#define MAX_TIMESTEPS      100000
#define GROUPS             32 /* GroupNorm(32) everywhere in CompVis models */
