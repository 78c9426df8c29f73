/* test_sampler: schedules, DDIM timesteps and the DDIM arithmetic against the authors' stored
 * per-step values (fed the stored eps, so the sampler alone is checked), the eta = 1 runs
 * replaying the stored noises; the random generator; the other samplers' basic contracts; the
 * sigma samplers (DPM++ 2M Karras, Euler a): their sigmas and timesteps, the ODE solved to
 * second order and Euler a's samples distributed as the data, on Gaussian data whose ideal
 * denoiser is known in closed form. */
#include "run/sampler.h"
#include "testutil.h"

#include <math.h>
#include <string.h>

#define TOLERANCE 1e-4

typedef struct {
    const char *fixture;
    const char *run;    /* "" or "eta0." / "eta1." */
    float       eta;
    double      linear_start, linear_end;
} SamplerCase;

typedef struct {
    LdmTensorFile *ref;
    const char    *run;
    int            calls;
} Replay;

/* The denoiser: returns the stored eps of the step being taken. */
static gboolean
replay_eps (void *data, const float *x, double t, float a, float *eps, GError **error)
{
    (void) x;
    (void) a;
    (void) error;
    Replay *r = data;
    g_autofree char *name = g_strdup_printf ("%sddim.step%02d.eps", r->run, r->calls);
    g_autofree char *t_name = g_strdup_printf ("%sddim.step%02d.t", r->run, r->calls);
    g_autofree float *want_t = ref_read (r->ref, t_name, NULL);
    g_assert_cmpfloat (t, ==, want_t[0]);
    size_t n;
    g_autofree float *stored = ref_read (r->ref, name, &n);
    memcpy (eps, stored, n * sizeof (float));
    r->calls++;
    return TRUE;
}

static gboolean
replay_noise (void *data, int index, float *out, size_t n, GError **error)
{
    (void) error;
    Replay *r = data;
    g_autofree char *name = g_strdup_printf ("%sddim.step%02d.noise", r->run, index);
    size_t m;
    g_autofree float *stored = ref_read (r->ref, name, &m);
    g_assert_cmpuint (m, ==, n);
    memcpy (out, stored, n * sizeof (float));
    return TRUE;
}

static gboolean
check_step (void *data, const SamplerStep *step)
{
    Replay *r = data;
    size_t n;
    g_autofree char *x_name = g_strdup_printf ("%sddim.step%02d.x", r->run, step->index);
    g_autofree char *p_name = g_strdup_printf ("%sddim.step%02d.pred_x0", r->run, step->index);
    g_autofree float *want_x = ref_read (r->ref, x_name, &n);
    g_autofree float *want_p = ref_read (r->ref, p_name, NULL);
    assert_close (p_name, step->pred_x0, want_p, n, TOLERANCE);
    assert_close (x_name, step->x, want_x, n, TOLERANCE);

    g_autofree char *a_name = g_strconcat (r->run, "ddim.alphas", NULL);
    g_autofree char *ap_name = g_strconcat (r->run, "ddim.alphas_prev", NULL);
    g_autofree char *s_name = g_strconcat (r->run, "ddim.sigmas", NULL);
    size_t count;
    g_autofree float *alphas = ref_read (r->ref, a_name, &count);
    g_autofree float *alphas_prev = ref_read (r->ref, ap_name, NULL);
    g_autofree float *sigmas = ref_read (r->ref, s_name, NULL);
    int index = (int) count - 1 - step->index;
    g_assert_cmpfloat (step->a_t, ==, alphas[index]);
    g_assert_cmpfloat_with_epsilon (step->a_prev, alphas_prev[index], 1e-7);
    g_assert_cmpfloat_with_epsilon (step->sigma, sigmas[index], 1e-6);
    return TRUE;
}

static void
test_ddim_replay (gconstpointer data)
{
    const SamplerCase *c = data;
    g_autofree char *ref_path = fixture_path (c->fixture, "reference.safetensors");
    if (!ref_path)
        return;
    g_autoptr (GError) error = NULL;
    g_autoptr (LdmTensorFile) ref = ldm_tensor_file_open (ref_path, &error);
    g_assert_no_error (error);

    Schedule schedule;
    g_assert_true (schedule_init (&schedule, LDM_BETA_LINEAR, c->linear_start, c->linear_end,
                                  1000, &error));
    size_t n;
    g_autofree float *want_ac = ref_read (ref, "schedule.alphas_cumprod", &n);
    g_assert_cmpuint (n, ==, 1000);
    assert_close ("schedule.alphas_cumprod", schedule.alphas_cumprod, want_ac, n, 1e-7);

    int timesteps[SCHEDULE_MAX_STEPS];
    int count = ddim_timesteps (1000, 5, timesteps);
    g_autofree char *ts_name = g_strconcat (c->run, "ddim.timesteps", NULL);
    size_t n_ts;
    g_autofree float *want_ts = ref_read (ref, ts_name, &n_ts);
    g_assert_cmpint (count, ==, (int) n_ts);
    for (int i = 0; i < count; i++)
        g_assert_cmpint (timesteps[i], ==, (int) want_ts[i]);

    size_t n_x;
    g_autofree float *x = ref_read (ref, "ddim.x_T", &n_x);
    Replay replay = { ref, c->run, 0 };
    SamplerHooks hooks = { .noise = replay_noise, .on_step = check_step, .data = &replay };
    SamplerParams params = { .sampler = LDM_SAMPLER_DDIM, .steps = 5, .eta = c->eta };
    Rng rng;
    rng_seed (&rng, 1);
    g_assert_true (sampler_run (&schedule, &params, replay_eps, &replay, x, n_x, &rng, &hooks,
                                &error));
    g_assert_no_error (error);
    g_assert_cmpint (replay.calls, ==, 5);
    g_autofree char *s_name = g_strconcat (c->run, "ddim.samples", NULL);
    g_autofree float *samples = ref_read (ref, s_name, NULL);
    assert_close (s_name, x, samples, n_x, TOLERANCE);
}

