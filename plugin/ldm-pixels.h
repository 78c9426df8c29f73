/* ldm-pixels.h: moving pixels between GIMP's buffers and the engine's 8-bit images, and the
 * layers the plug-in adds. Main thread only (these talk to GIMP). */
#pragma once

#include "ldm.h"

#include <libgimp/gimp.h>

/* `rect` of the drawable (drawable coordinates) as 8-bit R'G'B'A in the image's own colour
 * space (no conversion: the model sees the values the user sees). */
gboolean ldm_read_rgba      (GimpDrawable *drawable, LdmRect rect, LdmImage *out, GError **error);
/* `rect` of the image's selection (image coordinates) as floats in [0, 1]. */
float   *ldm_read_selection (GimpImage *image, LdmRect rect, GError **error);

/* `rect` of the drawable := 8-bit R'G'B'A in the colour space of `like`, without an undo
 * step (the live writes of the brush and the dialog's preview), and shown. */
void     ldm_write_rgba_live (GimpDrawable *drawable, LdmRect rect, const uint8_t *rgba,
                              GimpDrawable *like);

/* A new layer above `drawable` at `crop` (image coordinates) holding the generated pixels
 * where result->fill is set (transparent elsewhere), with result->layer_mask as its layer
 * mask. */
GimpLayer *ldm_add_inpainted_layer (GimpImage *image, GimpDrawable *drawable, LdmRect crop,
                                    const LdmRegionResult *result, const char *name,
                                    GError **error);

/* A new layer holding `pixels` (8-bit RGB or RGBA in the colour space of `like`, or sRGB when
 * NULL) at offsets (x, y), inserted at `position` under `parent`. */
GimpLayer *ldm_add_layer (GimpImage *image, const LdmImage *pixels, int x, int y,
                          GimpLayer *parent, int position, GimpDrawable *like,
                          const char *name, GError **error);

/* Attaches `text` to the item as the persistent parasite "gimp-ldm-parameters". */
void       ldm_attach_parameters (GimpItem *item, const char *text);

#define LDM_PARASITE_NAME "gimp-ldm-parameters"
