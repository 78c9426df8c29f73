/* gimp-ldm: latent diffusion in GIMP 3.
 *
 *   plug-in-ldm-inpaint  Filters > Latent Diffusion > Inpaint Selection...
 *   plug-in-ldm-upscale  Filters > Latent Diffusion > Upscale 4x...
 *   plug-in-ldm-inpaint-brush  Filters > Latent Diffusion > Inpainting Brush... (ldm-brush.c)
 *
 * Glue only: the arguments, the dialogs and the image edits live here; the pixel work is
 * core/run/region.c and the engine (ldm.h), run off GIMP's wire by ldm-job.c.
 */
#include "ldm-brush-procedure.h"
#include "ldm-intl.h"
#include "ldm-job.h"
#include "ldm-pixels.h"
#include "ldm.h"

#include <libgimp/gimp.h>
#include <libgimp/gimpui.h>
#include <string.h>

#include "ldm-preview-host.h" /* after gimpui.h: ui/'s widgets need GTK's types */

#define PLUG_IN_BINARY  "gimp-ldm"
#define INPAINT_PROC    "plug-in-ldm-inpaint"
#define UPSCALE_PROC    "plug-in-ldm-upscale"
#define MENU_PATH       "<Image>/Filters/Latent Diffusion"

typedef struct {
    GimpPlugIn parent_instance;
} LdmPlugIn;

typedef struct {
    GimpPlugInClass parent_class;
} LdmPlugInClass;

#define LDM_TYPE_PLUG_IN (ldm_plug_in_get_type ())
GType ldm_plug_in_get_type (void);
G_DEFINE_TYPE (LdmPlugIn, ldm_plug_in, GIMP_TYPE_PLUG_IN)

static GList         *ldm_query_procedures (GimpPlugIn *plug_in);
static GimpProcedure *ldm_create_procedure (GimpPlugIn *plug_in, const gchar *name);
static GimpValueArray *run_inpaint (GimpProcedure *procedure, GimpRunMode run_mode,
                                    GimpImage *image, GimpDrawable **drawables,
                                    GimpProcedureConfig *config, gpointer run_data);
static GimpValueArray *run_upscale (GimpProcedure *procedure, GimpRunMode run_mode,
                                    GimpImage *image, GimpDrawable **drawables,
                                    GimpProcedureConfig *config, gpointer run_data);

GIMP_MAIN (LDM_TYPE_PLUG_IN)

static void
ldm_plug_in_class_init (LdmPlugInClass *klass)
{
    GimpPlugInClass *plug_in_class = GIMP_PLUG_IN_CLASS (klass);
    plug_in_class->query_procedures = ldm_query_procedures;
    plug_in_class->create_procedure = ldm_create_procedure;
    /* set_i18n stays GIMP's default: domain "gimp-ldm", catalogs in locale/ beside us */
}

static void
ldm_plug_in_init (LdmPlugIn *self)
{
    (void) self;
}

static GList *
ldm_query_procedures (GimpPlugIn *plug_in)
{
    (void) plug_in;
    GList *list = g_list_append (NULL, g_strdup (INPAINT_PROC));
    list = g_list_append (list, g_strdup (LDM_BRUSH_PROC));
    return g_list_append (list, g_strdup (UPSCALE_PROC));
}

/* ------------------------------------------------------------ arguments */

void
ldm_plugin_add_model_argument (GimpProcedure *procedure, const char *builtin)
{
    g_autofree char *blurb = g_strdup_printf (
        _("Model checkpoint (.ckpt or .safetensors); none = the built-in model %s"), builtin);
    /* ACTION_ANY: GIMP itself would refuse a missing file or a folder before the plug-in
     * runs, with a message that names neither ("<not transformable to string> ... out of
     * range"); ldm_plugin_model_path() checks it and says which file is wrong. */
    gimp_procedure_add_file_argument (procedure, "model", _("_Model"), blurb,
                                      GIMP_FILE_CHOOSER_ACTION_ANY, TRUE, NULL,
                                      G_PARAM_READWRITE);
}

/* model, steps, seed, sampler, eta: what both procedures share; the defaults are core's
 * (ldm_sample_params_init), as for the `ldm` program. */
static void
add_sampling_arguments (GimpProcedure *procedure, const char *builtin,
                        const LdmSampleParams *defaults)
{
    int steps = defaults->steps;
    double eta = defaults->eta;
    ldm_plugin_add_model_argument (procedure, builtin);
    /* The dialog edits the auxiliary "model-file" (an open-file chooser, which ACTION_ANY
     * cannot have). */
    const char *model_blurb = g_param_spec_get_blurb (gimp_procedure_find_argument (procedure,
                                                                                     "model"));
    gimp_procedure_add_file_aux_argument (procedure, "model-file", _("_Model"), model_blurb,
                                          GIMP_FILE_CHOOSER_ACTION_OPEN, TRUE, NULL,
                                          G_PARAM_READWRITE);
    gimp_procedure_add_int_argument (procedure, "steps", _("_Steps"),
                                     _("Denoising steps: more is slower and finer"),
                                     1, 1000, steps, G_PARAM_READWRITE);
    gimp_procedure_add_int_argument (procedure, "seed", _("S_eed"),
                                     _("Seed of the noise; -1 picks one at random (the seed "
                                       "used is returned and shown in the layer name)"),
                                     -1, G_MAXINT, -1, G_PARAM_READWRITE);
    /* A string, checked by read_sampling(): Script-Fu drops a name a choice argument does
     * not know (a GLib-CRITICAL in Script-Fu) and the procedure would run with the default.
     * The dialog edits the auxiliary choice "sampler-choice". */
    const char *sampler = ldm_sampler_name (defaults->sampler);
    gimp_procedure_add_string_argument (procedure, "sampler", _("Sam_pler"),
                                        _("How the noise is removed step by step: "
                                          "\"default\" (the model's: DPM++ 2M Karras for "
                                          "Stable Diffusion, DDIM otherwise), \"dpmpp-2m\", "
                                          "\"dpmpp-2m-karras\", \"euler-a\", \"ddim\" or "
                                          "\"ddpm\""),
                                        sampler, G_PARAM_READWRITE);
    gimp_procedure_add_choice_aux_argument (
        procedure, "sampler-choice", _("Sam_pler"), _("How the noise is removed step by step"),
        gimp_choice_new_with_values (
            "default", LDM_SAMPLER_DEFAULT,
            _("The model's default (DPM++ 2M Karras for Stable Diffusion, else DDIM)"), NULL,
            "dpmpp-2m", LDM_SAMPLER_DPMPP_2M, _("DPM++ 2M (good in 15-25 steps)"), NULL,
            "dpmpp-2m-karras", LDM_SAMPLER_DPMPP_2M_KARRAS,
            _("DPM++ 2M Karras (Stable Diffusion's usual)"), NULL,
            "euler-a", LDM_SAMPLER_EULER_A, _("Euler a (ancestral: new noise every step)"), NULL,
            "ddim", LDM_SAMPLER_DDIM, _("DDIM (the authors' sampler)"), NULL,
            "ddpm", LDM_SAMPLER_DDPM, _("DDPM (ancestral)"), NULL,
            NULL),
        sampler, G_PARAM_READWRITE);
    gimp_procedure_add_double_argument (procedure, "eta", _("E_ta"),
                                        _("DDIM only: 0 is deterministic, 1 adds fresh noise "
                                          "every step like DDPM"),
                                        0.0, 1.0, eta, G_PARAM_READWRITE);
    /* A string checked by read_sampling(), for the same reason as "sampler". */
    gimp_procedure_add_string_argument (procedure, "init", _("St_art from"),
                                        _("Where sampling starts: \"noise\", \"fill\" (the "
                                          "selection filled from its surroundings) or "
                                          "\"original\" (the image itself), noised to "
                                          "strength"),
                                        ldm_init_name (defaults->init), G_PARAM_READWRITE);
    gimp_procedure_add_choice_aux_argument (
        procedure, "init-choice", _("St_art from"), _("Where sampling starts"),
        gimp_choice_new_with_values (
            "noise", LDM_INIT_NOISE, _("Noise (the authors')"), NULL,
            "fill", LDM_INIT_FILL, _("The selection filled from its surroundings"), NULL,
            "original", LDM_INIT_ORIGINAL, _("The image (keeps its layout)"), NULL,
            NULL),
        ldm_init_name (defaults->init), G_PARAM_READWRITE);
    gimp_procedure_add_double_argument (procedure, "strength", _("St_rength"),
                                        _("Starting from fill or original: how much noise the "
                                          "start gets (1: all, the picture is redrawn; 0.3: a "
                                          "light touch)"),
                                        0.01, 1.0, defaults->strength, G_PARAM_READWRITE);
    /* 0 = the engine's default at run time (ldm_sample_params_init: a share of the memory
     * available then), not a number fixed when GIMP registered the procedure */
    gimp_procedure_add_int_argument (procedure, "memory-limit", _("_Memory limit (MB)"),
                                     _("Memory the model may use, in megabytes: its work is "
                                       "split into windows that fit, and an image that cannot "
                                       "fit is refused before it starts (0: three quarters of "
                                       "the memory available)"),
                                     0, 16 << 20, 0, G_PARAM_READWRITE);
}