static void
test_timesteps_trap (void)
{
    int ts[SCHEDULE_MAX_STEPS];
    /* CompVis: c = 1000 // 7 = 142, range(0, 1000, 142) + 1 = 8 steps from 995 down to 1 */
    int count = ddim_timesteps (1000, 7, ts);
    g_assert_cmpint (count, ==, 8);
    g_assert_cmpint (ts[0], ==, 1);
    g_assert_cmpint (ts[7], ==, 995);
    count = ddim_timesteps (1000, 50, ts);
    g_assert_cmpint (count, ==, 50);
    g_assert_cmpint (ts[49], ==, 981);
    /* 1000 steps: 1 .. 1000, but t = 1000 is past the schedule (CompVis would fail): dropped */
    count = ddim_timesteps (1000, 1000, ts);
    g_assert_cmpint (count, ==, 999);
    g_assert_cmpint (ts[998], ==, 999);
}

/* The mean and the (population) variance of x[0..n). */
static void
mean_variance (const float *x, size_t n, double *mean, double *var)
{
    double sum = 0, squares = 0;
    for (size_t i = 0; i < n; i++)
        sum += x[i];
    *mean = sum / n;
    for (size_t i = 0; i < n; i++)
        squares += (x[i] - *mean) * (x[i] - *mean);
    *var = squares / n;
}

static void
test_rng (void)
{
    enum { N = 200001 };
    float *a = g_new (float, N), *b = g_new (float, N);
    Rng r1, r2;
    rng_seed (&r1, 1234);
    rng_seed (&r2, 1234);
    rng_normal (&r1, a, N);
    rng_normal (&r2, b, N);
    g_assert_cmpmem (a, N * sizeof (float), b, N * sizeof (float));
    double mean, var;
    mean_variance (a, N, &mean, &var);
    g_test_message ("normal draws: mean %.4f variance %.4f", mean, var);
    g_assert_cmpfloat (fabs (mean), <, 0.01);
    g_assert_cmpfloat (fabs (var - 1), <, 0.01);
    rng_seed (&r2, 1235);
    rng_normal (&r2, b, N);
    g_assert_true (memcmp (a, b, N * sizeof (float)) != 0);
    g_free (a);
    g_free (b);
}

/* A toy problem with a known answer: data = a single point x0*, so the ideal eps predictor is
 * eps = (x - sqrt(a) x0*) / sqrt(1 - a); every sampler must land on x0*. */
static const float TARGET[4] = { 0.5f, -1.25f, 2.0f, 0.0f };

static bool
is_sigma_sampler (LdmSampler kind)
{
    return kind == LDM_SAMPLER_DPMPP_2M_KARRAS || kind == LDM_SAMPLER_EULER_A;
}

static gboolean
toy_eps (void *data, const float *x, double t, float a, float *eps, GError **error)
{
    (void) data;
    (void) t;
    (void) error;
    for (int i = 0; i < 4; i++)
        eps[i] = (x[i] - sqrtf (a) * TARGET[i]) / sqrtf (1 - a);
    return TRUE;
}

static gboolean
cancel_at_two (void *data, const SamplerStep *step)
{
    (*(int *) data)++;
    return step->index < 1;
}

