/* find_file.h (private to core/): the built-in files (models, the tokenizer) looked for in a
 * list of folders, for every layer. */
#pragma once

#include <glib.h>

/* The first FOLDERS[i]/NAME (FOLDERS ends with NULL; empty names are skipped) that is a
 * regular file (g_free it), else NULL; each path tried and not found is added to LOOKED as
 * "\n  PATH", for the caller's message. */
static inline char *
ldm_find_file (const char *const *folders, const char *name, GString *looked)
{
    for (size_t i = 0; folders && folders[i]; i++) {
        if (!*folders[i])
            continue;
        char *path = g_build_filename (folders[i], name, NULL);
        if (g_file_test (path, G_FILE_TEST_IS_REGULAR))
            return path;
        g_string_append_printf (looked, "\n  %s", path);
        g_free (path);
    }
    return NULL;
}
