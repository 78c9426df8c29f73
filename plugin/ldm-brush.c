/* ldm-brush.c: plug-in-ldm-inpaint-brush, Filters > Latent Diffusion > Inpainting Brush...
 *
 * Glue between GIMP and ui/'s brush session: two layers above the chosen layer, "Brush
 * strokes" (selected, for the user's own paint tools) and "Brush result" between them; the
 * session's LdmBrushHost reads the strokes' alpha and the chosen layer's pixels and writes
 * results into the result layer with gegl_buffer_set, which makes no undo step (the user's
 * own paint undo/redo stays clean; the result follows it as derived state). Apply keeps the
 * result layer and removes the strokes in one undo group; Discard removes both.
 *
 * Interactive: the brush window (ui/) in the plug-in's own main loop. Without a window
 * (action start / update / apply / discard, for scripts and the tests): "start" adds the
 * layers, "update" takes one look at the strokes layer and inpaints every changed region
 * (the coverage it has taken into account stays with the strokes layer as a parasite),
 * "apply" and "discard" end it.
 */
#include "ldm-brush-procedure.h"

#include <gtk/gtk.h>

#include "ldm-brush.h" /* ui/ */
#include "ldm-intl.h"
#include "ldm-pixels.h"
#include "ldm.h"

#include <libgimp/gimpui.h>
#include <stdlib.h>
#include <string.h>

#define PLUG_IN_BINARY    "gimp-ldm"
#define LINK_PARASITE     "gimp-ldm-brush"      /* on the strokes layer: "base=ID result=ID" */
#define SEEN_PARASITE     "gimp-ldm-brush-seen" /* on the strokes layer: the coverage seen */

typedef struct {
    GimpImage    *image;
    GimpDrawable *base;     /* the layer the strokes paint over: its pixels are the original */
    GimpLayer    *strokes, *result;
    int           width, height;
    uint8_t      *rgba;     /* width x height x 4: one look at the strokes layer */
} BrushLayers;

static GError *
brush_error (const char *message)
{
    return g_error_new_literal (LDM_ERROR, LDM_ERROR_ARGUMENT, message);
}

/* The three layers are still there, with the sizes they had. */
static gboolean
layers_valid (BrushLayers *b, GError **error)
{
    if (gimp_image_is_valid (b->image) && gimp_item_is_valid (GIMP_ITEM (b->base))
        && gimp_item_is_valid (GIMP_ITEM (b->strokes))
        && gimp_item_is_valid (GIMP_ITEM (b->result))
        && gimp_drawable_get_width (GIMP_DRAWABLE (b->strokes)) == b->width
        && gimp_drawable_get_height (GIMP_DRAWABLE (b->strokes)) == b->height
        && gimp_drawable_get_width (GIMP_DRAWABLE (b->result)) == b->width
        && gimp_drawable_get_height (GIMP_DRAWABLE (b->result)) == b->height)
        return TRUE;
    g_set_error_literal (error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                         _("The brush's layers were removed or resized: close the brush "
                           "window."));
    return FALSE;
}

static gboolean
host_read_strokes (void *data, uint8_t *alpha, GError **error)
{
    BrushLayers *b = data;
    if (!layers_valid (b, error))
        return FALSE;
    GeglBuffer *buffer = gimp_drawable_get_buffer (GIMP_DRAWABLE (b->strokes));
    gegl_buffer_get (buffer, GEGL_RECTANGLE (0, 0, b->width, b->height), 1.0,
                     babl_format ("R'G'B'A u8"), b->rgba, GEGL_AUTO_ROWSTRIDE, GEGL_ABYSS_NONE);
    g_object_unref (buffer);
    size_t n = (size_t) b->width * b->height;
    for (size_t i = 0; i < n; i++)
        alpha[i] = b->rgba[i * 4 + 3];
    return TRUE;
}

static gboolean
host_read_original (void *data, LdmRect rect, LdmImage *out, GError **error)
{
    BrushLayers *b = data;
    return layers_valid (b, error) && ldm_read_rgba (b->base, rect, out, error);
}

