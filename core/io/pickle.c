/* pickle.c: PyTorch zip checkpoints (.ckpt, .pt, .pth written by torch.save >= 1.6).
 *
 * The zip is read in place (zip_reader.c): a storage's bytes are used straight from the
 * mapping, never copied or inflated. data.pkl is run by a restricted pickle machine
 * that EXECUTES NOTHING: it recognises the few globals a state_dict is made of (OrderedDict,
 * the tensor rebuild functions, the typed storage classes); every other global it meets
 * (Lightning's optimizer states, callbacks, hyper-parameters, or a hostile os.system) becomes
 * an opaque value that is never called and never looked inside.
 */
#include "io/zip_reader.h"

#include <limits.h>
#include <stdarg.h>
#include <string.h>

/* A bump allocator: every value of one unpickling lives until the parse ends, then all go at
 * once, so shared values (memo, DUP) need no ownership rules. */
typedef struct {
    GPtrArray *chunks;
    uint8_t   *cursor;
    size_t     left;
} Arena;

#define ARENA_CHUNK (64u * 1024u)

static void *
arena_alloc (Arena *arena, size_t size)
{
    size = (size + 15) & ~(size_t) 15; /* g_malloc's alignment is at least 16 here */
    if (size > arena->left) {
        size_t chunk = MAX (size, (size_t) ARENA_CHUNK);
        arena->cursor = g_malloc0 (chunk);
        arena->left = chunk;
        g_ptr_array_add (arena->chunks, arena->cursor);
    }
    void *p = arena->cursor;
    arena->cursor += size;
    arena->left -= size;
    return p;
}

typedef enum {
    VALUE_NONE,
    VALUE_BOOL,
    VALUE_INT,
    VALUE_FLOAT,
    VALUE_STRING,
    VALUE_BYTES,
    VALUE_TUPLE,
    VALUE_LIST,
    VALUE_SET,
    VALUE_DICT, /* items are key, value, key, value, ... in insertion order */
    VALUE_GLOBAL,
    VALUE_STORAGE,
    VALUE_TENSOR,
    VALUE_OPAQUE, /* made by a global this machine does not apply */
} ValueKind;

typedef struct {
    const char *chars; /* in the pickle, not NUL-terminated */
    size_t      length;
} Text;

typedef struct Value Value;

typedef struct {
    Value **items;
    size_t  count;
    size_t  capacity;
} ValueArray;

typedef struct {
    LdmDType dtype; /* LDM_DTYPE_COUNT: a storage class this engine does not read */
    Text     class_name;
    Text     key;   /* the record is <folder>/data/<key> */
    int64_t  numel;
} Storage;

typedef struct {
    const Storage *storage;
    int64_t        offset; /* in elements */
    int            ndim;   /* may exceed LDM_MAX_DIMS: only the first ones are kept */
    int64_t        size[LDM_MAX_DIMS];
    int64_t        stride[LDM_MAX_DIMS];
} Tensor;

struct Value {
    ValueKind kind;
    union {
        gboolean   boolean;
        int64_t    integer;
        double     real;
        Text       text;  /* string, bytes */
        ValueArray array; /* tuple, list, set, dict */
        struct {
            Text module, name;
        } global;         /* global; opaque: what made it (may be empty) */
        Storage *storage;
        Tensor  *tensor;
    };
};

enum {
    OP_MARK = '(', OP_STOP = '.', OP_POP = '0', OP_POP_MARK = '1', OP_DUP = '2',
    OP_BININT = 'J', OP_BININT1 = 'K', OP_BININT2 = 'M', OP_NONE = 'N',
    OP_BINPERSID = 'Q', OP_REDUCE = 'R', OP_BINSTRING = 'T', OP_SHORT_BINSTRING = 'U',
    OP_BINUNICODE = 'X', OP_APPEND = 'a', OP_BUILD = 'b', OP_GLOBAL = 'c', OP_DICT = 'd',
    OP_EMPTY_DICT = '}', OP_APPENDS = 'e', OP_BINGET = 'h', OP_LONG_BINGET = 'j',
    OP_LIST = 'l', OP_EMPTY_LIST = ']', OP_BINPUT = 'q', OP_LONG_BINPUT = 'r',
    OP_SETITEM = 's', OP_TUPLE = 't', OP_EMPTY_TUPLE = ')', OP_SETITEMS = 'u',
    OP_BINFLOAT = 'G', OP_BINBYTES = 'B', OP_SHORT_BINBYTES = 'C',
    OP_PROTO = 0x80, OP_NEWOBJ = 0x81, OP_TUPLE1 = 0x85, OP_TUPLE2 = 0x86, OP_TUPLE3 = 0x87,
    OP_NEWTRUE = 0x88, OP_NEWFALSE = 0x89, OP_LONG1 = 0x8a, OP_LONG4 = 0x8b,
    OP_SHORT_BINUNICODE = 0x8c, OP_BINUNICODE8 = 0x8d, OP_BINBYTES8 = 0x8e,
    OP_EMPTY_SET = 0x8f, OP_ADDITEMS = 0x90, OP_FROZENSET = 0x91, OP_NEWOBJ_EX = 0x92,
    OP_STACK_GLOBAL = 0x93, OP_MEMOIZE = 0x94, OP_FRAME = 0x95, OP_BYTEARRAY8 = 0x96,
};

