/* ldm-brush-procedure.h: the Inpainting Brush procedure (ldm-brush.c), and what it shares with
 * ldm-plugin.c. */
#pragma once

#include <libgimp/gimp.h>

#define LDM_BRUSH_PROC "plug-in-ldm-inpaint-brush"

/* The procedure plug-in-ldm-inpaint-brush (Filters > Latent Diffusion > Inpainting Brush). */
GimpProcedure *ldm_brush_procedure_new (GimpPlugIn *plug_in, const char *name);

/* ldm-plugin.c: the "model" file argument (none = the built-in model BUILTIN). */
void ldm_plugin_add_model_argument (GimpProcedure *procedure, const char *builtin);

/* ldm-plugin.c: the path of the "model" argument, or of the built-in model BUILTIN when none
 * is given (newly allocated), or NULL and a message naming the file. */
char *ldm_plugin_model_path (GimpProcedureConfig *config, const char *builtin, GError **error);