static void
test_samplers_converge (void)
{
    static Schedule s;
    g_assert_true (schedule_init (&s, LDM_BETA_LINEAR, 0.0015, 0.0205, 1000, NULL));
    for (LdmSampler kind = LDM_SAMPLER_DDIM; kind < LDM_SAMPLER_DEFAULT; kind++) {
        for (int steps = 10; steps <= 50; steps += 40) {
            float x[4];
            Rng rng;
            rng_seed (&rng, 7);
            rng_normal (&rng, x, 4);
            SamplerParams p = { .sampler = kind, .steps = steps, .eta = 0.5f };
            g_autoptr (GError) error = NULL;
            g_assert_true (sampler_run (&s, &p, toy_eps, NULL, x, 4, &rng, NULL, &error));
            /* the last step stops at alphas_cumprod[0], so x = sqrt(a0) x0* (+ tiny noise);
             * a sigma sampler's at sigma 0, so x = x0* */
            float end = is_sigma_sampler (kind) ? 1.0f : sqrtf (s.alphas_cumprod[0]);
            for (int i = 0; i < 4; i++)
                g_assert_cmpfloat (fabsf (x[i] - end * TARGET[i]), <, 0.15f);
        }
    }
    /* a cancel from the step hook stops the run with LDM_ERROR_CANCELLED */
    float x[4] = { 0 };
    int calls = 0;
    Rng rng;
    rng_seed (&rng, 1);
    SamplerHooks hooks = { .on_step = cancel_at_two, .data = &calls };
    SamplerParams p = { .sampler = LDM_SAMPLER_DDIM, .steps = 20 };
    g_autoptr (GError) error = NULL;
    g_assert_false (sampler_run (&s, &p, toy_eps, NULL, x, 4, &rng, &hooks, &error));
    g_assert_error (error, LDM_ERROR, LDM_ERROR_CANCELLED);
    g_assert_cmpint (calls, ==, 2);
    g_clear_error (&error);
    p.steps = 0;
    g_assert_false (sampler_run (&s, &p, toy_eps, NULL, x, 4, &rng, NULL, &error));
    g_assert_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT);
    g_clear_error (&error);
    /* eta above 1 has no DDIM step (a negative square root): refused, not NaN */
    p.steps = 10;
    p.eta = 1.5f;
    g_assert_false (sampler_run (&s, &p, toy_eps, NULL, x, 4, &rng, NULL, &error));
    g_assert_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT);
    g_clear_error (&error);
    /* the model's default is the caller's to resolve */
    p.eta = 0;
    p.sampler = LDM_SAMPLER_DEFAULT;
    g_assert_false (sampler_run (&s, &p, toy_eps, NULL, x, 4, &rng, NULL, &error));
    g_assert_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT);
}

/* Gaussian data N(0, S^2): the ideal eps predictor is known in closed form,
 * eps(x, a) = sqrt(1 - a) x / (a S^2 + 1 - a), and so is the probability-flow ODE that DDIM
 * (eta 0) and DPM-Solver++ integrate: x(a') = x(a) sqrt((a' S^2 + 1 - a') / (a S^2 + 1 - a)).
 * Both must approach the exact end point as the steps get smaller, DDIM at first order and
 * DPM-Solver++(2M) faster, and the second-order solver must be closer at every step count. */
#define GAUSS_S 0.5

static gboolean
gauss_eps (void *data, const float *x, double t, float a, float *eps, GError **error)
{
    (void) data;
    (void) t;
    (void) error;
    for (int i = 0; i < 4; i++)
        eps[i] = (float) (sqrt (1 - a) * x[i] / (a * GAUSS_S * GAUSS_S + 1 - a));
    return TRUE;
}

/* SD's schedule (linear betas 0.00085 .. 0.012 over 1000 steps), the toy tests' schedule. */
static void
sd_schedule (Schedule *s)
{
    g_assert_true (schedule_init (s, LDM_BETA_LINEAR, 0.00085, 0.012, 1000, NULL));
}

static void
test_ode_accuracy (void)
{
    static Schedule s;
    sd_schedule (&s);
    const float start[4] = { 1.3f, -0.7f, 0.2f, -2.1f };
    double last[2] = { INFINITY, INFINITY };
    for (int steps = 5; steps <= 160; steps *= 2) {
        int ts[SCHEDULE_MAX_STEPS];
        int count = ddim_timesteps (1000, steps, ts);
        double a_T = s.alphas_cumprod[ts[count - 1]], a_0 = s.alphas_cumprod[0];
        double ratio = sqrt ((a_0 * GAUSS_S * GAUSS_S + 1 - a_0) / (a_T * GAUSS_S * GAUSS_S + 1 - a_T));
        double err[2] = { 0, 0 };
        LdmSampler kinds[2] = { LDM_SAMPLER_DDIM, LDM_SAMPLER_DPMPP_2M };
        for (int k = 0; k < 2; k++) {
            float x[4];
            memcpy (x, start, sizeof x);
            SamplerParams p = { .sampler = kinds[k], .steps = steps, .eta = 0 };
            Rng rng;
            rng_seed (&rng, 1);
            g_assert_true (sampler_run (&s, &p, gauss_eps, NULL, x, 4, &rng, NULL, NULL));
            for (int i = 0; i < 4; i++)
                err[k] = MAX (err[k], fabs (x[i] - start[i] * ratio) / fabs (start[i] * ratio));
        }
        g_test_message ("%d steps: relative error DDIM %.2e, DPM-Solver++(2M) %.2e", steps,
                        err[0], err[1]);
        g_assert_cmpfloat (err[1], <, err[0]);
        /* once the steps are small: first order halves the error, second order more */
        if (steps >= 20)
            g_assert_cmpfloat (err[0], <, 0.6 * last[0]);
        if (steps >= 40)
            g_assert_cmpfloat (err[1], <, 0.5 * last[1]);
        last[0] = err[0];
        last[1] = err[1];
    }
    g_assert_cmpfloat (last[1], <, last[0] / 3); /* at 160 steps */
}