#define PICKLE_HIGHEST_PROTOCOL 5
/* Real data.pkl files are well under a megabyte even for large models; this bounds the memory
 * a hostile one can make the machine use (values, stack and memo all grow with its size). */
#define MAX_PICKLE_BYTES (64u * 1024u * 1024u)

typedef struct {
    LdmTensorFile *file;
    GError       **error;
    const uint8_t *pickle;
    size_t         size;
    size_t         pos;
    size_t         op_at; /* offset of the opcode being run, for messages */
    Arena          arena;
    Value        **stack;
    size_t         depth, stack_capacity;
    size_t        *marks; /* stack depths at each MARK */
    size_t         mark_count, mark_capacity;
    Value        **memo;  /* NULL: not set */
    size_t         memo_capacity, memo_count;
    Value         *none, *true_value, *false_value, *empty_tuple;
} Unpickler;

static gboolean G_GNUC_PRINTF (2, 3)
fail (Unpickler *u, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    char *message = g_strdup_vprintf (format, args);
    va_end (args);
    tensor_file_set_error (u->error, u->file, LDM_ERROR_FORMAT, "data.pkl: %s", message);
    g_free (message);
    return FALSE;
}

static Value *
new_value (Unpickler *u, ValueKind kind)
{
    Value *value = arena_alloc (&u->arena, sizeof *value);
    value->kind = kind;
    return value;
}

static Value *
new_array_value (Unpickler *u, ValueKind kind, Value *const *items, size_t count)
{
    Value *value = new_value (u, kind);
    value->array.capacity = MAX (count, (size_t) 4);
    value->array.items = arena_alloc (&u->arena, value->array.capacity * sizeof (Value *));
    if (count)
        memcpy (value->array.items, items, count * sizeof (Value *));
    value->array.count = count;
    return value;
}

static void
array_append (Unpickler *u, ValueArray *array, Value *const *items, size_t count)
{
    if (count > array->capacity - array->count) {
        /* Old buffers stay in the arena; doubling keeps the waste within a factor of two. */
        size_t capacity = MAX (array->capacity * 2, array->count + count);
        Value **grown = arena_alloc (&u->arena, capacity * sizeof (Value *));
        if (array->count)
            memcpy (grown, array->items, array->count * sizeof (Value *));
        array->items = grown;
        array->capacity = capacity;
    }
    memcpy (array->items + array->count, items, count * sizeof (Value *));
    array->count += count;
}

static gboolean
text_equals (Text text, const char *literal)
{
    size_t length = strlen (literal);
    return text.length == length && memcmp (text.chars, literal, length) == 0;
}

static gboolean
is_global (const Value *value, const char *module, const char *name)
{
    return value->kind == VALUE_GLOBAL && text_equals (value->global.module, module)
           && text_equals (value->global.name, name);
}

/* "os.system" for a global (or what made an opaque value). */
static char *
global_name (const Value *value)
{
    char *module = tensor_file_printable (value->global.module.chars, value->global.module.length);
    char *name = tensor_file_printable (value->global.name.chars, value->global.name.length);
    char *text = g_strdup_printf ("%s.%s", module, name);
    g_free (module);
    g_free (name);
    return text;
}

/* "a list", "an object made by os.system", ... for messages. */
static char *
describe_value (const Value *value)
{
    switch (value->kind) {
    case VALUE_NONE: return g_strdup ("None");
    case VALUE_BOOL: return g_strdup ("a bool");
    case VALUE_INT: return g_strdup ("an int");
    case VALUE_FLOAT: return g_strdup ("a float");
    case VALUE_STRING: return g_strdup ("a string");
    case VALUE_BYTES: return g_strdup ("a bytes object");
    case VALUE_TUPLE: return g_strdup ("a tuple");
    case VALUE_LIST: return g_strdup ("a list");
    case VALUE_SET: return g_strdup ("a set");
    case VALUE_DICT: return g_strdup ("a dict");
    case VALUE_STORAGE: return g_strdup ("a storage");
    case VALUE_TENSOR: return g_strdup ("a tensor");
    case VALUE_GLOBAL:
    case VALUE_OPAQUE: {
        if (value->global.module.length == 0 && value->global.name.length == 0)
            return g_strdup ("an object of unknown type");
        char *name = global_name (value);
        char *text = g_strdup_printf (value->kind == VALUE_GLOBAL ? "the global %s"
                                                                  : "an object made by %s",
                                      name);
        g_free (name);
        return text;
    }
    }
    return g_strdup ("a value");
}

static Value *
new_opaque (Unpickler *u, const Value *maker)
{
    Value *value = new_value (u, VALUE_OPAQUE);
    if (maker->kind == VALUE_GLOBAL || maker->kind == VALUE_OPAQUE)
        value->global = maker->global;
    return value;
}

