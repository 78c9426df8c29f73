/* ldm-preview-host.h: the Inpaint Selection dialog's preview layer in GIMP: ui/'s
 * LdmPreviewHost (ui/ldm-preview.h) on an image's layer and selection. Main thread. */
#pragma once

#include "ldm-preview.h" /* ui/ */

#include <libgimp/gimp.h>

typedef struct {
    GimpImage    *image;
    GimpDrawable *drawable;  /* the layer the filter runs on: the original pixels */
    int           ox, oy;    /* its offsets */
    GimpLayer    *layer;     /* the preview layer, or NULL */
    LdmRect       rect;      /* what it covers (the drawable's pixels) */
    GimpLayer   **selected;  /* the selected layers before the preview layer came */
} LdmGimpPreview;

/* The preview layer is inserted right above the drawable and removed with the image's undo
 * frozen: no undo step, and a clean image stays clean. */
extern const LdmPreviewHost ldm_gimp_preview_host;

/* Sets up P for DRAWABLE of IMAGE; *box := the selection's bounds (image coordinates X1..X2,
 * Y1..Y2) within the layer and the canvas, in the layer's pixels. FALSE when they do not
 * meet. */
gboolean ldm_gimp_preview_init  (LdmGimpPreview *p, GimpImage *image, GimpDrawable *drawable,
                                 int x1, int y1, int x2, int y2, LdmRect *box);
/* The preview layer removed (if any), P's memory freed. */
void     ldm_gimp_preview_clear (LdmGimpPreview *p);
