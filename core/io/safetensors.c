/* safetensors.c: the .safetensors format (u64 LE header length N, N bytes of JSON, the data).
 *
 * The header is untrusted: it is checked completely before any tensor is added, including
 * that the tensors tile the data buffer exactly, as the format requires.
 */
#include "io/tensor_file.h"

#include <json-glib/json-glib.h>
#include <stdlib.h>
#include <string.h>

/* The reference implementation's cap; real headers are well under a megabyte. */
#define MAX_HEADER_BYTES (100u * 1000u * 1000u)

/* The format nests three deep ({name: {shape: [...]}}); refusing deeper JSON before parsing
 * keeps a hostile header from driving a recursive JSON parser deep into the C stack. */
#define MAX_JSON_DEPTH 8

typedef struct {
    const char *name;   /* borrowed from the JSON tree */
    LdmDType    dtype;
    int         ndim;
    int64_t     shape[LDM_MAX_DIMS];
    uint64_t    begin;  /* byte offsets in the data buffer */
    uint64_t    end;
} HeaderEntry;

/* The JSON parser keeps the last of duplicate keys silently; its object-member signal sees
 * every one, so duplicates are caught here. */
typedef struct {
    GHashTable *members_seen; /* "<object address>/<name>" */
    char       *duplicate;    /* the first duplicate key, owned */
} DuplicateCheck;

static void
on_object_member (JsonParser *parser, JsonObject *object, const char *name, gpointer user_data)
{
    (void) parser;
    DuplicateCheck *check = user_data;
    if (check->duplicate)
        return;
    char *key = g_strdup_printf ("%p/%s", (void *) object, name);
    if (!g_hash_table_add (check->members_seen, key))
        check->duplicate = g_strdup (name);
}

static gboolean
json_depth_within (const char *json, size_t length, int max_depth)
{
    int depth = 0;
    gboolean in_string = FALSE;
    for (size_t i = 0; i < length; i++) {
        char c = json[i];
        if (in_string) {
            if (c == '\\')
                i++; /* the escaped character cannot end the string */
            else if (c == '"')
                in_string = FALSE;
        } else if (c == '"') {
            in_string = TRUE;
        } else if (c == '{' || c == '[') {
            if (++depth > max_depth)
                return FALSE;
        } else if (c == '}' || c == ']') {
            depth--;
        }
    }
    return TRUE;
}

static gboolean
dtype_from_name (const char *name, LdmDType *dtype)
{
    for (int d = 0; d < LDM_DTYPE_COUNT; d++) {
        if (strcmp (name, ldm_dtype_name ((LdmDType) d)) == 0) {
            *dtype = (LdmDType) d;
            return TRUE;
        }
    }
    return FALSE;
}

/* A JSON integer >= 0 (json-glib keeps integers as gint64, other numbers as double). */
static gboolean
node_get_count (JsonNode *node, uint64_t *value)
{
    if (!JSON_NODE_HOLDS_VALUE (node) || json_node_get_value_type (node) != G_TYPE_INT64)
        return FALSE;
    gint64 v = json_node_get_int (node);
    if (v < 0)
        return FALSE;
    *value = (uint64_t) v;
    return TRUE;
}

static gboolean
node_is_string (JsonNode *node)
{
    return JSON_NODE_HOLDS_VALUE (node) && json_node_get_value_type (node) == G_TYPE_STRING;
}

static gboolean
check_metadata (LdmTensorFile *file, JsonNode *node, GError **error)
{
    if (!JSON_NODE_HOLDS_OBJECT (node)) {
        tensor_file_set_error (error, file, LDM_ERROR_FORMAT,
                               "safetensors header: __metadata__ is not an object");
        return FALSE;
    }
    JsonObjectIter iter;
    const char *key;
    JsonNode *value;
    json_object_iter_init_ordered (&iter, json_node_get_object (node));
    while (json_object_iter_next_ordered (&iter, &key, &value)) {
        if (!node_is_string (value)) {
            tensor_file_set_error (error, file, LDM_ERROR_FORMAT,
                                   "safetensors header: __metadata__ entry '%s' is not a string",
                                   key);
            return FALSE;
        }
    }
    return TRUE;
}

