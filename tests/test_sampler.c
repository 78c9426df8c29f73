/* test_sampler: schedules, DDIM timesteps and the DDIM arithmetic against the authors' stored
 * per-step values (fed the stored eps, so the sampler alone is checked), the eta = 1 runs
 * replaying the stored noises; the random generator; the other samplers' basic contracts. */
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
replay_eps (void *data, const float *x, int t, float *eps, GError **error)
{
    (void) x;
    (void) error;
    Replay *r = data;
    g_autofree char *name = g_strdup_printf ("%sddim.step%02d.eps", r->run, r->calls);
    g_autofree char *t_name = g_strdup_printf ("%sddim.step%02d.t", r->run, r->calls);
    g_autofree float *want_t = ref_read (r->ref, t_name, NULL);
    g_assert_cmpint (t, ==, (int) want_t[0]);
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
    double mean = 0, var = 0;
    for (int i = 0; i < N; i++)
        mean += a[i];
    mean /= N;
    for (int i = 0; i < N; i++)
        var += (a[i] - mean) * (a[i] - mean);
    var /= N;
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
static const Schedule *toy_schedule;

static gboolean
toy_eps (void *data, const float *x, int t, float *eps, GError **error)
{
    (void) data;
    (void) error;
    float a = toy_schedule->alphas_cumprod[t];
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
    static Schedule s; /* toy_schedule points at it */
    g_assert_true (schedule_init (&s, LDM_BETA_LINEAR, 0.0015, 0.0205, 1000, NULL));
    toy_schedule = &s;
    for (LdmSampler kind = LDM_SAMPLER_DDIM; kind <= LDM_SAMPLER_DPMPP_2M; kind++) {
        for (int steps = 10; steps <= 50; steps += 40) {
            float x[4];
            Rng rng;
            rng_seed (&rng, 7);
            rng_normal (&rng, x, 4);
            SamplerParams p = { .sampler = kind, .steps = steps, .eta = 0.5f };
            g_autoptr (GError) error = NULL;
            g_assert_true (sampler_run (&s, &p, toy_eps, NULL, x, 4, &rng, NULL, &error));
            /* the last step stops at alphas_cumprod[0], so x = sqrt(a0) x0* (+ tiny noise) */
            for (int i = 0; i < 4; i++)
                g_assert_cmpfloat (fabsf (x[i] - sqrtf (s.alphas_cumprod[0]) * TARGET[i]), <, 0.15f);
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
}

/* Gaussian data N(0, S^2): the ideal eps predictor is known in closed form,
 * eps(x, a) = sqrt(1 - a) x / (a S^2 + 1 - a), and so is the probability-flow ODE that DDIM
 * (eta 0) and DPM-Solver++ integrate: x(a') = x(a) sqrt((a' S^2 + 1 - a') / (a S^2 + 1 - a)).
 * Both must approach the exact end point as the steps get smaller, DDIM at first order and
 * DPM-Solver++(2M) faster, and the second-order solver must be closer at every step count. */
#define GAUSS_S 0.5

static gboolean
gauss_eps (void *data, const float *x, int t, float *eps, GError **error)
{
    (void) data;
    (void) error;
    double a = toy_schedule->alphas_cumprod[t];
    for (int i = 0; i < 4; i++)
        eps[i] = (float) (sqrt (1 - a) * x[i] / (a * GAUSS_S * GAUSS_S + 1 - a));
    return TRUE;
}

static void
test_ode_accuracy (void)
{
    static Schedule s; /* toy_schedule points at it */
    g_assert_true (schedule_init (&s, LDM_BETA_LINEAR, 0.00085, 0.012, 1000, NULL));
    toy_schedule = &s;
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

/* Known-latent blending: with eps = 0 every DDIM step is x <- sqrt(a_prev / a_t) x, and after
 * every step but the last the kept elements must be sqrt(a_prev) known + sqrt(1 - a_prev) n,
 * n the next numbers of an Rng seeded like the sampler's. */
#define BLEND_N 6

typedef struct {
    const Schedule *s;
    const float    *known;
    const uint8_t  *keep;
    float           prev[BLEND_N];
    Rng             rng; /* replays the sampler's draws */
    int             steps_seen;
} BlendCheck;

static gboolean
zero_eps (void *data, const float *x, int t, float *eps, GError **error)
{
    (void) data;
    (void) x;
    (void) t;
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
    g_assert_true (schedule_init (&s, LDM_BETA_LINEAR, 0.00085, 0.012, 1000, NULL));
    const float known[BLEND_N] = { 0.5f, -1.0f, 2.0f, 0.0f, 1.5f, -0.25f };
    const uint8_t keep[BLEND_N] = { 1, 0, 1, 0, 0, 1 };
    float x[BLEND_N] = { 0.3f, -0.2f, 1.1f, 0.9f, -1.4f, 0.05f };
    BlendCheck c = { .s = &s, .known = known, .keep = keep };
    memcpy (c.prev, x, sizeof x);
    Rng rng;
    rng_seed (&rng, 11);
    rng_seed (&c.rng, 11);
    SamplerHooks hooks = { .on_step = check_blend, .data = &c, .known = known, .keep = keep };
    SamplerParams p = { .sampler = LDM_SAMPLER_DDIM, .steps = 10, .eta = 0 };
    g_autoptr (GError) error = NULL;
    g_assert_true (sampler_run (&s, &p, zero_eps, NULL, x, BLEND_N, &rng, &hooks, &error));
    g_assert_cmpint (c.steps_seen, ==, 10);
    /* the kept elements end near the known values: the last step scales them by
     * sqrt(a0 / a_1) and adds no noise of its own */
    for (int j = 0; j < BLEND_N; j++)
        if (keep[j])
            g_assert_cmpfloat (fabsf (x[j] - known[j]), <, 0.25f);
}

/* A start from an image (init fill / original): only the last round (strength x count) steps
 * run, from x = sqrt(a) x0 + sqrt(1 - a) noise at the first of them. */
typedef struct {
    int   calls, first_t;
    float first_x[BLEND_N];
} StartCheck;

static gboolean
record_start (void *data, const float *x, int t, float *eps, GError **error)
{
    StartCheck *c = data;
    if (c->calls++ == 0) {
        c->first_t = t;
        memcpy (c->first_x, x, sizeof c->first_x);
    }
    return zero_eps (NULL, x, t, eps, error);
}

static void
test_init_strength (void)
{
    static Schedule s;
    g_assert_true (schedule_init (&s, LDM_BETA_LINEAR, 0.00085, 0.012, 1000, NULL));
    const float x0[BLEND_N] = { 0.5f, -1.0f, 2.0f, 0.0f, 1.5f, -0.25f };
    const float noise[BLEND_N] = { 0.3f, -0.2f, 1.1f, 0.9f, -1.4f, 0.05f };
    /* 10 DDIM steps over 1000: timesteps 1, 101, ..., 901 */
    const struct { float strength; int calls, first_t; } cases[] = {
        { 1.0f, 10, 901 }, { 0.5f, 5, 401 }, { 0.26f, 3, 201 }, { 0.01f, 1, 1 },
    };
    for (size_t i = 0; i < G_N_ELEMENTS (cases); i++) {
        float x[BLEND_N];
        memcpy (x, noise, sizeof x);
        StartCheck c = { 0 };
        Rng rng;
        rng_seed (&rng, 3);
        SamplerHooks hooks = { .init_x0 = x0, .strength = cases[i].strength };
        SamplerParams p = { .sampler = LDM_SAMPLER_DDIM, .steps = 10, .eta = 0 };
        g_autoptr (GError) error = NULL;
        g_assert_true (sampler_run (&s, &p, record_start, &c, x, BLEND_N, &rng, &hooks, &error));
        g_assert_cmpint (c.calls, ==, cases[i].calls);
        g_assert_cmpint (c.first_t, ==, cases[i].first_t);
        float a = s.alphas_cumprod[cases[i].first_t];
        for (int j = 0; j < BLEND_N; j++)
            g_assert_cmpfloat (c.first_x[j], ==, sqrtf (a) * x0[j] + sqrtf (1.0f - a) * noise[j]);
    }
    const float bad[] = { 0.0f, -0.5f, 1.5f, NAN };
    for (size_t i = 0; i < G_N_ELEMENTS (bad); i++) {
        float x[BLEND_N] = { 0 };
        Rng rng;
        rng_seed (&rng, 3);
        SamplerHooks hooks = { .init_x0 = x0, .strength = bad[i] };
        SamplerParams p = { .sampler = LDM_SAMPLER_DDIM, .steps = 10, .eta = 0 };
        g_autoptr (GError) error = NULL;
        g_assert_false (sampler_run (&s, &p, zero_eps, NULL, x, BLEND_N, &rng, &hooks, &error));
        g_assert_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT);
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
    return g_test_run ();
}