static GimpProcedure *
ldm_create_procedure (GimpPlugIn *plug_in, const gchar *name)
{
    GimpProcedure *procedure = NULL;
    if (strcmp (name, LDM_BRUSH_PROC) == 0)
        return ldm_brush_procedure_new (plug_in, name);
    if (strcmp (name, INPAINT_PROC) == 0) {
        procedure = gimp_image_procedure_new (plug_in, name, GIMP_PDB_PROC_TYPE_PLUGIN,
                                              run_inpaint, NULL, NULL);
        gimp_procedure_set_menu_label (procedure, _("_Inpaint Selection..."));
        gimp_procedure_set_documentation (
            procedure, _("Fill the selection with latent diffusion"),
            _("Regenerates the selected area from its surroundings with a latent diffusion "
              "inpainting model, on the CPU. Only a crop around the selection (plus context) "
              "goes through the model. The result is a new layer above the active one, with a "
              "layer mask made from the selection; the image's own layers are not changed."),
            name);
        LdmSampleParams defaults;
        ldm_sample_params_init (&defaults, LDM_TASK_INPAINT);
        add_sampling_arguments (procedure, LDM_BUILTIN_INPAINT, &defaults);
        LdmRegionParams region; /* the region defaults are core's too */
        ldm_region_params_init (&region);
        gimp_procedure_add_int_argument (procedure, "context-padding", _("_Context"),
                                         _("Pixels of surrounding image the model sees around "
                                           "the selection"),
                                         0, 4096, region.context_padding, G_PARAM_READWRITE);
        gimp_procedure_add_int_argument (procedure, "working-size", _("_Working size"),
                                         _("Longest side the crop is processed at; larger crops "
                                           "are scaled down for the model and back"),
                                         LDM_REGION_MIN_WORKING_SIZE, 8192, region.working_size,
                                         G_PARAM_READWRITE);
        gimp_procedure_add_int_argument (procedure, "mask-grow", _("_Grow selection"),
                                         _("Pixels the selection is grown by before inpainting"),
                                         0, LDM_REGION_MAX_GROW, region.mask_grow,
                                         G_PARAM_READWRITE);
        gimp_procedure_add_int_argument (procedure, "mask-blur", _("_Blur edge"),
                                         _("Pixels over which the new layer fades into the "
                                           "image (its layer mask is blurred)"),
                                         0, LDM_REGION_MAX_BLUR, region.mask_blur,
                                         G_PARAM_READWRITE);
        gimp_procedure_add_boolean_argument (procedure, "keep-known", _("_Follow surroundings"),
                                             _("At every step, reset the latents around the "
                                               "selection to the image's own, so the fill grows "
                                               "from its surroundings (off: the authors' "
                                               "sampler)"),
                                             defaults.keep_known, G_PARAM_READWRITE);
        gimp_procedure_add_boolean_argument (procedure, "match-colors", _("Match co_lors"),
                                             _("Correct the fill's colors by the model's color "
                                               "error on the pixels around it"),
                                             defaults.match_colors, G_PARAM_READWRITE);
        gimp_procedure_add_boolean_argument (procedure, "color-fix", _("_Keep colors"),
                                             _("Latent-diffusion models: the fill's colors and "
                                               "shading come from its surroundings, its detail "
                                               "from the model (off: the decoded colors as they "
                                               "are; Stable Diffusion: not applied, the prompt "
                                               "decides)"),
                                             defaults.color_fix, G_PARAM_READWRITE);
        /* Stable Diffusion's text conditioning (core reads the prompts through CLIP) */
        gimp_procedure_add_string_argument (procedure, "prompt", _("Pr_ompt"),
                                            _("What should appear in the selection, in words "
                                              "(Stable Diffusion models; latent-diffusion "
                                              "models ignore the prompt)"),
                                            "", G_PARAM_READWRITE);
        gimp_procedure_add_string_argument (procedure, "negative-prompt", _("_Negative prompt"),
                                            _("What should not appear (Stable Diffusion "
                                              "models; latent-diffusion models ignore it)"),
                                            "", G_PARAM_READWRITE);
        gimp_procedure_add_double_argument (procedure, "guidance", _("G_uidance"),
                                            _("How closely the fill follows the prompt: 1 "
                                              "(the prompt alone, no negative prompt) to 30 "
                                              "(Stable Diffusion models)"),
                                            LDM_GUIDANCE_MIN, LDM_GUIDANCE_MAX,
                                            defaults.guidance, G_PARAM_READWRITE);
        gimp_procedure_add_layer_return_value (procedure, "layer", _("Layer"),
                                               _("The new layer"), FALSE, G_PARAM_READWRITE);
    } else if (strcmp (name, UPSCALE_PROC) == 0) {
        procedure = gimp_image_procedure_new (plug_in, name, GIMP_PDB_PROC_TYPE_PLUGIN,
                                              run_upscale, NULL, NULL);
        gimp_procedure_set_menu_label (procedure, _("_Upscale 4x..."));
        gimp_procedure_set_documentation (
            procedure, _("Make the layer 4 times larger with latent diffusion"),
            _("Upscales the active layer 4x with a latent diffusion super-resolution model "
              "(LDSR), on the CPU, into a new image; with in-place, the image itself is scaled "
              "4x and the result added as a new layer."),
            name);
        LdmSampleParams defaults;
        ldm_sample_params_init (&defaults, LDM_TASK_UPSCALE);
        add_sampling_arguments (procedure, LDM_BUILTIN_UPSCALE, &defaults);
        gimp_procedure_add_boolean_argument (procedure, "color-fix", _("_Keep colors"),
                                             _("Keep the layer's colors: every 4x4 block of the "
                                               "result averages to its original pixel, the "
                                               "model adds the detail (off: the decoded colors "
                                               "as they are)"),
                                             defaults.color_fix, G_PARAM_READWRITE);
        gimp_procedure_add_boolean_argument (procedure, "in-place", _("Scale this _image"),
                                             _("Scale the current image 4x and add the result "
                                               "as a layer, instead of making a new image"),
                                             FALSE, G_PARAM_READWRITE);
        gimp_procedure_add_image_return_value (procedure, "new-image", _("Image"),
                                               _("The image holding the result"), FALSE,
                                               G_PARAM_READWRITE);
        gimp_procedure_add_layer_return_value (procedure, "layer", _("Layer"),
                                               _("The upscaled layer"), FALSE,
                                               G_PARAM_READWRITE);
    } else {
        return NULL;
    }
    /* Last, so that scripts written before it keep their places. A string checked by
     * read_sampling(), as "sampler"; not in the dialog (auto suits nearly everyone): for
     * scripts that want the authors' fp32 numerics. */
    gimp_procedure_add_string_argument (procedure, "precision", _("_Precision"),
                                        _("The layers' arithmetic: \"auto\" (bfloat16 where "
                                          "the CPU multiplies it itself, about 1.5 times as fast; "
                                          "else fp32), \"fp32\" or \"bf16\""),
                                        ldm_precision_name (LDM_PRECISION_AUTO),
                                        G_PARAM_READWRITE);
    gimp_procedure_add_int_return_value (procedure, "seed", _("Seed"), _("The seed used"),
                                         0, G_MAXINT, 0, G_PARAM_READWRITE);
    gimp_procedure_set_image_types (procedure, "RGB*, GRAY*");
    gimp_procedure_set_sensitivity_mask (procedure, GIMP_PROCEDURE_SENSITIVE_DRAWABLE);
    gimp_procedure_add_menu_path (procedure, MENU_PATH);
    gimp_procedure_set_attribution (procedure, "gimp-ldm authors", "gimp-ldm authors", "2025");
    return procedure;
}

