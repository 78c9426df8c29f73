/* fake_host.c: see fake_host.h. */
#include "fake_host.h"

#include <string.h>

void
fake_image_fill (uint8_t *rgba, int width, int height, LdmRect object)
{
    for (int y = 0; y < height; y++)
        for (int x = 0; x < width; x++) {
            uint8_t *p = rgba + ((size_t) y * width + x) * 4;
            gboolean in = x >= object.x && x < object.x + object.width && y >= object.y
                          && y < object.y + object.height;
            p[0] = in ? 250 : (uint8_t) (x * 2);
            p[1] = in ? 250 : (uint8_t) (y * 3);
            p[2] = in ? 240 : 90;
            p[3] = 255;
        }
}

static void
assert_within (int width, int height, LdmRect r)
{
    g_assert_true (r.x >= 0 && r.y >= 0 && r.x + r.width <= width && r.y + r.height <= height);
}

void
fake_image_read (const uint8_t *rgba, int width, int height, LdmRect r, LdmImage *out)
{
    assert_within (width, height, r);
    *out = (LdmImage) { r.width, r.height, 4, g_malloc ((size_t) r.width * r.height * 4) };
    for (int y = 0; y < r.height; y++)
        memcpy (out->pixels + (size_t) y * r.width * 4,
                rgba + ((size_t) (r.y + y) * width + r.x) * 4, (size_t) r.width * 4);
}

void
fake_image_write (uint8_t *rgba, int width, int height, LdmRect r, const uint8_t *src)
{
    assert_within (width, height, r);
    for (int y = 0; y < r.height; y++)
        memcpy (rgba + ((size_t) (r.y + y) * width + r.x) * 4,
                src + (size_t) y * r.width * 4, (size_t) r.width * 4);
}

static gboolean have_display;

gboolean
fake_ui_init (int *argc, char ***argv)
{
    g_test_init (argc, argv, NULL);
    have_display = gtk_init_check (argc, argv);
    return have_display;
}

char *
fake_model_path (void)
{
    const char *shared = g_getenv ("LDM_SHARED_DIR");
    return g_build_filename (shared ? shared : "../shared", "fixtures", "ldm-inpaint-tiny",
                             "model.ckpt", NULL);
}

/* FALSE (and the case skipped) without a display; with need_model, also without the fixture. */
static gboolean
fake_can_run (gboolean need_model)
{
    if (!have_display) {
        g_test_skip ("no display (run under xvfb-run)");
        return FALSE;
    }
    g_autofree char *path = fake_model_path ();
    if (need_model && !g_file_test (path, G_FILE_TEST_EXISTS)) {
        g_test_skip ("no ldm-inpaint-tiny fixture");
        return FALSE;
    }
    return TRUE;
}

typedef struct {
    GTestFunc test;
    gboolean  need_model;
} UiCase;

static void
run_ui_case (gconstpointer data)
{
    const UiCase *c = data;
    if (fake_can_run (c->need_model))
        c->test ();
}

void
fake_add_ui_test (const char *path, GTestFunc test, gboolean need_model)
{
    UiCase *c = g_new (UiCase, 1);
    *c = (UiCase) { test, need_model };
    g_test_add_data_func_full (path, c, run_ui_case, g_free);
}

GtkWidget *
fake_find (GtkWidget *root, const char *name)
{
    if (g_strcmp0 (gtk_widget_get_name (root), name) == 0)
        return root;
    if (!GTK_IS_CONTAINER (root))
        return NULL;
    GList *children = gtk_container_get_children (GTK_CONTAINER (root));
    GtkWidget *found = NULL;
    for (GList *l = children; l && !found; l = l->next)
        found = fake_find (l->data, name);
    g_list_free (children);
    return found;
}

void
fake_spin (int ms)
{
    gint64 end = g_get_monotonic_time () + (gint64) ms * 1000;
    do {
        while (g_main_context_iteration (NULL, FALSE))
            ;
        g_usleep (2000);
    } while (g_get_monotonic_time () < end);
}
