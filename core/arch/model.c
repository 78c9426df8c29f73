/* model.c: LdmModel: a tensor file with its architecture, every parameter checked. */
#include "arch/model.h"
#include "find_file.h"

#include <string.h>

const char *
ldm_model_kind_name (LdmModelKind kind)
{
    switch (kind) {
    case LDM_MODEL_LDM_INPAINT: return "LDM inpainting";
    case LDM_MODEL_LDM_SR: return "LDM super-resolution";
    case LDM_MODEL_SD_INPAINT: return "Stable Diffusion inpainting";
    case LDM_MODEL_SD: return "Stable Diffusion (text-to-image)";
    default: return "unknown";
    }
}

static const char *
conditioning_name (LdmConditioning conditioning)
{
    switch (conditioning) {
    case LDM_COND_CONCAT: return "concat";
    case LDM_COND_HYBRID: return "hybrid";
    case LDM_COND_CROSSATTN: return "crossattn";
    case LDM_COND_HYBRID_ADM: return "hybrid-adm";
    case LDM_COND_NONE: return "none";
    default: return "other";
    }
}

static const char *
cond_stage_name (LdmCondStage stage)
{
    switch (stage) {
    case LDM_COND_STAGE_FIRST_STAGE: return "__is_first_stage__";
    case LDM_COND_STAGE_IDENTITY: return "torch.nn.Identity";
    case LDM_COND_STAGE_CLIP: return "FrozenCLIPEmbedder";
    case LDM_COND_STAGE_OPENCLIP: return "FrozenOpenCLIPEmbedder";
    default: return "another encoder";
    }
}

void
ldm_model_free (LdmModel *model)
{
    if (!model)
        return;
    g_clear_pointer (&model->unet, g_hash_table_unref);
    g_clear_pointer (&model->first_stage, g_hash_table_unref);
    ldm_tensor_file_free (model->file);
    g_free (model->config_path);
    g_free (model);
}

LdmModelKind
ldm_model_kind (const LdmModel *model)
{
    return model ? model->config.kind : LDM_MODEL_UNKNOWN;
}

const LdmTensor *
model_unet_tensor (const void *model, const char *name)
{
    return g_hash_table_lookup (((const LdmModel *) model)->unet, name);
}

const LdmTensor *
model_first_stage_tensor (const void *model, const char *name)
{
    return g_hash_table_lookup (((const LdmModel *) model)->first_stage, name);
}

const LdmTensor *
model_cond_stage_tensor (const LdmModel *model, const char *name)
{
    g_autofree char *full = g_strconcat (LDM_COND_STAGE_PREFIX, name, NULL);
    return ldm_tensor_file_lookup (model->file, full);
}

const LdmModelConfig *
model_config (const LdmModel *model)
{
    return &model->config;
}

const LdmTensorFile *
model_file (const LdmModel *model)
{
    return model->file;
}

/* The config the authors ship beside a checkpoint: <stem>.yaml, config.yaml, project.yaml. */
static char *
find_config_beside (const char *path)
{
    g_autofree char *dir = g_path_get_dirname (path);
    g_autofree char *base = g_path_get_basename (path);
    char *dot = strrchr (base, '.');
    if (dot && dot != base)
        *dot = '\0';
    g_autofree char *stem_yaml = g_strconcat (base, ".yaml", NULL);
    const char *const names[] = { stem_yaml, "config.yaml", "project.yaml" };
    for (size_t i = 0; i < G_N_ELEMENTS (names); i++) {
        char *candidate = g_build_filename (dir, names[i], NULL);
        if (g_file_test (candidate, G_FILE_TEST_EXISTS))
            return candidate;
        g_free (candidate);
    }
    return NULL;
}

static bool
is_floating (LdmDType dtype)
{
    return dtype == LDM_DTYPE_F16 || dtype == LDM_DTYPE_BF16 || dtype == LDM_DTYPE_F32
           || dtype == LDM_DTYPE_F64 || dtype == LDM_DTYPE_F8_E4M3 || dtype == LDM_DTYPE_F8_E5M2;
}

/* Where one sub-model's parameters are looked up. */
typedef struct {
    const char *what;   /* "U-Net", for messages */
    const char *prefix; /* NULL: LitEma names */
} Place;