/* ----------------------------------------------------------- run helpers */

static GimpValueArray *
fail (GimpProcedure *procedure, GError *error)
{
    GimpPDBStatusType status = g_error_matches (error, LDM_ERROR, LDM_ERROR_CANCELLED)
                                   ? GIMP_PDB_CANCEL
                                   : GIMP_PDB_EXECUTION_ERROR;
    if (status == GIMP_PDB_CANCEL)
        g_clear_error (&error);
    /* GIMP shows the message in a dialog (or its error console) for interactive runs */
    return gimp_procedure_new_return_values (procedure, status, error);
}

/* A call the procedure cannot accept (the caller's arguments or image): nothing was done. */
static GimpValueArray *
refuse (GimpProcedure *procedure, GError *error)
{
    return gimp_procedure_new_return_values (procedure, GIMP_PDB_CALLING_ERROR, error);
}

static GError *
plug_in_error (const char *format, ...) G_GNUC_PRINTF (1, 2);

static GError *
plug_in_error (const char *format, ...)
{
    va_list args;
    va_start (args, format);
    GError *error = g_error_new_valist (LDM_ERROR, LDM_ERROR_ARGUMENT, format, args);
    va_end (args);
    return error;
}

/* Copies property `from` of config to `to` when `to` accepts the value (the dialog's
 * properties are stricter than the PDB's: an existing file); otherwise `to` is reset. */
static void
copy_property (GimpProcedureConfig *config, const char *from, const char *to)
{
    GParamSpec *spec = g_object_class_find_property (G_OBJECT_GET_CLASS (config), to);
    GValue value = G_VALUE_INIT;
    g_value_init (&value, G_PARAM_SPEC_VALUE_TYPE (spec));
    g_object_get_property (G_OBJECT (config), from, &value);
    if (g_param_value_validate (spec, &value)) /* not acceptable: reset */
        g_param_value_set_default (spec, &value);
    g_object_set_property (G_OBJECT (config), to, &value);
    g_value_unset (&value);
}

/* What the Inpaint Selection dialog previews: the layer and the selection's bounds. */
typedef struct {
    GimpImage    *image;
    GimpDrawable *drawable;
    int           x1, y1, x2, y2;
} PreviewTarget;

typedef struct DialogExtras DialogExtras;
static DialogExtras *dialog_extras_new  (GimpProcedureDialog *dialog, GimpProcedureConfig *config,
                                         const char *builtin, const PreviewTarget *target);
static void          dialog_extras_end  (DialogExtras *extras);
static void          dialog_extras_free (DialogExtras *extras);