/* The toy latent of the blend and start tests: the known values (or the image's x0), which of
 * them are kept, and the start (or the noise). */
#define BLEND_N 6
static const float   toy_known[BLEND_N] = { 0.5f, -1.0f, 2.0f, 0.0f, 1.5f, -0.25f };
static const uint8_t toy_keep[BLEND_N] = { 1, 0, 1, 0, 0, 1 };
static const float   toy_start[BLEND_N] = { 0.3f, -0.2f, 1.1f, 0.9f, -1.4f, 0.05f };

/* Known-latent blending: with eps = 0 every DDIM step is x <- sqrt(a_prev / a_t) x, and after
 * every step but the last the kept elements must be sqrt(a_prev) known + sqrt(1 - a_prev) n,
 * n the next numbers of an Rng seeded like the sampler's. */

typedef struct {
    const Schedule *s;
    const float    *known;
    const uint8_t  *keep;
    float           prev[BLEND_N];
    Rng             rng; /* replays the sampler's draws */
    int             steps_seen;
} BlendCheck;

static gboolean
zero_eps (void *data, const float *x, double t, float a, float *eps, GError **error)
{
    (void) data;
    (void) x;
    (void) t;
    (void) a;
    (void) error;
    memset (eps, 0, BLEND_N * sizeof (float));
    return TRUE;
}

static gboolean
check_blend (void *data, const SamplerStep *step)
{
    BlendCheck *c = data;
    bool last = step->index == step->count - 1;
    float noise[BLEND_N];
    if (!last)
        rng_normal (&c->rng, noise, BLEND_N);
    for (int j = 0; j < BLEND_N; j++) {
        float want = c->keep[j] && !last
                         ? sqrtf (step->a_prev) * c->known[j] + sqrtf (1 - step->a_prev) * noise[j]
                         : sqrtf (step->a_prev) * (c->prev[j] / sqrtf (step->a_t));
        g_assert_cmpfloat (fabsf (step->x[j] - want), <, 1e-5f);
        c->prev[j] = step->x[j];
    }
    c->steps_seen++;
    return TRUE;
}

static void
test_keep_known (void)
{
    static Schedule s;
    sd_schedule (&s);
    float x[BLEND_N];
    memcpy (x, toy_start, sizeof x);
    BlendCheck c = { .s = &s, .known = toy_known, .keep = toy_keep };
    memcpy (c.prev, x, sizeof x);
    Rng rng;
    rng_seed (&rng, 11);
    rng_seed (&c.rng, 11);
    SamplerHooks hooks = { .on_step = check_blend, .data = &c, .known = toy_known, .keep = toy_keep };
    SamplerParams p = { .sampler = LDM_SAMPLER_DDIM, .steps = 10, .eta = 0 };
    g_autoptr (GError) error = NULL;
    g_assert_true (sampler_run (&s, &p, zero_eps, NULL, x, BLEND_N, &rng, &hooks, &error));
    g_assert_cmpint (c.steps_seen, ==, 10);
    /* the kept elements end near the toy_known values: the last step scales them by
     * sqrt(a0 / a_1) and adds no noise of its own */
    for (int j = 0; j < BLEND_N; j++)
        if (toy_keep[j])
            g_assert_cmpfloat (fabsf (x[j] - toy_known[j]), <, 0.25f);
}

/* A start from an image (init fill / original): only the last round (strength x count) steps
 * run, from x = sqrt(a) x0 + sqrt(1 - a) noise at the first of them. */
typedef struct {
    int    calls;
    double first_t;
    float  first_a, first_x[BLEND_N];
} StartCheck;

static gboolean
record_start (void *data, const float *x, double t, float a, float *eps, GError **error)
{
    StartCheck *c = data;
    if (c->calls++ == 0) {
        c->first_t = t;
        c->first_a = a;
        memcpy (c->first_x, x, sizeof c->first_x);
    }
    return zero_eps (NULL, x, t, a, eps, error);
}

