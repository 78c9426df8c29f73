/* ldm-job.h: running the engine off GIMP's wire.
 *
 * The engine runs in a worker thread; the plug-in's main thread, the only one that talks to
 * GIMP, shows its progress in GIMP's progress bar (and, in interactive runs, in a small window
 * whose Cancel button stops the engine at the next U-Net step).
 */
#pragma once

#include <glib.h>

typedef struct LdmJob LdmJob;

/* The work; runs in the worker thread. Pass ldm_job_progress and the job as the engine's
 * progress callback. */
typedef gboolean (*LdmJobFunc) (LdmJob *job, gpointer data, GError **error);

/* An LdmProgressFn: records the step for the main thread; FALSE once cancelled. */
gboolean ldm_job_progress  (void *job, int step, int steps);
/* The same after each window of a step that runs in windows (LdmTileProgressFn). */
gboolean ldm_job_tile_progress (void *job, int step, int steps, int tile, int tiles);
/* What the worker is doing before the steps start ("Loading the model"). */
void     ldm_job_set_stage (LdmJob *job, const char *text);

/* Runs func (job, data, error) to its end and returns its result. `what` names the work in
 * the progress text ("Inpainting"). With `interactive`, a window with a Cancel button shows
 * the progress too. The environment variable GIMP_LDM_CANCEL_AT_STEP=N cancels at step N
 * as that button would (for tests, which run GIMP without a display). */
gboolean ldm_job_run (const char *what, gboolean interactive, LdmJobFunc func, gpointer data,
                      GError **error);
