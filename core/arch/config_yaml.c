/* config_yaml.c: reading a CompVis config.yaml (the `model:` section) into an LdmModelConfig;
 * the only user of libyaml. Every key is range-checked here and the whole config by
 * model_config_check; the error names the file and the offending CompVis key. */
#include "arch/config_limits.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

/* A config is a few kilobytes; the limits keep hostile files cheap. */
#define CONFIG_MAX_BYTES (1 << 20)
#define CFG_MAX_DEPTH    64
#define CFG_MAX_NODES    100000

typedef enum { CFG_SCALAR, CFG_LIST, CFG_MAP, CFG_ALIAS } CfgNodeType;

typedef struct CfgNode CfgNode;
struct CfgNode {
    CfgNodeType type;
    char       *text;  /* CFG_SCALAR */
    bool        plain; /* unquoted and untagged: may be a number, a bool or null */
    GPtrArray  *items; /* CFG_LIST: values; CFG_MAP: key, value, key, value, ... */
    size_t      line;  /* 1-based */
};

static void
cfg_node_free (CfgNode *node)
{
    if (!node)
        return;
    if (node->items) {
        for (guint i = 0; i < node->items->len; i++)
            cfg_node_free (g_ptr_array_index (node->items, i));
        g_ptr_array_unref (node->items);
    }
    g_free (node->text);
    g_free (node);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (CfgNode, cfg_node_free)

typedef struct {
    yaml_parser_t parser;
    const char   *origin;
    size_t        n_nodes;
} CfgParser;

static gboolean
cfg_next_event (CfgParser *p, yaml_event_t *event, GError **error)
{
    if (yaml_parser_parse (&p->parser, event))
        return TRUE;
    const char *context = p->parser.context;
    g_set_error (error, LDM_ERROR, LDM_ERROR_FORMAT,
                 "%s: not valid YAML: %s at line %zu, column %zu%s%s", p->origin,
                 p->parser.problem ? p->parser.problem : "syntax error",
                 p->parser.problem_mark.line + 1, p->parser.problem_mark.column + 1,
                 context ? ", " : "", context ? context : "");
    return FALSE;
}

/* Builds the node that `event` starts; consumes (deletes) the event. */
static CfgNode *
cfg_parse_node (CfgParser *p, yaml_event_t *event, int depth, GError **error)
{
    CfgNode *node = g_new0 (CfgNode, 1);
    node->line = event->start_mark.line + 1;
    if (++p->n_nodes > CFG_MAX_NODES) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_FORMAT,
                     "%s: more than %d YAML nodes: not a model config", p->origin,
                     CFG_MAX_NODES);
        yaml_event_delete (event);
        cfg_node_free (node);
        return NULL;
    }

    switch (event->type) {
    case YAML_SCALAR_EVENT:
        node->type = CFG_SCALAR;
        node->text = g_strndup ((const char *) event->data.scalar.value,
                                event->data.scalar.length);
        node->plain = event->data.scalar.plain_implicit;
        yaml_event_delete (event);
        return node;
    case YAML_ALIAS_EVENT:
        /* Kept as a marker, never expanded (no exponential "billion laughs"). */
        node->type = CFG_ALIAS;
        yaml_event_delete (event);
        return node;
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT:
        break;
    default:
        g_set_error (error, LDM_ERROR, LDM_ERROR_FORMAT,
                     "%s: unexpected YAML structure at line %zu", p->origin, node->line);
        yaml_event_delete (event);
        cfg_node_free (node);
        return NULL;
    }

    node->type = event->type == YAML_MAPPING_START_EVENT ? CFG_MAP : CFG_LIST;
    node->items = g_ptr_array_new ();
    yaml_event_delete (event);
    if (depth >= CFG_MAX_DEPTH) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_FORMAT,
                     "%s: YAML nested deeper than %d levels at line %zu", p->origin,
                     CFG_MAX_DEPTH, node->line);
        cfg_node_free (node);
        return NULL;
    }
    for (;;) {
        yaml_event_t child;
        if (!cfg_next_event (p, &child, error)) {
            cfg_node_free (node);
            return NULL;
        }
        if (child.type == YAML_SEQUENCE_END_EVENT || child.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete (&child);
            return node;
        }
        CfgNode *item = cfg_parse_node (p, &child, depth + 1, error);
        if (!item) {
            cfg_node_free (node);
            return NULL;
        }
        g_ptr_array_add (node->items, item);
    }
}