static gboolean
host_write_result (void *data, LdmRect r, const uint8_t *rgba, GError **error)
{
    BrushLayers *b = data;
    if (!layers_valid (b, error))
        return FALSE;
    /* no undo step (the notes on a live brush) */
    ldm_write_rgba_live (GIMP_DRAWABLE (b->result), r, rgba, b->base);
    return TRUE;
}

static void
host_show_strokes (void *data, gboolean visible)
{
    BrushLayers *b = data;
    if (gimp_item_is_valid (GIMP_ITEM (b->strokes))) {
        /* a view setting of the brush, not an edit: kept out of the user's undo history */
        gimp_image_undo_freeze (b->image);
        gimp_item_set_visible (GIMP_ITEM (b->strokes), visible);
        gimp_image_undo_thaw (b->image);
        gimp_displays_flush ();
    }
}

static void
select_layer (GimpImage *image, GimpLayer *layer)
{
    const GimpLayer *selected[] = { layer, NULL };
    gimp_image_set_selected_layers (image, selected);
}

static gboolean
host_apply (void *data, GError **error)
{
    BrushLayers *b = data;
    if (!gimp_image_is_valid (b->image) || !gimp_item_is_valid (GIMP_ITEM (b->result))) {
        g_set_error_literal (error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                             _("The brush's result layer is gone: nothing to apply."));
        return FALSE;
    }
    gimp_image_undo_group_start (b->image);
    if (gimp_item_is_valid (GIMP_ITEM (b->strokes)))
        gimp_image_remove_layer (b->image, b->strokes);
    select_layer (b->image, b->result);
    gimp_image_undo_group_end (b->image);
    gimp_displays_flush ();
    return TRUE;
}

static gboolean
host_discard (void *data, GError **error)
{
    (void) error;
    BrushLayers *b = data;
    if (!gimp_image_is_valid (b->image))
        return TRUE; /* nothing left to restore */
    gimp_image_undo_group_start (b->image);
    if (gimp_item_is_valid (GIMP_ITEM (b->strokes)))
        gimp_image_remove_layer (b->image, b->strokes);
    if (gimp_item_is_valid (GIMP_ITEM (b->result)))
        gimp_image_remove_layer (b->image, b->result);
    if (gimp_item_is_valid (GIMP_ITEM (b->base)) && gimp_item_is_layer (GIMP_ITEM (b->base)))
        select_layer (b->image, GIMP_LAYER (b->base));
    gimp_image_undo_group_end (b->image);
    gimp_displays_flush ();
    return TRUE;
}

static const LdmBrushHost gimp_host = {
    host_read_strokes, host_read_original, host_write_result, host_show_strokes, host_apply,
    host_discard,
};

/* ------------------------------------------------------------------- layers */

static GimpLayer *
new_layer (BrushLayers *b, const char *name, double opacity, int position, GError **error)
{
    GimpLayer *layer = gimp_layer_new (b->image, name, b->width, b->height,
                                       gimp_drawable_type_with_alpha (b->base), opacity,
                                       GIMP_LAYER_MODE_NORMAL);
    if (!layer) {
        *error = brush_error (_("GIMP could not create the new layer."));
        return NULL;
    }
    GimpItem *parent = gimp_item_get_parent (GIMP_ITEM (b->base));
    if (!gimp_image_insert_layer (b->image, layer, parent ? GIMP_LAYER (parent) : NULL,
                                  position)) {
        gimp_item_delete (GIMP_ITEM (layer)); /* never attached: ours to delete */
        *error = brush_error (_("GIMP could not add the new layer to the image."));
        return NULL;
    }
    int ox, oy;
    gimp_drawable_get_offsets (b->base, &ox, &oy);
    gimp_layer_set_offsets (layer, ox, oy);
    gimp_drawable_fill (GIMP_DRAWABLE (layer), GIMP_FILL_TRANSPARENT);
    return layer;
}

static void
attach (GimpItem *item, const char *name, const void *data, size_t size)
{
    /* neither persistent nor undoable: no undo step, and gone with the layer */
    GimpParasite *parasite = gimp_parasite_new (name, 0, (guint32) size, data);
    gimp_item_attach_parasite (item, parasite);
    gimp_parasite_free (parasite);
}