static void
test_init_strength (void)
{
    static Schedule s;
    sd_schedule (&s);
    /* 10 DDIM steps over 1000: timesteps 1, 101, ..., 901 */
    const struct { float strength; int calls, first_t; } cases[] = {
        { 1.0f, 10, 901 }, { 0.5f, 5, 401 }, { 0.26f, 3, 201 }, { 0.01f, 1, 1 },
    };
    for (size_t i = 0; i < G_N_ELEMENTS (cases); i++) {
        float x[BLEND_N];
        memcpy (x, toy_start, sizeof x);
        StartCheck c = { 0 };
        Rng rng;
        rng_seed (&rng, 3);
        SamplerHooks hooks = { .init_x0 = toy_known, .strength = cases[i].strength };
        SamplerParams p = { .sampler = LDM_SAMPLER_DDIM, .steps = 10, .eta = 0 };
        g_autoptr (GError) error = NULL;
        g_assert_true (sampler_run (&s, &p, record_start, &c, x, BLEND_N, &rng, &hooks, &error));
        g_assert_cmpint (c.calls, ==, cases[i].calls);
        g_assert_cmpfloat (c.first_t, ==, cases[i].first_t);
        float a = s.alphas_cumprod[cases[i].first_t];
        for (int j = 0; j < BLEND_N; j++)
            g_assert_cmpfloat (c.first_x[j], ==, sqrtf (a) * toy_known[j] + sqrtf (1.0f - a) * toy_start[j]);
    }
    const float bad[] = { 0.0f, -0.5f, 1.5f, NAN };
    for (size_t i = 0; i < G_N_ELEMENTS (bad); i++) {
        float x[BLEND_N] = { 0 };
        Rng rng;
        rng_seed (&rng, 3);
        SamplerHooks hooks = { .init_x0 = toy_known, .strength = bad[i] };
        SamplerParams p = { .sampler = LDM_SAMPLER_DDIM, .steps = 10, .eta = 0 };
        g_autoptr (GError) error = NULL;
        g_assert_false (sampler_run (&s, &p, zero_eps, NULL, x, BLEND_N, &rng, &hooks, &error));
        g_assert_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT);
    }
}

/* ------------------------------------------------------------ the sigma samplers */

static double
sigma_at (const Schedule *s, int t) /* sqrt((1 - a) / a), written out again */
{
    double a = s->alphas_cumprod[t];
    return sqrt ((1 - a) / a);
}

/* Karras et al.'s schedule: sigma^(1/7) evenly spaced from the schedule's own sigma_max to its
 * sigma_min (for SD's schedule 14.6146 and 0.0292, the values k-diffusion prints for SD 1.x),
 * then 0; each timestep is the one whose log sigma, interpolated between its neighbours, is
 * the sigma's. Euler a: the model's sigmas at timesteps linspace(999, 0, steps). */
static void
test_sigma_schedules (void)
{
    static Schedule s;
    sd_schedule (&s);
    double sigmas[SCHEDULE_MAX_STEPS + 1], ts[SCHEDULE_MAX_STEPS];
    int count = sampler_sigmas (&s, LDM_SAMPLER_DPMPP_2M_KARRAS, 20, sigmas, ts);
    g_assert_cmpint (count, ==, 20);
    g_test_message ("Karras, 20 steps: sigma %.4f .. %.4f, timesteps %.3f .. %.3f", sigmas[0],
                    sigmas[19], ts[0], ts[19]);
    g_assert_cmpfloat_with_epsilon (sigmas[0], 14.6146, 1e-4);
    g_assert_cmpfloat_with_epsilon (sigmas[19], 0.0292, 1e-4);
    g_assert_cmpfloat_with_epsilon (sigmas[0], sigma_at (&s, 999), 1e-12);
    g_assert_cmpfloat_with_epsilon (sigmas[19], sigma_at (&s, 0), 1e-12);
    g_assert_cmpfloat (sigmas[20], ==, 0.0);
    double rung = pow (sigmas[1], 1 / 7.0) - pow (sigmas[0], 1 / 7.0);
    g_assert_cmpfloat (rung, <, 0);
    for (int i = 1; i < 20; i++)
        g_assert_cmpfloat_with_epsilon (pow (sigmas[i], 1 / 7.0) - pow (sigmas[i - 1], 1 / 7.0),
                                        rung, 1e-12);
    g_assert_cmpfloat_with_epsilon (ts[0], 999, 1e-9);
    g_assert_cmpfloat_with_epsilon (ts[19], 0, 1e-9);
    for (int i = 0; i < 20; i++) {
        if (i > 0)
            g_assert_cmpfloat (ts[i], <, ts[i - 1]);
        int lo = (int) floor (ts[i]), hi = MIN (lo + 1, 999);
        double w = ts[i] - lo;
        double log_sigma = (1 - w) * log (sigma_at (&s, lo)) + w * log (sigma_at (&s, hi));
        g_assert_cmpfloat_with_epsilon (log_sigma, log (sigmas[i]), 1e-9);
    }
    /* one step: from sigma_max straight to 0 */
    g_assert_cmpint (sampler_sigmas (&s, LDM_SAMPLER_DPMPP_2M_KARRAS, 1, sigmas, ts), ==, 1);
    g_assert_cmpfloat_with_epsilon (sigmas[0], sigma_at (&s, 999), 1e-12);
    g_assert_cmpfloat (sigmas[1], ==, 0.0);

    count = sampler_sigmas (&s, LDM_SAMPLER_EULER_A, 10, sigmas, ts);
    g_assert_cmpint (count, ==, 10);
    for (int i = 0; i < 10; i++) {
        g_assert_cmpfloat_with_epsilon (ts[i], 999.0 * (9 - i) / 9, 1e-9);
        if (ts[i] == floor (ts[i]))
            g_assert_cmpfloat_with_epsilon (sigmas[i], sigma_at (&s, (int) ts[i]), 1e-12);
    }
    g_assert_cmpfloat (sigmas[10], ==, 0.0);
    /* the timestep samplers have no sigmas */
    g_assert_cmpint (sampler_sigmas (&s, LDM_SAMPLER_DDIM, 10, sigmas, ts), ==, 0);
}

