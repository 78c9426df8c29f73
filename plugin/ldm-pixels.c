/* ldm-pixels.c: see ldm-pixels.h. */
#include "ldm-pixels.h"
#include "ldm-intl.h"

#include <string.h>

static void
no_memory (GError **error)
{
    g_set_error_literal (error, LDM_ERROR, LDM_ERROR_NO_MEMORY,
                         _("Not enough memory for the image."));
}

/* An 8-bit format in the colour space of `like` (sRGB when NULL). */
static const Babl *
format_like (const char *name, GimpDrawable *like)
{
    return like ? babl_format_with_space (name, gimp_drawable_get_format (like))
                : babl_format (name);
}

/* 8-bit perceptual RGB, RGBA, grey or grey + alpha in the drawable's own space: its pixels
 * become R'G'B'A u8 by copying bytes. 0 for any other format. */
static int
plain_channels (const Babl *native)
{
    static const char *names[] = { "Y' u8", "Y'A u8", "R'G'B' u8", "R'G'B'A u8" };
    for (int i = 0; i < 4; i++)
        if (native == babl_format_with_space (names[i], native))
            return i + 1;
    return 0;
}

gboolean
ldm_read_rgba (GimpDrawable *drawable, LdmRect r, LdmImage *out, GError **error)
{
    size_t n = (size_t) r.width * r.height;
    *out = (LdmImage) { r.width, r.height, 4, g_try_malloc_n (n, 4) };
    if (!out->pixels) {
        no_memory (error);
        return FALSE;
    }
    GeglBuffer *buffer = gimp_drawable_get_buffer (drawable);
    const Babl *native = gimp_drawable_get_format (drawable);
    int c = plain_channels (native);
    if (c == 4 || c == 0) {
        /* GEGL converts (nothing to convert for R'G'B'A u8) */
        gegl_buffer_get (buffer, GEGL_RECTANGLE (r.x, r.y, r.width, r.height), 1.0,
                         c == 4 ? native : format_like ("R'G'B'A u8", drawable), out->pixels,
                         GEGL_AUTO_ROWSTRIDE, GEGL_ABYSS_NONE);
        g_object_unref (buffer);
        return TRUE;
    }
    /* Read as it is and add alpha (and grey's copies) here: GEGL's conversion of R'G'B' u8 to
     * R'G'B'A u8 cost 340 ms in a session's first read and 128 ms in one later read (babl
     * making its conversions; the native read took 0.3-4 ms), each time a brush region's
     * crop. In place, from the back, so no second buffer: the native pixels are the smaller. */
    gegl_buffer_get (buffer, GEGL_RECTANGLE (r.x, r.y, r.width, r.height), 1.0, native,
                     out->pixels, GEGL_AUTO_ROWSTRIDE, GEGL_ABYSS_NONE);
    g_object_unref (buffer);
    uint8_t *px = out->pixels;
    for (size_t i = n; i-- > 0;) {
        const uint8_t *s = px + i * c;
        uint8_t v0 = s[0], v1 = c > 1 ? s[1] : 255, v2 = c > 2 ? s[2] : 0;
        uint8_t *d = px + i * 4;
        if (c <= 2) /* grey (+ alpha) */
            d[0] = d[1] = d[2] = v0, d[3] = v1;
        else /* RGB */
            d[0] = v0, d[1] = v1, d[2] = v2, d[3] = 255;
    }
    return TRUE;
}

float *
ldm_read_selection (GimpImage *image, LdmRect r, GError **error)
{
    float *mask = g_try_malloc_n ((size_t) r.width * r.height, sizeof (float));
    if (!mask) {
        no_memory (error);
        return NULL;
    }
    GeglBuffer *buffer = gimp_drawable_get_buffer (GIMP_DRAWABLE (gimp_image_get_selection (image)));
    gegl_buffer_get (buffer, GEGL_RECTANGLE (r.x, r.y, r.width, r.height), 1.0,
                     babl_format ("Y float"), mask, GEGL_AUTO_ROWSTRIDE, GEGL_ABYSS_NONE);
    g_object_unref (buffer);
    return mask;
}

void
ldm_write_rgba_live (GimpDrawable *drawable, LdmRect r, const uint8_t *rgba, GimpDrawable *like)
{
    /* straight into the drawable's buffer: no shadow buffer, no merge, so no undo step */
    GeglBuffer *buffer = gimp_drawable_get_buffer (drawable);
    gegl_buffer_set (buffer, GEGL_RECTANGLE (r.x, r.y, r.width, r.height), 0,
                     format_like ("R'G'B'A u8", like), rgba, GEGL_AUTO_ROWSTRIDE);
    g_object_unref (buffer);
    gimp_drawable_update (drawable, r.x, r.y, r.width, r.height);
    gimp_displays_flush ();
}

/* Where to insert a layer so that it lands right above `drawable`. */
static void
position_above (GimpImage *image, GimpDrawable *drawable, GimpLayer **parent, int *position)
{
    GimpItem *p = gimp_item_get_parent (GIMP_ITEM (drawable));
    *parent = p && gimp_item_is_layer (p) ? GIMP_LAYER (p) : NULL;
    *position = gimp_image_get_item_position (image, GIMP_ITEM (drawable));
}