/* --------------------------------------------------------------- stack */

static gboolean
push (Unpickler *u, Value *value)
{
    if (u->depth == u->stack_capacity) {
        /* Each push takes at least one opcode byte, so the pickle's size bounds the stack. */
        if (u->depth > u->size)
            return fail (u, "the stack grows past the pickle's size");
        u->stack_capacity = MAX (u->stack_capacity * 2, (size_t) 64);
        u->stack = g_renew (Value *, u->stack, u->stack_capacity);
    }
    u->stack[u->depth++] = value;
    return TRUE;
}

static size_t
stack_floor (const Unpickler *u)
{
    return u->mark_count ? u->marks[u->mark_count - 1] : 0;
}

static Value *
peek (Unpickler *u)
{
    if (u->depth <= stack_floor (u)) {
        fail (u, "stack underflow at offset %zu (opcode 0x%02x)", u->op_at, u->pickle[u->op_at]);
        return NULL;
    }
    return u->stack[u->depth - 1];
}

static Value *
pop (Unpickler *u)
{
    Value *value = peek (u);
    if (value)
        u->depth--;
    return value;
}

static gboolean
push_mark (Unpickler *u)
{
    if (u->mark_count == u->mark_capacity) {
        if (u->mark_count > u->size)
            return fail (u, "too many MARKs");
        u->mark_capacity = MAX (u->mark_capacity * 2, (size_t) 16);
        u->marks = g_renew (size_t, u->marks, u->mark_capacity);
    }
    u->marks[u->mark_count++] = u->depth;
    return TRUE;
}

/* Pops everything above the last MARK, and the MARK. The items stay readable in the stack
 * array only until the next push. */
static gboolean
pop_mark (Unpickler *u, Value ***items, size_t *count)
{
    if (u->mark_count == 0)
        return fail (u, "opcode 0x%02x at offset %zu needs a MARK and there is none",
                     u->pickle[u->op_at], u->op_at);
    size_t mark = u->marks[--u->mark_count];
    *items = u->stack + mark;
    *count = u->depth - mark;
    u->depth = mark;
    return TRUE;
}

/* ---------------------------------------------------------------- input */

static gboolean
take (Unpickler *u, uint64_t count, const uint8_t **bytes)
{
    if (count > u->size - u->pos)
        return fail (u, "truncated: opcode 0x%02x at offset %zu needs %" G_GUINT64_FORMAT
                        " bytes, only %zu are left",
                     u->pickle[u->op_at], u->op_at, count, u->size - u->pos);
    *bytes = u->pickle + u->pos;
    u->pos += count;
    return TRUE;
}

static gboolean
take_uint (Unpickler *u, int width, uint64_t *value)
{
    const uint8_t *p;
    if (!take (u, (uint64_t) width, &p))
        return FALSE;
    *value = 0;
    for (int i = width - 1; i >= 0; i--)
        *value = *value << 8 | p[i];
    return TRUE;
}

static gboolean
take_line (Unpickler *u, Text *text)
{
    const uint8_t *start = u->pickle + u->pos;
    const uint8_t *newline = memchr (start, '\n', u->size - u->pos);
    if (!newline)
        return fail (u, "truncated: GLOBAL at offset %zu has no end of line", u->op_at);
    text->chars = (const char *) start;
    text->length = (size_t) (newline - start);
    u->pos += text->length + 1;
    return TRUE;
}

static gboolean
push_text_of_length (Unpickler *u, ValueKind kind, uint64_t length)
{
    const uint8_t *chars;
    if (!take (u, length, &chars))
        return FALSE;
    Value *value = new_value (u, kind);
    value->text = (Text) { (const char *) chars, (size_t) length };
    return push (u, value);
}

static gboolean
push_text (Unpickler *u, ValueKind kind, int length_width)
{
    uint64_t length;
    return take_uint (u, length_width, &length) && push_text_of_length (u, kind, length);
}

static gboolean
push_int (Unpickler *u, int64_t integer)
{
    Value *value = new_value (u, VALUE_INT);
    value->integer = integer;
    return push (u, value);
}

/* LONG1 / LONG4: little-endian two's complement of any length. */
static gboolean
push_long (Unpickler *u, int length_width)
{
    uint64_t length;
    const uint8_t *bytes;
    if (!take_uint (u, length_width, &length) || !take (u, length, &bytes))
        return FALSE;
    if (length > 8) { /* beyond int64: no tensor field can be that large */
        Value *value = new_value (u, VALUE_OPAQUE);
        value->global.module = (Text) { "builtins", 8 };
        value->global.name = (Text) { "int", 3 };
        return push (u, value);
    }
    uint64_t bits = 0;
    for (size_t i = length; i-- > 0;)
        bits = bits << 8 | bytes[i];
    if (length > 0 && length < 8 && (bytes[length - 1] & 0x80))
        bits |= ~(uint64_t) 0 << (8 * length); /* sign-extend */
    int64_t integer;
    memcpy (&integer, &bits, sizeof integer);
    return push_int (u, integer);
}

/* ----------------------------------------------------------------- memo */

