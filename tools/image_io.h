/* image_io.h: PNG and JPEG files to and from LdmImage, for the `ldm` program (the GIMP plug-in
 * gets its pixels from GEGL instead). */
#pragma once

#include "ldm.h"

/* A picture as its file holds it. `image` is 8-bit (what the engine reads): grey, RGB or RGBA
 * (palettes expanded, grey+alpha becomes RGBA, 16-bit samples rounded to 8). A 16-bit PNG
 * also keeps its own samples in `deep` (same layout, native byte order), so that the pixels
 * the engine keeps can be written back exactly. The EXIF orientation (JPEG APP1, PNG eXIf)
 * is applied: the picture is as viewers show it. Samples are the file's own: no gamma or
 * colour-space conversion. */
typedef struct {
    LdmImage  image;
    uint16_t *deep; /* NULL for 8-bit files */
} ImageFile;

void image_file_clear (ImageFile *file);

/* Reads a PNG or JPEG (by content). A header claiming more than LDM_IMAGE_MAX_SIDE pixels a
 * side is refused (LDM_ERROR_ARGUMENT, the engine's message) before any pixel is read. */
gboolean image_load (const char *path, ImageFile *file, GError **error);

/* Reads a mask: any image reduced to one channel, the luminance times the alpha where the
 * file has alpha (a white stroke on a transparent layer masks the stroke only). */
gboolean image_load_mask (const char *path, LdmImage *mask, GError **error);

typedef enum { IMAGE_PNG, IMAGE_JPEG } ImageType;

/* The type an output path asks for by its extension (.png, .jpg, .jpeg, any case; no
 * extension: PNG), and whether the file can be written there: its folder exists and is
 * writable, and the path is not a folder. Checked before any work starts. */
gboolean image_check_output (const char *path, ImageType *type, GError **error);

/* Writes an 8-bit grey, RGB or RGBA image (or, with `deep`, 16-bit PNG samples of the same
 * layout) as `type`. A regular file is replaced only once the new one is complete: the image
 * goes to a temporary file beside it that is renamed over it, so a failed write leaves the
 * old file as it was. A device or pipe (/dev/stdout) is written in place. */
gboolean image_save (const char *path, ImageType type, const LdmImage *image,
                     const uint16_t *deep, GError **error);