/* The result layer right above BASE, the strokes layer above it (selected), one undo step. */
static gboolean
add_layers (BrushLayers *b, GError **error)
{
    int position = gimp_image_get_item_position (b->image, GIMP_ITEM (b->base));
    gimp_image_undo_group_start (b->image);
    b->result = new_layer (b, _("Brush result"), 100.0, position, error);
    if (b->result)
        b->strokes = new_layer (b, _("Brush strokes"), 60.0, position, error);
    if (b->result && !b->strokes)
        gimp_image_remove_layer (b->image, b->result);
    if (b->strokes) {
        g_autofree char *link = g_strdup_printf (
            "base=%d\nresult=%d\n", gimp_item_get_id (GIMP_ITEM (b->base)),
            gimp_item_get_id (GIMP_ITEM (b->result)));
        attach (GIMP_ITEM (b->strokes), LINK_PARASITE, link, strlen (link) + 1);
        select_layer (b->image, b->strokes);
    }
    gimp_image_undo_group_end (b->image);
    gimp_displays_flush ();
    return b->strokes != NULL;
}

/* The brush layers of IMAGE: the layer carrying the link parasite and the two it names. */
static gboolean
find_layers (GimpImage *image, BrushLayers *b, GError **error)
{
    GimpLayer **layers = gimp_image_get_layers (image);
    for (int i = 0; layers && layers[i] && !b->strokes; i++) {
        GimpParasite *link = gimp_item_get_parasite (GIMP_ITEM (layers[i]), LINK_PARASITE);
        if (!link)
            continue;
        guint32 size = 0;
        const char *text = gimp_parasite_get_data (link, &size);
        int base = -1, result = -1;
        if (size > 0 && text[size - 1] == '\0'
            && sscanf (text, "base=%d\nresult=%d", &base, &result) == 2) {
            GimpLayer *bl = gimp_layer_get_by_id (base), *rl = gimp_layer_get_by_id (result);
            if (bl && rl) {
                b->strokes = layers[i];
                b->base = GIMP_DRAWABLE (bl);
                b->result = rl;
            }
        }
        gimp_parasite_free (link);
    }
    g_free (layers);
    if (!b->strokes) {
        *error = brush_error (_("This image has no brush layers: run the brush with action "
                                "\"start\" first."));
        return FALSE;
    }
    b->image = image;
    b->width = gimp_drawable_get_width (GIMP_DRAWABLE (b->strokes));
    b->height = gimp_drawable_get_height (GIMP_DRAWABLE (b->strokes));
    return layers_valid (b, error);
}

/* ---------------------------------------------------------------- procedure */

static GimpValueArray *run_brush (GimpProcedure *procedure, GimpRunMode run_mode,
                                  GimpImage *image, GimpDrawable **drawables,
                                  GimpProcedureConfig *config, gpointer run_data);