/* The probability-flow ODE on Gaussian data N(0, S^2) in k-diffusion's scale xs = x / sqrt(a)
 * (ideal x0 estimate S^2 / (S^2 + sigma^2) xs) has the solution
 * xs(sigma) = xs(sigma_0) sqrt((S^2 + sigma^2) / (S^2 + sigma_0^2)). DPM++ 2M Karras solves it
 * from sigma_max to sigma_min and then takes the x0 estimate (its last step, to sigma 0), so
 * it must approach xs(sigma_min) S^2 / (S^2 + sigma_min^2) at second order. */
static void
test_karras_ode_accuracy (void)
{
    static Schedule s;
    sd_schedule (&s);
    const float start[4] = { 1.3f, -0.7f, 0.2f, -2.1f };
    double s2 = GAUSS_S * GAUSS_S, sigma_max = sigma_at (&s, 999), sigma_min = sigma_at (&s, 0);
    double last = INFINITY;
    for (int steps = 5; steps <= 160; steps *= 2) {
        float x[4];
        memcpy (x, start, sizeof x);
        SamplerParams p = { .sampler = LDM_SAMPLER_DPMPP_2M_KARRAS, .steps = steps };
        Rng rng;
        rng_seed (&rng, 1);
        g_assert_true (sampler_run (&s, &p, gauss_eps, NULL, x, 4, &rng, NULL, NULL));
        double err = 0;
        for (int i = 0; i < 4; i++) {
            /* the start is xs = sigma_max x (k-diffusion's noise x sigma_max) */
            double want = sigma_max * start[i]
                          * sqrt ((s2 + sigma_min * sigma_min) / (s2 + sigma_max * sigma_max))
                          * s2 / (s2 + sigma_min * sigma_min);
            err = MAX (err, fabs (x[i] - want) / fabs (want));
        }
        g_test_message ("%d steps: relative error DPM++ 2M Karras %.2e (ratio to half the "
                        "steps %.3f)", steps, err, err / last);
        if (steps >= 20) /* second order: a quarter per halving; at most 0.35 */
            g_assert_cmpfloat (err, <, 0.35 * last);
        last = err;
    }
    /* 160 steps (DPM-Solver++(2M) on the DDIM timesteps: 4e-3, test_ode_accuracy) */
    g_assert_cmpfloat (last, <, 5e-4);
}

/* Gaussian data N(MU, S^2): the ideal eps at level a (sigma^2 = (1 - a) / a, xs = x / sqrt(a))
 * is (xs - x0) / sigma with x0 = MU + S^2 / (S^2 + sigma^2) (xs - MU). Euler a draws from the
 * reverse SDE, so its samples must approach the data's mean and variance as the steps get
 * smaller (a first-order solver: few steps give too little variance, by 51 % at 10 steps,
 * 19 % at 50 and 7 % at 200 on this schedule, as the linear recursion of the variance says). */
#define EA_MU 0.3
#define EA_N  100000

static gboolean
gauss_mu_eps (void *data, const float *x, double t, float a, float *eps, GError **error)
{
    (void) data;
    (void) t;
    (void) error;
    double sigma2 = (1.0 - a) / a, sigma = sqrt (sigma2), s2 = GAUSS_S * GAUSS_S;
    for (size_t i = 0; i < EA_N; i++) {
        double xs = x[i] / sqrt ((double) a);
        double x0 = EA_MU + s2 / (s2 + sigma2) * (xs - EA_MU);
        eps[i] = (float) ((xs - x0) / sigma);
    }
    return TRUE;
}

typedef struct {
    int noises;
} NoiseCount;

static gboolean
count_noise (void *data, int index, float *out, size_t n, GError **error)
{
    (void) error;
    NoiseCount *c = data;
    g_assert_cmpint (index, ==, c->noises);
    c->noises++;
    Rng rng;
    rng_seed (&rng, 100 + (uint64_t) index);
    rng_normal (&rng, out, n);
    return TRUE;
}