/* The first document's root node; NULL with *error unset for an empty stream. Later
 * documents are not read. */
static CfgNode *
cfg_parse (const char *data, size_t length, const char *origin, GError **error)
{
    CfgParser p = { .origin = origin };
    if (!yaml_parser_initialize (&p.parser)) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_NO_MEMORY, "%s: out of memory", origin);
        return NULL;
    }
    yaml_parser_set_input_string (&p.parser, (const unsigned char *) data, length);
    CfgNode *root = NULL;
    for (;;) {
        yaml_event_t event;
        if (!cfg_next_event (&p, &event, error))
            break;
        if (event.type == YAML_STREAM_START_EVENT || event.type == YAML_DOCUMENT_START_EVENT) {
            yaml_event_delete (&event);
            continue;
        }
        if (event.type == YAML_STREAM_END_EVENT || event.type == YAML_DOCUMENT_END_EVENT) {
            yaml_event_delete (&event);
            break;
        }
        root = cfg_parse_node (&p, &event, 0, error);
        break;
    }
    yaml_parser_delete (&p.parser);
    return root;
}

static bool
cfg_is_null (const CfgNode *node)
{
    if (node->type != CFG_SCALAR || !node->plain)
        return false;
    const char *t = node->text;
    return !*t || !strcmp (t, "~") || !strcmp (t, "null") || !strcmp (t, "Null")
           || !strcmp (t, "NULL");
}

/* The value of `key` in a mapping (the last one, as PyYAML keeps); NULL when absent. */
static const CfgNode *
cfg_map_get (const CfgNode *map, const char *key)
{
    if (!map || map->type != CFG_MAP)
        return NULL;
    const CfgNode *value = NULL;
    for (guint i = 0; i + 1 < map->items->len; i += 2) {
        const CfgNode *k = g_ptr_array_index (map->items, i);
        if (k->type == CFG_SCALAR && !strcmp (k->text, key))
            value = g_ptr_array_index (map->items, i + 1);
    }
    return value;
}

/* YAML 1.1 scalars, as PyYAML (and so OmegaConf) resolves them. */
static bool
cfg_parse_bool (const CfgNode *node, bool *out)
{
    static const char *const yes[] = { "true", "True", "TRUE", "yes", "Yes", "YES", "on", "On",
                                       "ON" };
    static const char *const no[] = { "false", "False", "FALSE", "no", "No", "NO", "off", "Off",
                                      "OFF" };
    if (node->type != CFG_SCALAR || !node->plain)
        return false;
    for (size_t i = 0; i < G_N_ELEMENTS (yes); i++) {
        if (!strcmp (node->text, yes[i])) {
            *out = true;
            return true;
        }
        if (!strcmp (node->text, no[i])) {
            *out = false;
            return true;
        }
    }
    return false;
}

static bool
cfg_parse_int (const CfgNode *node, int64_t *out)
{
    if (node->type != CFG_SCALAR || !node->plain)
        return false;
    const char *s = node->text;
    bool negative = *s == '-';
    if (*s == '-' || *s == '+')
        s++;
    if (!g_ascii_isdigit (*s))
        return false;
    int64_t value = 0;
    for (; *s; s++) {
        if (!g_ascii_isdigit (*s))
            return false;
        int digit = *s - '0';
        if (value > (INT64_MAX - digit) / 10)
            return false;
        value = value * 10 + digit;
    }
    *out = negative ? -value : value;
    return true;
}

static bool
cfg_parse_double (const CfgNode *node, double *out)
{
    if (node->type != CFG_SCALAR || !node->plain || !*node->text
        || g_ascii_isspace (node->text[0]))
        return false;
    char *end = NULL;
    double value = g_ascii_strtod (node->text, &end);
    if (!end || *end || !isfinite (value))
        return false;
    *out = value;
    return true;
}

/* ======================================================================= reading keys */

/* A mapping of the config and its dotted path, for messages. An absent section reads as
 * empty. */
typedef struct {
    const char    *origin;
    const CfgNode *map;
    char           path[128];
} Section;

static const char *
node_kind_name (const CfgNode *node)
{
    switch (node->type) {
    case CFG_LIST: return "a list";
    case CFG_MAP: return "a mapping";
    case CFG_ALIAS: return "a YAML alias (not supported)";
    default: return "a scalar";
    }
}

