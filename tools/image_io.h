/* image_io.h: PNG and JPEG files to and from LdmImage, for the `ldm` program (the GIMP plug-in
 * gets its pixels from GEGL instead). */
#pragma once

#include "ldm.h"

/* Reads a PNG or JPEG (by content) as 8-bit grey, RGB or RGBA (16-bit PNGs are reduced,
 * palettes expanded, grey+alpha becomes RGBA). */
gboolean image_load (const char *path, LdmImage *image, GError **error);

/* Reads a mask: any image, reduced to one channel (grey, or the first channel). */
gboolean image_load_mask (const char *path, LdmImage *mask, GError **error);

/* Writes an 8-bit grey, RGB or RGBA PNG. */
gboolean image_save_png (const char *path, const LdmImage *image, GError **error);