/* TARGET: the inpaint dialog's preview (NULL: the upscale dialog). */
static gboolean
show_dialog (GimpProcedure *procedure, GimpProcedureConfig *config, const char *title,
             const PreviewTarget *target)
{
    gboolean inpaint = target != NULL;
    gimp_ui_init (PLUG_IN_BINARY);
    copy_property (config, "model", "model-file");
    copy_property (config, "sampler", "sampler-choice");
    copy_property (config, "init", "init-choice");
    GtkWidget *dialog = gimp_procedure_dialog_new (procedure, config, title);
    GimpProcedureDialog *d = GIMP_PROCEDURE_DIALOG (dialog);
    gimp_procedure_dialog_set_ok_label (d, inpaint ? _("_Inpaint") : _("_Upscale"));
    if (inpaint) {
        gimp_procedure_dialog_fill_box (d, "region-box", "context-padding", "working-size",
                                        "mask-grow", "mask-blur", "keep-known", "match-colors",
                                        "color-fix",
                                        NULL);
        gimp_procedure_dialog_get_label (d, "region-title", _("Region"), FALSE, FALSE);
        gimp_procedure_dialog_fill_frame (d, "region-frame", "region-title", FALSE, "region-box");
        /* the prompt's widgets' tooltips say it too; the note is seen without hovering */
        gimp_procedure_dialog_get_label (d, "prompt-note",
                                         _("Only Stable Diffusion models read the prompt; "
                                           "latent-diffusion models ignore it."), FALSE, FALSE);
        gimp_procedure_dialog_fill_box (d, "prompt-box", "prompt", "negative-prompt",
                                        "guidance", "prompt-note", NULL);
        gimp_procedure_dialog_fill (d, "model-file", "prompt-box", "sampler-choice", "steps",
                                    "seed", "eta", "init-choice", "strength", "region-frame",
                                    "memory-limit", NULL);
    } else {
        gimp_procedure_dialog_fill (d, "model-file", "sampler-choice", "steps", "seed", "eta",
                                    "init-choice", "strength", "color-fix", "in-place",
                                    "memory-limit", NULL);
    }
    /* eta only means something to DDIM (the default with the LDM models) */
    GimpValueArray *ddim = gimp_value_array_new (2);
    GValue value = G_VALUE_INIT;
    g_value_init (&value, G_TYPE_STRING);
    g_value_set_static_string (&value, "ddim");
    gimp_value_array_append (ddim, &value);
    g_value_set_static_string (&value, "default");
    gimp_value_array_append (ddim, &value);
    g_value_unset (&value);
    gimp_procedure_dialog_set_sensitive_if_in (d, "eta", NULL, "sampler-choice", ddim,
                                               TRUE); /* owns ddim */
    /* strength only means something to a start from an image */
    GimpValueArray *noise = gimp_value_array_new (1);
    g_value_init (&value, G_TYPE_STRING);
    g_value_set_static_string (&value, "noise");
    gimp_value_array_append (noise, &value);
    g_value_unset (&value);
    gimp_procedure_dialog_set_sensitive_if_in (d, "strength", NULL, "init-choice", noise,
                                               FALSE); /* owns noise */
    DialogExtras *extras = dialog_extras_new (d, config, inpaint ? LDM_BUILTIN_INPAINT
                                                                 : LDM_BUILTIN_UPSCALE, target);
    gboolean run = gimp_procedure_dialog_run (d);
    /* the preview layer goes on OK too: the filter then runs as without it */
    dialog_extras_end (extras);
    gtk_widget_destroy (dialog);
    dialog_extras_free (extras); /* may wait for a model still loading: the dialog is gone */
    if (run) {
        copy_property (config, "model-file", "model");
        copy_property (config, "sampler-choice", "sampler");
        copy_property (config, "init-choice", "init");
    }
    return run;
}

/* The one layer the procedure works on (a selected layer mask stands for its layer), in an
 * image it can work on. */
static GimpDrawable *
the_layer (GimpImage *image, GimpDrawable **drawables, GError **error)
{
    /* the menu offers neither procedure for an indexed image; a script could call them, and
     * a new layer in an indexed image would be quantised to its palette */
    if (gimp_image_get_base_type (image) == GIMP_INDEXED) {
        *error = plug_in_error (_("This works on RGB and grayscale images, and this image is "
                                  "indexed: convert it first with Image > Mode > RGB."));
        return NULL;
    }
    if (!drawables || !drawables[0] || drawables[1]) {
        *error = plug_in_error (_("Select exactly one layer."));
        return NULL;
    }
    GimpDrawable *d = drawables[0];
    if (gimp_item_is_layer_mask (GIMP_ITEM (d)))
        d = GIMP_DRAWABLE (gimp_layer_from_mask (GIMP_LAYER_MASK (d)));
    if (!d || !gimp_item_is_layer (GIMP_ITEM (d))) {
        *error = plug_in_error (_("This works on a layer: select a layer, not a channel."));
        return NULL;
    }
    /* a script may pass a layer of another image: its pixels would land in this one */
    GimpImage *owner = gimp_item_get_image (GIMP_ITEM (d));
    if (!owner || gimp_image_get_id (owner) != gimp_image_get_id (image)) {
        g_autofree char *name = gimp_item_get_name (GIMP_ITEM (d));
        *error = plug_in_error (_("The layer \"%s\" belongs to another image than the one "
                                  "given."), name);
        return NULL;
    }
    return d;
}

/* The built-in model for a task: $GIMP_LDM_MODEL_DIR when set, else the first of models/
 * beside the plug-in, the installed data folder and the source tree that has it. */
static char *
builtin_model (const char *basename, GError **error)
{
    g_autofree char *folder = g_path_get_dirname (gimp_get_progname ());
    g_autofree char *beside = g_build_filename (folder, "models", NULL);
    const char *const dirs[] = { beside, LDM_MODEL_DIR, LDM_SOURCE_MODEL_DIR, NULL };
    g_autoptr (GError) missing = NULL;
    char *path = ldm_builtin_model_find (basename, dirs, &missing);
    if (!path) /* where it looked, then what to do */
        *error = g_error_new (LDM_ERROR, LDM_ERROR_IO, "%s\n%s", missing->message,
                              _("Choose a model file in the Model field (a CompVis "
                                "latent-diffusion checkpoint) or install the built-in models."));
    return path;
}

/* The model path the user asked for in PROPERTY ("model"; the dialog's "model-file"), or the
 * built-in one when none. */
static char *
model_path_of (GimpProcedureConfig *config, const char *property, const char *builtin,
               GError **error)
{
    GFile *file = NULL;
    g_object_get (config, property, &file, NULL);
    if (!file)
        return builtin_model (builtin, error);
    char *path = g_file_get_path (file);
    g_autofree char *uri = path ? NULL : g_file_get_uri (file);
    if (!path && (!uri || !*uri)) { /* Script-Fu's "": no file, as when omitted */
        g_object_unref (file);
        return builtin_model (builtin, error);
    }
    if (!path) {
        *error = plug_in_error (_("The model must be a local file, not %s."), uri);
    } else {
        /* what GIMP's check of an open-file argument refuses, said with the file's name */
        GFileType type = g_file_query_file_type (file, G_FILE_QUERY_INFO_NONE, NULL);
        if (type == G_FILE_TYPE_DIRECTORY)
            *error = plug_in_error (_("%s is a folder, not a model file: choose the .ckpt or "
                                      ".safetensors file in it."), path);
        else if (type == G_FILE_TYPE_UNKNOWN && !g_file_query_exists (file, NULL))
            *error = plug_in_error (_("The model file %s does not exist."), path);
        else if (type != G_FILE_TYPE_REGULAR)
            *error = plug_in_error (_("%s is not a regular file, so it cannot be a model "
                                      "file."), path);
        if (*error)
            g_clear_pointer (&path, g_free);
    }
    g_object_unref (file);
    return path;
}

static char *
model_path (GimpProcedureConfig *config, const char *builtin, GError **error)
{
    return model_path_of (config, "model", builtin, error);
}

char *
ldm_plugin_model_path (GimpProcedureConfig *config, const char *builtin, GError **error)
{
    return model_path (config, builtin, error);
}

typedef struct {
    int        steps, seed;
    LdmSampler sampler;
    double     eta, strength;
    LdmInit    init;
    int        memory_mb; /* 0: the engine's default */
    LdmPrecision precision;
} Sampling;