static gboolean
parse_entry (LdmTensorFile *file, const char *name, JsonNode *node, uint64_t buffer_size,
             HeaderEntry *entry, GError **error)
{
#define FAIL(...)                                                                              \
    do {                                                                                       \
        char *why_ = g_strdup_printf (__VA_ARGS__);                                            \
        tensor_file_set_error (error, file, LDM_ERROR_FORMAT,                                  \
                               "safetensors header: tensor '%s': %s", name, why_);             \
        g_free (why_);                                                                         \
        return FALSE;                                                                          \
    } while (0)

    if (!JSON_NODE_HOLDS_OBJECT (node))
        FAIL ("not an object");
    JsonObject *object = json_node_get_object (node);
    JsonNode *dtype_node = json_object_get_member (object, "dtype");
    JsonNode *shape_node = json_object_get_member (object, "shape");
    JsonNode *offsets_node = json_object_get_member (object, "data_offsets");
    if (!dtype_node || !shape_node || !offsets_node)
        FAIL ("needs dtype, shape and data_offsets");
    if (json_object_get_size (object) != 3)
        FAIL ("has members other than dtype, shape and data_offsets");

    entry->name = name;
    if (!node_is_string (dtype_node))
        FAIL ("dtype is not a string");
    if (!dtype_from_name (json_node_get_string (dtype_node), &entry->dtype))
        FAIL ("unknown dtype '%s'", json_node_get_string (dtype_node));

    if (!JSON_NODE_HOLDS_ARRAY (shape_node))
        FAIL ("shape is not an array");
    JsonArray *shape = json_node_get_array (shape_node);
    guint ndim = json_array_get_length (shape);
    if (ndim > LDM_MAX_DIMS)
        FAIL ("%u dimensions (at most %d are supported)", ndim, LDM_MAX_DIMS);
    entry->ndim = (int) ndim;
    uint64_t numel = 1;
    for (guint d = 0; d < ndim; d++) {
        uint64_t n;
        if (!node_get_count (json_array_get_element (shape, d), &n))
            FAIL ("shape[%u] is not a non-negative integer", d);
        entry->shape[d] = (int64_t) n;
        if (!checked_mul_u64 (numel, n, &numel))
            FAIL ("the shape's element count overflows");
    }
    uint64_t nbytes;
    if (!checked_mul_u64 (numel, ldm_dtype_size (entry->dtype), &nbytes))
        FAIL ("the shape's byte count overflows");

    if (!JSON_NODE_HOLDS_ARRAY (offsets_node)
        || json_array_get_length (json_node_get_array (offsets_node)) != 2)
        FAIL ("data_offsets is not an array [begin, end]");
    JsonArray *offsets = json_node_get_array (offsets_node);
    if (!node_get_count (json_array_get_element (offsets, 0), &entry->begin)
        || !node_get_count (json_array_get_element (offsets, 1), &entry->end))
        FAIL ("data_offsets are not non-negative integers");
    if (entry->begin > entry->end)
        FAIL ("data_offsets [%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT "] are reversed",
              entry->begin, entry->end);
    if (entry->end > buffer_size)
        FAIL ("data_offsets end %" G_GUINT64_FORMAT " is past the data (%" G_GUINT64_FORMAT
              " bytes)",
              entry->end, buffer_size);
    if (entry->end - entry->begin != nbytes)
        FAIL ("data_offsets span %" G_GUINT64_FORMAT " bytes, the shape and dtype need %"
              G_GUINT64_FORMAT,
              entry->end - entry->begin, nbytes);
    return TRUE;
#undef FAIL
}

static int
compare_by_offsets (const void *a, const void *b)
{
    const HeaderEntry *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return 0;
}

/* The format requires the tensors to tile the buffer: no gap, no overlap, nothing left over. */
static gboolean
check_tiling (LdmTensorFile *file, const HeaderEntry *entries, size_t count,
              uint64_t buffer_size, GError **error)
{
    HeaderEntry *sorted = g_memdup2 (entries, count * sizeof *entries);
    qsort (sorted, count, sizeof *sorted, compare_by_offsets);
    uint64_t covered = 0;
    gboolean ok = TRUE;
    for (size_t i = 0; i < count && ok; i++) {
        if (sorted[i].begin > covered) {
            tensor_file_set_error (error, file, LDM_ERROR_FORMAT,
                                   "safetensors header: a gap in the data before tensor '%s' "
                                   "(bytes %" G_GUINT64_FORMAT "..%" G_GUINT64_FORMAT
                                   " belong to no tensor)",
                                   sorted[i].name, covered, sorted[i].begin);
            ok = FALSE;
        } else if (sorted[i].begin < covered) {
            tensor_file_set_error (error, file, LDM_ERROR_FORMAT,
                                   "safetensors header: tensor '%s' overlaps the tensor before "
                                   "it (begins at %" G_GUINT64_FORMAT ", before %"
                                   G_GUINT64_FORMAT ")",
                                   sorted[i].name, sorted[i].begin, covered);
            ok = FALSE;
        } else {
            covered = sorted[i].end;
        }
    }
    if (ok && covered != buffer_size) {
        tensor_file_set_error (error, file, LDM_ERROR_FORMAT,
                               "safetensors header: the tensors cover %" G_GUINT64_FORMAT
                               " bytes of data but the file holds %" G_GUINT64_FORMAT,
                               covered, buffer_size);
        ok = FALSE;
    }
    g_free (sorted);
    return ok;
}

static gboolean
looks_like_legacy_torch (const LdmTensorFile *file)
{
    /* torch.save before 1.6 wrote a bare pickle: PROTO 2, then LONG1 of its magic number. */
    static const uint8_t magic[] = { 0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20 };
    return file->size >= sizeof magic && memcmp (file->bytes, magic, sizeof magic) == 0;
}