static gboolean key_error (GError **error, LdmError code, const Section *s, const char *key,
                           const CfgNode *node, const char *format, ...) G_GNUC_PRINTF (6, 7);

static gboolean
key_error (GError **error, LdmError code, const Section *s, const char *key,
           const CfgNode *node, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    g_autofree char *message = g_strdup_vprintf (format, args);
    va_end (args);
    g_autofree char *line = node ? g_strdup_printf (" (line %zu)", node->line) : g_strdup ("");
    g_set_error (error, LDM_ERROR, code, "%s: %s.%s%s: %s", s->origin, s->path, key, line,
                 message);
    return FALSE;
}

/* A found value with its text quoted for a message. */
static char *
describe_value (const CfgNode *node)
{
    if (node->type != CFG_SCALAR)
        return g_strdup (node_kind_name (node));
    g_autofree char *shown = g_utf8_make_valid (node->text, MIN (strlen (node->text), 40));
    return g_strdup_printf ("%s'%s'%s", node->plain ? "" : "the string ", shown,
                            strlen (node->text) > 40 ? "..." : "");
}

/* The value of `key`, or NULL when it is absent or null (the default stays). */
static const CfgNode *
section_get (const Section *s, const char *key)
{
    const CfgNode *node = cfg_map_get (s->map, key);
    return node && !cfg_is_null (node) ? node : NULL;
}

static gboolean
require (const Section *s, const char *key, GError **error)
{
    if (section_get (s, key))
        return TRUE;
    return key_error (error, LDM_ERROR_FORMAT, s, key, NULL, "missing (the config must give it)");
}

static gboolean
check_int_value (const Section *s, const char *key, const CfgNode *node, int64_t min,
                 int64_t max, int *out, GError **error)
{
    int64_t value;
    if (!cfg_parse_int (node, &value)) {
        g_autofree char *found = describe_value (node);
        return key_error (error, LDM_ERROR_FORMAT, s, key, node,
                          "expected an integer, found %s", found);
    }
    if (value < min || value > max)
        return key_error (error, LDM_ERROR_FORMAT, s, key, node,
                          "%" G_GINT64_FORMAT " is out of range (%" G_GINT64_FORMAT
                          " .. %" G_GINT64_FORMAT ")",
                          value, min, max);
    *out = (int) value;
    return TRUE;
}

static gboolean
get_int (const Section *s, const char *key, int64_t min, int64_t max, int *out, GError **error)
{
    const CfgNode *node = section_get (s, key);
    return !node || check_int_value (s, key, node, min, max, out, error);
}

/* `min_excl` < value <= max */
static gboolean
get_double (const Section *s, const char *key, double min_excl, double max, double *out,
            GError **error)
{
    const CfgNode *node = section_get (s, key);
    if (!node)
        return TRUE;
    double value;
    if (!cfg_parse_double (node, &value)) {
        g_autofree char *found = describe_value (node);
        return key_error (error, LDM_ERROR_FORMAT, s, key, node, "expected a number, found %s",
                          found);
    }
    if (!(value > min_excl && value <= max))
        return key_error (error, LDM_ERROR_FORMAT, s, key, node,
                          "%g is out of range (above %g, at most %g)", value, min_excl, max);
    *out = value;
    return TRUE;
}

static gboolean
get_bool (const Section *s, const char *key, bool *out, GError **error)
{
    const CfgNode *node = section_get (s, key);
    if (!node || cfg_parse_bool (node, out))
        return TRUE;
    g_autofree char *found = describe_value (node);
    return key_error (error, LDM_ERROR_FORMAT, s, key, node,
                      "expected true or false, found %s", found);
}

/* *out = the scalar's text (quoted or not), or NULL when absent. */
static gboolean
get_string (const Section *s, const char *key, const char **out, GError **error)
{
    const CfgNode *node = section_get (s, key);
    *out = NULL;
    if (!node)
        return TRUE;
    if (node->type != CFG_SCALAR)
        return key_error (error, LDM_ERROR_FORMAT, s, key, node, "expected a string, found %s",
                          node_kind_name (node));
    *out = node->text;
    return TRUE;
}

static gboolean
get_list (const Section *s, const char *key, const CfgNode **out, GError **error)
{
    const CfgNode *node = section_get (s, key);
    *out = NULL;
    if (!node)
        return TRUE;
    if (node->type != CFG_LIST)
        return key_error (error, LDM_ERROR_FORMAT, s, key, node, "expected a list, found %s",
                          node_kind_name (node));
    if (node->items->len > LDM_MAX_LEVELS)
        return key_error (error, LDM_ERROR_UNSUPPORTED, s, key, node,
                          "a list of %u entries (at most %d are supported)", node->items->len,
                          LDM_MAX_LEVELS);
    *out = node;
    return TRUE;
}