/* Checks every parameter of `params` and maps its name to the file's tensor. */
static gboolean
bind_params (LdmModel *model, const GArray *params, const Place *place, GHashTable *table,
             int64_t *count, unsigned *dtypes, GError **error)
{
    const char *path = ldm_tensor_file_path (model->file);
    for (guint i = 0; i < params->len; i++) {
        const LdmParamSpec *spec = &g_array_index (params, LdmParamSpec, i);
        g_autofree char *full = place->prefix ? g_strconcat (place->prefix, spec->name, NULL)
                                              : model_config_unet_ema_name (spec->name);
        const LdmTensor *tensor = ldm_tensor_file_lookup (model->file, full);
        if (!tensor) {
            g_set_error (error, LDM_ERROR, LDM_ERROR_MODEL,
                         "%s: tensor '%s' is missing: the %s of this %s model needs it "
                         "(architecture from %s)",
                         path, full, place->what, ldm_model_kind_name (model->config.kind),
                         model->config.source);
            return FALSE;
        }
        if (!model_config_shape_matches (spec, tensor)) {
            g_autofree char *found = tensor_shape_text (tensor->ndim, tensor->shape);
            g_autofree char *needed = tensor_shape_text (spec->ndim, spec->shape);
            g_set_error (error, LDM_ERROR, LDM_ERROR_MODEL,
                         "%s: tensor '%s' has shape %s but the %s needs %s (architecture from "
                         "%s)",
                         path, full, found, place->what, needed, model->config.source);
            return FALSE;
        }
        if (!is_floating (tensor->dtype)) {
            g_set_error (error, LDM_ERROR, LDM_ERROR_MODEL,
                         "%s: tensor '%s' is %s; weights must be floating point", path, full,
                         ldm_dtype_name (tensor->dtype));
            return FALSE;
        }
        g_hash_table_insert (table, g_strdup (spec->name), (gpointer) tensor);
        *count += ldm_tensor_numel (tensor);
        *dtypes |= 1u << tensor->dtype;
    }
    return TRUE;
}

static bool
has_prefix_tensor (const LdmTensorFile *file, const char *prefix)
{
    size_t length = strlen (prefix);
    for (size_t i = 0; i < ldm_tensor_file_count (file); i++)
        if (!strncmp (ldm_tensor_file_at (file, i)->name, prefix, length))
            return true;
    return false;
}

static gboolean
refuse_unknown_kind (const LdmModel *model, GError **error)
{
    const LdmModelConfig *c = &model->config;
    const char *path = ldm_tensor_file_path (model->file);
    g_autofree char *what = NULL;
    if (!c->has_unet)
        what = g_strdup_printf ("%s has no UNetModel", c->target);
    else if (!c->has_first_stage)
        what = g_strdup_printf ("%s has no VQ or KL first stage", c->target);
    else
        what = g_strdup_printf ("%s with %s conditioning and cond stage %s", c->target,
                                conditioning_name (c->conditioning),
                                cond_stage_name (c->cond_stage));
    g_set_error (error, LDM_ERROR, LDM_ERROR_UNSUPPORTED,
                 "%s: not an inpainting or super-resolution model this engine runs (%s, from "
                 "%s)",
                 path, what, c->source);
    return FALSE;
}

/* scale_by_std: the factor was measured in training and saved as a buffer. */
static gboolean
read_stored_scale_factor (LdmModel *model, GError **error)
{
    const LdmTensor *t = ldm_tensor_file_lookup (model->file, "scale_factor");
    float value = 0;
    if (!t || ldm_tensor_numel (t) != 1 || !is_floating (t->dtype)
        || !ldm_tensor_read_f32 (t, &value, 1, NULL) || !(value > 0)) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_MODEL,
                     "%s: the config sets scale_by_std, but the file has no positive scalar "
                     "'scale_factor' tensor",
                     ldm_tensor_file_path (model->file));
        return FALSE;
    }
    model->config.scale_factor = value;
    return TRUE;
}