static gboolean
memo_put (Unpickler *u, uint64_t index)
{
    Value *value = peek (u);
    if (!value)
        return FALSE;
    /* Picklers number memo entries 0, 1, 2, ...; each PUT takes at least two bytes. */
    if (index >= u->size)
        return fail (u, "memo index %" G_GUINT64_FORMAT " at offset %zu is out of range", index,
                     u->op_at);
    if (index >= u->memo_capacity) {
        size_t capacity = MAX ((size_t) index + 1, u->memo_capacity * 2);
        capacity = MIN (capacity, u->size);
        u->memo = g_renew (Value *, u->memo, capacity);
        memset (u->memo + u->memo_capacity, 0, (capacity - u->memo_capacity) * sizeof (Value *));
        u->memo_capacity = capacity;
    }
    if (!u->memo[index])
        u->memo_count++;
    u->memo[index] = value;
    return TRUE;
}

static gboolean
memo_get (Unpickler *u, uint64_t index)
{
    if (index >= u->memo_capacity || !u->memo[index])
        return fail (u, "memo index %" G_GUINT64_FORMAT " at offset %zu was never set", index,
                     u->op_at);
    return push (u, u->memo[index]);
}

/* ---------------------------------------------------- recognised globals */

static const struct {
    const char *name;
    LdmDType    dtype;
} storage_classes[] = {
    { "FloatStorage", LDM_DTYPE_F32 },   { "HalfStorage", LDM_DTYPE_F16 },
    { "BFloat16Storage", LDM_DTYPE_BF16 }, { "DoubleStorage", LDM_DTYPE_F64 },
    { "LongStorage", LDM_DTYPE_I64 },    { "IntStorage", LDM_DTYPE_I32 },
    { "ShortStorage", LDM_DTYPE_I16 },   { "CharStorage", LDM_DTYPE_I8 },
    { "ByteStorage", LDM_DTYPE_U8 },     { "BoolStorage", LDM_DTYPE_BOOL },
};

static gboolean
get_int (const Value *value, int64_t *integer)
{
    if (value->kind == VALUE_INT) {
        *integer = value->integer;
        return TRUE;
    }
    if (value->kind == VALUE_BOOL) {
        *integer = value->boolean;
        return TRUE;
    }
    return FALSE;
}

/* BINPERSID: torch's persistent id of a storage, ('storage', class, key, location, numel). */
static Value *
load_storage (Unpickler *u, const Value *pid)
{
    const ValueArray *fields = &pid->array;
    int64_t numel;
    if (pid->kind != VALUE_TUPLE || fields->count != 5 || fields->items[0]->kind != VALUE_STRING
        || !text_equals (fields->items[0]->text, "storage")
        || fields->items[1]->kind != VALUE_GLOBAL || fields->items[2]->kind != VALUE_STRING
        || fields->items[3]->kind != VALUE_STRING || !get_int (fields->items[4], &numel)
        || numel < 0) {
        fail (u, "persistent id at offset %zu is not a torch storage ('storage', class, key, "
                 "location, numel)",
              u->op_at);
        return NULL;
    }
    const Value *class = fields->items[1];
    if (!text_equals (class->global.module, "torch")) {
        char *name = global_name (class);
        fail (u, "storage at offset %zu has the class %s, which is not a torch storage",
              u->op_at, name);
        g_free (name);
        return NULL;
    }
    Storage *storage = arena_alloc (&u->arena, sizeof *storage);
    storage->dtype = LDM_DTYPE_COUNT;
    for (size_t i = 0; i < G_N_ELEMENTS (storage_classes); i++)
        if (text_equals (class->global.name, storage_classes[i].name))
            storage->dtype = storage_classes[i].dtype;
    storage->class_name = class->global.name;
    storage->key = fields->items[2]->text;
    storage->numel = numel;
    Value *value = new_value (u, VALUE_STORAGE);
    value->storage = storage;
    return value;
}

static gboolean
get_int_tuple (const Value *value, int64_t *out, int *count)
{
    if (value->kind != VALUE_TUPLE)
        return FALSE;
    for (size_t i = 0; i < value->array.count; i++) {
        int64_t integer;
        if (!get_int (value->array.items[i], &integer))
            return FALSE;
        if (i < LDM_MAX_DIMS)
            out[i] = integer;
    }
    *count = (int) MIN (value->array.count, (size_t) INT_MAX);
    return TRUE;
}

/* _rebuild_tensor_v2 (storage, storage_offset, size, stride, requires_grad, backward_hooks
 * [, metadata]) and the older _rebuild_tensor (storage, storage_offset, size, stride). */