static void
test_euler_a_distribution (void)
{
    static Schedule s;
    sd_schedule (&s);
    float *x = g_new (float, EA_N), *again = g_new (float, EA_N);
    const int step_counts[] = { 10, 50, 200 };
    double last_deficit = INFINITY;
    for (size_t k = 0; k < G_N_ELEMENTS (step_counts); k++) {
        int steps = step_counts[k];
        Rng rng;
        rng_seed (&rng, 5);
        rng_normal (&rng, x, EA_N);
        SamplerParams p = { .sampler = LDM_SAMPLER_EULER_A, .steps = steps };
        g_assert_true (sampler_run (&s, &p, gauss_mu_eps, NULL, x, EA_N, &rng, NULL, NULL));
        double mean, var;
        mean_variance (x, EA_N, &mean, &var);
        g_test_message ("Euler a, %d steps: mean %.4f (data %.4f), variance %.4f (data %.4f)",
                        steps, mean, EA_MU, var, GAUSS_S * GAUSS_S);
        /* sampling error of the estimates: 0.5 / sqrt(N) = 0.0016 and 0.45 % of S^2 */
        g_assert_cmpfloat (fabs (mean - EA_MU), <, 0.006);
        double deficit = 1 - var / (GAUSS_S * GAUSS_S);
        g_assert_cmpfloat (deficit, <, 0.75 * last_deficit);
        last_deficit = deficit;
    }
    g_assert_cmpfloat (fabs (last_deficit), <, 0.08); /* 200 steps */
    /* seeded: seeds 5, 6 and 6 again: the second differs from the first, the third equals it */
    for (int seed = 5; seed <= 7; seed++) {
        Rng rng;
        rng_seed (&rng, (uint64_t) MIN (seed, 6));
        float *out = seed == 5 ? x : again;
        rng_normal (&rng, out, EA_N);
        SamplerParams p = { .sampler = LDM_SAMPLER_EULER_A, .steps = 10 };
        g_assert_true (sampler_run (&s, &p, gauss_mu_eps, NULL, out, EA_N, &rng, NULL, NULL));
        if (seed > 5)
            g_assert_true ((memcmp (x, again, EA_N * sizeof (float)) == 0) == (seed == 7));
        if (seed == 6)
            memcpy (x, again, EA_N * sizeof (float));
    }
    /* fresh noise at every step but the last (to sigma 0), through the noise hook */
    NoiseCount c = { 0 };
    SamplerHooks hooks = { .noise = count_noise, .data = &c };
    SamplerParams p = { .sampler = LDM_SAMPLER_EULER_A, .steps = 12 };
    Rng rng;
    rng_seed (&rng, 5);
    rng_normal (&rng, x, EA_N);
    g_assert_true (sampler_run (&s, &p, gauss_mu_eps, NULL, x, EA_N, &rng, &hooks, NULL));
    g_assert_cmpint (c.noises, ==, 11);
    g_free (x);
    g_free (again);
}

/* Known-latent blending in a sigma sampler: after every step the kept elements are
 * sqrt(a_prev) known + sqrt(1 - a_prev) n (n the next draws of an Rng seeded like the
 * sampler's: DPM++ 2M draws no noise of its own), and after the last step (sigma 0) exactly
 * known; the others are the sampler's. Euler a: exactly known at the end as well. */
static gboolean
check_sigma_blend (void *data, const SamplerStep *step)
{
    BlendCheck *c = data;
    bool last = step->index == step->count - 1;
    if (last)
        g_assert_cmpfloat (step->a_prev, ==, 1.0f);
    else
        g_assert_cmpfloat (step->a_prev, <, 1.0f);
    float noise[BLEND_N];
    if (!last)
        rng_normal (&c->rng, noise, BLEND_N);
    for (int j = 0; j < BLEND_N; j++)
        if (c->keep[j]) {
            float want = last ? c->known[j]
                              : sqrtf (step->a_prev) * c->known[j]
                                    + sqrtf (1 - step->a_prev) * noise[j];
            g_assert_cmpfloat (fabsf (step->x[j] - want), <, 1e-6f);
        }
    c->steps_seen++;
    return TRUE;
}

static gboolean
gauss_eps_blend (void *data, const float *x, double t, float a, float *eps, GError **error)
{
    (void) data;
    (void) t;
    (void) error;
    for (int i = 0; i < BLEND_N; i++)
        eps[i] = (float) (sqrt (1 - a) * x[i] / (a * GAUSS_S * GAUSS_S + 1 - a));
    return TRUE;
}

static void
test_sigma_keep_known (void)
{
    static Schedule s;
    sd_schedule (&s);
    LdmSampler kinds[] = { LDM_SAMPLER_DPMPP_2M_KARRAS, LDM_SAMPLER_EULER_A };
    for (size_t k = 0; k < G_N_ELEMENTS (kinds); k++) {
        float x[BLEND_N], free_x[BLEND_N];
        memcpy (x, toy_start, sizeof x);
        memcpy (free_x, toy_start, sizeof x);
        BlendCheck c = { .s = &s, .known = toy_known, .keep = toy_keep };
        Rng rng, free_rng;
        rng_seed (&rng, 11);
        rng_seed (&c.rng, 11);
        rng_seed (&free_rng, 11);
        SamplerHooks hooks = { .on_step = kinds[k] == LDM_SAMPLER_DPMPP_2M_KARRAS
                                              ? check_sigma_blend : NULL,
                               .data = &c, .known = toy_known, .keep = toy_keep };
        SamplerParams p = { .sampler = kinds[k], .steps = 10 };
        g_autoptr (GError) error = NULL;
        g_assert_true (sampler_run (&s, &p, gauss_eps_blend, NULL, x, BLEND_N, &rng, &hooks,
                                    &error));
        g_assert_true (sampler_run (&s, &p, gauss_eps_blend, NULL, free_x, BLEND_N, &free_rng,
                                    NULL, &error));
        if (kinds[k] == LDM_SAMPLER_DPMPP_2M_KARRAS)
            g_assert_cmpint (c.steps_seen, ==, 10);
        for (int j = 0; j < BLEND_N; j++) {
            if (toy_keep[j])
                g_assert_cmpfloat (x[j], ==, toy_known[j]);
            else /* the blend reaches them through nothing but their own eps: not toy_known */
                g_assert_cmpfloat (x[j], !=, toy_known[j]);
        }
        /* the denoiser is elementwise: the unkept elements of a deterministic run are the
         * unblended run's */
        if (kinds[k] == LDM_SAMPLER_DPMPP_2M_KARRAS)
            for (int j = 0; j < BLEND_N; j++)
                if (!toy_keep[j])
                    g_assert_cmpfloat (x[j], ==, free_x[j]);
    }
}