LdmModel *
ldm_model_load (const char *path, GError **error)
{
    if (!path) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT, "no model file given");
        return NULL;
    }
    g_autoptr (LdmModel) model = g_new0 (LdmModel, 1);
    model->file = ldm_tensor_file_open (path, error);
    if (!model->file)
        return NULL;

    model->config_path = find_config_beside (path);
    if (model->config_path) {
        if (!model_config_read_yaml (model->config_path, &model->config, error))
            return NULL;
    } else if (!model_config_recognise (model->file, &model->config, error)) {
        return NULL;
    }
    if (model->config.kind == LDM_MODEL_UNKNOWN) {
        refuse_unknown_kind (model, error);
        return NULL;
    }

    /* Trap: use_ema true but no model_ema.* in the file means the plain weights. */
    model->uses_ema = model->config.use_ema && has_prefix_tensor (model->file, LDM_UNET_EMA_PREFIX);
    model->unet = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
    model->first_stage = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
    g_autoptr (GArray) unet_params = model_config_unet_params (&model->config.unet);
    g_autoptr (GArray) ae_params = model_config_autoencoder_params (&model->config.first_stage);
    const Place unet_place = { "U-Net", model->uses_ema ? NULL : LDM_UNET_PREFIX };
    const Place ae_place = { "first stage", LDM_FIRST_STAGE_PREFIX };
    if (!bind_params (model, unet_params, &unet_place, model->unet, &model->unet_params,
                      &model->unet_dtypes, error)
        || !bind_params (model, ae_params, &ae_place, model->first_stage,
                         &model->first_stage_params, &model->first_stage_dtypes, error))
        return NULL;
    if (model->config.scale_by_std && !read_stored_scale_factor (model, error))
        return NULL;

    size_t prefix_length = strlen (LDM_COND_STAGE_PREFIX);
    for (size_t i = 0; i < ldm_tensor_file_count (model->file); i++) {
        const LdmTensor *t = ldm_tensor_file_at (model->file, i);
        if (!strncmp (t->name, LDM_COND_STAGE_PREFIX, prefix_length)) {
            model->cond_stage_params += ldm_tensor_numel (t);
            model->cond_stage_tensors++;
        }
    }
    return g_steal_pointer (&model);
}

/* ======================================================================= description */

static char *
format_count (int64_t n)
{
    g_autofree char *digits = g_strdup_printf ("%" G_GINT64_FORMAT, n);
    GString *s = g_string_new (NULL);
    size_t length = strlen (digits);
    for (size_t i = 0; i < length; i++) {
        if (i > 0 && (length - i) % 3 == 0 && g_ascii_isdigit (digits[i - 1]))
            g_string_append_c (s, ',');
        g_string_append_c (s, digits[i]);
    }
    return g_string_free (s, FALSE);
}

static void
append_dtypes (GString *s, unsigned mask)
{
    bool first = true;
    for (int d = 0; d < LDM_DTYPE_COUNT; d++)
        if (mask & (1u << d)) {
            g_string_append_printf (s, "%s%s", first ? "" : ", ", ldm_dtype_name (d));
            first = false;
        }
}

static void
describe_cond_stage (GString *s, const LdmModel *model)
{
    const LdmModelConfig *c = &model->config;
    g_autofree char *count = format_count (model->cond_stage_params);
    g_string_append (s, "cond stage: ");
    switch (c->cond_stage) {
    case LDM_COND_STAGE_FIRST_STAGE:
        g_string_append (s, "the first stage itself");
        if (model->cond_stage_tensors)
            g_string_append (s, " (cond_stage_model.* is a copy of it)");
        break;
    case LDM_COND_STAGE_IDENTITY:
        g_string_append (s, "none (torch.nn.Identity: the conditioning is given as it is)");
        break;
    case LDM_COND_STAGE_CLIP:
    case LDM_COND_STAGE_OPENCLIP:
        g_string_append (s, c->cond_stage == LDM_COND_STAGE_CLIP ? "CLIP text encoder"
                                                                 : "OpenCLIP text encoder");
        if (model->cond_stage_tensors)
            g_string_append_printf (s, ", %s parameters", count);
        else
            g_string_append (s, ", not in the file");
        break;
    default:
        g_string_append_printf (s, "%s, %s parameters", cond_stage_name (c->cond_stage), count);
        break;
    }
    g_string_append_c (s, '\n');
}