/* The arguments; DIALOG: the dialog's choices (sampler-choice, init-choice) while it is open. */
static gboolean
read_sampling_of (GimpProcedureConfig *config, gboolean dialog, Sampling *s, GError **error)
{
    g_autofree char *sampler = NULL, *init = NULL, *precision = NULL;
    g_object_get (config, "steps", &s->steps, "seed", &s->seed, "eta", &s->eta,
                  dialog ? "sampler-choice" : "sampler", &sampler,
                  dialog ? "init-choice" : "init", &init, "strength", &s->strength,
                  "memory-limit", &s->memory_mb, "precision", &precision, NULL);
    if (!ldm_sampler_parse (sampler, &s->sampler)) {
        *error = plug_in_error (_("Unknown sampler \"%s\": use \"default\", \"dpmpp-2m\", "
                                  "\"dpmpp-2m-karras\", \"euler-a\", \"ddim\" or "
                                  "\"ddpm\"."), sampler ? sampler : "");
        return FALSE;
    }
    if (!ldm_init_parse (init, &s->init)) {
        *error = plug_in_error (_("Unknown start \"%s\": use \"noise\", \"fill\" or "
                                  "\"original\"."), init ? init : "");
        return FALSE;
    }
    if (!ldm_precision_parse (precision, &s->precision)) {
        *error = plug_in_error (_("Unknown precision \"%s\": use \"auto\", \"fp32\" or "
                                  "\"bf16\"."), precision ? precision : "");
        return FALSE;
    }
    if (s->seed < 0)
        s->seed = g_random_int_range (0, G_MAXINT);
    return TRUE;
}

static gboolean
read_sampling (GimpProcedureConfig *config, Sampling *s, GError **error)
{
    return read_sampling_of (config, FALSE, s, error);
}

/* The engine for a model, checking it is the kind the procedure needs. Worker thread. */
static LdmEngine *
load_engine (LdmJob *job, const char *path, gboolean inpaint, LdmPrecision precision,
             GError **error)
{
    ldm_job_set_stage (job, _("loading the model"));
    g_autoptr (GError) load_error = NULL;
    g_autoptr (LdmModel) model = ldm_model_load (path, &load_error);
    if (!model) {
        /* the loader's message starts with the path: say it once */
        const char *detail = load_error->message;
        size_t n = strlen (path);
        if (strncmp (detail, path, n) == 0 && detail[n] == ':' && detail[n + 1] == ' ')
            detail += n + 2;
        if (load_error->code == LDM_ERROR_IO)
            *error = g_error_new (LDM_ERROR, load_error->code,
                                  _("Cannot read the model file %s: %s"), path, detail);
        else if (load_error->code == LDM_ERROR_FORMAT)
            *error = g_error_new (LDM_ERROR, load_error->code,
                                  _("%s is not a model file gimp-ldm can read (a PyTorch .ckpt "
                                    "or .safetensors checkpoint), or it is damaged. Details: %s"),
                                  path, detail);
        else
            *error = g_error_new (LDM_ERROR, load_error->code,
                                  _("Cannot use %s as a model: %s"), path, detail);
        return NULL;
    }
    LdmModelKind kind = ldm_model_kind (model);
    /* every kind that inpaints: LDM, SD inpainting and SD text-to-image (with a prompt) */
    gboolean inpaints = kind == LDM_MODEL_LDM_INPAINT || kind == LDM_MODEL_SD_INPAINT
                        || kind == LDM_MODEL_SD;
    if ((inpaint && !inpaints) || (!inpaint && kind != LDM_MODEL_LDM_SR)) {
        *error = plug_in_error (inpaint ? _("%s is not an inpainting model (it is: %s). "
                                            "Inpaint Selection needs a latent-diffusion or "
                                            "Stable Diffusion model.")
                                        : _("%s is not a 4x super-resolution model (it is: "
                                            "%s). Upscale 4x needs a latent-diffusion "
                                            "super-resolution model (LDSR)."),
                                path, ldm_model_kind_name (kind));
        return NULL;
    }
    ldm_job_set_stage (job, _("preparing the model"));
    return ldm_engine_new (model, precision, error);
}

static char *
model_label (const char *path)
{
    return g_path_get_basename (path);
}

static void
append_sampling (GString *s, const char *procedure, const char *path, const Sampling *sp)
{
    char eta[G_ASCII_DTOSTR_BUF_SIZE], strength[G_ASCII_DTOSTR_BUF_SIZE];
    g_string_append_printf (s, "procedure=%s\nmodel=%s\nseed=%d\nsteps=%d\nsampler=%s\neta=%s\n"
                            "init=%s\nstrength=%s\nprecision=%s\n",
                            procedure, path, sp->seed, sp->steps, ldm_sampler_name (sp->sampler),
                            g_ascii_dtostr (eta, sizeof eta, sp->eta), ldm_init_name (sp->init),
                            g_ascii_dtostr (strength, sizeof strength, sp->strength),
                            ldm_precision_name (sp->precision));
}

static void
init_sample_params (LdmSampleParams *p, const Sampling *s, LdmJob *job)
{
    ldm_sample_params_init (p, LDM_TASK_INPAINT); /* the aids are set by each procedure */
    p->sampler = s->sampler;
    p->steps = s->steps;
    p->eta = (float) s->eta;
    p->init = s->init;
    p->strength = (float) s->strength;
    p->seed = (uint64_t) s->seed;
    if (s->memory_mb > 0)
        p->memory_limit = (uint64_t) s->memory_mb << 20;
    p->progress = ldm_job_progress;
    p->tile_progress = ldm_job_tile_progress;
    p->progress_data = job;
}

/* FALSE with core's message when a run of `task` on a width x height image cannot fit in
 * params' memory limit: asked of the model's plan (ldm_model_plan) before any pixel is read,
 * so a refusal costs no read of the layer. A model that does not load or does not do `task`
 * passes here: the run says so in its own words. */
static gboolean
plan_fits (const char *model_path, LdmTask task, int width, int height,
           const LdmSampleParams *params, GError **error)
{
    g_autoptr (LdmModel) model = ldm_model_load (model_path, NULL);
    g_autoptr (GError) plan_error = NULL;
    if (!model || ldm_model_plan (model, task, width, height, params, NULL, &plan_error)
        || !g_error_matches (plan_error, LDM_ERROR, LDM_ERROR_NO_MEMORY))
        return TRUE;
    g_propagate_error (error, g_steal_pointer (&plan_error));
    return FALSE;
}

/* --------------------------------------------------------------- inpaint */

/* TEXT (NULL = "") with every line break and other control character made a space. */
static char *
one_line (const char *text)
{
    char *s = g_strdup (text ? text : "");
    for (char *c = s; *c; c++)
        if ((unsigned char) *c < 0x20 || *c == 0x7f)
            *c = ' ';
    return s;
}

/* TEXT cut to at most `max` characters (not bytes), with an ellipsis when cut. */
static char *
shortened (const char *text, glong max)
{
    if (!g_utf8_validate (text, -1, NULL))
        return g_strdup ("?");
    if (g_utf8_strlen (text, -1) <= max)
        return g_strdup (text);
    g_autofree char *head = g_utf8_substring (text, 0, max - 1);
    return g_strconcat (g_strchomp (head), "\u2026", NULL);
}