static Value *
rebuild_tensor (Unpickler *u, const Value *args, gboolean v2)
{
    const ValueArray *a = &args->array;
    if (args->kind != VALUE_TUPLE
        || !(v2 ? (a->count == 6 || a->count == 7) : a->count == 4)) {
        fail (u, "a tensor at offset %zu is rebuilt with wrong arguments", u->op_at);
        return NULL;
    }
    if (a->items[0]->kind != VALUE_STORAGE) {
        char *what = describe_value (a->items[0]);
        fail (u, "a tensor at offset %zu is rebuilt from %s, not from a storage", u->op_at, what);
        g_free (what);
        return NULL;
    }
    Tensor *tensor = arena_alloc (&u->arena, sizeof *tensor);
    tensor->storage = a->items[0]->storage;
    int size_count = 0, stride_count = 0;
    if (!get_int (a->items[1], &tensor->offset) || tensor->offset < 0
        || !get_int_tuple (a->items[2], tensor->size, &size_count)
        || !get_int_tuple (a->items[3], tensor->stride, &stride_count)
        || size_count != stride_count) {
        fail (u, "a tensor at offset %zu has a malformed offset, size or stride", u->op_at);
        return NULL;
    }
    tensor->ndim = size_count;
    Value *value = new_value (u, VALUE_TENSOR);
    value->tensor = tensor;
    return value;
}

/* REDUCE / NEWOBJ: applies the recognised globals; anything else is never called and becomes
 * an opaque value. `nesting` bounds _rebuild_from_type_v2, the one recognised global that
 * applies another. */
static Value *
apply (Unpickler *u, const Value *callable, const Value *args, int nesting)
{
    if (callable->kind != VALUE_GLOBAL)
        return new_opaque (u, callable);
    if (is_global (callable, "collections", "OrderedDict")) {
        if (args->kind == VALUE_TUPLE && args->array.count == 0)
            return new_array_value (u, VALUE_DICT, NULL, 0);
        return new_opaque (u, callable);
    }
    if (is_global (callable, "torch._utils", "_rebuild_tensor_v2"))
        return rebuild_tensor (u, args, TRUE);
    if (is_global (callable, "torch._utils", "_rebuild_tensor"))
        return rebuild_tensor (u, args, FALSE);
    if (is_global (callable, "torch._utils", "_rebuild_parameter")
        || is_global (callable, "torch._utils", "_rebuild_parameter_with_state")) {
        /* A Parameter wraps its tensor: (data, requires_grad, backward_hooks[, state]). */
        if (args->kind == VALUE_TUPLE && args->array.count >= 1
            && args->array.items[0]->kind == VALUE_TENSOR)
            return args->array.items[0];
        return new_opaque (u, callable);
    }
    if (is_global (callable, "torch._tensor", "_rebuild_from_type_v2") && nesting == 0) {
        /* A tensor subclass: (function, type, args, state); the tensor is function(*args). */
        if (args->kind == VALUE_TUPLE && args->array.count == 4
            && args->array.items[2]->kind == VALUE_TUPLE)
            return apply (u, args->array.items[0], args->array.items[2], nesting + 1);
        return new_opaque (u, callable);
    }
    return new_opaque (u, callable);
}

/* -------------------------------------------------------------- machine */

static gboolean
push_from_mark (Unpickler *u, ValueKind kind)
{
    Value **items;
    size_t count;
    if (!pop_mark (u, &items, &count))
        return FALSE;
    if (kind == VALUE_DICT && count % 2 != 0)
        return fail (u, "DICT at offset %zu has an odd number of items", u->op_at);
    return push (u, new_array_value (u, kind, items, count));
}

static gboolean
push_tuple_of (Unpickler *u, size_t count)
{
    if (u->depth - stack_floor (u) < count)
        return fail (u, "stack underflow at offset %zu (opcode 0x%02x)", u->op_at,
                     u->pickle[u->op_at]);
    u->depth -= count;
    return push (u, new_array_value (u, VALUE_TUPLE, u->stack + u->depth, count));
}

/* APPEND(S), SETITEM(S), ADDITEMS: add to the container under the items. Python would call
 * methods of an arbitrary object here; an opaque object just drops the items. */
static gboolean
add_to_container (Unpickler *u, ValueKind kind, Value **items, size_t count)
{
    Value *container = peek (u);
    if (!container)
        return FALSE;
    if (container->kind == VALUE_OPAQUE)
        return TRUE;
    if (container->kind != kind) {
        char *what = describe_value (container);
        fail (u, "opcode 0x%02x at offset %zu adds items to %s", u->pickle[u->op_at], u->op_at,
              what);
        g_free (what);
        return FALSE;
    }
    if (kind == VALUE_DICT && count % 2 != 0)
        return fail (u, "SETITEMS at offset %zu has an odd number of items", u->op_at);
    array_append (u, &container->array, items, count);
    return TRUE;
}

static gboolean
add_from_mark (Unpickler *u, ValueKind kind)
{
    Value **items;
    size_t count;
    /* The items stay valid: nothing is pushed until they are added. */
    return pop_mark (u, &items, &count) && add_to_container (u, kind, items, count);
}

static gboolean
add_from_stack (Unpickler *u, ValueKind kind, size_t count)
{
    if (u->depth - stack_floor (u) < count + 1)
        return fail (u, "stack underflow at offset %zu (opcode 0x%02x)", u->op_at,
                     u->pickle[u->op_at]);
    u->depth -= count;
    return add_to_container (u, kind, u->stack + u->depth, count);
}