gboolean
safetensors_parse (LdmTensorFile *file, GError **error)
{
    if (looks_like_legacy_torch (file)) {
        tensor_file_set_error (error, file, LDM_ERROR_UNSUPPORTED,
                               "a legacy (PyTorch < 1.6) checkpoint; only zip checkpoints and "
                               "safetensors are supported (re-save it with a newer torch.save)");
        return FALSE;
    }
    if (file->size < 8) {
        tensor_file_set_error (error, file, LDM_ERROR_FORMAT,
                               "not a safetensors file: too short for a header");
        return FALSE;
    }
    uint64_t header_size = 0;
    for (int i = 7; i >= 0; i--)
        header_size = header_size << 8 | file->bytes[i];
    if (header_size < 2 || header_size > file->size - 8 || header_size > MAX_HEADER_BYTES) {
        tensor_file_set_error (error, file, LDM_ERROR_FORMAT,
                               "not a safetensors file: its header length %" G_GUINT64_FORMAT
                               " does not fit the file (%" G_GUINT64_FORMAT " bytes)",
                               header_size, file->size);
        return FALSE;
    }
    const char *json = (const char *) file->bytes + 8;
    uint64_t buffer_size = file->size - 8 - header_size;
    const uint8_t *buffer = file->bytes + 8 + header_size;

    if (json[0] != '{') {
        tensor_file_set_error (error, file, LDM_ERROR_FORMAT,
                               "not a safetensors file: its header is not a JSON object");
        return FALSE;
    }
    if (!g_utf8_validate_len (json, header_size, NULL)) {
        tensor_file_set_error (error, file, LDM_ERROR_FORMAT,
                               "safetensors header is not valid UTF-8 (or holds a NUL byte)");
        return FALSE;
    }
    if (!json_depth_within (json, header_size, MAX_JSON_DEPTH)) {
        tensor_file_set_error (error, file, LDM_ERROR_FORMAT,
                               "safetensors header: JSON nested deeper than %d levels",
                               MAX_JSON_DEPTH);
        return FALSE;
    }

    JsonParser *parser = json_parser_new_immutable ();
#if JSON_CHECK_VERSION(1, 10, 0)
    json_parser_set_strict (parser, TRUE);
#endif
    DuplicateCheck duplicates = { g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL),
                                  NULL };
    g_signal_connect (parser, "object-member", G_CALLBACK (on_object_member), &duplicates);

    GArray *entries = g_array_new (FALSE, TRUE, sizeof (HeaderEntry));
    gboolean ok = TRUE;
    GError *json_error = NULL;
    if (!json_parser_load_from_data (parser, json, (gssize) header_size, &json_error)) {
        tensor_file_set_error (error, file, LDM_ERROR_FORMAT, "safetensors header: %s",
                               json_error->message);
        g_error_free (json_error);
        ok = FALSE;
    }
    if (ok && duplicates.duplicate) {
        tensor_file_set_error (error, file, LDM_ERROR_FORMAT,
                               "safetensors header: key '%s' appears twice", duplicates.duplicate);
        ok = FALSE;
    }
    JsonNode *root = ok ? json_parser_get_root (parser) : NULL;
    if (ok && (!root || !JSON_NODE_HOLDS_OBJECT (root))) {
        tensor_file_set_error (error, file, LDM_ERROR_FORMAT,
                               "safetensors header is not a JSON object");
        ok = FALSE;
    }

    if (ok) {
        JsonObjectIter iter;
        const char *name;
        JsonNode *node;
        /* In header order, so that the table lists the tensors as the file does. */
        json_object_iter_init_ordered (&iter, json_node_get_object (root));
        while (ok && json_object_iter_next_ordered (&iter, &name, &node)) {
            if (strcmp (name, "__metadata__") == 0) {
                ok = check_metadata (file, node, error);
                continue;
            }
            if (name[0] == '\0' || !g_utf8_validate (name, -1, NULL)) {
                tensor_file_set_error (error, file, LDM_ERROR_FORMAT,
                                       "safetensors header: a tensor has an empty or invalid name");
                ok = FALSE;
                break;
            }
            HeaderEntry entry = { 0 };
            ok = parse_entry (file, name, node, buffer_size, &entry, error);
            if (ok)
                g_array_append_val (entries, entry);
        }
    }
    if (ok && entries->len == 0) {
        tensor_file_set_error (error, file, LDM_ERROR_FORMAT,
                               "the safetensors file holds no tensors");
        ok = FALSE;
    }
    if (ok)
        ok = check_tiling (file, (const HeaderEntry *) (void *) entries->data, entries->len,
                           buffer_size, error);
    for (guint i = 0; ok && i < entries->len; i++) {
        const HeaderEntry *entry = &g_array_index (entries, HeaderEntry, i);
        ok = tensor_file_add (file, entry->name, entry->dtype, entry->ndim, entry->shape, NULL,
                              buffer + entry->begin, entry->end - entry->begin, error);
    }

    g_array_unref (entries);
    g_hash_table_unref (duplicates.members_seen);
    g_free (duplicates.duplicate);
    g_object_unref (parser);
    return ok;
}