static gboolean
get_int_list (const Section *s, const char *key, int min, int max, int *values, int *count,
              GError **error)
{
    const CfgNode *list;
    if (!get_list (s, key, &list, error))
        return FALSE;
    if (!list)
        return TRUE;
    for (guint i = 0; i < list->items->len; i++) {
        const CfgNode *item = g_ptr_array_index (list->items, i);
        int64_t value;
        if (!cfg_parse_int (item, &value)) {
            g_autofree char *found = describe_value (item);
            return key_error (error, LDM_ERROR_FORMAT, s, key, item,
                              "entry %u: expected an integer, found %s", i, found);
        }
        if (value < min || value > max)
            return key_error (error, LDM_ERROR_FORMAT, s, key, item,
                              "entry %u: %" G_GINT64_FORMAT " is out of range (%d .. %d)", i,
                              value, min, max);
        values[i] = (int) value;
    }
    *count = (int) list->items->len;
    return TRUE;
}

static gboolean
get_bool_list (const Section *s, const char *key, bool *values, int *count, GError **error)
{
    const CfgNode *list;
    if (!get_list (s, key, &list, error))
        return FALSE;
    if (!list)
        return TRUE;
    for (guint i = 0; i < list->items->len; i++) {
        const CfgNode *item = g_ptr_array_index (list->items, i);
        if (!cfg_parse_bool (item, &values[i])) {
            g_autofree char *found = describe_value (item);
            return key_error (error, LDM_ERROR_FORMAT, s, key, item,
                              "entry %u: expected true or false, found %s", i, found);
        }
    }
    *count = (int) list->items->len;
    return TRUE;
}

/* A child mapping; absent or null gives an empty section. */
static gboolean
get_section (const Section *s, const char *key, Section *child, GError **error)
{
    const CfgNode *node = section_get (s, key);
    child->origin = s->origin;
    child->map = NULL;
    g_snprintf (child->path, sizeof child->path, "%s.%s", s->path, key);
    if (!node)
        return TRUE;
    if (node->type != CFG_MAP)
        return key_error (error, LDM_ERROR_FORMAT, s, key, node, "expected a mapping, found %s",
                          node_kind_name (node));
    child->map = node;
    return TRUE;
}

/* A `true` that the engine cannot honour is an error rather than a silent difference. */
static gboolean
reject_true (const Section *s, const char *key, const char *why, GError **error)
{
    bool value = false;
    if (!get_bool (s, key, &value, error))
        return FALSE;
    if (value)
        return key_error (error, LDM_ERROR_UNSUPPORTED, s, key, section_get (s, key),
                          "true is not supported (%s)", why);
    return TRUE;
}

static gboolean
reject_present (const Section *s, const char *key, const char *why, GError **error)
{
    const CfgNode *node = section_get (s, key);
    if (node)
        return key_error (error, LDM_ERROR_UNSUPPORTED, s, key, node, "not supported (%s)", why);
    return TRUE;
}

/* ======================================================================= sub-configs */

