/* sampler.h (private to core/): noise schedules, the random generator, and the samplers
 * (DDIM with eta as CompVis implements it, DDPM ancestral, DPM-Solver++(2M)).
 *
 * A sampler knows nothing about networks: it calls a denoise function that returns the
 * model's eps prediction for (x, t), and hooks for noise and per-step reporting. */
#pragma once

#include "ldm.h"
#include "arch/model_config.h"

#define SCHEDULE_MAX_STEPS 1000

typedef struct {
    int   n;                                 /* training timesteps (1000) */
    float alphas_cumprod[SCHEDULE_MAX_STEPS]; /* float32, as the model buffer holds it */
} Schedule;

/* CompVis make_beta_schedule + cumprod in float64, stored as float32. */
gboolean schedule_init (Schedule *s, LdmBetaSchedule kind, double linear_start,
                        double linear_end, int n_timesteps, GError **error);

/* DDIM 'uniform' timesteps as CompVis makes them: c = n / steps; range(0, n, c) + 1.
 * Writes ascending timesteps into out (at most SCHEDULE_MAX_STEPS) and returns their count:
 * note that it can be more than `steps` (7 steps over 1000 give 8). */
int ddim_timesteps (int n_train, int steps, int *out);

/* ---------------------------------------------------------------- random numbers */

/* A small counter-free generator (xoshiro256**, seeded by splitmix64): the same seed gives
 * the same numbers on every machine and with any number of threads. */
typedef struct {
    uint64_t s[4];
} Rng;

void  rng_seed   (Rng *rng, uint64_t seed);
/* n standard normal floats (Box-Muller in double). */
void  rng_normal (Rng *rng, float *out, size_t n);

/* ---------------------------------------------------------------- sampling */

/* eps (n floats) predicted by the model for latent x at timestep t. */
typedef gboolean (*DenoiseFn) (void *data, const float *x, int t, float *eps, GError **error);

/* Per-step values, for progress and for tests. */
typedef struct {
    int          index, count; /* step index (0 = first, the noisiest) and number of steps */
    int          t;
    float        a_t, a_prev, sigma;
    const float *eps, *pred_x0, *x; /* x after the step */
} SamplerStep;

typedef struct {
    /* Standard normal noise for step `index` (n floats); NULL = from the Rng. */
    gboolean (*noise) (void *data, int index, float *out, size_t n, GError **error);
    /* Called after each step; returns FALSE to cancel (the sampler then fails with
     * LDM_ERROR_CANCELLED). NULL = no reports. */
    gboolean (*on_step) (void *data, const SamplerStep *step);
    void *data;
    /* Inpainting with known latents (the CompVis DDIM sampler's mask/x0): after every step
     * but the last, x[j] = sqrt(a_prev) known[j] + sqrt(1 - a_prev) noise where keep[j],
     * noise fresh from the Rng each step. NULL = no blending. */
    const float   *known;
    const uint8_t *keep;
    /* A start from an image (img2img, SDEdit): only the last max(1, round(strength x count))
     * timesteps run, from x = sqrt(a) init_x0 + sqrt(1 - a) x at the first of them (x holds
     * the standard normal noise on entry). NULL = x is x_T. */
    const float   *init_x0;
    float          strength;
} SamplerHooks;

typedef struct {
    LdmSampler sampler;
    int        steps;
    float      eta;     /* DDIM only */
} SamplerParams;

/* Runs the sampler from x (n floats: x_T on entry, the final latent on return). */
gboolean sampler_run (const Schedule *schedule, const SamplerParams *params, DenoiseFn denoise,
                      void *denoise_data, float *x, size_t n, Rng *rng,
                      const SamplerHooks *hooks, GError **error);
