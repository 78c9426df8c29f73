/* sampler.c: schedules, random numbers and samplers. See sampler.h.
 *
 * The DDIM arithmetic follows CompVis's DDIMSampler step by step in float32 (its per-step
 * scalars are float32 buffers), so that latents match the authors' to float rounding.
 */
#include "run/sampler.h"

#include "alloc.h"

#include <math.h>
#include <string.h>

const char *
ldm_sampler_name (LdmSampler sampler)
{
    switch (sampler) {
    case LDM_SAMPLER_DDIM: return "ddim";
    case LDM_SAMPLER_DDPM: return "ddpm";
    case LDM_SAMPLER_DPMPP_2M: return "dpmpp-2m";
    case LDM_SAMPLER_DPMPP_2M_KARRAS: return "dpmpp-2m-karras";
    case LDM_SAMPLER_EULER_A: return "euler-a";
    case LDM_SAMPLER_DEFAULT: return "default";
    }
    return "?";
}

const char *
ldm_init_name (LdmInit init)
{
    switch (init) {
    case LDM_INIT_NOISE: return "noise";
    case LDM_INIT_FILL: return "fill";
    case LDM_INIT_ORIGINAL: return "original";
    }
    return "?";
}

gboolean
ldm_init_parse (const char *name, LdmInit *init)
{
    for (LdmInit i = LDM_INIT_NOISE; i <= LDM_INIT_ORIGINAL; i++)
        if (name && strcmp (name, ldm_init_name (i)) == 0) {
            *init = i;
            return TRUE;
        }
    return FALSE;
}

gboolean
ldm_sampler_parse (const char *name, LdmSampler *sampler)
{
    for (LdmSampler s = LDM_SAMPLER_DDIM; s <= LDM_SAMPLER_DEFAULT; s++)
        if (name && strcmp (name, ldm_sampler_name (s)) == 0) {
            *sampler = s;
            return TRUE;
        }
    return FALSE;
}

gboolean
schedule_init (Schedule *s, LdmBetaSchedule kind, double start, double end, int n,
               GError **error)
{
    if (n < 2 || n > SCHEDULE_MAX_STEPS || !(start > 0) || !(end > start) || !(end < 1)) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_UNSUPPORTED,
                     "noise schedule out of range (%d timesteps, betas %g .. %g)", n, start, end);
        return FALSE;
    }
    s->n = n;
    double cumprod = 1.0;
    for (int i = 0; i < n; i++) {
        double beta;
        switch (kind) {
        case LDM_BETA_LINEAR: { /* linspace(sqrt(start), sqrt(end), n) ** 2 */
            double r = sqrt (start) + (sqrt (end) - sqrt (start)) * i / (n - 1);
            beta = r * r;
            break;
        }
        case LDM_BETA_SQRT_LINEAR: beta = start + (end - start) * i / (n - 1); break;
        case LDM_BETA_SQRT: beta = sqrt (start + (end - start) * i / (n - 1)); break;
        case LDM_BETA_COSINE: {
            /* Nichol & Dhariwal, s = 8e-3, betas clipped to [0, 0.999] */
            double s8 = 8e-3;
            double f0 = cos ((i / (double) n + s8) / (1 + s8) * G_PI / 2);
            double f1 = cos (((i + 1) / (double) n + s8) / (1 + s8) * G_PI / 2);
            beta = CLAMP (1 - (f1 * f1) / (f0 * f0), 0.0, 0.999);
            break;
        }
        default: beta = 0; break;
        }
        cumprod *= 1.0 - beta;
        s->alphas_cumprod[i] = (float) cumprod;
    }
    return TRUE;
}

int
ddim_timesteps (int n_train, int steps, int *out)
{
    if (steps < 1)
        steps = 1;
    if (steps > n_train)
        steps = n_train;
    int c = n_train / steps, count = 0;
    for (int t = 0; t < n_train; t += c)
        out[count++] = t + 1;
    /* t = n_train would index past the schedule: CompVis never makes it (c >= 1) */
    if (out[count - 1] >= n_train)
        count--;
    return count;
}