static gboolean
read_unet (const Section *s, LdmUnetConfig *u, GError **error)
{
    if (!require (s, "in_channels", error) || !require (s, "out_channels", error)
        || !require (s, "model_channels", error) || !require (s, "num_res_blocks", error)
        || !require (s, "attention_resolutions", error))
        return FALSE;
    if (!get_int (s, "in_channels", 1, MAX_IO_CHANNELS, &u->in_channels, error)
        || !get_int (s, "out_channels", 1, MAX_IO_CHANNELS, &u->out_channels, error)
        || !get_int (s, "model_channels", 1, MAX_CHANNELS, &u->model_channels, error)
        || !get_int_list (s, "channel_mult", 1, MAX_MULT, u->channel_mult, &u->n_levels, error)
        || !get_int_list (s, "attention_resolutions", 1, 1 << 20, u->attention_resolutions,
                          &u->n_attention_resolutions, error)
        || !get_int (s, "num_heads", -1, MAX_HEADS, &u->num_heads, error)
        || !get_int (s, "num_head_channels", -1, MAX_CHANNELS, &u->num_head_channels, error)
        || !get_int (s, "num_heads_upsample", -1, MAX_HEADS, &u->num_heads_upsample, error)
        || !get_bool (s, "resblock_updown", &u->resblock_updown, error)
        || !get_bool (s, "conv_resample", &u->conv_resample, error)
        || !get_bool (s, "use_scale_shift_norm", &u->use_scale_shift_norm, error)
        || !get_bool (s, "use_spatial_transformer", &u->use_spatial_transformer, error)
        || !get_int (s, "transformer_depth", 1, MAX_DEPTH, &u->transformer_depth, error)
        || !get_int (s, "context_dim", 1, MAX_CONTEXT_DIM, &u->context_dim, error)
        || !get_bool (s, "legacy", &u->legacy, error)
        || !get_bool (s, "use_linear_in_transformer", &u->use_linear_in_transformer, error)
        || !get_bool (s, "disable_middle_self_attn", &u->disable_middle_self_attn, error))
        return FALSE;

    /* num_res_blocks: an int, or a per-level list (supported when all levels agree). */
    const CfgNode *nrb = section_get (s, "num_res_blocks");
    if (nrb->type == CFG_LIST) {
        int values[LDM_MAX_LEVELS], n = 0;
        if (!get_int_list (s, "num_res_blocks", 1, MAX_RES_BLOCKS, values, &n, error))
            return FALSE;
        for (int i = 1; i < n; i++)
            if (values[i] != values[0])
                return key_error (error, LDM_ERROR_UNSUPPORTED, s, "num_res_blocks", nrb,
                                  "different counts per level are not supported");
        if (n != u->n_levels)
            return key_error (error, LDM_ERROR_FORMAT, s, "num_res_blocks", nrb,
                              "%d entries but channel_mult has %d", n, u->n_levels);
        u->num_res_blocks = values[0];
    } else if (!check_int_value (s, "num_res_blocks", nrb, 1, MAX_RES_BLOCKS,
                                 &u->num_res_blocks, error)) {
        return FALSE;
    }

    /* num_classes: an int (nn.Embedding), or "continuous"/"sequential" (other layers). */
    const CfgNode *classes = section_get (s, "num_classes");
    int64_t n_classes;
    if (classes && classes->type == CFG_SCALAR && !cfg_parse_int (classes, &n_classes))
        return key_error (error, LDM_ERROR_UNSUPPORTED, s, "num_classes", classes,
                          "'%s' label embeddings are not supported", classes->text);
    if (classes && !check_int_value (s, "num_classes", classes, 1, MAX_CLASSES, &u->num_classes,
                                     error))
        return FALSE;

    int n_disable = 0;
    if (!get_bool_list (s, "disable_self_attentions", u->disable_self_attentions, &n_disable,
                        error))
        return FALSE;
    if (section_get (s, "disable_self_attentions")) {
        if (n_disable != u->n_levels)
            return key_error (error, LDM_ERROR_FORMAT, s, "disable_self_attentions",
                              section_get (s, "disable_self_attentions"),
                              "%d entries but channel_mult has %d", n_disable, u->n_levels);
        u->has_disable_self_attentions = true;
    }

    int dims = 2;
    if (!get_int (s, "dims", 1, 3, &dims, error))
        return FALSE;
    if (dims != 2)
        return key_error (error, LDM_ERROR_UNSUPPORTED, s, "dims", section_get (s, "dims"),
                          "only 2-D U-Nets are supported");
    return reject_true (s, "use_new_attention_order", "QKVAttention order", error)
           && reject_present (s, "n_embed", "codebook-id prediction", error)
           && reject_present (s, "num_attention_blocks", "per-level attention counts", error);
}