/* A start from an image in a sigma sampler: the last round(strength x steps) sigmas run, from
 * xs = x0 + sigma noise at the first of them (x = sqrt(a) x0 + sqrt(1 - a) noise), and without
 * an image from sigma_max noise (x = sqrt(1 - a) noise). */
static void
test_sigma_init_strength (void)
{
    static Schedule s;
    sd_schedule (&s);
    double sigmas[SCHEDULE_MAX_STEPS + 1], ts[SCHEDULE_MAX_STEPS];
    const struct { float strength; int calls; } cases[] = {
        { 1.0f, 10 }, { 0.5f, 5 }, { 0.26f, 3 }, { 0.01f, 1 }, { 0.0f, 10 } /* no image */,
    };
    LdmSampler kinds[] = { LDM_SAMPLER_DPMPP_2M_KARRAS, LDM_SAMPLER_EULER_A };
    for (size_t k = 0; k < G_N_ELEMENTS (kinds); k++) {
        g_assert_cmpint (sampler_sigmas (&s, kinds[k], 10, sigmas, ts), ==, 10);
        for (size_t i = 0; i < G_N_ELEMENTS (cases); i++) {
            float x[BLEND_N];
            memcpy (x, toy_start, sizeof x);
            StartCheck c = { 0 };
            Rng rng;
            rng_seed (&rng, 3);
            bool image = cases[i].strength > 0;
            SamplerHooks hooks = { .init_x0 = image ? toy_known : NULL, .strength = cases[i].strength };
            SamplerParams p = { .sampler = kinds[k], .steps = 10 };
            g_autoptr (GError) error = NULL;
            g_assert_true (sampler_run (&s, &p, record_start, &c, x, BLEND_N, &rng, &hooks,
                                        &error));
            g_assert_cmpint (c.calls, ==, cases[i].calls);
            int first = 10 - cases[i].calls;
            g_assert_cmpfloat (c.first_t, ==, ts[first]);
            double a = 1 / (1 + sigmas[first] * sigmas[first]);
            g_assert_cmpfloat_with_epsilon (c.first_a, a, 1e-7);
            for (int j = 0; j < BLEND_N; j++)
                g_assert_cmpfloat_with_epsilon (c.first_x[j],
                                                (image ? sqrt (a) * toy_known[j] : 0)
                                                    + sqrt (1 - a) * toy_start[j], 1e-6);
        }
    }
}

int
main (int argc, char **argv)
{
    g_test_init (&argc, &argv, NULL);
    static const SamplerCase cases[] = {
        { "ldm-inpaint-tiny", "", 0.0f, 0.0015, 0.0205 },
        { "ldm-sr-tiny", "eta0.", 0.0f, 0.0015, 0.0155 },
        { "ldm-sr-tiny", "eta1.", 1.0f, 0.0015, 0.0155 },
        { "sd-inpaint-tiny", "", 0.0f, 0.00085, 0.012 },
    };
    for (size_t i = 0; i < G_N_ELEMENTS (cases); i++) {
        g_autofree char *path = g_strdup_printf ("/sampler/ddim-replay/%s/%s", cases[i].fixture,
                                                 cases[i].run[0] ? cases[i].run : "run");
        g_test_add_data_func (path, &cases[i], test_ddim_replay);
    }
    g_test_add_func ("/sampler/timesteps-trap", test_timesteps_trap);
    g_test_add_func ("/sampler/rng", test_rng);
    g_test_add_func ("/sampler/converge-and-cancel", test_samplers_converge);
    g_test_add_func ("/sampler/ode-accuracy", test_ode_accuracy);
    g_test_add_func ("/sampler/keep-known", test_keep_known);
    g_test_add_func ("/sampler/init-strength", test_init_strength);
    g_test_add_func ("/sampler/sigma-schedules", test_sigma_schedules);
    g_test_add_func ("/sampler/karras-ode-accuracy", test_karras_ode_accuracy);
    g_test_add_func ("/sampler/euler-a-distribution", test_euler_a_distribution);
    g_test_add_func ("/sampler/sigma-keep-known", test_sigma_keep_known);
    g_test_add_func ("/sampler/sigma-init-strength", test_sigma_init_strength);
    return g_test_run ();
}