GimpLayer *
ldm_add_inpainted_layer (GimpImage *image, GimpDrawable *drawable, LdmRect crop,
                         const LdmRegionResult *result, const char *name, GError **error)
{
    int w = crop.width, h = crop.height;
    GimpLayer *layer = gimp_layer_new (image, name, w, h, gimp_drawable_type_with_alpha (drawable),
                                       100.0, GIMP_LAYER_MODE_NORMAL);
    if (!layer) {
        g_set_error_literal (error, LDM_ERROR, LDM_ERROR_NO_MEMORY,
                             _("GIMP could not create the new layer."));
        return NULL;
    }
    GimpLayer *parent;
    int position;
    position_above (image, drawable, &parent, &position);
    if (!gimp_image_insert_layer (image, layer, parent, position)) {
        gimp_item_delete (GIMP_ITEM (layer)); /* never attached: ours to delete */
        g_set_error_literal (error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                             _("GIMP could not add the new layer to the image."));
        return NULL;
    }
    gimp_layer_set_offsets (layer, crop.x, crop.y);

    /* Generated pixels where the fill is set, transparent (all bytes 0, in any format with
     * alpha) elsewhere: wherever the model did not paint, the layer shows nothing, so the
     * visible image stays exactly as it was there whatever the layer mask, the drawable's
     * mode or opacity. */
    size_t n = (size_t) w * h;
    const Babl *native = gimp_drawable_get_format (GIMP_DRAWABLE (layer));
    int bpp = babl_format_get_bytes_per_pixel (native);
    g_autofree uint8_t *pixels = g_try_malloc0_n (n, bpp);
    g_autofree uint8_t *generated = g_try_malloc_n (n, bpp);
    if (!pixels || !generated) {
        gimp_image_remove_layer (image, layer);
        no_memory (error);
        return NULL;
    }
    const Babl *rgba = format_like (result->image.channels == 4 ? "R'G'B'A u8" : "R'G'B' u8",
                                    drawable);
    babl_process (babl_fish (rgba, native), result->image.pixels, generated, (long) n);
    for (size_t i = 0; i < n; i++)
        if (result->fill[i])
            memcpy (pixels + i * bpp, generated + i * bpp, bpp);
    GeglRectangle all = { 0, 0, w, h };
    GeglBuffer *buffer = gimp_drawable_get_buffer (GIMP_DRAWABLE (layer));
    gegl_buffer_set (buffer, &all, 0, native, pixels, GEGL_AUTO_ROWSTRIDE);
    g_object_unref (buffer);

    GimpLayerMask *mask = gimp_layer_create_mask (layer, GIMP_ADD_MASK_WHITE);
    if (!mask || !gimp_layer_add_mask (layer, mask)) {
        gimp_image_remove_layer (image, layer);
        g_set_error_literal (error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                             _("GIMP could not add the layer mask."));
        return NULL;
    }
    GeglBuffer *mask_buffer = gimp_drawable_get_buffer (GIMP_DRAWABLE (mask));
    gegl_buffer_set (mask_buffer, &all, 0, babl_format ("Y float"), result->layer_mask,
                     GEGL_AUTO_ROWSTRIDE);
    g_object_unref (mask_buffer);
    gimp_drawable_update (GIMP_DRAWABLE (layer), 0, 0, w, h);
    gimp_drawable_update (GIMP_DRAWABLE (mask), 0, 0, w, h);
    return layer;
}

GimpLayer *
ldm_add_layer (GimpImage *image, const LdmImage *px, int x, int y, GimpLayer *parent,
               int position, GimpDrawable *like, const char *name, GError **error)
{
    gboolean alpha = px->channels == 4, gray = gimp_image_get_base_type (image) == GIMP_GRAY;
    GimpImageType type = gray ? (alpha ? GIMP_GRAYA_IMAGE : GIMP_GRAY_IMAGE)
                              : (alpha ? GIMP_RGBA_IMAGE : GIMP_RGB_IMAGE);
    GimpLayer *layer = gimp_layer_new (image, name, px->width, px->height, type, 100.0,
                                       GIMP_LAYER_MODE_NORMAL);
    if (!layer || !gimp_image_insert_layer (image, layer, parent, position)) {
        if (layer)
            gimp_item_delete (GIMP_ITEM (layer));
        g_set_error_literal (error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                             _("GIMP could not create the new layer."));
        return NULL;
    }
    gimp_layer_set_offsets (layer, x, y);
    GeglBuffer *buffer = gimp_drawable_get_buffer (GIMP_DRAWABLE (layer));
    gegl_buffer_set (buffer, GEGL_RECTANGLE (0, 0, px->width, px->height), 0,
                     format_like (alpha ? "R'G'B'A u8" : "R'G'B' u8", like), px->pixels,
                     GEGL_AUTO_ROWSTRIDE);
    g_object_unref (buffer);
    gimp_drawable_update (GIMP_DRAWABLE (layer), 0, 0, px->width, px->height);
    return layer;
}

void
ldm_attach_parameters (GimpItem *item, const char *text)
{
    /* with the terminating NUL, as GIMP's own text parasites */
    GimpParasite *parasite = gimp_parasite_new (LDM_PARASITE_NAME,
                                                GIMP_PARASITE_PERSISTENT | GIMP_PARASITE_UNDOABLE,
                                                (guint32) strlen (text) + 1, text);
    gimp_item_attach_parasite (item, parasite);
    gimp_parasite_free (parasite);
}