static gboolean
read_first_stage (const Section *params, LdmAutoencoderKind kind, LdmAutoencoderConfig *ae,
                  GError **error)
{
    ae->kind = kind;
    if (!require (params, "embed_dim", error)
        || !get_int (params, "embed_dim", 1, MAX_IO_CHANNELS, &ae->embed_dim, error))
        return FALSE;
    if (kind == LDM_AUTOENCODER_VQ
        && (!require (params, "n_embed", error)
            || !get_int (params, "n_embed", 1, MAX_CODES, &ae->n_embed, error)))
        return FALSE;

    Section dd;
    if (!get_section (params, "ddconfig", &dd, error) || !require (params, "ddconfig", error))
        return FALSE;
    static const char *const required[] = { "ch", "out_ch", "num_res_blocks", "attn_resolutions",
                                            "in_channels", "resolution", "z_channels" };
    for (size_t i = 0; i < G_N_ELEMENTS (required); i++)
        if (!require (&dd, required[i], error))
            return FALSE;
    if (!get_bool (&dd, "double_z", &ae->double_z, error)
        || !get_int (&dd, "z_channels", 1, MAX_IO_CHANNELS, &ae->z_channels, error)
        || !get_int (&dd, "resolution", 1, MAX_RESOLUTION, &ae->resolution, error)
        || !get_int (&dd, "in_channels", 1, MAX_IO_CHANNELS, &ae->in_channels, error)
        || !get_int (&dd, "out_ch", 1, MAX_IO_CHANNELS, &ae->out_ch, error)
        || !get_int (&dd, "ch", 1, MAX_CHANNELS, &ae->ch, error)
        || !get_int_list (&dd, "ch_mult", 1, MAX_MULT, ae->ch_mult, &ae->n_levels, error)
        || !get_int (&dd, "num_res_blocks", 1, MAX_RES_BLOCKS, &ae->num_res_blocks, error)
        || !get_int_list (&dd, "attn_resolutions", 1, MAX_RESOLUTION, ae->attn_resolutions,
                          &ae->n_attn_resolutions, error)
        || !reject_true (&dd, "use_linear_attn", "linear attention", error)
        || !reject_true (&dd, "tanh_out", "tanh output", error)
        || !reject_true (&dd, "give_pre_end", "decoder without its output layers", error))
        return FALSE;

    bool resamp_with_conv = true;
    if (!get_bool (&dd, "resamp_with_conv", &resamp_with_conv, error))
        return FALSE;
    if (!resamp_with_conv)
        return key_error (error, LDM_ERROR_UNSUPPORTED, &dd, "resamp_with_conv",
                          section_get (&dd, "resamp_with_conv"),
                          "false is not supported (average-pool resampling)");

    const char *attn_type = NULL;
    if (!get_string (&dd, "attn_type", &attn_type, error))
        return FALSE;
    if (attn_type) {
        /* vanilla-xformers is the same attention computed another way. */
        if (!strcmp (attn_type, "vanilla") || !strcmp (attn_type, "vanilla-xformers"))
            ae->mid_attention = true;
        else if (!strcmp (attn_type, "none"))
            ae->mid_attention = false;
        else
            return key_error (error, LDM_ERROR_UNSUPPORTED, &dd, "attn_type",
                              section_get (&dd, "attn_type"),
                              "'%s' is not supported (vanilla or none)", attn_type);
    }
    return TRUE;
}

static gboolean
read_cond_stage (const Section *params, LdmModelConfig *config, GError **error)
{
    const CfgNode *node = section_get (params, "cond_stage_config");
    if (!node)
        return TRUE;
    if (node->type == CFG_SCALAR) {
        if (!strcmp (node->text, "__is_first_stage__")) {
            config->cond_stage = LDM_COND_STAGE_FIRST_STAGE;
        } else if (!strcmp (node->text, "__is_unconditional__")) {
            config->cond_stage = LDM_COND_STAGE_OTHER;
            config->conditioning = LDM_COND_NONE;
        } else {
            return key_error (error, LDM_ERROR_FORMAT, params, "cond_stage_config", node,
                              "expected __is_first_stage__, __is_unconditional__ or a mapping "
                              "with a target");
        }
        return TRUE;
    }
    Section cond;
    const char *target = NULL;
    if (!get_section (params, "cond_stage_config", &cond, error)
        || !get_string (&cond, "target", &target, error))
        return FALSE;
    if (!target)
        return key_error (error, LDM_ERROR_FORMAT, &cond, "target", NULL, "missing");
    const char *name = model_config_class_name (target);
    if (!strcmp (target, "torch.nn.Identity"))
        config->cond_stage = LDM_COND_STAGE_IDENTITY;
    else if (!strcmp (name, "FrozenCLIPEmbedder"))
        config->cond_stage = LDM_COND_STAGE_CLIP;
    else if (!strcmp (name, "FrozenOpenCLIPEmbedder"))
        config->cond_stage = LDM_COND_STAGE_OPENCLIP;
    else
        config->cond_stage = LDM_COND_STAGE_OTHER;
    return TRUE;
}