double
schedule_sigma (const Schedule *s, int t)
{
    double a = s->alphas_cumprod[t];
    return sqrt ((1.0 - a) / a);
}

double
schedule_sigma_to_t (const Schedule *s, double sigma)
{
    /* log sigma grows with t: the last timestep whose log sigma is at most sigma's, kept
     * below n - 1 so that it has an upper neighbour */
    double log_sigma = log (sigma);
    int low = 0;
    for (int t = 1; t < s->n - 1; t++)
        if (log (schedule_sigma (s, t)) <= log_sigma)
            low = t;
    double lo = log (schedule_sigma (s, low)), hi = log (schedule_sigma (s, low + 1));
    double w = CLAMP ((lo - log_sigma) / (lo - hi), 0.0, 1.0);
    return low + w;
}

int
sampler_sigmas (const Schedule *s, LdmSampler sampler, int steps, double *sigmas,
                double *timesteps)
{
    if (steps < 1 || steps > s->n)
        return 0;
    for (int i = 0; i < steps; i++) {
        double ramp = steps > 1 ? (double) i / (steps - 1) : 0.0; /* linspace(0, 1, steps) */
        switch (sampler) {
        case LDM_SAMPLER_DPMPP_2M_KARRAS: {
            const double rho = 7.0;
            double max_inv = pow (schedule_sigma (s, s->n - 1), 1.0 / rho);
            double min_inv = pow (schedule_sigma (s, 0), 1.0 / rho);
            sigmas[i] = pow (max_inv + ramp * (min_inv - max_inv), rho);
            timesteps[i] = schedule_sigma_to_t (s, sigmas[i]);
            break;
        }
        case LDM_SAMPLER_EULER_A: {
            /* t_to_sigma: log sigma interpolated between the neighbouring timesteps */
            double t = (s->n - 1) * (1.0 - ramp);
            int lo = (int) floor (t), hi = (int) ceil (t);
            double w = t - lo;
            sigmas[i] = exp ((1 - w) * log (schedule_sigma (s, lo))
                             + w * log (schedule_sigma (s, hi)));
            timesteps[i] = t;
            break;
        }
        default:
            return 0;
        }
    }
    sigmas[steps] = 0.0;
    return steps;
}

/* ---------------------------------------------------------------- random numbers */