static Value *
run_pickle (Unpickler *u)
{
    uint64_t n;
    const uint8_t *bytes;
    for (;;) {
        if (u->pos >= u->size) {
            fail (u, "the pickle ends without a STOP opcode");
            return NULL;
        }
        u->op_at = u->pos;
        uint8_t op = u->pickle[u->pos++];
        gboolean ok;
        switch (op) {
        case OP_PROTO:
            ok = take_uint (u, 1, &n);
            if (ok && n > PICKLE_HIGHEST_PROTOCOL)
                ok = fail (u, "pickle protocol %" G_GUINT64_FORMAT " is not supported", n);
            break;
        case OP_FRAME: /* a buffering hint: the frame's contents follow as ordinary opcodes */
            ok = take_uint (u, 8, &n);
            break;
        case OP_STOP: {
            return pop (u);
        }
        case OP_MARK: ok = push_mark (u); break;
        case OP_POP:
            if (u->depth > stack_floor (u)) {
                u->depth--;
                ok = TRUE;
            } else {
                Value **items;
                size_t count;
                ok = pop_mark (u, &items, &count);
            }
            break;
        case OP_POP_MARK: {
            Value **items;
            size_t count;
            ok = pop_mark (u, &items, &count);
            break;
        }
        case OP_DUP: {
            Value *top = peek (u);
            ok = top && push (u, top);
            break;
        }
        case OP_NONE: ok = push (u, u->none); break;
        case OP_NEWTRUE: ok = push (u, u->true_value); break;
        case OP_NEWFALSE: ok = push (u, u->false_value); break;
        case OP_BININT:
            ok = take_uint (u, 4, &n) && push_int (u, (int32_t) (uint32_t) n);
            break;
        case OP_BININT1: ok = take_uint (u, 1, &n) && push_int (u, (int64_t) n); break;
        case OP_BININT2: ok = take_uint (u, 2, &n) && push_int (u, (int64_t) n); break;
        case OP_LONG1: ok = push_long (u, 1); break;
        case OP_LONG4: ok = push_long (u, 4); break;
        case OP_BINFLOAT:
            ok = take (u, 8, &bytes);
            if (ok) {
                uint64_t bits = 0;
                for (int i = 0; i < 8; i++)
                    bits = bits << 8 | bytes[i]; /* big-endian */
                Value *value = new_value (u, VALUE_FLOAT);
                memcpy (&value->real, &bits, sizeof bits);
                ok = push (u, value);
            }
            break;
        case OP_SHORT_BINUNICODE:
        case OP_SHORT_BINSTRING: ok = push_text (u, VALUE_STRING, 1); break;
        case OP_BINUNICODE: ok = push_text (u, VALUE_STRING, 4); break;
        case OP_BINUNICODE8: ok = push_text (u, VALUE_STRING, 8); break;
        case OP_BINSTRING: /* a signed length */
            ok = take_uint (u, 4, &n);
            if (ok && n > INT32_MAX)
                ok = fail (u, "BINSTRING at offset %zu has a negative length", u->op_at);
            if (ok)
                ok = push_text_of_length (u, VALUE_STRING, n);
            break;
        case OP_SHORT_BINBYTES: ok = push_text (u, VALUE_BYTES, 1); break;
        case OP_BINBYTES: ok = push_text (u, VALUE_BYTES, 4); break;
        case OP_BINBYTES8:
        case OP_BYTEARRAY8: ok = push_text (u, VALUE_BYTES, 8); break;
        case OP_EMPTY_TUPLE: ok = push (u, u->empty_tuple); break;
        case OP_EMPTY_LIST: ok = push (u, new_array_value (u, VALUE_LIST, NULL, 0)); break;
        case OP_EMPTY_DICT: ok = push (u, new_array_value (u, VALUE_DICT, NULL, 0)); break;
        case OP_EMPTY_SET: ok = push (u, new_array_value (u, VALUE_SET, NULL, 0)); break;
        case OP_TUPLE: ok = push_from_mark (u, VALUE_TUPLE); break;
        case OP_TUPLE1: ok = push_tuple_of (u, 1); break;
        case OP_TUPLE2: ok = push_tuple_of (u, 2); break;
        case OP_TUPLE3: ok = push_tuple_of (u, 3); break;
        case OP_LIST: ok = push_from_mark (u, VALUE_LIST); break;
        case OP_DICT: ok = push_from_mark (u, VALUE_DICT); break;
        case OP_FROZENSET: ok = push_from_mark (u, VALUE_SET); break;
        case OP_APPEND: ok = add_from_stack (u, VALUE_LIST, 1); break;
        case OP_APPENDS: ok = add_from_mark (u, VALUE_LIST); break;
        case OP_SETITEM: ok = add_from_stack (u, VALUE_DICT, 2); break;
        case OP_SETITEMS: ok = add_from_mark (u, VALUE_DICT); break;
        case OP_ADDITEMS: ok = add_from_mark (u, VALUE_SET); break;
        case OP_GLOBAL: {
            Value *global = new_value (u, VALUE_GLOBAL);
            ok = take_line (u, &global->global.module) && take_line (u, &global->global.name)
                 && push (u, global);
            break;
        }
        case OP_STACK_GLOBAL: {
            Value *name = pop (u);
            Value *module = name ? pop (u) : NULL;
            ok = module != NULL;
            if (ok && (module->kind != VALUE_STRING || name->kind != VALUE_STRING))
                ok = fail (u, "STACK_GLOBAL at offset %zu needs two strings", u->op_at);
            if (ok) {
                Value *global = new_value (u, VALUE_GLOBAL);
                global->global.module = module->text;
                global->global.name = name->text;
                ok = push (u, global);
            }
            break;
        }
        case OP_REDUCE:
        case OP_NEWOBJ: {
            Value *args = pop (u);
            Value *callable = args ? pop (u) : NULL;
            Value *result = callable ? apply (u, callable, args, 0) : NULL;
            ok = result && push (u, result);
            break;
        }
        case OP_NEWOBJ_EX: {
            Value *kwargs = pop (u);
            Value *args = kwargs ? pop (u) : NULL;
            Value *class = args ? pop (u) : NULL;
            ok = class && push (u, new_opaque (u, class));
            break;
        }
        case OP_BUILD: /* sets an object's state: nothing to do on what this machine keeps */
            ok = pop (u) && peek (u);
            break;
        case OP_BINPERSID: {
            Value *pid = pop (u);
            Value *storage = pid ? load_storage (u, pid) : NULL;
            ok = storage && push (u, storage);
            break;
        }
        case OP_BINPUT: ok = take_uint (u, 1, &n) && memo_put (u, n); break;
        case OP_LONG_BINPUT: ok = take_uint (u, 4, &n) && memo_put (u, n); break;
        case OP_MEMOIZE: ok = memo_put (u, u->memo_count); break;
        case OP_BINGET: ok = take_uint (u, 1, &n) && memo_get (u, n); break;
        case OP_LONG_BINGET: ok = take_uint (u, 4, &n) && memo_get (u, n); break;
        default:
            ok = fail (u, "pickle opcode 0x%02x at offset %zu is not supported", op, u->op_at);
            break;
        }
        if (!ok)
            return NULL;
    }
}