GimpProcedure *
ldm_brush_procedure_new (GimpPlugIn *plug_in, const char *name)
{
    GimpProcedure *procedure = gimp_image_procedure_new (plug_in, name,
                                                         GIMP_PDB_PROC_TYPE_PLUGIN, run_brush,
                                                         NULL, NULL);
    gimp_procedure_set_menu_label (procedure, _("Inpainting _Brush..."));
    gimp_procedure_set_documentation (
        procedure, _("Paint over what should go, and it is filled in while you paint"),
        _("Adds a layer \"Brush strokes\" above the layer and opens a window. Paint over an "
          "unwanted object on the strokes layer with any paint tool: when you stop, the area "
          "around the new strokes is inpainted with latent diffusion into the layer \"Brush "
          "result\"; erasing strokes brings the original back. Apply keeps the result, Discard "
          "leaves the image as it was. Without a window (scripts), the action argument does "
          "one part at a time."),
        name);
    ldm_plugin_add_model_argument (procedure, LDM_BUILTIN_INPAINT);
    gimp_procedure_add_int_argument (procedure, "seed", _("S_eed"),
                                     _("Seed of the first region; -1 picks one at random"),
                                     -1, G_MAXINT, -1, G_PARAM_READWRITE);
    gimp_procedure_add_string_argument (procedure, "mode", _("M_ode"),
                                        _("\"fast\" (few steps, little context: while "
                                          "painting) or \"quality\" (the Inpaint Selection "
                                          "filter's settings)"),
                                        "fast", G_PARAM_READWRITE);
    gimp_procedure_add_int_argument (procedure, "steps", _("_Steps"),
                                     _("Denoising steps of each region; 0 = the mode's"),
                                     0, 1000, 0, G_PARAM_READWRITE);
    gimp_procedure_add_string_argument (procedure, "action", _("_Action"),
                                        _("\"open\" (the brush window; interactive only), or "
                                          "without a window: \"start\" (add the layers), "
                                          "\"update\" (inpaint what changed on the strokes "
                                          "layer), \"apply\" or \"discard\""),
                                        "open", G_PARAM_READWRITE);
    gimp_procedure_add_layer_return_value (procedure, "strokes-layer", _("Strokes layer"),
                                           _("The layer to paint on"), TRUE, G_PARAM_READWRITE);
    gimp_procedure_add_layer_return_value (procedure, "result-layer", _("Result layer"),
                                           _("The layer the results go into"), TRUE,
                                           G_PARAM_READWRITE);
    gimp_procedure_add_int_return_value (procedure, "regions", _("Regions"),
                                         _("How many regions this call inpainted"), 0,
                                         G_MAXINT, 0, G_PARAM_READWRITE);
    gimp_procedure_set_image_types (procedure, "RGB*, GRAY*");
    gimp_procedure_set_sensitivity_mask (procedure, GIMP_PROCEDURE_SENSITIVE_DRAWABLE);
    gimp_procedure_add_menu_path (procedure, "<Image>/Filters/Latent Diffusion");
    gimp_procedure_set_attribution (procedure, "gimp-ldm authors", "gimp-ldm authors", "2025");
    return procedure;
}

static GimpValueArray *
done (GimpProcedure *procedure, GimpPDBStatusType status, GError *error, BrushLayers *b,
      int regions)
{
    g_free (b->rgba);
    GimpValueArray *values = gimp_procedure_new_return_values (procedure, status, error);
    if (status == GIMP_PDB_SUCCESS) {
        GIMP_VALUES_SET_LAYER (values, 1, b->strokes && gimp_item_is_valid (GIMP_ITEM (b->strokes))
                                              ? b->strokes : NULL);
        GIMP_VALUES_SET_LAYER (values, 2, b->result && gimp_item_is_valid (GIMP_ITEM (b->result))
                                              ? b->result : NULL);
        GIMP_VALUES_SET_INT (values, 3, regions);
    }
    return values;
}

typedef struct {
    GMainLoop      *loop;
    LdmBrushOutcome outcome;
} WindowRun;

static void
on_finished (void *data, LdmBrushOutcome outcome)
{
    WindowRun *run = data;
    run->outcome = outcome;
    g_main_loop_quit (run->loop);
}