uint64_t
rng_splitmix64 (uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void
rng_seed (Rng *rng, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        rng->s[i] = rng_splitmix64 (&seed);
}

static inline uint64_t
rotl (uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t
rng_next (Rng *rng)
{
    uint64_t *s = rng->s;
    uint64_t result = rotl (s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl (s[3], 45);
    return result;
}

static double
rng_uniform_open (Rng *rng) /* in (0, 1) */
{
    return ((rng_next (rng) >> 11) + 0.5) * 0x1p-53;
}

void
rng_normal (Rng *rng, float *out, size_t n)
{
    for (size_t i = 0; i < n; i += 2) {
        double r = sqrt (-2.0 * log (rng_uniform_open (rng)));
        double theta = 2.0 * G_PI * rng_uniform_open (rng);
        out[i] = (float) (r * cos (theta));
        if (i + 1 < n)
            out[i + 1] = (float) (r * sin (theta));
    }
}

/* ---------------------------------------------------------------- sampling */

static gboolean
draw_noise (const SamplerHooks *hooks, Rng *rng, int index, float *out, size_t n,
            GError **error)
{
    if (hooks && hooks->noise)
        return hooks->noise (hooks->data, index, out, n, error);
    rng_normal (rng, out, n);
    return TRUE;
}

static gboolean
report (const SamplerHooks *hooks, const SamplerStep *step, GError **error)
{
    if (hooks && hooks->on_step && !hooks->on_step (hooks->data, step)) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_CANCELLED, "cancelled");
        return FALSE;
    }
    return TRUE;
}

/* After a step to level a_prev: the kept elements set to the known latent noised to it (noise
 * fresh from the Rng; at a_prev = 1, a sigma sampler's end, the known latent itself). */
static void
blend_known (const SamplerHooks *hooks, Rng *rng, float a_prev, float *noise, float *x,
             size_t n)
{
    if (a_prev >= 1.0f) {
        for (size_t j = 0; j < n; j++)
            if (hooks->keep[j])
                x[j] = hooks->known[j];
        return;
    }
    float sqrt_a_prev = sqrtf (a_prev), sqrt_one_minus_a_prev = sqrtf (1.0f - a_prev);
    rng_normal (rng, noise, n);
    for (size_t j = 0; j < n; j++)
        if (hooks->keep[j])
            x[j] = sqrt_a_prev * hooks->known[j] + sqrt_one_minus_a_prev * noise[j];
}

/* The number of a schedule's last steps a start from an image runs. */
static int
steps_to_run (const SamplerHooks *hooks, int count)
{
    if (!hooks || !hooks->init_x0)
        return count;
    return CLAMP ((int) lrintf (hooks->strength * (float) count), 1, count);
}

/* DPM++ 2M (Karras sigmas) and Euler ancestral, as k-diffusion's sample_dpmpp_2m and
 * sample_euler_ancestral (eta 1, s_noise 1) through CompVisDenoiser: they step in
 * xs = x / sqrt(a) = x0 + sigma eps, where the model's x0 estimate is xs - sigma eps. x itself
 * stays in the denoiser's scale between steps (x = xs / sqrt(1 + sigma^2)). */
static gboolean
run_sigmas (const Schedule *schedule, const SamplerParams *params, DenoiseFn denoise,
            void *denoise_data, float *x, size_t n, Rng *rng, const SamplerHooks *hooks,
            float *eps, float *pred_x0, float *prev_x0, float *noise, GError **error)
{
    double sigmas[SCHEDULE_MAX_STEPS + 1], timesteps[SCHEDULE_MAX_STEPS];
    int count = sampler_sigmas (schedule, params->sampler, params->steps, sigmas, timesteps);
    int first = count - steps_to_run (hooks, count);
    /* xs = init_x0 + sigma noise (0 without an image: sigma_max noise), in x's scale */
    double a_first = 1.0 / (1.0 + sigmas[first] * sigmas[first]);
    float sa = (float) sqrt (a_first), s1 = (float) sqrt (1.0 - a_first);
    for (size_t j = 0; j < n; j++)
        x[j] = (hooks && hooks->init_x0 ? sa * hooks->init_x0[j] : 0.0f) + s1 * x[j];
    double h_prev = 0;
    for (int i = first; i < count; i++) {
        double sigma = sigmas[i], next = sigmas[i + 1];
        double a = 1.0 / (1.0 + sigma * sigma), a_next = 1.0 / (1.0 + next * next);
        double scale = sqrt (1.0 + sigma * sigma), scale_next = sqrt (a_next); /* x -> xs -> x */
        if (!denoise (denoise_data, x, timesteps[i], (float) a, eps, error))
            return FALSE;
        for (size_t j = 0; j < n; j++)
            pred_x0[j] = (float) (x[j] * scale - sigma * eps[j]);
        double sigma_up = 0;
        if (params->sampler == LDM_SAMPLER_DPMPP_2M_KARRAS) {
            /* in lambda = -log sigma: xs' = (next / sigma) xs + (1 - next / sigma) D, with D the
             * second-order blend of this and the last x0 estimate except at the first step and
             * the last (to sigma 0, where xs' = x0 estimate) */
            double h = next > 0 ? log (sigma / next) : INFINITY;
            bool second_order = i > first && next > 0;
            double r = second_order ? h_prev / h : 1.0, ratio = next / sigma;
            for (size_t j = 0; j < n; j++) {
                double d = second_order ? (1 + 1 / (2 * r)) * pred_x0[j]
                                              - (1 / (2 * r)) * prev_x0[j]
                                        : pred_x0[j];
                double xs = x[j] * scale;
                x[j] = (float) (scale_next * (ratio * xs + (1 - ratio) * d));
            }
            memcpy (prev_x0, pred_x0, n * sizeof (float));
            h_prev = h;
        } else { /* Euler ancestral: an Euler step down to sigma_down, fresh noise up to next */
            sigma_up = next > 0 ? MIN (next, sqrt (next * next * (sigma * sigma - next * next)
                                                   / (sigma * sigma)))
                                : 0.0;
            double sigma_down = sqrt (next * next - sigma_up * sigma_up);
            if (sigma_up > 0 && !draw_noise (hooks, rng, i - first, noise, n, error))
                return FALSE;
            for (size_t j = 0; j < n; j++) {
                double xs = x[j] * scale + eps[j] * (sigma_down - sigma);
                if (sigma_up > 0)
                    xs += sigma_up * noise[j];
                x[j] = (float) (scale_next * xs);
            }
        }
        if (hooks && hooks->known)
            blend_known (hooks, rng, (float) a_next, noise, x, n);
        SamplerStep step = { .index = i - first, .count = count - first, .t = timesteps[i],
                             .a_t = (float) a, .a_prev = (float) a_next,
                             .sigma = (float) sigma_up, .eps = eps, .pred_x0 = pred_x0,
                             .x = x };
        if (!report (hooks, &step, error))
            return FALSE;
    }
    return TRUE;
}

gboolean
sampler_run (const Schedule *schedule, const SamplerParams *params, DenoiseFn denoise,
             void *denoise_data, float *x, size_t n, Rng *rng, const SamplerHooks *hooks,
             GError **error)
{
    if (params->steps < 1 || params->steps > schedule->n) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT, "steps must be 1 to %d, not %d",
                     schedule->n, params->steps);
        return FALSE;
    }
    /* above 1, 1 - a_prev - sigma^2 turns negative and DDIM has no square root to take */
    if (!(params->eta >= 0.0f && params->eta <= 1.0f)) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT, "eta must be 0 to 1, not %g",
                     params->eta);
        return FALSE;
    }
    if (params->sampler < LDM_SAMPLER_DDIM || params->sampler >= LDM_SAMPLER_DEFAULT) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT, "unknown sampler %d",
                     params->sampler);
        return FALSE;
    }
    if (hooks && hooks->init_x0 && !(hooks->strength > 0.0f && hooks->strength <= 1.0f)) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                     "strength must be more than 0 and at most 1, not %g", hooks->strength);
        return FALSE;
    }
    g_autofree float *eps = g_try_malloc_n (n, sizeof (float));
    g_autofree float *pred_x0 = g_try_malloc_n (n, sizeof (float));
    g_autofree float *prev_x0 = g_try_malloc_n (n, sizeof (float));
    g_autofree float *noise = g_try_malloc_n (n, sizeof (float));
    if (!eps || !pred_x0 || !prev_x0 || !noise) {
        ldm_no_memory (error, "sampling", 4 * n, sizeof (float));
        return FALSE;
    }
    if (params->sampler == LDM_SAMPLER_DPMPP_2M_KARRAS || params->sampler == LDM_SAMPLER_EULER_A) {
        return run_sigmas (schedule, params, denoise, denoise_data, x, n, rng, hooks, eps,
                           pred_x0, prev_x0, noise, error);
    }
    int timesteps[SCHEDULE_MAX_STEPS];
    int count = ddim_timesteps (schedule->n, params->steps, timesteps);
    if (hooks && hooks->init_x0) {
        /* the schedule's last steps only: the image's latent noised to the first of them */
        count = steps_to_run (hooks, count);
        float a = schedule->alphas_cumprod[timesteps[count - 1]];
        float sa = sqrtf (a), s1 = sqrtf (1.0f - a);
        for (size_t j = 0; j < n; j++)
            x[j] = sa * hooks->init_x0[j] + s1 * x[j];
    }
    float h_prev = 0;
    for (int i = 0; i < count; i++) {
        int index = count - 1 - i; /* visit the timesteps from the largest down */
        int t = timesteps[index];
        float a_t = schedule->alphas_cumprod[t];
        float a_prev = index > 0 ? schedule->alphas_cumprod[timesteps[index - 1]]
                                 : schedule->alphas_cumprod[0];
        if (!denoise (denoise_data, x, t, a_t, eps, error))
            return FALSE;

        float sqrt_a_t = sqrtf (a_t), sqrt_one_minus_a_t = sqrtf (1.0f - a_t);
        for (size_t j = 0; j < n; j++)
            pred_x0[j] = (x[j] - sqrt_one_minus_a_t * eps[j]) / sqrt_a_t;

        float sigma = 0;
        switch (params->sampler) {
        case LDM_SAMPLER_DDIM: {
            double ap = a_prev, a = a_t;
            sigma = (float) (params->eta * sqrt ((1 - ap) / (1 - a) * (1 - a / ap)));
            float dir_scale = sqrtf (1.0f - a_prev - sigma * sigma), sqrt_a_prev = sqrtf (a_prev);
            if (sigma > 0 && !draw_noise (hooks, rng, i, noise, n, error))
                return FALSE;
            for (size_t j = 0; j < n; j++) {
                float v = sqrt_a_prev * pred_x0[j] + dir_scale * eps[j];
                x[j] = sigma > 0 ? v + sigma * noise[j] : v;
            }
            break;
        }
        case LDM_SAMPLER_DDPM: {
            /* posterior q(x_prev | x_t, x0) of the respaced chain; no noise at the end */
            double beta = 1.0 - (double) a_t / a_prev;
            double c0 = sqrt ((double) a_prev) * beta / (1.0 - a_t);
            double ct = sqrt (1.0 - beta) * (1.0 - a_prev) / (1.0 - a_t);
            sigma = i < count - 1 ? (float) sqrt (beta * (1.0 - a_prev) / (1.0 - a_t)) : 0.0f;
            if (sigma > 0 && !draw_noise (hooks, rng, i, noise, n, error))
                return FALSE;
            for (size_t j = 0; j < n; j++)
                x[j] = (float) (c0 * pred_x0[j] + ct * x[j]) + (sigma > 0 ? sigma * noise[j] : 0);
            break;
        }
        case LDM_SAMPLER_DPMPP_2M: {
            /* data-prediction multistep solver in lambda = log(alpha / sigma) */
            double alpha_t = sqrt ((double) a_t), s_t = sqrt (1.0 - a_t);
            double alpha_p = sqrt ((double) a_prev), s_p = sqrt (1.0 - a_prev);
            double h = log (alpha_p / s_p) - log (alpha_t / s_t);
            double ratio = s_p / s_t, phi = -alpha_p * expm1 (-h);
            bool second_order = i > 0 && i < count - 1;
            double r = second_order ? h_prev / h : 1.0;
            for (size_t j = 0; j < n; j++) {
                double d = second_order ? (1 + 1 / (2 * r)) * pred_x0[j]
                                              - (1 / (2 * r)) * prev_x0[j]
                                        : pred_x0[j];
                x[j] = (float) (ratio * x[j] + phi * d);
            }
            memcpy (prev_x0, pred_x0, n * sizeof (float));
            h_prev = (float) h;
            break;
        }
        default:
            g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT, "unknown sampler %d",
                         params->sampler);
            return FALSE;
        }
        /* x_prev where the latent is known: the known latent noised to a_prev */
        if (hooks && hooks->known && i < count - 1)
            blend_known (hooks, rng, a_prev, noise, x, n);
        SamplerStep step = { .index = i, .count = count, .t = t, .a_t = a_t, .a_prev = a_prev,
                             .sigma = sigma, .eps = eps, .pred_x0 = pred_x0, .x = x };
        if (!report (hooks, &step, error))
            return FALSE;
    }
    return TRUE;
}