/* ------------------------------------------------------------ state_dict */

static const Value *
dict_lookup (const Value *dict, const char *key)
{
    const Value *found = NULL;
    for (size_t i = 0; i + 1 < dict->array.count; i += 2) {
        const Value *k = dict->array.items[i];
        if (k->kind == VALUE_STRING && text_equals (k->text, key))
            found = dict->array.items[i + 1]; /* a later key replaces an earlier one */
    }
    return found;
}

static gboolean
dict_has_tensors (const Value *dict)
{
    for (size_t i = 1; i < dict->array.count; i += 2)
        if (dict->array.items[i]->kind == VALUE_TENSOR)
            return TRUE;
    return FALSE;
}

static gboolean
add_tensor (LdmTensorFile *file, const ZipDirectory *zip, const char *folder, const char *name,
            const Tensor *tensor, GError **error)
{
    const Storage *storage = tensor->storage;
    if (storage->dtype == LDM_DTYPE_COUNT) {
        char *class_name = tensor_file_printable (storage->class_name.chars,
                                                  storage->class_name.length);
        tensor_file_set_error (error, file, LDM_ERROR_UNSUPPORTED,
                               "tensor '%s' has the storage type torch.%s, which is not "
                               "supported",
                               name, class_name);
        g_free (class_name);
        return FALSE;
    }
    char *record_name = g_strdup_printf ("%s/data/%.*s", folder, (int) storage->key.length,
                                         storage->key.chars);
    const ZipRecord *record = NULL;
    if (strlen (record_name) == strlen (folder) + 6 + storage->key.length) /* no NUL in the key */
        record = g_hash_table_lookup (zip->by_name, record_name);
    g_free (record_name);
    char *key = tensor_file_printable (storage->key.chars, storage->key.length);
    gboolean ok = FALSE;
    size_t element_size = ldm_dtype_size (storage->dtype);
    uint64_t storage_bytes, offset_bytes;
    if (!record) {
        tensor_file_set_error (error, file, LDM_ERROR_FORMAT,
                               "tensor '%s' refers to storage '%s' which is not in the zip", name,
                               key);
    } else if (!checked_mul_u64 ((uint64_t) storage->numel, element_size, &storage_bytes)
               || storage_bytes != record->size) {
        tensor_file_set_error (error, file, LDM_ERROR_FORMAT,
                               "storage '%s' of tensor '%s' has %" G_GUINT64_FORMAT
                               " bytes in the zip, but %" G_GINT64_FORMAT
                               " elements of %zu bytes were declared",
                               key, name, record->size, storage->numel, element_size);
    } else if (!checked_mul_u64 ((uint64_t) tensor->offset, element_size, &offset_bytes)
               || offset_bytes > record->size) {
        tensor_file_set_error (error, file, LDM_ERROR_FORMAT,
                               "tensor '%s' starts past the end of its storage '%s'", name, key);
    } else {
        ok = tensor_file_add (file, name, storage->dtype, tensor->ndim, tensor->size,
                              tensor->stride, record->data + offset_bytes,
                              record->size - offset_bytes, error);
        /* Only a view that repeats elements (stride 0) can have more than its storage; a
         * state_dict has none, and a hostile one could claim 2^62 elements from 4 bytes. */
        int64_t numel = ok ? ldm_tensor_numel (ldm_tensor_file_lookup (file, name)) : 0;
        if (numel > storage->numel) {
            tensor_file_set_error (error, file, LDM_ERROR_FORMAT,
                                   "tensor '%s' has %" G_GINT64_FORMAT " elements, more than its "
                                   "storage '%s' holds (%" G_GINT64_FORMAT ")",
                                   name, numel, key, storage->numel);
            ok = FALSE;
        }
    }
    g_free (key);
    return ok;
}