static gboolean
read_autoencoder_target (const char *target, LdmAutoencoderKind *kind)
{
    const char *name = model_config_class_name (target);
    if (!strcmp (name, "VQModel") || !strcmp (name, "VQModelInterface")) {
        *kind = LDM_AUTOENCODER_VQ;
        return TRUE;
    }
    if (!strcmp (name, "AutoencoderKL")) {
        *kind = LDM_AUTOENCODER_KL;
        return TRUE;
    }
    return FALSE;
}

static gboolean
read_diffusion (const Section *params, LdmModelConfig *config, GError **error)
{
    if (!get_double (params, "linear_start", 0.0, 1.0, &config->linear_start, error)
        || !get_double (params, "linear_end", 0.0, 1.0, &config->linear_end, error)
        || !get_int (params, "timesteps", 1, MAX_TIMESTEPS, &config->timesteps, error)
        || !get_double (params, "scale_factor", 0.0, 1e6, &config->scale_factor, error)
        || !get_bool (params, "scale_by_std", &config->scale_by_std, error)
        || !get_bool (params, "use_ema", &config->use_ema, error)
        || !get_int (params, "image_size", 1, MAX_RESOLUTION, &config->image_size, error)
        || !reject_present (params, "given_betas", "explicit betas", error))
        return FALSE;

    const char *schedule = NULL;
    if (!get_string (params, "beta_schedule", &schedule, error))
        return FALSE;
    if (schedule) {
        static const struct {
            const char     *name;
            LdmBetaSchedule value;
        } schedules[] = { { "linear", LDM_BETA_LINEAR }, { "cosine", LDM_BETA_COSINE },
                          { "sqrt_linear", LDM_BETA_SQRT_LINEAR }, { "sqrt", LDM_BETA_SQRT } };
        size_t i = 0;
        while (i < G_N_ELEMENTS (schedules) && strcmp (schedule, schedules[i].name))
            i++;
        if (i == G_N_ELEMENTS (schedules))
            return key_error (error, LDM_ERROR_FORMAT, params, "beta_schedule",
                              section_get (params, "beta_schedule"),
                              "unknown schedule '%s' (linear, cosine, sqrt_linear or sqrt)",
                              schedule);
        config->beta_schedule = schedules[i].value;
    }

    const char *parameterization = NULL;
    if (!get_string (params, "parameterization", &parameterization, error))
        return FALSE;
    if (parameterization) {
        if (!strcmp (parameterization, "eps") || !strcmp (parameterization, "v"))
            config->v_prediction = parameterization[0] == 'v';
        else
            return key_error (error, LDM_ERROR_UNSUPPORTED, params, "parameterization",
                              section_get (params, "parameterization"),
                              "'%s' is not supported (eps or v)", parameterization);
    }

    /* CompVis: conditioning_key wins; without it concat_mode (default true) picks concat,
     * else crossattn. */
    bool concat_mode = true;
    const char *key = NULL;
    if (!get_bool (params, "concat_mode", &concat_mode, error)
        || !get_string (params, "conditioning_key", &key, error))
        return FALSE;
    config->conditioning = concat_mode ? LDM_COND_CONCAT : LDM_COND_CROSSATTN;
    if (key) {
        static const struct {
            const char     *name;
            LdmConditioning value;
        } keys[] = { { "concat", LDM_COND_CONCAT },         { "hybrid", LDM_COND_HYBRID },
                     { "crossattn", LDM_COND_CROSSATTN },   { "hybrid-adm", LDM_COND_HYBRID_ADM },
                     { "adm", LDM_COND_OTHER },             { "crossattn-adm", LDM_COND_OTHER } };
        size_t i = 0;
        while (i < G_N_ELEMENTS (keys) && strcmp (key, keys[i].name))
            i++;
        if (i == G_N_ELEMENTS (keys))
            return key_error (error, LDM_ERROR_FORMAT, params, "conditioning_key",
                              section_get (params, "conditioning_key"),
                              "unknown conditioning '%s'", key);
        config->conditioning = keys[i].value;
    }

    Section unet_config, unet_params;
    const char *unet_target = NULL;
    /* Without a UNetModel or a VQ/KL first stage the kind stays unknown: the caller decides. */
    if (!get_section (params, "unet_config", &unet_config, error)
        || !get_string (&unet_config, "target", &unet_target, error)
        || !get_section (&unet_config, "params", &unet_params, error))
        return FALSE;
    if (unet_target && !strcmp (model_config_class_name (unet_target), "UNetModel")) {
        if (!read_unet (&unet_params, &config->unet, error))
            return FALSE;
        config->has_unet = true;
    }

    Section first, first_params;
    const char *first_target = NULL;
    LdmAutoencoderKind kind;
    if (!get_section (params, "first_stage_config", &first, error)
        || !get_string (&first, "target", &first_target, error)
        || !get_section (&first, "params", &first_params, error))
        return FALSE;
    if (first_target && read_autoencoder_target (first_target, &kind)) {
        if (!read_first_stage (&first_params, kind, &config->first_stage, error))
            return FALSE;
        config->has_first_stage = true;
    }
    return read_cond_stage (params, config, error);
}