char *
ldm_model_describe (const LdmModel *model)
{
    if (!model)
        return g_strdup ("");
    const LdmModelConfig *c = &model->config;
    const LdmUnetConfig *u = &c->unet;
    const LdmAutoencoderConfig *ae = &c->first_stage;
    GString *s = g_string_new (NULL);

    g_string_append_printf (s, "file: %s (%s, %zu tensors)\n", ldm_tensor_file_path (model->file),
                            ldm_tensor_file_format (model->file) == LDM_FILE_SAFETENSORS
                                ? "safetensors"
                                : "PyTorch checkpoint",
                            ldm_tensor_file_count (model->file));
    g_string_append_printf (s, "kind: %s\n", ldm_model_kind_name (c->kind));
    if (model->config_path)
        g_string_append_printf (s, "architecture: %s (the config beside the model)\n",
                                model->config_path);
    else
        g_string_append_printf (s, "architecture: %s\n", c->source);

    g_autofree char *unet_count = format_count (model->unet_params);
    g_autofree char *ae_count = format_count (model->first_stage_params);
    const char *ema = model->uses_ema ? "EMA weights"
                      : c->use_ema    ? "plain weights: the file has no EMA copy"
                                      : "plain weights: the config sets use_ema false";
    g_string_append_printf (s, "U-Net: %s parameters (%s)\n", unet_count, ema);
    g_string_append_printf (s, "first stage: %s autoencoder, %s parameters\n",
                            ae->kind == LDM_AUTOENCODER_VQ ? "VQ" : "KL", ae_count);
    describe_cond_stage (s, model);

    g_string_append (s, "weights: ");
    if (model->unet_dtypes == model->first_stage_dtypes) {
        append_dtypes (s, model->unet_dtypes);
    } else {
        g_string_append (s, "U-Net ");
        append_dtypes (s, model->unet_dtypes);
        g_string_append (s, "; first stage ");
        append_dtypes (s, model->first_stage_dtypes);
    }
    g_string_append_c (s, '\n');

    g_string_append_printf (s, "U-Net config: in %d, out %d, model channels %d, channel mult ",
                            u->in_channels, u->out_channels, u->model_channels);
    model_config_append_ints (s, u->channel_mult, u->n_levels);
    g_string_append_printf (s, ", %d res block%s per level%s%s\n", u->num_res_blocks,
                            u->num_res_blocks == 1 ? "" : "s",
                            u->resblock_updown ? ", resblock up/down" : "",
                            u->use_scale_shift_norm ? ", scale-shift norm" : "");
    g_string_append (s, "attention: at downsampling ");
    model_config_append_ints (s, u->attention_resolutions, u->n_attention_resolutions);
    if (u->use_spatial_transformer)
        g_string_append_printf (s, " and in the middle, spatial transformers (depth %d, context "
                                "%d%s)",
                                u->transformer_depth, u->context_dim,
                                u->use_linear_in_transformer ? ", linear projections" : "");
    else
        g_string_append_printf (s, " and in the middle, %sattention blocks",
                                u->legacy ? "legacy " : "");
    if (u->num_head_channels > 0)
        g_string_append_printf (s, ", %d channels per head\n", u->num_head_channels);
    else
        g_string_append_printf (s, ", %d heads\n", u->num_heads);

    static const char *const schedules[] = { "linear", "cosine", "sqrt_linear", "sqrt" };
    g_string_append_printf (s,
                            "schedule: %s betas %g .. %g, %d timesteps, %s-prediction, "
                            "scale factor %g, %s conditioning\n",
                            schedules[c->beta_schedule], c->linear_start, c->linear_end,
                            c->timesteps, c->v_prediction ? "v" : "eps", c->scale_factor,
                            conditioning_name (c->conditioning));
    g_string_append_printf (s, "latent: %d channels at 1/%d of the image size", ae->embed_dim,
                            1 << (ae->n_levels - 1));
    if (ae->kind == LDM_AUTOENCODER_VQ)
        g_string_append_printf (s, ", codebook of %d", ae->n_embed);
    g_string_append_printf (s, "; first stage ch %d, ch mult ", ae->ch);
    model_config_append_ints (s, ae->ch_mult, ae->n_levels);
    g_string_append_printf (s, ", %d res block%s, mid attention %s\n", ae->num_res_blocks,
                            ae->num_res_blocks == 1 ? "" : "s", ae->mid_attention ? "on" : "off");
    return g_string_free (s, FALSE);
}

char *
ldm_builtin_model_find (const char *basename, const char *const *dirs, GError **error)
{
    const char *env = g_getenv ("GIMP_LDM_MODEL_DIR");
    const char *only[] = { env, NULL };
    if (env && *env)
        dirs = only;
    g_autoptr (GString) looked = g_string_new (NULL);
    char *path = ldm_find_file (dirs, basename, looked);
    if (path)
        return path;
    g_set_error (error, LDM_ERROR, LDM_ERROR_IO,
                 "The built-in model %s is not installed. Looked for:%s", basename,
                 looked->len ? looked->str : " (nowhere: no folder given)");
    return NULL;
}
