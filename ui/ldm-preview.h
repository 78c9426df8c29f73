/* ldm-preview.h: the Inpaint Selection dialog's Preview (ui/), without libgimp.
 *
 * While the dialog is open and Preview is on, the selection's region is inpainted in the
 * background by the brush's worker (core's LdmBrushWorker: the model stays loaded between
 * runs) with the brush's fast settings, into a preview layer that plugin/ shows on the canvas
 * through an LdmPreviewHost (writes without undo steps); a change of the dialog's settings
 * runs it again after LDM_PREVIEW_DEBOUNCE_MS. Preview off, Cancel and OK remove the layer.
 * It runs on the default main context (the dialog's loop); a test drives it with a host in
 * memory.
 */
#pragma once

#include "ldm.h"

#include <glib.h>

/* What the preview needs of GIMP; main thread. Rectangles are in the layer's pixels. */
typedef struct {
    /* RECT of the layer as 8-bit RGBA (the original pixels). */
    gboolean (*read_original)  (void *host, LdmRect rect, LdmImage *out, GError **error);
    /* RECT of the selection as rect.width x rect.height floats in [0, 1]. */
    gboolean (*read_selection) (void *host, LdmRect rect, float *selection, GError **error);
    /* The preview layer := RGBA over RECT (rect.width x rect.height x 4; transparent
     * elsewhere), made when there is none or it covers another rectangle; no undo step. */
    gboolean (*write_preview)  (void *host, LdmRect rect, const uint8_t *rgba, GError **error);
    /* The preview layer removed, no undo step (nothing when there is none). */
    void     (*remove_preview) (void *host);
} LdmPreviewHost;

/* Quiet time after the last change of the settings before the preview runs again. */
#define LDM_PREVIEW_DEBOUNCE_MS 400

typedef struct LdmPreview LdmPreview;

/* A preview of the region BOX (the selection's bounds, layer pixels) of a width x height
 * layer; off, and no worker until it is first turned on. */
LdmPreview *ldm_preview_new  (const LdmPreviewHost *host, void *host_data, int width,
                              int height, LdmRect box);
/* Stops the worker (a running preview is cancelled); the preview layer stays as it is. */
void        ldm_preview_free (LdmPreview *preview);

/* The preview's settings from the dialog's (SAMPLE, REGION: the filter's as the user set
 * them; MODEL_PATH: the model the filter would run): the brush's fast steps, context and
 * working size, the rest the dialog's (seed, sampler, prompts, grow, blur, ...). */
void ldm_preview_settings (const LdmSampleParams *sample, const LdmRegionParams *region,
                           LdmSampleParams *preview_sample, LdmRegionParams *preview_region);

/* The dialog's settings changed (the strings are copied): when on, the preview runs again
 * after LDM_PREVIEW_DEBOUNCE_MS (a running one is cancelled). A new MODEL_PATH starts a new
 * worker; NULL (no model, MESSAGE says why) stops previewing until there is one. */
void ldm_preview_set_settings (LdmPreview *preview, const char *model_path, const char *message,
                               const LdmSampleParams *sample, const LdmRegionParams *region);
/* On: previews (debounced); off: cancels and removes the preview layer. */
void     ldm_preview_set_active (LdmPreview *preview, gboolean active);
gboolean ldm_preview_active     (LdmPreview *preview);
/* Cancel or OK: off (the preview layer removed), and nothing runs any more. */
void     ldm_preview_end        (LdmPreview *preview);

/* How many previews were written; *running (may be NULL): one is waiting or computing. */
int      ldm_preview_written    (LdmPreview *preview, gboolean *running);
/* The state as the dialog shows it ("Preview: step 3 of 8"), newly allocated. */
char    *ldm_preview_state_text (LdmPreview *preview);

/* The text beside the dialog's model button: which built-in model runs when no file is chosen
 * (BUILTIN_PATH, or MESSAGE when it cannot be found), "" when a file is chosen. Newly
 * allocated. */
char    *ldm_model_note_text    (gboolean file_chosen, const char *builtin_path,
                                 const char *message);

#ifdef GTK_MAJOR_VERSION
/* The Preview check button ("preview") and the preview's state ("preview-state") in a box,
 * for PREVIEW (not owned). */
GtkWidget *ldm_preview_box_new   (LdmPreview *preview);
/* A label ("model-note") for ldm_model_note_text; set it with ldm_model_note_set (hidden
 * while its text is empty). */
GtkWidget *ldm_model_note_new    (void);
void       ldm_model_note_set    (GtkWidget *note, gboolean file_chosen, const char *builtin_path,
                                  const char *message);
#endif
