/* ldm-preview-host.c: see ldm-preview-host.h. */
#include "ldm-preview-host.h"

#include "ldm-intl.h"
#include "ldm-pixels.h"

#include <string.h>

static gboolean
still_valid (LdmGimpPreview *p, GError **error)
{
    if (gimp_image_is_valid (p->image) && gimp_item_is_valid (GIMP_ITEM (p->drawable)))
        return TRUE;
    g_set_error_literal (error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                         _("The image or layer was closed."));
    return FALSE;
}

static gboolean
host_read_original (void *data, LdmRect rect, LdmImage *out, GError **error)
{
    LdmGimpPreview *p = data;
    return still_valid (p, error) && ldm_read_rgba (p->drawable, rect, out, error);
}

static gboolean
host_read_selection (void *data, LdmRect r, float *selection, GError **error)
{
    LdmGimpPreview *p = data;
    if (!still_valid (p, error))
        return FALSE;
    g_autofree float *mask = ldm_read_selection (p->image, (LdmRect) { r.x + p->ox, r.y + p->oy,
                                                                       r.width, r.height },
                                                 error);
    if (!mask)
        return FALSE;
    memcpy (selection, mask, (size_t) r.width * r.height * sizeof (float));
    return TRUE;
}

/* An edit of ours alone with the undo frozen; a clean image stays clean (GIMP marks it dirty
 * even when no undo step is kept). */
typedef struct {
    gboolean was_clean;
} Quiet;

static Quiet
quiet_begin (GimpImage *image)
{
    Quiet q = { !gimp_image_is_dirty (image) };
    gimp_image_undo_freeze (image);
    return q;
}

static void
quiet_end (GimpImage *image, Quiet q)
{
    gimp_image_undo_thaw (image);
    if (q.was_clean)
        gimp_image_clean_all (image);
}

static void
host_remove_preview (void *data)
{
    LdmGimpPreview *p = data;
    if (p->layer && gimp_image_is_valid (p->image) && gimp_item_is_valid (GIMP_ITEM (p->layer))) {
        Quiet q = quiet_begin (p->image);
        gimp_image_remove_layer (p->image, p->layer);
        /* the layers the user had selected, as they were */
        int n = 0;
        for (int i = 0; p->selected && p->selected[i]; i++)
            if (gimp_item_is_valid (GIMP_ITEM (p->selected[i])))
                p->selected[n++] = p->selected[i];
        if (p->selected) {
            p->selected[n] = NULL;
            if (n)
                gimp_image_set_selected_layers (p->image, (const GimpLayer **) p->selected);
        }
        quiet_end (p->image, q);
        gimp_displays_flush ();
    }
    p->layer = NULL;
    g_clear_pointer (&p->selected, g_free);
}

static gboolean
host_write_preview (void *data, LdmRect r, const uint8_t *rgba, GError **error)
{
    LdmGimpPreview *p = data;
    if (!still_valid (p, error))
        return FALSE;
    if (p->layer && (!gimp_item_is_valid (GIMP_ITEM (p->layer))
                     || memcmp (&r, &p->rect, sizeof r) != 0))
        host_remove_preview (p);
    if (!p->layer) {
        Quiet q = quiet_begin (p->image);
        GimpLayer *layer = gimp_layer_new (p->image, _("Inpainting preview"), r.width, r.height,
                                           gimp_drawable_type_with_alpha (p->drawable), 100.0,
                                           GIMP_LAYER_MODE_NORMAL);
        GimpItem *parent = gimp_item_get_parent (GIMP_ITEM (p->drawable));
        p->selected = gimp_image_get_selected_layers (p->image);
        gboolean inserted = layer && gimp_image_insert_layer (
            p->image, layer, parent && gimp_item_is_layer (parent) ? GIMP_LAYER (parent) : NULL,
            gimp_image_get_item_position (p->image, GIMP_ITEM (p->drawable)));
        if (inserted) {
            gimp_layer_set_offsets (layer, p->ox + r.x, p->oy + r.y);
            if (p->selected && p->selected[0]) /* the new layer took the selection */
                gimp_image_set_selected_layers (p->image, (const GimpLayer **) p->selected);
        } else if (layer) {
            gimp_item_delete (GIMP_ITEM (layer)); /* never attached: ours to delete */
        }
        quiet_end (p->image, q);
        if (!inserted) {
            g_clear_pointer (&p->selected, g_free);
            g_set_error_literal (error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                                 _("GIMP could not add the preview layer to the image."));
            return FALSE;
        }
        p->layer = layer;
        p->rect = r;
    }
    ldm_write_rgba_live (GIMP_DRAWABLE (p->layer), (LdmRect) { 0, 0, r.width, r.height }, rgba,
                         p->drawable);
    return TRUE;
}

const LdmPreviewHost ldm_gimp_preview_host = {
    host_read_original, host_read_selection, host_write_preview, host_remove_preview,
};

gboolean
ldm_gimp_preview_init (LdmGimpPreview *p, GimpImage *image, GimpDrawable *drawable, int x1,
                       int y1, int x2, int y2, LdmRect *box)
{
    *p = (LdmGimpPreview) { .image = image, .drawable = drawable };
    gimp_drawable_get_offsets (drawable, &p->ox, &p->oy);
    int w = gimp_drawable_get_width (drawable), h = gimp_drawable_get_height (drawable);
    /* as the filter's crop: within the layer and the canvas */
    int bx0 = MAX (MAX (x1, p->ox), 0), by0 = MAX (MAX (y1, p->oy), 0);
    int bx1 = MIN (MIN (x2, p->ox + w), gimp_image_get_width (image));
    int by1 = MIN (MIN (y2, p->oy + h), gimp_image_get_height (image));
    *box = (LdmRect) { bx0 - p->ox, by0 - p->oy, bx1 - bx0, by1 - by0 };
    return box->width > 0 && box->height > 0;
}

void
ldm_gimp_preview_clear (LdmGimpPreview *p)
{
    host_remove_preview (p);
}
