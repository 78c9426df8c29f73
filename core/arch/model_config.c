/* model_config.c: the architecture of a model: CompVis config.yaml reading, the presets of
 * the published models, recognition from tensor shapes, and the list of parameters an
 * architecture needs (the names and shapes of CompVis openaimodel.UNetModel and of the
 * VQModel / AutoencoderKL first stages). */
#include "arch/model_config.h"

#include "io/tensor_file.h"

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

/* Ranges that keep every shape and name the enumerators compute small and exact. */
#define MAX_CHANNELS       8192
#define MAX_MULT           64
#define MAX_RES_BLOCKS     LDM_MAX_RES_BLOCKS
#define MAX_DEPTH          16
#define MAX_IO_CHANNELS    1024
#define MAX_HEADS          1024
#define MAX_CONTEXT_DIM    16384
#define MAX_CLASSES        (1 << 20)
#define MAX_CODES          (1 << 24)
#define MAX_RESOLUTION     (1 << 16)
#define MAX_TIMESTEPS      100000
#define GROUPS             32 /* GroupNorm(32) everywhere in CompVis models */

/* ======================================================================= defaults */

void
model_config_init_defaults (LdmModelConfig *config)
{
    memset (config, 0, sizeof *config); /* also the padding: configs compare with memcmp */
    config->kind = LDM_MODEL_UNKNOWN;
    config->beta_schedule = LDM_BETA_LINEAR;
    config->linear_start = 1e-4;
    config->linear_end = 2e-2;
    config->timesteps = 1000;
    config->v_prediction = false;
    config->scale_factor = 1.0;
    config->conditioning = LDM_COND_CONCAT; /* LatentDiffusion: concat_mode defaults to True */
    config->cond_stage = LDM_COND_STAGE_OTHER;
    config->use_ema = true;
    config->image_size = 0;

    LdmUnetConfig *u = &config->unet;
    static const int unet_mult[] = { 1, 2, 4, 8 };
    memcpy (u->channel_mult, unet_mult, sizeof unet_mult);
    u->n_levels = 4;
    u->num_heads = -1;
    u->num_head_channels = -1;
    u->num_heads_upsample = -1;
    u->resblock_updown = false;
    u->conv_resample = true;
    u->use_scale_shift_norm = false;
    u->use_spatial_transformer = false;
    u->transformer_depth = 1;
    u->context_dim = 0;
    u->legacy = true;

    LdmAutoencoderConfig *ae = &config->first_stage;
    ae->kind = LDM_AUTOENCODER_VQ;
    memcpy (ae->ch_mult, unet_mult, sizeof unet_mult); /* Encoder's default (1, 2, 4, 8) */
    ae->n_levels = 4;
    ae->double_z = true;                                /* Encoder's default */
    ae->mid_attention = true;                           /* attn_type "vanilla" */
}

/* ======================================================================= YAML tree */

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