gboolean
model_config_read_yaml_data (const char *data, size_t length, const char *origin,
                             LdmModelConfig *config, GError **error)
{
    model_config_init_defaults (config);
    GError *parse_error = NULL;
    g_autoptr (CfgNode) root = cfg_parse (data, length, origin, &parse_error);
    if (parse_error) {
        g_propagate_error (error, parse_error);
        return FALSE;
    }

    const CfgNode *model_node = cfg_map_get (root, "model");
    if (!model_node || model_node->type != CFG_MAP) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_FORMAT,
                     "%s: no 'model' section: not a CompVis config (model: target: ... "
                     "params: ...)",
                     origin);
        return FALSE;
    }
    Section model = { .origin = origin, .map = model_node, .path = "model" }, params;
    const char *target = NULL;
    if (!get_string (&model, "target", &target, error))
        return FALSE;
    if (!target)
        return key_error (error, LDM_ERROR_FORMAT, &model, "target", NULL,
                          "missing (the model's class)");
    if (strlen (target) >= sizeof config->target)
        return key_error (error, LDM_ERROR_FORMAT, &model, "target",
                          section_get (&model, "target"), "longer than %zu characters",
                          sizeof config->target - 1);
    g_strlcpy (config->target, target, sizeof config->target);
    if (!get_section (&model, "params", &params, error))
        return FALSE;

    /* A first-stage config alone (vq-f4.yaml): read it, the kind stays unknown. */
    LdmAutoencoderKind kind;
    if (read_autoencoder_target (target, &kind)) {
        if (!read_first_stage (&params, kind, &config->first_stage, error))
            return FALSE;
        config->has_first_stage = true;
    } else if (!read_diffusion (&params, config, error)) {
        return FALSE;
    }
    config->kind = model_config_kind (config);
    g_snprintf (config->source, sizeof config->source, "config file %s", origin);
    return model_config_check (config, origin, error);
}

gboolean
model_config_read_yaml (const char *path, LdmModelConfig *config, GError **error)
{
    model_config_init_defaults (config);
    /* O_NONBLOCK: a FIFO named config.yaml must not hang the load (refused below). */
    int fd = open (path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        int e = errno;
        g_set_error (error, LDM_ERROR, LDM_ERROR_IO, "%s: cannot open: %s", path, g_strerror (e));
        return FALSE;
    }
    struct stat st;
    if (fstat (fd, &st) != 0 || !S_ISREG (st.st_mode)) {
        close (fd);
        g_set_error (error, LDM_ERROR, LDM_ERROR_IO, "%s: not a regular file", path);
        return FALSE;
    }
    if (st.st_size > CONFIG_MAX_BYTES) {
        close (fd);
        g_set_error (error, LDM_ERROR, LDM_ERROR_FORMAT,
                     "%s: %" G_GINT64_FORMAT " bytes is too large for a model config", path,
                     (gint64) st.st_size);
        return FALSE;
    }
    /* Read up to the limit + 1 whatever stat said: the file may change under us. */
    g_autofree char *data = g_malloc (CONFIG_MAX_BYTES + 1);
    size_t length = 0;
    while (length <= CONFIG_MAX_BYTES) {
        ssize_t n = read (fd, data + length, CONFIG_MAX_BYTES + 1 - length);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            close (fd);
            g_set_error (error, LDM_ERROR, LDM_ERROR_IO, "%s: cannot read: %s", path,
                         g_strerror (e));
            return FALSE;
        }
        if (n == 0)
            break;
        length += (size_t) n;
    }
    close (fd);
    if (length > CONFIG_MAX_BYTES) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_FORMAT, "%s: too large for a model config",
                     path);
        return FALSE;
    }
    return model_config_read_yaml_data (data, length, path, config, error);
}
