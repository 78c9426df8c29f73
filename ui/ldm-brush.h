/* ldm-brush.h: the inpainting brush's session and window (ui/), without libgimp.
 *
 * The session (ldm-brush-session.c, GLib only) watches the strokes layer through an
 * LdmBrushHost that plugin/ implements with GIMP's layers (a test implements it in memory),
 * cuts the changed regions into jobs for core's brush worker (ldm.h) and writes their results
 * back. It runs on the default main context: poll timers in the interactive window,
 * ldm_brush_session_process for a run without a window. The window (ldm-brush-window.c,
 * GTK3) shows its state and drives it.
 */
#pragma once

#include "ldm.h"

#include <glib.h>

/* What the session needs of GIMP; every function runs on the main thread. Rectangles are in
 * the strokes layer's pixels (the result layer and the original have the same size). */
typedef struct {
    /* The strokes layer's coverage (alpha), width x height bytes; FALSE + error when the
     * layer is gone (the user may undo it away). */
    gboolean (*read_strokes)  (void *host, uint8_t *alpha, GError **error);
    /* RECT of the original pixels (the layer under the result layer) as 8-bit RGBA. */
    gboolean (*read_original) (void *host, LdmRect rect, LdmImage *out, GError **error);
    /* RECT of the result layer := RGBA (rect.width x rect.height x 4), without an undo step,
     * and shown. */
    gboolean (*write_result)  (void *host, LdmRect rect, const uint8_t *rgba, GError **error);
    /* Shows or hides the strokes layer (its paint covers the result). */
    void     (*show_strokes)  (void *host, gboolean visible);
    /* Apply: keep the result layer, remove the strokes layer (one undo step). Discard: remove
     * both (the image as before). */
    gboolean (*apply)         (void *host, GError **error);
    gboolean (*discard)       (void *host, GError **error);
} LdmBrushHost;

typedef enum {
    LDM_BRUSH_STATE_IDLE,      /* not watching: before start, after a cancel, the end */
    LDM_BRUSH_STATE_WAITING,   /* watching the strokes layer; nothing to do */
    LDM_BRUSH_STATE_COMPUTING, /* a region is being inpainted */
    LDM_BRUSH_STATE_DONE,      /* every region so far is written */
    LDM_BRUSH_STATE_FAILED,    /* the last region failed (message), or the layers are gone */
} LdmBrushState;

typedef struct LdmBrushSession LdmBrushSession;

/* How the session watches: LDM_BRUSH_POLL_MS between looks at the strokes layer (or 4 times
 * the last look's read of the layer when that is longer), and a change is taken once the
 * layer stayed the same for LDM_BRUSH_SETTLE further looks: a stroke being painted changes
 * the layer at each motion event, so a pause of about 100 ms starts it, and painting on near
 * it restarts it. One look (50 ms) split strokes whose motion events came 50-80 ms apart (a
 * loaded machine; the GUI test's stroke: three regions instead of two); two looks 40 ms
 * apart were 20 ms faster (2026-12-03), but a stroke whose events come 80-100 ms apart
 * under load could split; the old 2 x 100 ms cost 100 ms more. The fill so starts 100-150 ms
 * after the stroke ends. LDM_BRUSH_TAKE_MS: how often finished regions are taken and
 * written. */
#define LDM_BRUSH_POLL_MS 50
#define LDM_BRUSH_SETTLE  2
#define LDM_BRUSH_TAKE_MS 10

/* A session for a width x height strokes layer; starts core's worker (the model loads in
 * its thread). seed: of the first region; a re-roll takes the next one. */
LdmBrushSession *ldm_brush_session_new  (const LdmBrushHost *host, void *host_data, int width,
                                         int height, const char *model_path, uint64_t seed,
                                         LdmBrushMode mode, GError **error);
/* Stops the worker (a running region is cancelled); the layers stay as they are. */
void             ldm_brush_session_free (LdmBrushSession *session);

/* The strokes already on the layer count as seen (they are not inpainted again). */
gboolean ldm_brush_session_set_seen (LdmBrushSession *session, const uint8_t *alpha,
                                     GError **error);
/* The coverage the session has taken into account (width x height bytes). */
const uint8_t *ldm_brush_session_seen (LdmBrushSession *session);

/* Interactive use: polls the strokes layer every LDM_BRUSH_POLL_MS, inpaints what settled,
 * writes results as they come (timers on the default main context). */
void     ldm_brush_session_start (LdmBrushSession *session);
/* Without a window: one look at the strokes layer (no settling), then every region it gave
 * inpainted and written before returning. FALSE + error when a region failed. *regions (may
 * be NULL) gets how many regions were written. */
gboolean ldm_brush_session_process (LdmBrushSession *session, int *regions, GError **error);

/* Steps of each region: 0 = the mode's. */
void     ldm_brush_session_set_steps (LdmBrushSession *session, int steps);
/* The mode of the regions to come. */
void     ldm_brush_session_set_mode  (LdmBrushSession *session, LdmBrushMode mode);
LdmBrushMode ldm_brush_session_mode  (LdmBrushSession *session);
/* Stops the running region and forgets the queued ones (their strokes stay as they are). */
void     ldm_brush_session_cancel    (LdmBrushSession *session);
/* The last written region again with the next seed. FALSE when there is none. */
gboolean ldm_brush_session_reroll    (LdmBrushSession *session);
void     ldm_brush_session_show_strokes (LdmBrushSession *session, gboolean visible);
/* Apply / Discard (see LdmBrushHost); the session stops watching. */
gboolean ldm_brush_session_apply     (LdmBrushSession *session, GError **error);
gboolean ldm_brush_session_discard   (LdmBrushSession *session, GError **error);

/* The state; *region (may be NULL) the number of the region being computed or last written
 * (1, 2, ... in this session), *queued those waiting, *step / *steps the running one's
 * progress. */
LdmBrushState ldm_brush_session_state (LdmBrushSession *session, int *region, int *queued,
                                       int *step, int *steps);
/* The last failure's message, or NULL. */
const char   *ldm_brush_session_message (LdmBrushSession *session);
/* How many regions this session has written. */
int           ldm_brush_session_written (LdmBrushSession *session);
/* The seed of the region last written. */
uint64_t      ldm_brush_session_seed    (LdmBrushSession *session);
/* The state as the window shows it ("Computing region 2: step 3 of 8"), newly allocated. */
char         *ldm_brush_state_text      (LdmBrushSession *session);

/* ------------------------------------------------------------------ window (GTK3) */

typedef enum {
    LDM_BRUSH_CLOSED,    /* the window was closed: both layers stay */
    LDM_BRUSH_APPLIED,
    LDM_BRUSH_DISCARDED,
} LdmBrushOutcome;

#ifdef GTK_MAJOR_VERSION
/* The brush window for SESSION (which it does not own): the state, Fast/Quality, Show
 * strokes, Cancel, Re-roll seed, Apply, Discard. FINISHED is called once, when the user
 * applied, discarded or closed the window (the window is then destroyed). */
GtkWidget *ldm_brush_window_new (LdmBrushSession *session,
                                 void (*finished) (void *data, LdmBrushOutcome outcome),
                                 void *data);
#endif