typedef struct {
    const char            *model_path;
    Sampling               sampling;
    gboolean               keep_known, match_colors, color_fix;
    char                  *prompt, *negative_prompt; /* UTF-8, never NULL */
    double                 guidance;
    LdmModelKind           kind; /* of the model that ran */
    LdmRegionParams        region;
    LdmImage               crop;
    const float           *selection;
    LdmRegionResult        result;
} InpaintWork;

/* The filter's settings (DIALOG: as the open dialog has them) into W; its prompts are then
 * W's (g_free). */
static gboolean
read_inpaint (GimpProcedureConfig *config, gboolean dialog, InpaintWork *w, GError **error)
{
    if (!read_sampling_of (config, dialog, &w->sampling, error))
        return FALSE;
    g_object_get (config, "context-padding", &w->region.context_padding, "working-size",
                  &w->region.working_size, "mask-grow", &w->region.mask_grow, "mask-blur",
                  &w->region.mask_blur, "keep-known", &w->keep_known, "match-colors",
                  &w->match_colors, "color-fix", &w->color_fix, "prompt", &w->prompt,
                  "negative-prompt", &w->negative_prompt,
                  "guidance", &w->guidance, NULL);
    return TRUE;
}

static void
inpaint_params (const InpaintWork *w, LdmJob *job, LdmSampleParams *params)
{
    init_sample_params (params, &w->sampling, job);
    params->keep_known = w->keep_known;
    params->match_colors = w->match_colors;
    params->color_fix = w->color_fix;
    params->prompt = w->prompt;
    params->negative_prompt = w->negative_prompt;
    params->guidance = (float) w->guidance;
}

static gboolean
inpaint_work (LdmJob *job, gpointer data, GError **error)
{
    InpaintWork *w = data;
    g_autoptr (LdmEngine) engine = load_engine (job, w->model_path, TRUE, w->sampling.precision,
                                                  error);
    if (!engine)
        return FALSE;
    /* the sampler and precision that run, for the layer's parasite */
    w->sampling.sampler = ldm_sampler_for_model (w->sampling.sampler, ldm_engine_kind (engine));
    w->sampling.precision = ldm_engine_precision (engine);
    LdmSampleParams params;
    inpaint_params (w, job, &params);
    w->kind = ldm_engine_kind (engine);
    return ldm_inpaint_region (engine, &w->crop, w->selection, &w->region, &params, &w->result,
                               error);
}

/* FALSE (and a message) when the image or layer was closed or deleted during the run. */
static gboolean
still_there (GimpImage *image, GimpDrawable *drawable, GError **error)
{
    if (gimp_image_is_valid (image) && gimp_item_is_valid (GIMP_ITEM (drawable)))
        return TRUE;
    *error = plug_in_error (_("The image or layer was closed while the model ran; nothing "
                              "was changed."));
    return FALSE;
}

static GimpValueArray *
run_inpaint (GimpProcedure *procedure, GimpRunMode run_mode, GimpImage *image,
             GimpDrawable **drawables, GimpProcedureConfig *config, gpointer run_data)
{
    (void) run_data;
    GError *error = NULL;
    GimpDrawable *drawable = the_layer (image, drawables, &error);
    if (!drawable)
        return refuse (procedure, error);
    gboolean non_empty = FALSE;
    int x1, y1, x2, y2;
    if (!gimp_selection_bounds (image, &non_empty, &x1, &y1, &x2, &y2) || !non_empty)
        return fail (procedure, plug_in_error (_("There is no selection. Select the area to "
                                                 "inpaint first, for example with the Free "
                                                 "Select tool.")));
    PreviewTarget target = { image, drawable, x1, y1, x2, y2 };
    if (run_mode == GIMP_RUN_INTERACTIVE
        && !show_dialog (procedure, config, _("Inpaint Selection"), &target))
        return gimp_procedure_new_return_values (procedure, GIMP_PDB_CANCEL, NULL);

    InpaintWork w = { 0 };
    if (!read_inpaint (config, FALSE, &w, &error))
        return refuse (procedure, error);
    /* one line each in the parasite: line breaks become spaces (CLIP collapses white space) */
    g_autofree char *prompt = one_line (w.prompt), *negative_prompt = one_line (w.negative_prompt);
    g_free (w.prompt);
    g_free (w.negative_prompt);
    w.prompt = prompt;
    w.negative_prompt = negative_prompt;
    g_autofree char *path = model_path (config, LDM_BUILTIN_INPAINT, &error);
    if (!path)
        return fail (procedure, error);
    w.model_path = path;

    /* the crop: around the selection, within both the layer and the canvas */
    int ox, oy;
    gimp_drawable_get_offsets (drawable, &ox, &oy);
    LdmRect layer = { ox, oy, gimp_drawable_get_width (drawable),
                      gimp_drawable_get_height (drawable) };
    int lx0 = MAX (layer.x, 0), ly0 = MAX (layer.y, 0);
    int lx1 = MIN (layer.x + layer.width, gimp_image_get_width (image));
    int ly1 = MIN (layer.y + layer.height, gimp_image_get_height (image));
    LdmRect limits = { lx0, ly0, lx1 - lx0, ly1 - ly0 }, crop;
    g_autofree char *layer_name = gimp_item_get_name (GIMP_ITEM (drawable));
    if (!ldm_region_crop (&w.region, (LdmRect) { x1, y1, x2 - x1, y2 - y1 }, limits, &crop))
        return fail (procedure, plug_in_error (_("The selection does not touch the layer "
                                                 "\"%s\"."), layer_name));
    LdmSampleParams plan_params;
    int mw, mh;
    inpaint_params (&w, NULL, &plan_params);
    ldm_region_model_size (&w.region, crop.width, crop.height, &mw, &mh);
    if (!plan_fits (path, LDM_TASK_INPAINT, mw, mh, &plan_params, &error))
        return fail (procedure, error);
    g_autofree float *selection = ldm_read_selection (image, crop, &error);
    if (!selection || !ldm_read_rgba (drawable, (LdmRect) { crop.x - ox, crop.y - oy,
                                                            crop.width, crop.height },
                                      &w.crop, &error))
        return fail (procedure, error);
    w.selection = selection;

    gboolean ok = ldm_job_run (_("Inpainting"), run_mode == GIMP_RUN_INTERACTIVE, inpaint_work,
                               &w, &error);
    ldm_image_clear (&w.crop);
    if (!ok)
        return fail (procedure, error);
    /* GIMP stays usable during a long run: the layer or image may be gone now */
    if (!still_there (image, drawable, &error)) {
        ldm_region_result_clear (&w.result);
        return fail (procedure, error);
    }

    g_autofree char *label = model_label (path);
    gboolean reads_prompt = w.kind == LDM_MODEL_SD_INPAINT || w.kind == LDM_MODEL_SD;
    g_autofree char *short_prompt = shortened (prompt, 40);
    /* TRANSLATORS: the new layer's name: model file, seed, number of steps */
    g_autofree char *name = reads_prompt && *prompt
        ? g_strdup_printf (_("Inpainted: %s (%s, seed %d, %d steps)"), short_prompt, label,
                           w.sampling.seed, w.sampling.steps)
        : g_strdup_printf (_("Inpainted (%s, seed %d, %d steps)"), label, w.sampling.seed,
                           w.sampling.steps);
    char guidance[G_ASCII_DTOSTR_BUF_SIZE];
    g_autoptr (GString) parameters = g_string_new (NULL);
    append_sampling (parameters, INPAINT_PROC, path, &w.sampling);
    g_string_append_printf (parameters,
                            "context-padding=%d\nworking-size=%d\nmask-grow=%d\nmask-blur=%d\n"
                            "keep-known=%s\nmatch-colors=%s\ncolor-fix=%s\ncrop=%d,%d,%d,%d\n"
                            "model-size=%d,%d\n",
                            w.region.context_padding, w.region.working_size, w.region.mask_grow,
                            w.region.mask_blur, w.keep_known ? "true" : "false",
                            w.match_colors ? "true" : "false", w.color_fix ? "true" : "false",
                            crop.x, crop.y, crop.width,
                            crop.height,
                            w.result.model_width, w.result.model_height);
    g_string_append_printf (parameters, "prompt=%s\nnegative-prompt=%s\nguidance=%s\n", prompt,
                            negative_prompt, g_ascii_dtostr (guidance, sizeof guidance,
                                                             w.guidance));

    /* everything the run changes is one undo step */
    gimp_image_undo_group_start (image);
    GimpLayer *result = ldm_add_inpainted_layer (image, drawable, crop, &w.result, name, &error);
    if (result)
        ldm_attach_parameters (GIMP_ITEM (result), parameters->str);
    gimp_image_undo_group_end (image);
    ldm_region_result_clear (&w.result);
    if (!result)
        return fail (procedure, error);

    GimpValueArray *values = gimp_procedure_new_return_values (procedure, GIMP_PDB_SUCCESS, NULL);
    GIMP_VALUES_SET_LAYER (values, 1, result);
    GIMP_VALUES_SET_INT (values, 2, w.sampling.seed);
    return values;
}