static GimpValueArray *
run_brush (GimpProcedure *procedure, GimpRunMode run_mode, GimpImage *image,
           GimpDrawable **drawables, GimpProcedureConfig *config, gpointer run_data)
{
    (void) run_data;
    GError *error = NULL;
    BrushLayers b = { .image = image };
    g_autofree char *action = NULL, *mode_name = NULL;
    int seed = -1, steps = 0;
    g_object_get (config, "action", &action, "mode", &mode_name, "seed", &seed, "steps", &steps,
                  NULL);
    LdmBrushMode mode;
    if (!ldm_brush_mode_parse (mode_name, &mode))
        return done (procedure, GIMP_PDB_CALLING_ERROR,
                     g_error_new (LDM_ERROR, LDM_ERROR_ARGUMENT,
                                  _("Unknown mode \"%s\": use \"fast\" or \"quality\"."),
                                  mode_name ? mode_name : ""), &b, 0);
    gboolean open = g_strcmp0 (action, "open") == 0, start = g_strcmp0 (action, "start") == 0;
    gboolean update = g_strcmp0 (action, "update") == 0;
    gboolean apply = g_strcmp0 (action, "apply") == 0;
    gboolean discard = g_strcmp0 (action, "discard") == 0;
    if (!open && !start && !update && !apply && !discard)
        return done (procedure, GIMP_PDB_CALLING_ERROR,
                     g_error_new (LDM_ERROR, LDM_ERROR_ARGUMENT,
                                  _("Unknown action \"%s\": use \"open\", \"start\", "
                                    "\"update\", \"apply\" or \"discard\"."),
                                  action ? action : ""), &b, 0);
    if (open && run_mode == GIMP_RUN_NONINTERACTIVE)
        return done (procedure, GIMP_PDB_CALLING_ERROR,
                     brush_error (_("The brush window needs an interactive run; scripts use "
                                    "the actions start, update, apply and discard.")), &b, 0);
    if (seed < 0)
        seed = g_random_int_range (0, G_MAXINT);

    if (open || start) {
        if (gimp_image_get_base_type (image) == GIMP_INDEXED)
            return done (procedure, GIMP_PDB_CALLING_ERROR,
                         brush_error (_("This works on RGB and grayscale images, and this "
                                        "image is indexed: convert it first with Image > "
                                        "Mode > RGB.")), &b, 0);
        if (!drawables || !drawables[0] || drawables[1]
            || !gimp_item_is_layer (GIMP_ITEM (drawables[0])))
            return done (procedure, GIMP_PDB_CALLING_ERROR,
                         brush_error (_("Select exactly one layer.")), &b, 0);
        b.base = drawables[0];
        b.width = gimp_drawable_get_width (b.base);
        b.height = gimp_drawable_get_height (b.base);
        if (!add_layers (&b, &error))
            return done (procedure, GIMP_PDB_EXECUTION_ERROR, error, &b, 0);
        if (start)
            return done (procedure, GIMP_PDB_SUCCESS, NULL, &b, 0);
    } else if (!find_layers (image, &b, &error)) {
        return done (procedure, GIMP_PDB_CALLING_ERROR, error, &b, 0);
    }
    if (apply || discard) {
        gboolean ok = apply ? host_apply (&b, &error) : host_discard (&b, &error);
        return done (procedure, ok ? GIMP_PDB_SUCCESS : GIMP_PDB_EXECUTION_ERROR, error, &b, 0);
    }

    /* open or update: a session with the model */
    b.rgba = g_try_malloc_n ((size_t) b.width * b.height, 4);
    g_autofree char *path = ldm_plugin_model_path (config, LDM_BUILTIN_INPAINT, &error);
    if (!b.rgba || !path)
        return done (procedure, GIMP_PDB_EXECUTION_ERROR,
                     error ? error : g_error_new_literal (LDM_ERROR, LDM_ERROR_NO_MEMORY,
                                                          _("Not enough memory for the "
                                                            "strokes layer.")), &b, 0);
    LdmBrushSession *session = ldm_brush_session_new (&gimp_host, &b, b.width, b.height, path,
                                                      (uint64_t) seed, mode, &error);
    if (!session)
        return done (procedure, GIMP_PDB_EXECUTION_ERROR, error, &b, 0);
    ldm_brush_session_set_steps (session, steps);

    int regions = 0;
    gboolean ok = TRUE;
    if (update) {
        /* the coverage the last update took into account */
        GimpParasite *seen = gimp_item_get_parasite (GIMP_ITEM (b.strokes), SEEN_PARASITE);
        guint32 size = 0;
        const void *data = seen ? gimp_parasite_get_data (seen, &size) : NULL;
        if (data && size == (guint32) b.width * b.height)
            ok = ldm_brush_session_set_seen (session, data, &error);
        if (seen)
            gimp_parasite_free (seen);
        if (ok)
            ok = ldm_brush_session_process (session, &regions, &error);
        if (ok)
            attach (GIMP_ITEM (b.strokes), SEEN_PARASITE, ldm_brush_session_seen (session),
                    (size_t) b.width * b.height);
    } else {
        gimp_ui_init (PLUG_IN_BINARY);
        WindowRun run = { g_main_loop_new (NULL, FALSE), LDM_BRUSH_CLOSED };
        GtkWidget *window = ldm_brush_window_new (session, on_finished, &run);
        gimp_window_set_transient (GTK_WINDOW (window));
        ldm_brush_session_start (session);
        g_main_loop_run (run.loop);
        g_main_loop_unref (run.loop);
        regions = ldm_brush_session_written (session);
    }
    ldm_brush_session_free (session);
    return done (procedure, ok ? GIMP_PDB_SUCCESS : GIMP_PDB_EXECUTION_ERROR, error, &b,
                 regions);
}
