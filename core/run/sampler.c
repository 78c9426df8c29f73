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
    for (LdmSampler s = LDM_SAMPLER_DDIM; s <= LDM_SAMPLER_DPMPP_2M; s++)
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

/* ---------------------------------------------------------------- random numbers */

static uint64_t
splitmix64 (uint64_t *state)
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
        rng->s[i] = splitmix64 (&seed);
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
    int timesteps[SCHEDULE_MAX_STEPS];
    int count = ddim_timesteps (schedule->n, params->steps, timesteps);
    if (hooks && hooks->init_x0) {
        if (!(hooks->strength > 0.0f && hooks->strength <= 1.0f)) {
            g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                         "strength must be more than 0 and at most 1, not %g", hooks->strength);
            return FALSE;
        }
        /* the schedule's last steps only: the image's latent noised to the first of them */
        count = CLAMP ((int) lrintf (hooks->strength * (float) count), 1, count);
        float a = schedule->alphas_cumprod[timesteps[count - 1]];
        float sa = sqrtf (a), s1 = sqrtf (1.0f - a);
        for (size_t j = 0; j < n; j++)
            x[j] = sa * hooks->init_x0[j] + s1 * x[j];
    }
    gboolean ok = FALSE;
    float *eps = g_try_malloc_n (n, sizeof (float));
    float *pred_x0 = g_try_malloc_n (n, sizeof (float));
    float *prev_x0 = g_try_malloc_n (n, sizeof (float));
    float *noise = g_try_malloc_n (n, sizeof (float));
    if (!eps || !pred_x0 || !prev_x0 || !noise) {
        ldm_no_memory (error, "sampling", 4 * n, sizeof (float));
        goto done;
    }
    float h_prev = 0;
    for (int i = 0; i < count; i++) {
        int index = count - 1 - i; /* visit the timesteps from the largest down */
        int t = timesteps[index];
        float a_t = schedule->alphas_cumprod[t];
        float a_prev = index > 0 ? schedule->alphas_cumprod[timesteps[index - 1]]
                                 : schedule->alphas_cumprod[0];
        if (!denoise (denoise_data, x, t, eps, error))
            goto done;

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
                goto done;
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
                goto done;
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
            goto done;
        }
        if (hooks && hooks->known && i < count - 1) {
            /* x_prev where the latent is known: the known latent noised to a_prev */
            float sqrt_a_prev = sqrtf (a_prev), sqrt_one_minus_a_prev = sqrtf (1.0f - a_prev);
            rng_normal (rng, noise, n);
            for (size_t j = 0; j < n; j++)
                if (hooks->keep[j])
                    x[j] = sqrt_a_prev * hooks->known[j] + sqrt_one_minus_a_prev * noise[j];
        }
        SamplerStep step = { .index = i, .count = count, .t = t, .a_t = a_t, .a_prev = a_prev,
                             .sigma = sigma, .eps = eps, .pred_x0 = pred_x0, .x = x };
        if (!report (hooks, &step, error))
            goto done;
    }
    ok = TRUE;
done:
    g_free (eps);
    g_free (pred_x0);
    g_free (prev_x0);
    g_free (noise);
    return ok;
}