/* --------------------------------------------------------- dialog extras */

/* The dialog's note naming the built-in model, and (inpaint) its Preview: ui/'s widgets, the
 * preview layer through ldm-preview-host.c; both follow the dialog's settings. */
struct DialogExtras {
    GimpProcedureConfig *config;
    const char          *builtin;
    GtkWidget           *note;
    gulong               notify;
    LdmPreview          *preview;  /* NULL: the upscale dialog, or a selection off the layer */
    LdmGimpPreview       host;
    int                  seed;     /* the preview's while the dialog's is -1 (random) */
};

static void
extras_update (DialogExtras *x)
{
    GFile *file = NULL;
    g_object_get (x->config, "model-file", &file, NULL);
    gboolean chosen = file != NULL;
    g_clear_object (&file);
    /* the model the filter would run, found as the procedure finds it */
    g_autoptr (GError) model_error = NULL;
    g_autofree char *path = model_path_of (x->config, "model-file", x->builtin, &model_error);
    ldm_model_note_set (x->note, chosen, path, model_error ? model_error->message : NULL);
    if (!x->preview)
        return;
    InpaintWork w = { 0 };
    g_autoptr (GError) error = NULL;
    int seed = -1;
    g_object_get (x->config, "seed", &seed, NULL);
    LdmSampleParams sample;
    ldm_sample_params_init (&sample, LDM_TASK_INPAINT);
    if (read_inpaint (x->config, TRUE, &w, &error)) {
        if (seed < 0) /* one random seed for every preview of this dialog */
            w.sampling.seed = x->seed;
        inpaint_params (&w, NULL, &sample);
        ldm_preview_set_settings (x->preview, path, model_error ? model_error->message : NULL,
                                  &sample, &w.region);
    } else { /* cannot happen: the dialog offers known choices only */
        ldm_preview_set_settings (x->preview, NULL, error->message, &sample, &w.region);
    }
    g_free (w.prompt);
    g_free (w.negative_prompt);
}

static void
on_config_notify (GObject *config, GParamSpec *pspec, gpointer data)
{
    (void) config;
    (void) pspec;
    extras_update (data);
}

/* The widget the dialog made for PROPERTY and the box it is in, or NULL. */
static GtkWidget *
box_of (GimpProcedureDialog *d, const char *property, int *position)
{
    GtkWidget *widget = gimp_procedure_dialog_get_widget (d, property, G_TYPE_NONE);
    GtkWidget *box = widget ? gtk_widget_get_parent (widget) : NULL;
    if (!GTK_IS_BOX (box))
        return NULL;
    gtk_container_child_get (GTK_CONTAINER (box), widget, "position", position, NULL);
    return box;
}

static DialogExtras *
dialog_extras_new (GimpProcedureDialog *d, GimpProcedureConfig *config, const char *builtin,
                   const PreviewTarget *target)
{
    DialogExtras *x = g_new0 (DialogExtras, 1);
    x->config = config;
    x->builtin = builtin;
    x->seed = g_random_int_range (0, G_MAXINT);
    /* the note right below the model button, which says "(None)" when no file is chosen */
    x->note = ldm_model_note_new ();
    int position = 0;
    GtkWidget *box = box_of (d, "model-file", &position);
    if (box) {
        gtk_box_pack_start (GTK_BOX (box), x->note, FALSE, FALSE, 0);
        gtk_box_reorder_child (GTK_BOX (box), x->note, position + 1);
    } else {
        gtk_box_pack_start (GTK_BOX (gtk_dialog_get_content_area (GTK_DIALOG (d))), x->note,
                            FALSE, FALSE, 0);
    }
    LdmRect region;
    if (target && ldm_gimp_preview_init (&x->host, target->image, target->drawable, target->x1,
                                         target->y1, target->x2, target->y2, &region)) {
        x->preview = ldm_preview_new (&ldm_gimp_preview_host, &x->host,
                                      gimp_drawable_get_width (target->drawable),
                                      gimp_drawable_get_height (target->drawable), region);
        GtkWidget *toggle = ldm_preview_box_new (x->preview);
        gtk_box_pack_start (GTK_BOX (box ? box : gtk_dialog_get_content_area (GTK_DIALOG (d))),
                            toggle, FALSE, FALSE, 0);
    }
    extras_update (x);
    x->notify = g_signal_connect (config, "notify", G_CALLBACK (on_config_notify), x);
    return x;
}

/* Before the dialog goes: the preview ends (its layer removed), no more settings. */
static void
dialog_extras_end (DialogExtras *x)
{
    g_signal_handler_disconnect (x->config, x->notify);
    if (x->preview) {
        ldm_preview_end (x->preview);
        ldm_gimp_preview_clear (&x->host);
    }
}