/* The class name of a `target` ("ldm.models.autoencoder.VQModel" -> "VQModel"). */
static const char *
class_name (const char *target)
{
    const char *dot = strrchr (target, '.');
    return dot ? dot + 1 : target;
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
    const char *name = class_name (target);
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
    const char *name = class_name (target);
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
    if (unet_target && !strcmp (class_name (unet_target), "UNetModel")) {
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

static LdmModelKind
determine_kind (const LdmModelConfig *config)
{
    if (!config->has_unet || !config->has_first_stage)
        return LDM_MODEL_UNKNOWN;
    const char *name = class_name (config->target);
    if (!strcmp (name, "LatentDiffusion") && config->conditioning == LDM_COND_CONCAT) {
        if (config->cond_stage == LDM_COND_STAGE_FIRST_STAGE)
            return LDM_MODEL_LDM_INPAINT;
        if (config->cond_stage == LDM_COND_STAGE_IDENTITY)
            return LDM_MODEL_LDM_SR;
    }
    if (!strcmp (name, "LatentInpaintDiffusion") && config->conditioning == LDM_COND_HYBRID)
        return LDM_MODEL_SD_INPAINT;
    return LDM_MODEL_UNKNOWN;
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
    config->kind = determine_kind (config);
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

/* ======================================================================= checks */

void
model_config_attention_heads (const LdmUnetConfig *u, int channels, bool output_block,
                              int *heads, int *dim_head)
{
    int h = 0, d = 0;
    int nhc = u->num_head_channels;
    if (u->use_spatial_transformer) {
        h = nhc == -1 ? u->num_heads : (nhc > 0 ? channels / nhc : 0);
        if (h > 0)
            d = (u->legacy || nhc == -1) ? channels / h : nhc;
    } else if (u->legacy) {
        /* AttentionBlock(num_heads, num_head_channels): the output blocks get
         * num_heads_upsample, which defaults to num_heads. */
        int upsample = u->num_heads_upsample == -1 ? u->num_heads : u->num_heads_upsample;
        if (nhc != -1)
            h = nhc > 0 ? channels / nhc : 0;
        else
            h = output_block ? upsample : u->num_heads;
        d = h > 0 ? channels / h : 0;
    } else {
        /* dim_head is always set, so AttentionBlock takes channels / dim_head heads. */
        int dh = nhc == -1 ? (u->num_heads > 0 ? channels / u->num_heads : 0) : nhc;
        h = dh > 0 ? channels / dh : 0;
        d = h > 0 ? channels / h : 0;
    }
    *heads = h > 0 && d > 0 ? h : 0;
    *dim_head = h > 0 && d > 0 ? d : 0;
}

static bool
unet_has_attention (const LdmUnetConfig *u, int level)
{
    for (int i = 0; i < u->n_attention_resolutions; i++)
        if (level < 30 && u->attention_resolutions[i] == 1 << level)
            return true;
    return false;
}

static gboolean check_error (GError **error, LdmError code, const char *origin, const char *key,
                             const char *format, ...) G_GNUC_PRINTF (5, 6);

static gboolean
check_error (GError **error, LdmError code, const char *origin, const char *key,
             const char *format, ...)
{
    va_list args;
    va_start (args, format);
    g_autofree char *message = g_strdup_vprintf (format, args);
    va_end (args);
    g_set_error (error, LDM_ERROR, code, "%s: %s: %s", origin, key, message);
    return FALSE;
}

#define UNET_KEY "model.params.unet_config.params."
#define DD_KEY   "model.params.first_stage_config.params.ddconfig."

static gboolean
check_unet (const LdmUnetConfig *u, const char *origin, GError **error)
{
    if (u->in_channels < 1 || u->out_channels < 1 || u->model_channels < 1
        || u->in_channels > MAX_IO_CHANNELS || u->out_channels > MAX_IO_CHANNELS
        || u->model_channels > MAX_CHANNELS)
        return check_error (error, LDM_ERROR_FORMAT, origin, UNET_KEY "model_channels",
                            "channel counts out of range");
    if (u->n_levels < 1 || u->n_levels > LDM_MAX_LEVELS)
        return check_error (error, LDM_ERROR_FORMAT, origin, UNET_KEY "channel_mult",
                            "needs 1 to %d levels", LDM_MAX_LEVELS);
    if (u->channel_mult[0] != 1)
        return check_error (error, LDM_ERROR_UNSUPPORTED, origin, UNET_KEY "channel_mult",
                            "the first level must have multiplier 1 (the output layer works "
                            "on model_channels)");
    if (u->num_res_blocks < 1 || u->num_res_blocks > MAX_RES_BLOCKS)
        return check_error (error, LDM_ERROR_FORMAT, origin, UNET_KEY "num_res_blocks",
                            "%d is out of range (1 .. %d)", u->num_res_blocks, MAX_RES_BLOCKS);
    if (u->n_attention_resolutions < 0 || u->n_attention_resolutions > LDM_MAX_LEVELS)
        return check_error (error, LDM_ERROR_FORMAT, origin, UNET_KEY "attention_resolutions",
                            "too many entries");
    for (int l = 0; l < u->n_levels; l++) {
        int mult = u->channel_mult[l];
        if (mult < 1 || mult > MAX_MULT)
            return check_error (error, LDM_ERROR_FORMAT, origin, UNET_KEY "channel_mult",
                                "multiplier %d is out of range (1 .. %d)", mult, MAX_MULT);
        if (u->model_channels * mult % GROUPS != 0)
            return check_error (error, LDM_ERROR_UNSUPPORTED, origin, UNET_KEY "model_channels",
                                "level %d has %d channels, not a multiple of the %d "
                                "GroupNorm groups",
                                l, u->model_channels * mult, GROUPS);
    }
    if ((u->num_heads < 1 && u->num_heads != -1) || u->num_heads > MAX_HEADS)
        return check_error (error, LDM_ERROR_FORMAT, origin, UNET_KEY "num_heads",
                            "must be -1 or positive");
    if ((u->num_head_channels < 1 && u->num_head_channels != -1)
        || u->num_head_channels > MAX_CHANNELS)
        return check_error (error, LDM_ERROR_FORMAT, origin, UNET_KEY "num_head_channels",
                            "must be -1 or positive");
    if ((u->num_heads_upsample < 1 && u->num_heads_upsample != -1)
        || u->num_heads_upsample > MAX_HEADS)
        return check_error (error, LDM_ERROR_FORMAT, origin, UNET_KEY "num_heads_upsample",
                            "must be -1 or positive");
    if (u->num_heads == -1 && u->num_head_channels == -1)
        return check_error (error, LDM_ERROR_FORMAT, origin, UNET_KEY "num_heads",
                            "either num_heads or num_head_channels must be set");
    if (u->transformer_depth < 1 || u->transformer_depth > MAX_DEPTH)
        return check_error (error, LDM_ERROR_FORMAT, origin, UNET_KEY "transformer_depth",
                            "%d is out of range (1 .. %d)", u->transformer_depth, MAX_DEPTH);
    if (u->context_dim < 0 || u->context_dim > MAX_CONTEXT_DIM)
        return check_error (error, LDM_ERROR_FORMAT, origin, UNET_KEY "context_dim",
                            "out of range");
    if (u->use_spatial_transformer && u->context_dim == 0)
        return check_error (error, LDM_ERROR_FORMAT, origin, UNET_KEY "context_dim",
                            "a spatial transformer needs the context dimension");
    if (!u->use_spatial_transformer && u->context_dim > 0)
        return check_error (error, LDM_ERROR_FORMAT, origin, UNET_KEY "use_spatial_transformer",
                            "context_dim is set, so use_spatial_transformer must be true");
    if (u->num_classes < 0 || u->num_classes > MAX_CLASSES)
        return check_error (error, LDM_ERROR_FORMAT, origin, UNET_KEY "num_classes",
                            "out of range");

    /* Heads of every attention block, where the U-Net has them (and always in the middle). */
    for (int l = 0; l <= u->n_levels; l++) {
        bool middle = l == u->n_levels;
        if (!middle && !unet_has_attention (u, l))
            continue;
        int channels = u->model_channels * u->channel_mult[middle ? u->n_levels - 1 : l];
        for (int output = 0; output < 2; output++) {
            int heads, dim_head;
            model_config_attention_heads (u, channels, output, &heads, &dim_head);
            if (heads < 1 || (!u->use_spatial_transformer && channels % heads != 0))
                return check_error (error, LDM_ERROR_UNSUPPORTED, origin,
                                    UNET_KEY "num_heads",
                                    "the attention at %d channels gets no valid head count "
                                    "(num_heads %d, num_head_channels %d)",
                                    channels, u->num_heads, u->num_head_channels);
            /* CompVis's linear proj_out is Linear(in_channels, inner): it only runs when the
             * heads span the width exactly. */
            if (u->use_spatial_transformer && u->use_linear_in_transformer
                && heads * dim_head != channels)
                return check_error (error, LDM_ERROR_UNSUPPORTED, origin,
                                    UNET_KEY "use_linear_in_transformer",
                                    "the transformer at %d channels has %d heads of %d: "
                                    "a linear proj_out needs heads x head channels = the width",
                                    channels, heads, dim_head);
        }
    }
    return TRUE;
}

static gboolean
check_autoencoder (const LdmAutoencoderConfig *ae, const char *origin, GError **error)
{
    if (ae->embed_dim < 1 || ae->embed_dim > MAX_IO_CHANNELS)
        return check_error (error, LDM_ERROR_FORMAT, origin,
                            "model.params.first_stage_config.params.embed_dim", "out of range");
    if (ae->kind == LDM_AUTOENCODER_VQ && (ae->n_embed < 1 || ae->n_embed > MAX_CODES))
        return check_error (error, LDM_ERROR_FORMAT, origin,
                            "model.params.first_stage_config.params.n_embed",
                            "a VQ first stage needs 1 .. %d codes", MAX_CODES);
    if (ae->kind == LDM_AUTOENCODER_KL && !ae->double_z)
        return check_error (error, LDM_ERROR_FORMAT, origin, DD_KEY "double_z",
                            "AutoencoderKL needs double_z true (mean and log-variance)");
    if (ae->kind == LDM_AUTOENCODER_VQ && ae->double_z)
        return check_error (error, LDM_ERROR_FORMAT, origin, DD_KEY "double_z",
                            "a VQ first stage needs double_z false");
    if (ae->z_channels < 1 || ae->z_channels > MAX_IO_CHANNELS || ae->in_channels < 1
        || ae->in_channels > MAX_IO_CHANNELS || ae->out_ch < 1 || ae->out_ch > MAX_IO_CHANNELS
        || ae->ch < 1 || ae->ch > MAX_CHANNELS || ae->resolution < 1
        || ae->resolution > MAX_RESOLUTION)
        return check_error (error, LDM_ERROR_FORMAT, origin, DD_KEY "ch",
                            "channel counts or resolution out of range");
    if (ae->n_levels < 1 || ae->n_levels > LDM_MAX_LEVELS)
        return check_error (error, LDM_ERROR_FORMAT, origin, DD_KEY "ch_mult",
                            "needs 1 to %d levels", LDM_MAX_LEVELS);
    if (ae->num_res_blocks < 1 || ae->num_res_blocks > MAX_RES_BLOCKS)
        return check_error (error, LDM_ERROR_FORMAT, origin, DD_KEY "num_res_blocks",
                            "%d is out of range (1 .. %d)", ae->num_res_blocks, MAX_RES_BLOCKS);
    if (ae->n_attn_resolutions < 0 || ae->n_attn_resolutions > LDM_MAX_LEVELS)
        return check_error (error, LDM_ERROR_FORMAT, origin, DD_KEY "attn_resolutions",
                            "too many entries");
    if (ae->ch % GROUPS != 0)
        return check_error (error, LDM_ERROR_UNSUPPORTED, origin, DD_KEY "ch",
                            "%d is not a multiple of the %d GroupNorm groups", ae->ch, GROUPS);
    for (int l = 0; l < ae->n_levels; l++)
        if (ae->ch_mult[l] < 1 || ae->ch_mult[l] > MAX_MULT)
            return check_error (error, LDM_ERROR_FORMAT, origin, DD_KEY "ch_mult",
                                "multiplier %d is out of range (1 .. %d)", ae->ch_mult[l],
                                MAX_MULT);
    return TRUE;
}

/* The channels each kind feeds the U-Net (notes: trap 2). */
static gboolean
check_kind_channels (const LdmModelConfig *config, const char *origin, GError **error)
{
    const LdmUnetConfig *u = &config->unet;
    int latent = config->first_stage.embed_dim;
    int in_needed;
    const char *layout;
    switch (config->kind) {
    case LDM_MODEL_LDM_INPAINT:
        in_needed = 2 * latent + 1;
        layout = "x_t + encoded masked image + mask";
        break;
    case LDM_MODEL_SD_INPAINT:
        in_needed = 2 * latent + 1;
        layout = "x_t + mask + masked latent";
        break;
    case LDM_MODEL_LDM_SR:
        in_needed = latent + config->first_stage.in_channels;
        layout = "x_t + low-resolution image";
        break;
    default:
        return TRUE;
    }
    if (u->out_channels != latent)
        return check_error (error, LDM_ERROR_MODEL, origin, UNET_KEY "out_channels",
                            "%d, but the first stage's latent has %d channels", u->out_channels,
                            latent);
    if (u->in_channels != in_needed)
        return check_error (error, LDM_ERROR_MODEL, origin, UNET_KEY "in_channels",
                            "%d, but %s needs %d (%s)", u->in_channels,
                            ldm_model_kind_name (config->kind), in_needed, layout);
    if (config->kind == LDM_MODEL_SD_INPAINT && !u->use_spatial_transformer)
        return check_error (error, LDM_ERROR_MODEL, origin, UNET_KEY "use_spatial_transformer",
                            "hybrid conditioning needs cross-attention");
    return TRUE;
}

gboolean
model_config_check (const LdmModelConfig *config, const char *origin, GError **error)
{
    if (config->has_unet && !check_unet (&config->unet, origin, error))
        return FALSE;
    if (config->has_first_stage && !check_autoencoder (&config->first_stage, origin, error))
        return FALSE;
    if (config->timesteps < 1 || config->timesteps > MAX_TIMESTEPS)
        return check_error (error, LDM_ERROR_FORMAT, origin, "model.params.timesteps",
                            "out of range");
    if (!(config->linear_start > 0 && config->linear_start < 1 && config->linear_end > 0
          && config->linear_end < 1))
        return check_error (error, LDM_ERROR_FORMAT, origin, "model.params.linear_start",
                            "linear_start and linear_end must be in (0, 1)");
    if (!(config->scale_factor > 0 && isfinite (config->scale_factor)))
        return check_error (error, LDM_ERROR_FORMAT, origin, "model.params.scale_factor",
                            "must be positive");
    return check_kind_channels (config, origin, error);
}

/* ======================================================================= presets */

static void
set_ints (int *dst, int *count, const int *src, int n)
{
    memcpy (dst, src, (size_t) n * sizeof *src);
    *count = n;
}
#define SET_INTS(dst, count, ...)                                                              \
    set_ints (dst, &(count), (const int[]) { __VA_ARGS__ },                                    \
              (int) (sizeof ((const int[]) { __VA_ARGS__ }) / sizeof (int)))

/* VQ-f4 as inpainting_big and bsr_sr use it (CompVis first_stage_models/vq-f4). */
static void
preset_vq_f4 (LdmAutoencoderConfig *ae, bool mid_attention)
{
    ae->kind = LDM_AUTOENCODER_VQ;
    ae->embed_dim = 3;
    ae->n_embed = 8192;
    ae->double_z = false;
    ae->z_channels = 3;
    ae->resolution = 256;
    ae->in_channels = 3;
    ae->out_ch = 3;
    ae->ch = 128;
    SET_INTS (ae->ch_mult, ae->n_levels, 1, 2, 4);
    ae->num_res_blocks = 2;
    ae->n_attn_resolutions = 0;
    ae->mid_attention = mid_attention;
}

static const struct {
    const char *name;
    const char *title;
} presets[LDM_PRESET_COUNT] = {
    [LDM_PRESET_LDM_INPAINTING_BIG] = { "inpainting_big", "CompVis LDM inpainting" },
    [LDM_PRESET_LDM_BSR_SR] = { "bsr_sr", "CompVis LDM 4x super-resolution, LDSR" },
    [LDM_PRESET_SD15_INPAINTING] = { "sd-v1-5-inpainting", "Stable Diffusion 1.5 inpainting" },
};

const char *
model_config_preset_name (LdmPreset preset)
{
    return (unsigned) preset < LDM_PRESET_COUNT ? presets[preset].name : "?";
}

const char *
model_config_preset_title (LdmPreset preset)
{
    return (unsigned) preset < LDM_PRESET_COUNT ? presets[preset].title : "?";
}

void
model_config_preset (LdmPreset preset, LdmModelConfig *config)
{
    model_config_init_defaults (config);
    LdmUnetConfig *u = &config->unet;
    config->has_unet = true;
    config->has_first_stage = true;
    config->timesteps = 1000;
    config->image_size = 64;
    switch (preset) {
    case LDM_PRESET_LDM_INPAINTING_BIG: /* models/ldm/inpainting_big/config.yaml */
        g_strlcpy (config->target, "ldm.models.diffusion.ddpm.LatentDiffusion",
                   sizeof config->target);
        config->linear_start = 0.0015;
        config->linear_end = 0.0205;
        config->conditioning = LDM_COND_CONCAT;
        config->cond_stage = LDM_COND_STAGE_FIRST_STAGE;
        u->in_channels = 7;
        u->out_channels = 3;
        u->model_channels = 256;
        SET_INTS (u->attention_resolutions, u->n_attention_resolutions, 8, 4, 2);
        u->num_res_blocks = 2;
        SET_INTS (u->channel_mult, u->n_levels, 1, 2, 3, 4);
        u->num_heads = 8;
        u->resblock_updown = true;
        preset_vq_f4 (&config->first_stage, false); /* attn_type: none */
        break;
    case LDM_PRESET_LDM_BSR_SR: /* models/ldm/bsr_sr/config.yaml */
        g_strlcpy (config->target, "ldm.models.diffusion.ddpm.LatentDiffusion",
                   sizeof config->target);
        config->linear_start = 0.0015;
        config->linear_end = 0.0155;
        config->conditioning = LDM_COND_CONCAT;
        config->cond_stage = LDM_COND_STAGE_IDENTITY;
        u->in_channels = 6;
        u->out_channels = 3;
        u->model_channels = 160;
        SET_INTS (u->attention_resolutions, u->n_attention_resolutions, 16, 8);
        u->num_res_blocks = 2;
        SET_INTS (u->channel_mult, u->n_levels, 1, 2, 2, 4);
        u->num_head_channels = 32;
        preset_vq_f4 (&config->first_stage, true);
        break;
    case LDM_PRESET_SD15_INPAINTING: /* configs/stable-diffusion/v1-inpainting-inference.yaml */
    default:
        g_strlcpy (config->target, "ldm.models.diffusion.ddpm.LatentInpaintDiffusion",
                   sizeof config->target);
        config->linear_start = 0.00085;
        config->linear_end = 0.0120;
        config->scale_factor = 0.18215;
        config->conditioning = LDM_COND_HYBRID;
        config->cond_stage = LDM_COND_STAGE_CLIP;
        u->in_channels = 9;
        u->out_channels = 4;
        u->model_channels = 320;
        SET_INTS (u->attention_resolutions, u->n_attention_resolutions, 4, 2, 1);
        u->num_res_blocks = 2;
        SET_INTS (u->channel_mult, u->n_levels, 1, 2, 4, 4);
        u->num_heads = 8;
        u->use_spatial_transformer = true;
        u->transformer_depth = 1;
        u->context_dim = 768;
        u->legacy = false;
        LdmAutoencoderConfig *ae = &config->first_stage;
        ae->kind = LDM_AUTOENCODER_KL;
        ae->embed_dim = 4;
        ae->n_embed = 0;
        ae->double_z = true;
        ae->z_channels = 4;
        ae->resolution = 256;
        ae->in_channels = 3;
        ae->out_ch = 3;
        ae->ch = 128;
        SET_INTS (ae->ch_mult, ae->n_levels, 1, 2, 4, 4);
        ae->num_res_blocks = 2;
        ae->n_attn_resolutions = 0;
        ae->mid_attention = true;
        break;
    }
    config->kind = determine_kind (config);
    g_snprintf (config->source, sizeof config->source, "built-in preset %s (%s)",
                model_config_preset_name (preset), model_config_preset_title (preset));
}

/* ======================================================================= parameter lists */

static void add_param (GArray *params, int ndim, const int64_t *shape, const char *format, ...)
    G_GNUC_PRINTF (4, 5);

static void
add_param (GArray *params, int ndim, const int64_t *shape, const char *format, ...)
{
    LdmParamSpec spec = { .ndim = ndim };
    memcpy (spec.shape, shape, (size_t) ndim * sizeof *shape);
    va_list args;
    va_start (args, format);
    g_vsnprintf (spec.name, sizeof spec.name, format, args); /* names are short: see limits */
    va_end (args);
    g_array_append_val (params, spec);
}

#define SHAPE(...) ((const int64_t[]) { __VA_ARGS__ })

static void
add_conv (GArray *p, const char *base, const char *module, int64_t out, int64_t in, int64_t k)
{
    add_param (p, 4, SHAPE (out, in, k, k), "%s%s.weight", base, module);
    add_param (p, 1, SHAPE (out), "%s%s.bias", base, module);
}

static void
add_conv1d (GArray *p, const char *base, const char *module, int64_t out, int64_t in)
{
    add_param (p, 3, SHAPE (out, in, 1), "%s%s.weight", base, module);
    add_param (p, 1, SHAPE (out), "%s%s.bias", base, module);
}

static void
add_linear (GArray *p, const char *base, const char *module, int64_t out, int64_t in, bool bias)
{
    add_param (p, 2, SHAPE (out, in), "%s%s.weight", base, module);
    if (bias)
        add_param (p, 1, SHAPE (out), "%s%s.bias", base, module);
}

/* GroupNorm and LayerNorm alike. */
static void
add_norm (GArray *p, const char *base, const char *module, int64_t channels)
{
    add_param (p, 1, SHAPE (channels), "%s%s.weight", base, module);
    add_param (p, 1, SHAPE (channels), "%s%s.bias", base, module);
}

/* openaimodel.ResBlock; an up/down ResBlock has the same parameters. */
static void
unet_resblock (GArray *p, const LdmUnetConfig *u, const char *base, int64_t in, int64_t out)
{
    int64_t emb = 4 * (int64_t) u->model_channels;
    add_norm (p, base, "in_layers.0", in);
    add_conv (p, base, "in_layers.2", out, in, 3);
    add_linear (p, base, "emb_layers.1", u->use_scale_shift_norm ? 2 * out : out, emb, true);
    add_norm (p, base, "out_layers.0", out);
    add_conv (p, base, "out_layers.3", out, out, 3);
    if (in != out)
        add_conv (p, base, "skip_connection", out, in, 1);
}

static void
unet_cross_attention (GArray *p, const char *base, const char *module, int64_t inner,
                      int64_t context)
{
    char name[64];
    g_snprintf (name, sizeof name, "%s.to_q", module);
    add_linear (p, base, name, inner, inner, false);
    g_snprintf (name, sizeof name, "%s.to_k", module);
    add_linear (p, base, name, inner, context, false);
    g_snprintf (name, sizeof name, "%s.to_v", module);
    add_linear (p, base, name, inner, context, false);
    g_snprintf (name, sizeof name, "%s.to_out.0", module);
    add_linear (p, base, name, inner, inner, true);
}

/* The attention of a U-Net level: legacy AttentionBlock or SpatialTransformer. */
static void
unet_attention (GArray *p, const LdmUnetConfig *u, const char *base, int64_t channels,
                bool output_block, bool disable_self_attn)
{
    if (!u->use_spatial_transformer) {
        add_norm (p, base, "norm", channels);
        add_conv1d (p, base, "qkv", 3 * channels, channels);
        add_conv1d (p, base, "proj_out", channels, channels);
        return;
    }
    int heads, dim_head;
    model_config_attention_heads (u, (int) channels, output_block, &heads, &dim_head);
    int64_t inner = (int64_t) heads * dim_head;
    add_norm (p, base, "norm", channels);
    if (u->use_linear_in_transformer)
        add_linear (p, base, "proj_in", inner, channels, true);
    else
        add_conv (p, base, "proj_in", inner, channels, 1);
    for (int d = 0; d < u->transformer_depth; d++) {
        char block[96];
        g_snprintf (block, sizeof block, "%stransformer_blocks.%d.", base, d);
        /* attn1 attends to the context instead of itself when self-attention is disabled. */
        unet_cross_attention (p, block, "attn1", inner,
                              disable_self_attn ? u->context_dim : inner);
        add_linear (p, block, "ff.net.0.proj", 8 * inner, inner, true); /* GEGLU: 2 x 4 dim */
        add_linear (p, block, "ff.net.2", inner, 4 * inner, true);
        unet_cross_attention (p, block, "attn2", inner, u->context_dim);
        add_norm (p, block, "norm1", inner);
        add_norm (p, block, "norm2", inner);
        add_norm (p, block, "norm3", inner);
    }
    if (u->use_linear_in_transformer) /* CompVis: nn.Linear(in_channels, inner_dim) */
        add_linear (p, base, "proj_out", inner, channels, true);
    else
        add_conv (p, base, "proj_out", channels, inner, 1);
}

int
model_config_unet_skips (const LdmUnetConfig *u, int64_t *widths)
{
    if (u->n_levels < 1 || u->n_levels > LDM_MAX_LEVELS || u->num_res_blocks < 1
        || u->num_res_blocks > MAX_RES_BLOCKS)
        return 0;
    int n = 0;
    widths[n++] = u->model_channels; /* input_blocks.0: the input convolution */
    for (int level = 0; level < u->n_levels; level++) {
        for (int r = 0; r < u->num_res_blocks; r++)
            widths[n++] = (int64_t) u->model_channels * u->channel_mult[level];
        if (level != u->n_levels - 1) /* the downsampling keeps the width */
            widths[n++] = (int64_t) u->model_channels * u->channel_mult[level];
    }
    return n; /* 1 + levels * res blocks + levels - 1 <= LDM_UNET_MAX_SKIPS */
}

GArray *
model_config_unet_params (const LdmUnetConfig *u)
{
    GArray *p = g_array_new (FALSE, FALSE, sizeof (LdmParamSpec));
    if (u->n_levels < 1 || u->n_levels > LDM_MAX_LEVELS || u->num_res_blocks < 1
        || u->num_res_blocks > MAX_RES_BLOCKS || u->transformer_depth > MAX_DEPTH)
        return p; /* model_config_check rejects these */
    int64_t mc = u->model_channels, emb = 4 * mc;
    int nrb = u->num_res_blocks;
    char base[64];

    add_linear (p, "", "time_embed.0", emb, mc, true);
    add_linear (p, "", "time_embed.2", emb, emb, true);
    if (u->num_classes > 0)
        add_param (p, 2, SHAPE (u->num_classes, emb), "label_emb.weight");

    /* Input blocks; the widths of their outputs are the skips of the output blocks. */
    int64_t skips[LDM_UNET_MAX_SKIPS];
    int n_skips = model_config_unet_skips (u, skips), block = 0;
    add_conv (p, "", "input_blocks.0.0", mc, u->in_channels, 3);
    int64_t ch = mc;
    for (int level = 0; level < u->n_levels; level++) {
        bool disable = u->has_disable_self_attentions && u->disable_self_attentions[level];
        for (int r = 0; r < nrb; r++) {
            g_snprintf (base, sizeof base, "input_blocks.%d.0.", ++block);
            unet_resblock (p, u, base, ch, mc * u->channel_mult[level]);
            ch = mc * u->channel_mult[level];
            if (unet_has_attention (u, level)) {
                g_snprintf (base, sizeof base, "input_blocks.%d.1.", block);
                unet_attention (p, u, base, ch, false, disable);
            }
        }
        if (level != u->n_levels - 1) {
            g_snprintf (base, sizeof base, "input_blocks.%d.0.", ++block);
            if (u->resblock_updown)
                unet_resblock (p, u, base, ch, ch);
            else if (u->conv_resample)
                add_conv (p, base, "op", ch, ch, 3);
        }
    }

    unet_resblock (p, u, "middle_block.0.", ch, ch);
    unet_attention (p, u, "middle_block.1.", ch, false, u->disable_middle_self_attn);
    unet_resblock (p, u, "middle_block.2.", ch, ch);

    block = 0;
    for (int level = u->n_levels - 1; level >= 0; level--) {
        bool disable = u->has_disable_self_attentions && u->disable_self_attentions[level];
        for (int i = 0; i <= nrb; i++, block++) {
            int64_t skip = skips[--n_skips];
            g_snprintf (base, sizeof base, "output_blocks.%d.0.", block);
            unet_resblock (p, u, base, ch + skip, mc * u->channel_mult[level]);
            ch = mc * u->channel_mult[level];
            int element = 1;
            if (unet_has_attention (u, level)) {
                g_snprintf (base, sizeof base, "output_blocks.%d.1.", block);
                unet_attention (p, u, base, ch, true, disable);
                element = 2;
            }
            if (level > 0 && i == nrb) {
                g_snprintf (base, sizeof base, "output_blocks.%d.%d.", block, element);
                if (u->resblock_updown)
                    unet_resblock (p, u, base, ch, ch);
                else if (u->conv_resample)
                    add_conv (p, base, "conv", ch, ch, 3);
            }
        }
    }

    add_norm (p, "", "out.0", ch);
    add_conv (p, "", "out.2", u->out_channels, mc, 3);
    return p;
}

/* model.ResnetBlock without a time embedding (temb_channels 0 in Encoder/Decoder). */
static void
ae_resnet (GArray *p, const char *base, int64_t in, int64_t out)
{
    add_norm (p, base, "norm1", in);
    add_conv (p, base, "conv1", out, in, 3);
    add_norm (p, base, "norm2", out);
    add_conv (p, base, "conv2", out, out, 3);
    if (in != out)
        add_conv (p, base, "nin_shortcut", out, in, 1);
}

/* model.AttnBlock: single-head attention with 1x1 convolutions. */
static void
ae_attention (GArray *p, const char *base, int64_t channels)
{
    add_norm (p, base, "norm", channels);
    add_conv (p, base, "q", channels, channels, 1);
    add_conv (p, base, "k", channels, channels, 1);
    add_conv (p, base, "v", channels, channels, 1);
    add_conv (p, base, "proj_out", channels, channels, 1);
}

static bool
ae_has_attention (const LdmAutoencoderConfig *ae, int64_t resolution)
{
    for (int i = 0; i < ae->n_attn_resolutions; i++)
        if (ae->attn_resolutions[i] == resolution)
            return true;
    return false;
}

static void
ae_middle (GArray *p, const LdmAutoencoderConfig *ae, const char *coder, int64_t channels)
{
    char base[64];
    g_snprintf (base, sizeof base, "%s.mid.block_1.", coder);
    ae_resnet (p, base, channels, channels);
    if (ae->mid_attention) {
        g_snprintf (base, sizeof base, "%s.mid.attn_1.", coder);
        ae_attention (p, base, channels);
    }
    g_snprintf (base, sizeof base, "%s.mid.block_2.", coder);
    ae_resnet (p, base, channels, channels);
}

GArray *
model_config_autoencoder_params (const LdmAutoencoderConfig *ae)
{
    GArray *p = g_array_new (FALSE, FALSE, sizeof (LdmParamSpec));
    if (ae->n_levels < 1 || ae->n_levels > LDM_MAX_LEVELS || ae->num_res_blocks < 1
        || ae->num_res_blocks > MAX_RES_BLOCKS)
        return p; /* model_config_check rejects these */
    int64_t ch = ae->ch, z = ae->z_channels;
    int n = ae->n_levels;
    char base[64];

    /* Encoder: blocks of a level first, then their attentions (module order). */
    add_conv (p, "", "encoder.conv_in", ch, ae->in_channels, 3);
    int64_t resolution = ae->resolution, block_in = ch;
    for (int level = 0; level < n; level++) {
        block_in = ch * (level ? ae->ch_mult[level - 1] : 1);
        int64_t block_out = ch * ae->ch_mult[level];
        for (int b = 0; b < ae->num_res_blocks; b++) {
            g_snprintf (base, sizeof base, "encoder.down.%d.block.%d.", level, b);
            ae_resnet (p, base, b ? block_out : block_in, block_out);
        }
        block_in = block_out;
        if (ae_has_attention (ae, resolution))
            for (int b = 0; b < ae->num_res_blocks; b++) {
                g_snprintf (base, sizeof base, "encoder.down.%d.attn.%d.", level, b);
                ae_attention (p, base, block_in);
            }
        if (level != n - 1) {
            g_snprintf (base, sizeof base, "encoder.down.%d.downsample.", level);
            add_conv (p, base, "conv", block_in, block_in, 3);
            resolution /= 2;
        }
    }
    ae_middle (p, ae, "encoder", block_in);
    add_norm (p, "", "encoder.norm_out", block_in);
    add_conv (p, "", "encoder.conv_out", ae->double_z ? 2 * z : z, block_in, 3);

    /* Decoder: up.L is built from the deepest level, named by L. */
    block_in = ch * ae->ch_mult[n - 1];
    resolution = ae->resolution >> (n - 1);
    add_conv (p, "", "decoder.conv_in", block_in, z, 3);
    ae_middle (p, ae, "decoder", block_in);
    for (int level = n - 1; level >= 0; level--) {
        int64_t block_out = ch * ae->ch_mult[level];
        for (int b = 0; b <= ae->num_res_blocks; b++) {
            g_snprintf (base, sizeof base, "decoder.up.%d.block.%d.", level, b);
            ae_resnet (p, base, b ? block_out : block_in, block_out);
        }
        block_in = block_out;
        if (ae_has_attention (ae, resolution))
            for (int b = 0; b <= ae->num_res_blocks; b++) {
                g_snprintf (base, sizeof base, "decoder.up.%d.attn.%d.", level, b);
                ae_attention (p, base, block_in);
            }
        if (level != 0) {
            g_snprintf (base, sizeof base, "decoder.up.%d.upsample.", level);
            add_conv (p, base, "conv", block_in, block_in, 3);
            resolution *= 2;
        }
    }
    add_norm (p, "", "decoder.norm_out", block_in);
    add_conv (p, "", "decoder.conv_out", ae->out_ch, block_in, 3);

    int64_t e = ae->embed_dim;
    if (ae->kind == LDM_AUTOENCODER_VQ) {
        add_param (p, 2, SHAPE (ae->n_embed, e), "quantize.embedding.weight");
        add_conv (p, "", "quant_conv", e, z, 1);
    } else {
        add_conv (p, "", "quant_conv", 2 * e, 2 * z, 1);
    }
    add_conv (p, "", "post_quant_conv", z, e, 1);
    return p;
}

int64_t
model_config_param_count (const GArray *params)
{
    int64_t total = 0;
    for (guint i = 0; i < params->len; i++) {
        const LdmParamSpec *spec = &g_array_index (params, LdmParamSpec, i);
        int64_t n = 1;
        for (int d = 0; d < spec->ndim; d++)
            n *= spec->shape[d];
        total += n;
    }
    return total;
}

char *
model_config_unet_ema_name (const char *name)
{
    GString *s = g_string_new (LDM_UNET_EMA_PREFIX);
    for (const char *c = name; *c; c++)
        if (*c != '.')
            g_string_append_c (s, *c);
    return g_string_free (s, FALSE);
}

bool
model_config_shape_matches (const LdmParamSpec *spec, const LdmTensor *tensor)
{
    int a = spec->ndim, b = tensor->ndim;
    while (a > 0 && spec->shape[a - 1] == 1)
        a--;
    while (b > 0 && tensor->shape[b - 1] == 1)
        b--;
    if (a != b)
        return false;
    for (int d = 0; d < a; d++)
        if (spec->shape[d] != tensor->shape[d])
            return false;
    return true;
}

/* ======================================================================= recognition */

/* A sub-model's tensors in a file: plain names under a prefix, or LitEma names. */
typedef struct {
    const LdmTensorFile *file;
    const char          *prefix;
    bool                 ema;
} TensorView;

static const LdmTensor *
view_get (const TensorView *v, const char *format, ...) G_GNUC_PRINTF (2, 3);

static const LdmTensor *
view_get (const TensorView *v, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    g_autofree char *name = g_strdup_vprintf (format, args);
    va_end (args);
    g_autofree char *full = v->ema ? model_config_unet_ema_name (name)
                                   : g_strconcat (v->prefix, name, NULL);
    return ldm_tensor_file_lookup (v->file, full);
}

/* Size of dimension d, or -1 when the tensor is absent or has fewer dimensions. */
static int64_t
dim (const LdmTensor *t, int d)
{
    return t && d < t->ndim ? t->shape[d] : -1;
}

static bool
fits_int (int64_t value, int64_t max)
{
    return value >= 1 && value <= max;
}

/* Whether the view holds exactly the parameters of `params`, with their shapes. */
static bool
view_matches_exactly (const TensorView *v, const GArray *params)
{
    if (params->len == 0)
        return false;
    for (guint i = 0; i < params->len; i++) {
        const LdmParamSpec *spec = &g_array_index (params, LdmParamSpec, i);
        const LdmTensor *t = view_get (v, "%s", spec->name);
        if (!t || !model_config_shape_matches (spec, t))
            return false;
    }
    const char *prefix = v->ema ? LDM_UNET_EMA_PREFIX : v->prefix;
    size_t prefix_len = strlen (prefix), count = 0;
    for (size_t i = 0; i < ldm_tensor_file_count (v->file); i++)
        if (!strncmp (ldm_tensor_file_at (v->file, i)->name, prefix, prefix_len))
            count++;
    return count == params->len;
}

static bool
params_equal (const GArray *a, const GArray *b)
{
    if (a->len != b->len)
        return false;
    for (guint i = 0; i < a->len; i++) {
        const LdmParamSpec *x = &g_array_index (a, LdmParamSpec, i);
        const LdmParamSpec *y = &g_array_index (b, LdmParamSpec, i);
        if (strcmp (x->name, y->name) || x->ndim != y->ndim
            || memcmp (x->shape, y->shape, (size_t) x->ndim * sizeof x->shape[0]))
            return false;
    }
    return true;
}

/* A U-Net structure with `nrb` res blocks per level, read from the tensors; false when the
 * tensors do not fit that count. Heads cannot be seen in weights: 1 head of full width. */
static bool
infer_unet_candidate (const TensorView *v, int n_input_blocks, int nrb, LdmUnetConfig *u)
{
    if ((n_input_blocks + 1) % (nrb + 1) != 0)
        return false;
    int levels = (n_input_blocks + 1) / (nrb + 1);
    if (levels > LDM_MAX_LEVELS)
        return false;
    LdmModelConfig defaults;
    model_config_init_defaults (&defaults);
    *u = defaults.unet;

    const LdmTensor *conv_in = view_get (v, "input_blocks.0.0.weight");
    const LdmTensor *conv_out = view_get (v, "out.2.weight");
    if (!fits_int (dim (conv_in, 0), MAX_CHANNELS) || !fits_int (dim (conv_in, 1), MAX_IO_CHANNELS)
        || !fits_int (dim (conv_out, 0), MAX_IO_CHANNELS))
        return false;
    u->model_channels = (int) dim (conv_in, 0);
    u->in_channels = (int) dim (conv_in, 1);
    u->out_channels = (int) dim (conv_out, 0);
    u->num_res_blocks = nrb;
    u->n_levels = levels;
    u->num_heads = 1;
    u->legacy = false;
    u->n_attention_resolutions = 0;

    for (int l = 0; l < levels; l++) {
        int first = 1 + l * (nrb + 1);
        int64_t width = dim (view_get (v, "input_blocks.%d.0.out_layers.3.weight", first), 0);
        if (width < 1 || width % u->model_channels || width / u->model_channels > MAX_MULT)
            return false;
        u->channel_mult[l] = (int) (width / u->model_channels);
        if (view_get (v, "input_blocks.%d.1.norm.weight", first))
            u->attention_resolutions[u->n_attention_resolutions++] = 1 << l;
    }
    if (levels > 1) {
        int down = nrb + 1;
        u->resblock_updown = view_get (v, "input_blocks.%d.0.in_layers.0.weight", down) != NULL;
        u->conv_resample = u->resblock_updown
                           || view_get (v, "input_blocks.%d.0.op.weight", down) != NULL;
    }
    int64_t emb_out = dim (view_get (v, "input_blocks.1.0.emb_layers.1.weight"), 0);
    u->use_scale_shift_norm = emb_out == 2 * u->model_channels * u->channel_mult[0];
    u->num_classes = (int) MAX (0, MIN (dim (view_get (v, "label_emb.weight"), 0), MAX_CLASSES));

    if (view_get (v, "middle_block.1.proj_in.weight")) {
        const LdmTensor *proj_in = view_get (v, "middle_block.1.proj_in.weight");
        u->use_spatial_transformer = true;
        u->use_linear_in_transformer = proj_in->ndim == 2;
        int depth = 0;
        while (depth < MAX_DEPTH
               && view_get (v, "middle_block.1.transformer_blocks.%d.norm1.weight", depth))
            depth++;
        u->transformer_depth = MAX (depth, 1);
        int64_t context
            = dim (view_get (v, "middle_block.1.transformer_blocks.0.attn2.to_k.weight"), 1);
        if (!fits_int (context, MAX_CONTEXT_DIM))
            return false;
        u->context_dim = (int) context;
        /* Self-attention disabled = attn1 reads the context (seen when widths differ). */
        int64_t inner = dim (proj_in, 0);
        u->disable_middle_self_attn
            = dim (view_get (v, "middle_block.1.transformer_blocks.0.attn1.to_k.weight"), 1)
              != inner;
        for (int l = 0; l < levels; l++) {
            int first = 1 + l * (nrb + 1);
            int64_t in = dim (view_get (v, "input_blocks.%d.1.proj_in.weight", first), 0);
            int64_t k = dim (
                view_get (v, "input_blocks.%d.1.transformer_blocks.0.attn1.to_k.weight", first),
                1);
            u->disable_self_attentions[l] = in > 0 && k != in;
            u->has_disable_self_attentions |= u->disable_self_attentions[l];
        }
    } else if (!view_get (v, "middle_block.1.qkv.weight")) {
        return false;
    }
    return true;
}

/* The first stage's structure, read from its tensors (resolution 256 as in every CompVis
 * config: it only places attention, and only relative to the levels). */
static bool
infer_autoencoder (const TensorView *v, LdmAutoencoderConfig *ae)
{
    LdmModelConfig defaults;
    model_config_init_defaults (&defaults);
    *ae = defaults.first_stage;

    const LdmTensor *codebook = view_get (v, "quantize.embedding.weight");
    const LdmTensor *conv_in = view_get (v, "encoder.conv_in.weight");
    const LdmTensor *enc_out = view_get (v, "encoder.conv_out.weight");
    const LdmTensor *dec_in = view_get (v, "decoder.conv_in.weight");
    const LdmTensor *dec_out = view_get (v, "decoder.conv_out.weight");
    const LdmTensor *post_quant = view_get (v, "post_quant_conv.weight");
    if (!fits_int (dim (conv_in, 0), MAX_CHANNELS) || !fits_int (dim (conv_in, 1), MAX_IO_CHANNELS)
        || !fits_int (dim (dec_out, 0), MAX_IO_CHANNELS)
        || !fits_int (dim (dec_in, 1), MAX_IO_CHANNELS)
        || !fits_int (dim (post_quant, 1), MAX_IO_CHANNELS) || !enc_out)
        return false;
    ae->kind = codebook ? LDM_AUTOENCODER_VQ : LDM_AUTOENCODER_KL;
    ae->ch = (int) dim (conv_in, 0);
    ae->in_channels = (int) dim (conv_in, 1);
    ae->out_ch = (int) dim (dec_out, 0);
    ae->z_channels = (int) dim (dec_in, 1);
    ae->double_z = dim (enc_out, 0) == 2 * ae->z_channels;
    ae->embed_dim = (int) dim (post_quant, 1);
    if (codebook) {
        if (!fits_int (dim (codebook, 0), MAX_CODES))
            return false;
        ae->n_embed = (int) dim (codebook, 0);
    } else {
        ae->n_embed = 0;
    }
    ae->resolution = 256;
    ae->n_levels = 0;
    while (ae->n_levels < LDM_MAX_LEVELS
           && view_get (v, "encoder.down.%d.block.0.conv1.weight", ae->n_levels)) {
        int64_t width = dim (view_get (v, "encoder.down.%d.block.0.conv1.weight", ae->n_levels), 0);
        if (width < 1 || width % ae->ch || width / ae->ch > MAX_MULT)
            return false;
        ae->ch_mult[ae->n_levels] = (int) (width / ae->ch);
        if (view_get (v, "encoder.down.%d.attn.0.q.weight", ae->n_levels))
            ae->attn_resolutions[ae->n_attn_resolutions++] = ae->resolution >> ae->n_levels;
        ae->n_levels++;
    }
    ae->num_res_blocks = 0;
    while (ae->num_res_blocks < MAX_RES_BLOCKS
           && view_get (v, "encoder.down.0.block.%d.conv1.weight", ae->num_res_blocks))
        ae->num_res_blocks++;
    ae->mid_attention = view_get (v, "encoder.mid.attn_1.q.weight") != NULL;
    return ae->n_levels > 0 && ae->num_res_blocks > 0;
}

void
model_config_append_ints (GString *s, const int *values, int n)
{
    g_string_append_c (s, '[');
    for (int i = 0; i < n; i++)
        g_string_append_printf (s, i ? ", %d" : "%d", values[i]);
    g_string_append_c (s, ']');
}

static void
describe_unet_structure (GString *s, const LdmUnetConfig *u)
{
    g_string_append_printf (s, "a U-Net with in %d, out %d, model_channels %d, channel_mult ",
                            u->in_channels, u->out_channels, u->model_channels);
    model_config_append_ints (s, u->channel_mult, u->n_levels);
    g_string_append_printf (s, ", %d res blocks per level, attention at ", u->num_res_blocks);
    model_config_append_ints (s, u->attention_resolutions, u->n_attention_resolutions);
    if (u->use_spatial_transformer)
        g_string_append_printf (s, " (spatial transformers, context_dim %d)", u->context_dim);
    else
        g_string_append (s, " (attention blocks)");
    if (u->resblock_updown)
        g_string_append (s, ", resblock up/down");
}

static void
describe_ae_structure (GString *s, const LdmAutoencoderConfig *ae)
{
    if (ae->kind == LDM_AUTOENCODER_VQ)
        g_string_append_printf (s, "a VQ first stage (%d codes of %d)", ae->n_embed,
                                ae->embed_dim);
    else
        g_string_append_printf (s, "a KL first stage (embed_dim %d)", ae->embed_dim);
    g_string_append_printf (s, " with ch %d, ch_mult ", ae->ch);
    model_config_append_ints (s, ae->ch_mult, ae->n_levels);
    g_string_append_printf (s, ", %d res blocks, mid attention %s", ae->num_res_blocks,
                            ae->mid_attention ? "on" : "off");
}

static const char NEED_CONFIG[]
    = "put the model's CompVis config beside it (as <model name>.yaml or config.yaml)";

gboolean
model_config_recognise (const LdmTensorFile *file, LdmModelConfig *config, GError **error)
{
    model_config_init_defaults (config);
    const char *path = ldm_tensor_file_path (file);
    TensorView unet = { file, LDM_UNET_PREFIX, false };
    if (!view_get (&unet, "input_blocks.0.0.weight")) {
        unet.ema = true;
        if (!view_get (&unet, "input_blocks.0.0.weight")) {
            g_set_error (error, LDM_ERROR, LDM_ERROR_MODEL,
                         "%s: no diffusion U-Net (model.diffusion_model.*): not a CompVis "
                         "latent-diffusion checkpoint",
                         path);
            return FALSE;
        }
    }

    /* Count the input blocks; an average-pool downsample leaves one index without tensors. */
    int n_input_blocks = 0, misses = 0;
    for (int i = 1; i < 1 + LDM_MAX_LEVELS * (MAX_RES_BLOCKS + 1) && misses < 2; i++) {
        if (view_get (&unet, "input_blocks.%d.0.in_layers.0.weight", i)
            || view_get (&unet, "input_blocks.%d.0.op.weight", i)) {
            n_input_blocks = i;
            misses = 0;
        } else {
            misses++;
        }
    }

    /* Each res-block count that divides the blocks into levels gives a candidate; the one
     * whose parameter list is exactly the file's is the structure. */
    LdmUnetConfig found_unet;
    bool have_unet = false;
    for (int nrb = 1; nrb <= MAX_RES_BLOCKS && !have_unet; nrb++) {
        if (!infer_unet_candidate (&unet, n_input_blocks, nrb, &found_unet))
            continue;
        g_autoptr (GArray) params = model_config_unet_params (&found_unet);
        have_unet = view_matches_exactly (&unet, params);
    }
    TensorView first = { file, LDM_FIRST_STAGE_PREFIX, false };
    LdmAutoencoderConfig found_ae;
    bool have_ae = infer_autoencoder (&first, &found_ae);
    if (have_ae) {
        g_autoptr (GArray) params = model_config_autoencoder_params (&found_ae);
        have_ae = view_matches_exactly (&first, params);
    }
    if (!have_unet || !have_ae) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_MODEL,
                     "%s: no config beside the model, and its %s tensors are not a CompVis "
                     "%s the engine can recognise: %s",
                     path, have_unet ? LDM_FIRST_STAGE_PREFIX "*" : "model.diffusion_model.*",
                     have_unet ? "VQ or KL autoencoder" : "U-Net", NEED_CONFIG);
        return FALSE;
    }

    g_autoptr (GArray) unet_params = model_config_unet_params (&found_unet);
    g_autoptr (GArray) ae_params = model_config_autoencoder_params (&found_ae);
    for (int i = 0; i < LDM_PRESET_COUNT; i++) {
        LdmModelConfig preset;
        model_config_preset ((LdmPreset) i, &preset);
        g_autoptr (GArray) preset_unet = model_config_unet_params (&preset.unet);
        g_autoptr (GArray) preset_ae = model_config_autoencoder_params (&preset.first_stage);
        if (params_equal (unet_params, preset_unet) && params_equal (ae_params, preset_ae)) {
            *config = preset;
            g_snprintf (config->source, sizeof config->source,
                        "recognised from tensor shapes as %s (%s)",
                        model_config_preset_name ((LdmPreset) i),
                        model_config_preset_title ((LdmPreset) i));
            return model_config_check (config, path, error);
        }
    }

    g_autoptr (GString) found = g_string_new (NULL);
    describe_unet_structure (found, &found_unet);
    g_string_append (found, " and ");
    describe_ae_structure (found, &found_ae);
    g_autoptr (GString) known = g_string_new (NULL);
    for (int i = 0; i < LDM_PRESET_COUNT; i++)
        g_string_append_printf (known, "%s%s", i ? ", " : "", model_config_preset_name (i));
    g_set_error (error, LDM_ERROR, LDM_ERROR_MODEL,
                 "%s: no config beside the model, and its tensors (%s) match none of the "
                 "built-in models (%s): %s",
                 path, found->str, known->str, NEED_CONFIG);
    return FALSE;
}