/* The tensors of a Lightning checkpoint's state_dict, or of a plain torch.save (state_dict);
 * tensors elsewhere (optimizer states, ...) are ignored. */
static gboolean
add_state_dict (LdmTensorFile *file, const ZipDirectory *zip, const char *folder,
                const Value *top, GError **error)
{
    if (top->kind != VALUE_DICT) {
        char *what = describe_value (top);
        tensor_file_set_error (error, file, LDM_ERROR_FORMAT,
                               "data.pkl: the checkpoint is %s, not a dict of tensors", what);
        g_free (what);
        return FALSE;
    }
    const Value *state = dict_lookup (top, "state_dict");
    if (!state || state->kind != VALUE_DICT || !dict_has_tensors (state))
        state = top;

    size_t added = 0;
    for (size_t i = 0; i + 1 < state->array.count; i += 2) {
        const Value *key = state->array.items[i], *value = state->array.items[i + 1];
        if (key->kind != VALUE_STRING || value->kind != VALUE_TENSOR)
            continue; /* not a named tensor: rare, harmless */
        if (key->text.length == 0 || memchr (key->text.chars, 0, key->text.length)
            || !g_utf8_validate_len (key->text.chars, key->text.length, NULL)) {
            tensor_file_set_error (error, file, LDM_ERROR_FORMAT,
                                   "data.pkl: a state_dict key is not a valid tensor name");
            return FALSE;
        }
        char *name = g_strndup (key->text.chars, key->text.length);
        gboolean ok = add_tensor (file, zip, folder, name, value->tensor, error);
        g_free (name);
        if (!ok)
            return FALSE;
        added++;
    }
    if (added == 0) {
        tensor_file_set_error (error, file, LDM_ERROR_FORMAT,
                               "data.pkl: the checkpoint holds no tensors (no state_dict of "
                               "tensors)");
        return FALSE;
    }
    return TRUE;
}

/* =============================================================== parse */

gboolean
torch_zip_parse (LdmTensorFile *file, GError **error)
{
    ZipDirectory zip = { 0 };
    char *folder = NULL;
    const ZipRecord *pickle = NULL;
    gboolean ok = zip_read_directory (file, &zip, error)
                  && zip_find_archive_folder (file, &zip, &folder, &pickle, error);
    if (ok && pickle->size > MAX_PICKLE_BYTES) {
        tensor_file_set_error (error, file, LDM_ERROR_UNSUPPORTED,
                               "data.pkl is %" G_GUINT64_FORMAT " bytes; more than %u is not "
                               "supported",
                               pickle->size, MAX_PICKLE_BYTES);
        ok = FALSE;
    }
#ifndef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
    /* Only data.pkl is checked: it is small, and a damaged one could silently rename tensors.
     * torch may write 0 when told not to compute CRCs. */
    if (ok && pickle->crc32 != 0 && zip_crc32 (pickle->data, pickle->size) != pickle->crc32) {
        tensor_file_set_error (error, file, LDM_ERROR_FORMAT,
                               "damaged zip: record '%s' fails its CRC check", pickle->name);
        ok = FALSE;
    }
#else
    (void) zip_crc32;
#endif

    if (ok) {
        Unpickler u = {
            .file = file,
            .error = error,
            .pickle = pickle->data,
            .size = (size_t) pickle->size,
            .arena = { .chunks = g_ptr_array_new_with_free_func (g_free) },
            .stack = g_new (Value *, 64), /* never NULL: items are taken as stack + mark */
            .stack_capacity = 64,
        };
        u.none = new_value (&u, VALUE_NONE);
        u.true_value = new_value (&u, VALUE_BOOL);
        u.true_value->boolean = TRUE;
        u.false_value = new_value (&u, VALUE_BOOL);
        u.empty_tuple = new_array_value (&u, VALUE_TUPLE, NULL, 0);

        const Value *top = run_pickle (&u);
        ok = top && add_state_dict (file, &zip, folder, top, error);

        g_ptr_array_unref (u.arena.chunks);
        g_free (u.stack);
        g_free (u.marks);
        g_free (u.memo);
    }
    g_free (folder);
    zip_directory_clear (&zip);
    return ok;
}
