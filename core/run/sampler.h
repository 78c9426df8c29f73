/* sampler.h (private to core/): noise schedules, the random generator, and the samplers
 * (DDIM with eta as CompVis implements it, DDPM ancestral, DPM-Solver++(2M) on the DDIM
 * timesteps; DPM++ 2M on Karras sigmas and Euler ancestral as k-diffusion implements them).
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

/* SplitMix64: advances *state and returns its next number (how rng_seed expands a seed; the
 * random choices of test_random_configs). */
uint64_t rng_splitmix64 (uint64_t *state);
void  rng_seed   (Rng *rng, uint64_t seed);
/* n standard normal floats (Box-Muller in double). */
void  rng_normal (Rng *rng, float *out, size_t n);

/* ---------------------------------------------------------------- sampling */

/* k-diffusion's view of the schedule (its CompVisDenoiser): the latent x = sqrt(a) x0 +
 * sqrt(1 - a) eps scaled by 1 / sqrt(a) is x0 + sigma eps, sigma = sqrt((1 - a) / a). The
 * sigma samplers step in sigma and give the U-Net the timestep whose log sigma is
 * interpolated between the two neighbouring training timesteps (fractional). */
double schedule_sigma    (const Schedule *s, int t);
/* The (fractional) timestep of a sigma: linear in log sigma between the training timesteps,
 * clamped to [0, n - 1] (CompVisDenoiser.sigma_to_t, quantize off). */
double schedule_sigma_to_t (const Schedule *s, double sigma);

/* The noise levels a sigma sampler (LDM_SAMPLER_DPMPP_2M_KARRAS, LDM_SAMPLER_EULER_A) visits
 * for `steps` (1 .. n) steps: steps + 1 sigmas from the largest down, the last 0, and the
 * U-Net timestep of each of the first `steps`. Karras: k-diffusion get_sigmas_karras (rho 7,
 * sigma_min and sigma_max the schedule's own, sigma(0) and sigma(n - 1)); Euler a: the
 * model's own sigmas at timesteps linspace(n - 1, 0, steps) (k-diffusion get_sigmas, the
 * schedule webui's "Euler a" uses). Returns the number of steps, 0 for another sampler. */
int sampler_sigmas (const Schedule *s, LdmSampler sampler, int steps, double *sigmas,
                    double *timesteps);

/* eps (n floats) predicted by the model for latent x at U-Net timestep t, where x = sqrt(a) x0
 * + sqrt(1 - a) eps: for the DDIM-timestep samplers t is a training timestep and a its
 * alphas_cumprod; for the sigma samplers t is fractional and a = 1 / (1 + sigma^2). */
typedef gboolean (*DenoiseFn) (void *data, const float *x, double t, float a, float *eps,
                               GError **error);

/* Per-step values, for progress and for tests. x is always in the scale the denoiser sees,
 * x = sqrt(a) x0 + sqrt(1 - a) eps (the sigma samplers' x / sqrt(a) times sqrt(a)). */
typedef struct {
    int          index, count; /* step index (0 = first, the noisiest) and number of steps */
    double       t;            /* the U-Net's timestep */
    /* a_t: the level x was at; a_prev: the level the step went to (1 after a sigma sampler's
     * last step, whose sigma is 0). sigma: the standard deviation of the fresh noise added
     * (DDIM, DDPM: in x; Euler a: sigma_up, in x / sqrt(a)); 0 when none. */
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
     * noise fresh from the Rng each step. The sigma samplers blend after the last step too:
     * its level is sigma 0, so the kept elements end exactly at known. NULL = no blending. */
    const float   *known;
    const uint8_t *keep;
    /* A start from an image (img2img, SDEdit): only the last max(1, round(strength x count))
     * timesteps run, from x = sqrt(a) init_x0 + sqrt(1 - a) x at the first of them (x holds
     * the standard normal noise on entry). NULL = x is x_T (the sigma samplers: x_T times
     * sqrt(1 - a) of their first sigma, k-diffusion's start sigma_max x noise). */
    const float   *init_x0;
    float          strength;
} SamplerHooks;

typedef struct {
    LdmSampler sampler;
    int        steps;
    float      eta;     /* DDIM only (Euler a is always eta 1) */
} SamplerParams;

/* Runs the sampler from x (n floats: x_T on entry, the final latent on return).
 * LDM_SAMPLER_DEFAULT is refused: the caller resolves it (ldm_sampler_for_model). */
gboolean sampler_run (const Schedule *schedule, const SamplerParams *params, DenoiseFn denoise,
                      void *denoise_data, float *x, size_t n, Rng *rng,
                      const SamplerHooks *hooks, GError **error);