/* After the dialog: the worker stops (joined). */
static void
dialog_extras_free (DialogExtras *x)
{
    ldm_preview_free (x->preview);
    g_free (x);
}

typedef struct {
    const char *model_path;
    Sampling    sampling;
    gboolean    color_fix;
    LdmImage    source, result;
} UpscaleWork;

static gboolean
upscale_work (LdmJob *job, gpointer data, GError **error)
{
    UpscaleWork *w = data;
    g_autoptr (LdmEngine) engine = load_engine (job, w->model_path, FALSE, w->sampling.precision,
                                                  error);
    if (!engine)
        return FALSE;
    w->sampling.sampler = ldm_sampler_for_model (w->sampling.sampler, ldm_engine_kind (engine));
    w->sampling.precision = ldm_engine_precision (engine);
    LdmSampleParams params;
    init_sample_params (&params, &w->sampling, job);
    params.color_fix = w->color_fix;
    return ldm_upscale (engine, &w->source, &params, &w->result, error);
}

/* 8-bit RGB, or RGBA when the layer has alpha: the model never sees a fake alpha. */
static gboolean
read_layer (GimpDrawable *drawable, LdmImage *out, GError **error)
{
    LdmRect all = { 0, 0, gimp_drawable_get_width (drawable),
                    gimp_drawable_get_height (drawable) };
    if (!ldm_read_rgba (drawable, all, out, error))
        return FALSE;
    if (!gimp_drawable_has_alpha (drawable)) {
        size_t n = (size_t) out->width * out->height;
        for (size_t i = 0; i < n; i++)
            memmove (out->pixels + i * 3, out->pixels + i * 4, 3);
        out->channels = 3;
    }
    return TRUE;
}

static GimpValueArray *
run_upscale (GimpProcedure *procedure, GimpRunMode run_mode, GimpImage *image,
             GimpDrawable **drawables, GimpProcedureConfig *config, gpointer run_data)
{
    (void) run_data;
    GError *error = NULL;
    GimpDrawable *drawable = the_layer (image, drawables, &error);
    if (!drawable)
        return refuse (procedure, error);
    if (run_mode == GIMP_RUN_INTERACTIVE
        && !show_dialog (procedure, config, _("Upscale 4x"), NULL))
        return gimp_procedure_new_return_values (procedure, GIMP_PDB_CANCEL, NULL);

    UpscaleWork w = { 0 };
    gboolean in_place = FALSE;
    if (!read_sampling (config, &w.sampling, &error))
        return refuse (procedure, error);
    g_object_get (config, "in-place", &in_place, "color-fix", &w.color_fix, NULL);
    int dw = gimp_drawable_get_width (drawable), dh = gimp_drawable_get_height (drawable);
    if (in_place) { /* then the whole image grows 4x, not just the layer */
        dw = MAX (dw, gimp_image_get_width (image));
        dh = MAX (dh, gimp_image_get_height (image));
    }
    if ((gint64) dw * 4 > GIMP_MAX_IMAGE_SIZE || (gint64) dh * 4 > GIMP_MAX_IMAGE_SIZE)
        return fail (procedure, plug_in_error (_("The layer is too large to be made 4 times "
                                                 "larger (%d x %d)."), dw, dh));
    g_autofree char *path = model_path (config, LDM_BUILTIN_UPSCALE, &error);
    LdmSampleParams plan_params;
    init_sample_params (&plan_params, &w.sampling, NULL);
    plan_params.color_fix = w.color_fix;
    if (!path
        || !plan_fits (path, LDM_TASK_UPSCALE, gimp_drawable_get_width (drawable),
                       gimp_drawable_get_height (drawable), &plan_params, &error)
        || !read_layer (drawable, &w.source, &error))
        return fail (procedure, error);
    w.model_path = path;

    gboolean ok = ldm_job_run (_("Upscaling"), run_mode == GIMP_RUN_INTERACTIVE, upscale_work,
                               &w, &error);
    ldm_image_clear (&w.source);
    if (!ok)
        return fail (procedure, error);
    if (!still_there (image, drawable, &error)) {
        ldm_image_clear (&w.result);
        return fail (procedure, error);
    }

    g_autofree char *label = model_label (path);
    /* TRANSLATORS: the new layer's name: model file, seed, number of steps */
    g_autofree char *name = g_strdup_printf (_("Upscaled 4x (%s, seed %d, %d steps)"), label,
                                             w.sampling.seed, w.sampling.steps);
    g_autoptr (GString) parameters = g_string_new (NULL);
    append_sampling (parameters, UPSCALE_PROC, path, &w.sampling);
    g_string_append_printf (parameters, "color-fix=%s\nin-place=%s\n",
                            w.color_fix ? "true" : "false", in_place ? "true" : "false");

    GimpImage *target;
    GimpLayer *layer;
    if (in_place) {
        int ox, oy;
        gimp_drawable_get_offsets (drawable, &ox, &oy);
        int iw = gimp_image_get_width (image), ih = gimp_image_get_height (image);
        gimp_image_undo_group_start (image);
        layer = NULL;
        if (!gimp_image_scale (image, iw * 4, ih * 4)) {
            error = plug_in_error (_("GIMP could not scale the image."));
        } else {
            GimpItem *parent = gimp_item_get_parent (GIMP_ITEM (drawable));
            layer = ldm_add_layer (image, &w.result, ox * 4, oy * 4,
                                   parent ? GIMP_LAYER (parent) : NULL,
                                   gimp_image_get_item_position (image, GIMP_ITEM (drawable)),
                                   drawable, name, &error);
            if (layer)
                ldm_attach_parameters (GIMP_ITEM (layer), parameters->str);
            else /* nothing half done: back to the old size */
                gimp_image_scale (image, iw, ih);
        }
        gimp_image_undo_group_end (image);
        target = image;
    } else {
        target = gimp_image_new (w.result.width, w.result.height, GIMP_RGB);
        /* a new image starts without history */
        gimp_image_undo_disable (target);
        GimpColorProfile *profile = gimp_image_get_color_profile (image);
        if (profile) {
            gimp_image_set_color_profile (target, profile);
            g_object_unref (profile);
        }
        layer = ldm_add_layer (target, &w.result, 0, 0, NULL, 0, drawable, name, &error);
        if (layer)
            ldm_attach_parameters (GIMP_ITEM (layer), parameters->str);
        gimp_image_undo_enable (target);
        if (!layer)
            gimp_image_delete (target);
        else if (run_mode != GIMP_RUN_NONINTERACTIVE) /* also Filters > Repeat */
            gimp_display_new (target);
    }
    ldm_image_clear (&w.result);
    if (!layer)
        return fail (procedure, error);

    GimpValueArray *values = gimp_procedure_new_return_values (procedure, GIMP_PDB_SUCCESS, NULL);
    GIMP_VALUES_SET_IMAGE (values, 1, target);
    GIMP_VALUES_SET_LAYER (values, 2, layer);
    GIMP_VALUES_SET_INT (values, 3, w.sampling.seed);
    return values;
}
