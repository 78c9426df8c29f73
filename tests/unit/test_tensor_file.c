/* test_tensor_file: the tensor file parsers (safetensors, PyTorch zip) and dtype conversion.
 *
 * The fixture tests read ../shared/fixtures (LDM_SHARED_DIR) and are skipped without it; the
 * others write small synthetic files (a torch zip with views, ZIP64 structures, hostile
 * pickles, safetensors of every dtype) to a temporary folder.
 */
#include "ldm.h"

#include <glib.h>
#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

/* ============================================================ helpers */

static char *temp_dir;

static char *
write_temp_file (const char *name, const void *bytes, size_t size)
{
    char *path = g_build_filename (temp_dir, name, NULL);
    GError *error = NULL;
    g_assert_true (g_file_set_contents (path, bytes, (gssize) size, &error));
    g_assert_no_error (error);
    return path;
}

/* Opens bytes written to a file; on failure returns NULL with *error set. */
static LdmTensorFile *
open_bytes (const char *name, const GByteArray *bytes, GError **error)
{
    char *path = write_temp_file (name, bytes->data, bytes->len);
    LdmTensorFile *file = ldm_tensor_file_open (path, error);
    g_unlink (path);
    g_free (path);
    return file;
}

static void
assert_open_fails (const char *name, const GByteArray *bytes, LdmError code,
                   const char *message_part)
{
    GError *error = NULL;
    LdmTensorFile *file = open_bytes (name, bytes, &error);
    g_assert_null (file);
    g_assert_error (error, LDM_ERROR, (gint) code);
    if (!strstr (error->message, message_part))
        g_error ("'%s' does not contain '%s'", error->message, message_part);
    g_assert_nonnull (strstr (error->message, name)); /* the message names the file */
    g_error_free (error);
}

static float *
read_all (const LdmTensor *tensor)
{
    size_t count = (size_t) ldm_tensor_numel (tensor);
    float *values = g_new0 (float, MAX (count, 1));
    GError *error = NULL;
    g_assert_true (ldm_tensor_read_f32 (tensor, values, count, &error));
    g_assert_no_error (error);
    return values;
}

static void
assert_values (const LdmTensorFile *file, const char *name, const float *expected, size_t count)
{
    const LdmTensor *tensor = ldm_tensor_file_lookup (file, name);
    g_assert_nonnull (tensor);
    g_assert_cmpint (ldm_tensor_numel (tensor), ==, (int64_t) count);
    float *values = read_all (tensor);
    for (size_t i = 0; i < count; i++)
        g_assert_cmpfloat (values[i], ==, expected[i]);
    g_free (values);
}

static void
put_u16 (GByteArray *out, uint16_t v)
{
    uint8_t b[2] = { (uint8_t) v, (uint8_t) (v >> 8) };
    g_byte_array_append (out, b, 2);
}

static void
put_u32 (GByteArray *out, uint32_t v)
{
    put_u16 (out, (uint16_t) v);
    put_u16 (out, (uint16_t) (v >> 16));
}

static void
put_u64 (GByteArray *out, uint64_t v)
{
    put_u32 (out, (uint32_t) v);
    put_u32 (out, (uint32_t) (v >> 32));
}

static void
put_bytes (GByteArray *out, const void *bytes, size_t size)
{
    g_byte_array_append (out, bytes, (guint) size);
}

/* ============================================================ dtypes */

static float
convert_one (LdmDType dtype, const void *bytes)
{
    LdmTensor tensor = { .name = "x", .dtype = dtype, .ndim = 0, .data = bytes };
    float value = NAN;
    g_assert_true (ldm_tensor_read_f32 (&tensor, &value, 1, NULL));
    return value;
}

static float
from_u16 (LdmDType dtype, uint16_t bits)
{
    uint8_t b[2] = { (uint8_t) bits, (uint8_t) (bits >> 8) };
    return convert_one (dtype, b);
}

static float
from_u8 (LdmDType dtype, uint8_t bits)
{
    return convert_one (dtype, &bits);
}

static void
test_dtype_f16 (void)
{
    g_assert_cmpfloat (from_u16 (LDM_DTYPE_F16, 0x3c00), ==, 1.0f);
    g_assert_cmpfloat (from_u16 (LDM_DTYPE_F16, 0xc000), ==, -2.0f);
    g_assert_cmpfloat (from_u16 (LDM_DTYPE_F16, 0x3555), ==, 0x1.554p-2f);
    g_assert_cmpfloat (from_u16 (LDM_DTYPE_F16, 0x7bff), ==, 65504.0f);
    g_assert_cmpfloat (from_u16 (LDM_DTYPE_F16, 0x0400), ==, 0x1p-14f); /* smallest normal */
    g_assert_cmpfloat (from_u16 (LDM_DTYPE_F16, 0x0001), ==, 0x1p-24f); /* smallest subnormal */
    g_assert_cmpfloat (from_u16 (LDM_DTYPE_F16, 0x03ff), ==, 1023 * 0x1p-24f);
    g_assert_cmpfloat (from_u16 (LDM_DTYPE_F16, 0x8001), ==, -0x1p-24f);
    float negative_zero = from_u16 (LDM_DTYPE_F16, 0x8000);
    g_assert_true (negative_zero == 0.0f && signbit (negative_zero));
    g_assert_cmpfloat (from_u16 (LDM_DTYPE_F16, 0x7c00), ==, INFINITY);
    g_assert_cmpfloat (from_u16 (LDM_DTYPE_F16, 0xfc00), ==, -INFINITY);
    g_assert_true (isnan (from_u16 (LDM_DTYPE_F16, 0x7e00)));
    g_assert_true (isnan (from_u16 (LDM_DTYPE_F16, 0xfc01)));
}

static void
test_dtype_bf16 (void)
{
    g_assert_cmpfloat (from_u16 (LDM_DTYPE_BF16, 0x3f80), ==, 1.0f);
    g_assert_cmpfloat (from_u16 (LDM_DTYPE_BF16, 0xc049), ==, -3.140625f);
    g_assert_cmpfloat (from_u16 (LDM_DTYPE_BF16, 0x0001), ==, 0x1p-133f); /* float subnormal */
    g_assert_cmpfloat (from_u16 (LDM_DTYPE_BF16, 0x7f7f), ==, 0x1.fep127f);
    g_assert_cmpfloat (from_u16 (LDM_DTYPE_BF16, 0xff80), ==, -INFINITY);
    g_assert_true (isnan (from_u16 (LDM_DTYPE_BF16, 0x7fc0)));
}

static void
test_dtype_fp8 (void)
{
    /* E4M3 (bias 7, no infinity, S.1111.111 = NaN) */
    g_assert_cmpfloat (from_u8 (LDM_DTYPE_F8_E4M3, 0x38), ==, 1.0f);
    g_assert_cmpfloat (from_u8 (LDM_DTYPE_F8_E4M3, 0xb8), ==, -1.0f);
    g_assert_cmpfloat (from_u8 (LDM_DTYPE_F8_E4M3, 0x7e), ==, 448.0f);
    g_assert_cmpfloat (from_u8 (LDM_DTYPE_F8_E4M3, 0x78), ==, 256.0f); /* exponent 15 is finite */
    g_assert_cmpfloat (from_u8 (LDM_DTYPE_F8_E4M3, 0x08), ==, 0x1p-6f);
    g_assert_cmpfloat (from_u8 (LDM_DTYPE_F8_E4M3, 0x01), ==, 0x1p-9f);
    g_assert_cmpfloat (from_u8 (LDM_DTYPE_F8_E4M3, 0x07), ==, 7 * 0x1p-9f);
    g_assert_true (isnan (from_u8 (LDM_DTYPE_F8_E4M3, 0x7f)));
    g_assert_true (isnan (from_u8 (LDM_DTYPE_F8_E4M3, 0xff)));
    /* E5M2 (bias 15, IEEE-like) */
    g_assert_cmpfloat (from_u8 (LDM_DTYPE_F8_E5M2, 0x3c), ==, 1.0f);
    g_assert_cmpfloat (from_u8 (LDM_DTYPE_F8_E5M2, 0xc0), ==, -2.0f);
    g_assert_cmpfloat (from_u8 (LDM_DTYPE_F8_E5M2, 0x7b), ==, 57344.0f);
    g_assert_cmpfloat (from_u8 (LDM_DTYPE_F8_E5M2, 0x01), ==, 0x1p-16f);
    g_assert_cmpfloat (from_u8 (LDM_DTYPE_F8_E5M2, 0x04), ==, 0x1p-14f);
    g_assert_cmpfloat (from_u8 (LDM_DTYPE_F8_E5M2, 0x7c), ==, INFINITY);
    g_assert_cmpfloat (from_u8 (LDM_DTYPE_F8_E5M2, 0xfc), ==, -INFINITY);
    g_assert_true (isnan (from_u8 (LDM_DTYPE_F8_E5M2, 0x7d)));
}

static void
test_dtype_integers (void)
{
    int8_t i8 = -128;
    uint16_t u16 = 65535;
    int16_t i16 = -300;
    int32_t i32 = -123456;
    uint32_t u32 = 4000000000u;
    int64_t i64 = -5;
    uint64_t u64 = 1ull << 40;
    double f64 = -0.125;
    uint8_t boolean = 1, u8 = 200;
    g_assert_cmpfloat (convert_one (LDM_DTYPE_I8, &i8), ==, -128.0f);
    g_assert_cmpfloat (convert_one (LDM_DTYPE_U8, &u8), ==, 200.0f);
    g_assert_cmpfloat (convert_one (LDM_DTYPE_BOOL, &boolean), ==, 1.0f);
    g_assert_cmpfloat (convert_one (LDM_DTYPE_U16, &u16), ==, 65535.0f);
    g_assert_cmpfloat (convert_one (LDM_DTYPE_I16, &i16), ==, -300.0f);
    g_assert_cmpfloat (convert_one (LDM_DTYPE_I32, &i32), ==, -123456.0f);
    g_assert_cmpfloat (convert_one (LDM_DTYPE_U32, &u32), ==, 4000000000.0f);
    g_assert_cmpfloat (convert_one (LDM_DTYPE_I64, &i64), ==, -5.0f);
    g_assert_cmpfloat (convert_one (LDM_DTYPE_U64, &u64), ==, 0x1p40f);
    g_assert_cmpfloat (convert_one (LDM_DTYPE_F64, &f64), ==, -0.125f);
}

static void
test_read_wrong_length (void)
{
    float data[4] = { 1, 2, 3, 4 }, out[4];
    LdmTensor tensor = { .name = "x", .dtype = LDM_DTYPE_F32, .ndim = 1, .shape = { 4 },
                         .stride = { 1 }, .data = (const uint8_t *) data };
    GError *error = NULL;
    g_assert_false (ldm_tensor_read_f32 (&tensor, out, 3, &error));
    g_assert_error (error, LDM_ERROR, LDM_ERROR_MODEL);
    g_error_free (error);
}

/* ============================================================ torch zip writer */

static uint32_t
crc32_of (const uint8_t *data, size_t size)
{
    uint32_t crc = 0xffffffffu;
    for (size_t i = 0; i < size; i++) {
        crc ^= data[i];
        for (int k = 0; k < 8; k++)
            crc = (crc & 1) ? 0xedb88320u ^ (crc >> 1) : crc >> 1;
    }
    return ~crc;
}

typedef struct {
    const char *name;
    const void *data;
    size_t      size;
} Record;

typedef struct {
    gboolean zip64;       /* ZIP64 extra fields and end records although nothing needs them */
    uint16_t method;      /* written as the compression method (the data stays raw) */
    gboolean bad_crc;
} ZipOptions;

/* Writes a zip the way torch.save does: stored records, data 64-byte aligned by padding the
 * local extra field. */
static GByteArray *
write_zip (const Record *records, size_t count, const ZipOptions *options)
{
    GByteArray *out = g_byte_array_new ();
    uint64_t *offsets = g_new (uint64_t, count);
    for (size_t i = 0; i < count; i++) {
        const Record *r = &records[i];
        size_t name_length = strlen (r->name);
        offsets[i] = out->len;
        size_t extra = options->zip64 ? 20 : 0;
        size_t pad = (64 - (out->len + 30 + name_length + extra + 4) % 64) % 64;
        put_u32 (out, 0x04034b50);
        put_u16 (out, options->zip64 ? 45 : 20);
        put_u16 (out, 0);
        put_u16 (out, options->method);
        put_u32 (out, 0);
        put_u32 (out, crc32_of (r->data, r->size));
        put_u32 (out, options->zip64 ? 0xffffffffu : (uint32_t) r->size);
        put_u32 (out, options->zip64 ? 0xffffffffu : (uint32_t) r->size);
        put_u16 (out, (uint16_t) name_length);
        put_u16 (out, (uint16_t) (extra + 4 + pad));
        put_bytes (out, r->name, name_length);
        if (options->zip64) {
            put_u16 (out, 0x0001);
            put_u16 (out, 16);
            put_u64 (out, r->size);
            put_u64 (out, r->size);
        }
        put_u16 (out, 0x4646); /* torch's padding field: "FF" */
        put_u16 (out, (uint16_t) pad);
        for (size_t k = 0; k < pad; k++)
            put_bytes (out, "Z", 1);
        g_assert_cmpuint (out->len % 64, ==, 0);
        put_bytes (out, r->data, r->size);
    }
    uint64_t cd_offset = out->len;
    for (size_t i = 0; i < count; i++) {
        const Record *r = &records[i];
        size_t name_length = strlen (r->name);
        uint32_t crc = crc32_of (r->data, r->size);
        if (options->bad_crc && g_str_has_suffix (r->name, "data.pkl"))
            crc ^= 1;
        put_u32 (out, 0x02014b50);
        put_u16 (out, options->zip64 ? 45 : 20);
        put_u16 (out, options->zip64 ? 45 : 20);
        put_u16 (out, 0);
        put_u16 (out, options->method);
        put_u32 (out, 0);
        put_u32 (out, crc);
        put_u32 (out, options->zip64 ? 0xffffffffu : (uint32_t) r->size);
        put_u32 (out, options->zip64 ? 0xffffffffu : (uint32_t) r->size);
        put_u16 (out, (uint16_t) name_length);
        put_u16 (out, options->zip64 ? 28 : 0);
        put_u16 (out, 0);
        put_u16 (out, 0);
        put_u16 (out, 0);
        put_u32 (out, 0);
        put_u32 (out, options->zip64 ? 0xffffffffu : (uint32_t) offsets[i]);
        put_bytes (out, r->name, name_length);
        if (options->zip64) {
            put_u16 (out, 0x0001);
            put_u16 (out, 24);
            put_u64 (out, r->size);
            put_u64 (out, r->size);
            put_u64 (out, offsets[i]);
        }
    }
    uint64_t cd_size = out->len - cd_offset;
    if (options->zip64) {
        uint64_t end64_offset = out->len;
        put_u32 (out, 0x06064b50);
        put_u64 (out, 44);
        put_u16 (out, 45);
        put_u16 (out, 45);
        put_u32 (out, 0);
        put_u32 (out, 0);
        put_u64 (out, count);
        put_u64 (out, count);
        put_u64 (out, cd_size);
        put_u64 (out, cd_offset);
        put_u32 (out, 0x07064b50);
        put_u32 (out, 0);
        put_u64 (out, end64_offset);
        put_u32 (out, 1);
    }
    put_u32 (out, 0x06054b50);
    put_u16 (out, 0);
    put_u16 (out, 0);
    put_u16 (out, options->zip64 ? 0xffff : (uint16_t) count);
    put_u16 (out, options->zip64 ? 0xffff : (uint16_t) count);
    put_u32 (out, options->zip64 ? 0xffffffffu : (uint32_t) cd_size);
    put_u32 (out, options->zip64 ? 0xffffffffu : (uint32_t) cd_offset);
    put_u16 (out, 0);
    g_free (offsets);
    return out;
}

/* --------------------------------------------------------- pickle writer */

static void
pk_op (GByteArray *p, uint8_t op)
{
    g_byte_array_append (p, &op, 1);
}

static void
pk_str (GByteArray *p, const char *s)
{
    pk_op (p, 'X');
    put_u32 (p, (uint32_t) strlen (s));
    put_bytes (p, s, strlen (s));
}

static void
pk_int (GByteArray *p, int64_t v)
{
    if (v >= INT32_MIN && v <= INT32_MAX) {
        pk_op (p, 'J');
        put_u32 (p, (uint32_t) (int32_t) v);
    } else {
        pk_op (p, 0x8a); /* LONG1 */
        pk_op (p, 8);
        put_u64 (p, (uint64_t) v);
    }
}

static void
pk_global (GByteArray *p, const char *module, const char *name)
{
    pk_op (p, 'c');
    put_bytes (p, module, strlen (module));
    pk_op (p, '\n');
    put_bytes (p, name, strlen (name));
    pk_op (p, '\n');
}

static void
pk_int_tuple (GByteArray *p, int n, const int64_t *values)
{
    pk_op (p, '(');
    for (int i = 0; i < n; i++)
        pk_int (p, values[i]);
    pk_op (p, 't');
}

static void
pk_ordered_dict (GByteArray *p)
{
    pk_global (p, "collections", "OrderedDict");
    pk_op (p, ')');
    pk_op (p, 'R');
}

/* torch._utils._rebuild_tensor_v2 (storage, offset, size, stride, False, OrderedDict ()). */
static void
pk_tensor (GByteArray *p, const char *storage_class, const char *key, int64_t numel,
           int64_t offset, int ndim, const int64_t *size, const int64_t *stride)
{
    pk_global (p, "torch._utils", "_rebuild_tensor_v2");
    pk_op (p, '(');
    pk_op (p, '(');
    pk_str (p, "storage");
    pk_global (p, "torch", storage_class);
    pk_str (p, key);
    pk_str (p, "cpu");
    pk_int (p, numel);
    pk_op (p, 't');
    pk_op (p, 'Q');
    pk_int (p, offset);
    pk_int_tuple (p, ndim, size);
    pk_int_tuple (p, ndim, stride);
    pk_op (p, 0x89); /* NEWFALSE */
    pk_ordered_dict (p);
    pk_op (p, 't');
    pk_op (p, 'R');
}

static GByteArray *
pk_begin (void)
{
    GByteArray *p = g_byte_array_new ();
    pk_op (p, 0x80);
    pk_op (p, 2);
    return p;
}

/* A Lightning-style checkpoint: the state_dict among objects that must stay opaque. */
static GByteArray *
lightning_pickle (void)
{
    GByteArray *p = pk_begin ();
    pk_op (p, '}');
    pk_op (p, '(');
    pk_str (p, "epoch");
    pk_int (p, 7);
    pk_str (p, "state_dict");
    pk_ordered_dict (p);
    pk_op (p, 'q'); /* BINPUT 0: the state_dict */
    pk_op (p, 0);
    pk_op (p, '(');

    static const int64_t s12[] = { 12 }, st1[] = { 1 };
    pk_str (p, "base");
    pk_tensor (p, "FloatStorage", "0", 12, 0, 1, s12, st1);
    static const int64_t s32[] = { 3, 2 }, st13[] = { 1, 3 };
    pk_str (p, "transposed");
    pk_tensor (p, "FloatStorage", "0", 12, 1, 2, s32, st13);
    static const int64_t s23[] = { 2, 3 }, st31[] = { 3, 1 };
    pk_str (p, "second_half");
    pk_tensor (p, "FloatStorage", "0", 12, 6, 2, s23, st31);
    static const int64_t st01[] = { 0, 1 };
    pk_str (p, "expanded");
    pk_tensor (p, "FloatStorage", "0", 12, 2, 2, s23, st01);
    static const int64_t s3[] = { 3 };
    pk_str (p, "half");
    pk_tensor (p, "HalfStorage", "1", 3, 0, 1, s3, st1);
    pk_str (p, "scalar");
    pk_tensor (p, "IntStorage", "2", 1, 0, 0, NULL, NULL);
    pk_str (p, "parameter"); /* torch._utils._rebuild_parameter (tensor, True, OrderedDict ()) */
    pk_global (p, "torch._utils", "_rebuild_parameter");
    pk_op (p, '(');
    pk_tensor (p, "FloatStorage", "0", 12, 0, 1, s12, st1);
    pk_op (p, 0x88);
    pk_ordered_dict (p);
    pk_op (p, 't');
    pk_op (p, 'R');
    pk_str (p, "not_a_tensor");
    pk_op (p, 'N');
    pk_op (p, 'u'); /* SETITEMS into the state_dict */
    pk_op (p, '}'); /* BUILD the OrderedDict with {'_metadata': {}}, as torch does */
    pk_str (p, "_metadata");
    pk_op (p, '}');
    pk_op (p, 's');
    pk_op (p, 'b');

    pk_str (p, "optimizer_states"); /* [torch.optim.AdamW state with a tensor], never applied */
    pk_op (p, ']');
    pk_op (p, '(');
    pk_global (p, "torch.optim.adamw", "AdamW");
    pk_op (p, ')');
    pk_op (p, 0x81); /* NEWOBJ */
    pk_op (p, '}');
    pk_str (p, "exp_avg");
    pk_tensor (p, "FloatStorage", "3", 2, 0, 1, (const int64_t[]) { 2 }, st1);
    pk_op (p, 's');
    pk_op (p, 'b'); /* BUILD an opaque object */
    pk_op (p, 'e'); /* APPENDS */
    pk_str (p, "hparams");
    pk_global (p, "argparse", "Namespace");
    pk_op (p, ')');
    pk_op (p, 'R');
    pk_int (p, 1);
    pk_op (p, 'a'); /* APPEND to an opaque object: dropped */
    pk_str (p, "callbacks");
    pk_op (p, 'h'); /* BINGET 0: the state_dict again */
    pk_op (p, 0);
    pk_op (p, 'u');
    pk_op (p, '.');
    return p;
}

static GByteArray *
lightning_zip (const ZipOptions *options)
{
    static const uint16_t halves[3] = { 0x3c00, 0xc000, 0x3800 }; /* 1, -2, 0.5 */
    static const int32_t scalar = 4242;
    static const float optimizer[2] = { 9, 9 };
    static float floats[12];
    for (int i = 0; i < 12; i++)
        floats[i] = (float) i;
    GByteArray *pickle = lightning_pickle ();
    Record records[] = {
        { "archive/data.pkl", pickle->data, pickle->len },
        { "archive/data/0", floats, sizeof floats },
        { "archive/data/1", halves, sizeof halves },
        { "archive/data/2", &scalar, sizeof scalar },
        { "archive/data/3", optimizer, sizeof optimizer },
        { "archive/version", "3\n", 2 },
    };
    GByteArray *zip = write_zip (records, G_N_ELEMENTS (records), options);
    g_byte_array_unref (pickle);
    return zip;
}

static void
check_lightning_file (const LdmTensorFile *file)
{
    g_assert_cmpint (ldm_tensor_file_format (file), ==, LDM_FILE_TORCH_ZIP);
    g_assert_cmpuint (ldm_tensor_file_count (file), ==, 7); /* state_dict tensors only */
    g_assert_null (ldm_tensor_file_lookup (file, "exp_avg"));
    g_assert_null (ldm_tensor_file_lookup (file, "not_a_tensor"));

    float base[12];
    for (int i = 0; i < 12; i++)
        base[i] = (float) i;
    assert_values (file, "base", base, 12);
    assert_values (file, "transposed", (const float[]) { 1, 4, 2, 5, 3, 6 }, 6);
    assert_values (file, "second_half", (const float[]) { 6, 7, 8, 9, 10, 11 }, 6);
    assert_values (file, "expanded", (const float[]) { 2, 3, 4, 2, 3, 4 }, 6);
    assert_values (file, "half", (const float[]) { 1, -2, 0.5f }, 3);
    assert_values (file, "scalar", (const float[]) { 4242 }, 1);
    assert_values (file, "parameter", base, 12);

    const LdmTensor *t = ldm_tensor_file_lookup (file, "transposed");
    g_assert_cmpint (t->ndim, ==, 2);
    g_assert_cmpint (t->shape[0], ==, 3);
    g_assert_cmpint (t->stride[1], ==, 3);
    g_assert_cmpint (ldm_tensor_file_lookup (file, "half")->dtype, ==, LDM_DTYPE_F16);
    g_assert_cmpint (ldm_tensor_file_lookup (file, "scalar")->dtype, ==, LDM_DTYPE_I32);
    g_assert_cmpint (ldm_tensor_file_lookup (file, "scalar")->ndim, ==, 0);
    /* Views of one storage point into the same record. */
    const uint8_t *base_data = ldm_tensor_file_lookup (file, "base")->data;
    g_assert_true (ldm_tensor_file_lookup (file, "parameter")->data == base_data);
    g_assert_true (t->data == base_data + 4);
    g_assert_true (ldm_tensor_file_lookup (file, "second_half")->data == base_data + 24);
    /* The data starts after the local header's padding: 64-byte aligned in the mapping. */
    g_assert_cmpuint ((uintptr_t) base_data % 64, ==, 0);
}

static void
test_torch_views (void)
{
    ZipOptions options = { 0 };
    GByteArray *zip = lightning_zip (&options);
    GError *error = NULL;
    LdmTensorFile *file = open_bytes ("views.ckpt", zip, &error);
    g_assert_no_error (error);
    check_lightning_file (file);
    ldm_tensor_file_free (file);
    g_byte_array_unref (zip);
}

static void
test_torch_zip64 (void)
{
    ZipOptions options = { .zip64 = TRUE };
    GByteArray *zip = lightning_zip (&options);
    GError *error = NULL;
    LdmTensorFile *file = open_bytes ("zip64.ckpt", zip, &error);
    g_assert_no_error (error);
    check_lightning_file (file);
    ldm_tensor_file_free (file);
    g_byte_array_unref (zip);
}

static void
test_torch_zip_comment (void)
{
    ZipOptions options = { 0 };
    GByteArray *zip = lightning_zip (&options);
    /* A 1000-byte comment after the end record, holding a fake end record signature. */
    zip->data[zip->len - 2] = 1000 & 0xff;
    zip->data[zip->len - 1] = 1000 >> 8;
    for (int i = 0; i < 1000; i++)
        put_bytes (zip, i == 500 ? "PK\x05\x06" : "c", i == 500 ? 4 : 1);
    g_byte_array_set_size (zip, zip->len - 3);
    GError *error = NULL;
    LdmTensorFile *file = open_bytes ("comment.ckpt", zip, &error);
    g_assert_no_error (error);
    check_lightning_file (file);
    ldm_tensor_file_free (file);
    g_byte_array_unref (zip);
}

/* torch.save (model.state_dict ()): the top-level dict holds the tensors; protocol 4 opcodes. */
static void
test_torch_plain_state_dict (void)
{
    GByteArray *p = g_byte_array_new ();
    pk_op (p, 0x80);
    pk_op (p, 4);
    pk_op (p, 0x95); /* FRAME */
    put_u64 (p, 0);
    pk_ordered_dict (p);
    pk_op (p, 0x94); /* MEMOIZE */
    pk_op (p, 0x8c); /* SHORT_BINUNICODE */
    pk_op (p, 6);
    put_bytes (p, "weight", 6);
    /* STACK_GLOBAL for the rebuild function */
    pk_op (p, 0x8c);
    pk_op (p, 12);
    put_bytes (p, "torch._utils", 12);
    pk_op (p, 0x8c);
    pk_op (p, 18);
    put_bytes (p, "_rebuild_tensor_v2", 18);
    pk_op (p, 0x93);
    pk_op (p, '(');
    pk_op (p, '(');
    pk_str (p, "storage");
    pk_global (p, "torch", "BFloat16Storage");
    pk_str (p, "7");
    pk_str (p, "cpu");
    pk_op (p, 'K');
    pk_op (p, 2);
    pk_op (p, 't');
    pk_op (p, 'Q');
    pk_op (p, 'K');
    pk_op (p, 0);
    pk_op (p, 'K');
    pk_op (p, 2);
    pk_op (p, 0x85); /* TUPLE1 */
    pk_op (p, 'K');
    pk_op (p, 1);
    pk_op (p, 0x85);
    pk_op (p, 0x89);
    pk_op (p, 'h'); /* BINGET 0: an OrderedDict for the hooks */
    pk_op (p, 0);
    pk_op (p, 't');
    pk_op (p, 'R');
    pk_op (p, 's');
    pk_op (p, '.');
    static const uint16_t bf16[2] = { 0x3f80, 0xc049 };
    Record records[] = {
        { "model/data.pkl", p->data, p->len },
        { "model/data/7", bf16, sizeof bf16 },
    };
    ZipOptions options = { 0 };
    GByteArray *zip = write_zip (records, G_N_ELEMENTS (records), &options);
    GError *error = NULL;
    LdmTensorFile *file = open_bytes ("plain.pt", zip, &error);
    g_assert_no_error (error);
    g_assert_cmpuint (ldm_tensor_file_count (file), ==, 1);
    assert_values (file, "weight", (const float[]) { 1.0f, -3.140625f }, 2);
    ldm_tensor_file_free (file);
    g_byte_array_unref (zip);
    g_byte_array_unref (p);
}

static GByteArray *
zip_with_pickle (const GByteArray *pickle)
{
    static const float floats[4] = { 1, 2, 3, 4 };
    Record records[] = {
        { "archive/data.pkl", pickle->data, pickle->len },
        { "archive/data/0", floats, sizeof floats },
    };
    ZipOptions options = { 0 };
    return write_zip (records, G_N_ELEMENTS (records), &options);
}

static void
assert_pickle_fails (const GByteArray *pickle, const char *name, const char *message_part)
{
    GByteArray *zip = zip_with_pickle (pickle);
    assert_open_fails (name, zip, LDM_ERROR_FORMAT, message_part);
    g_byte_array_unref (zip);
}

static GByteArray *
state_dict_pickle (const char *storage_key, int64_t numel, int64_t offset, int64_t size0,
                   int64_t stride0)
{
    GByteArray *p = pk_begin ();
    pk_op (p, '}');
    pk_str (p, "w");
    pk_tensor (p, "FloatStorage", storage_key, numel, offset, 1, (const int64_t[]) { size0 },
               (const int64_t[]) { stride0 });
    pk_op (p, 's');
    pk_op (p, '.');
    return p;
}

static void
test_torch_errors (void)
{
    GByteArray *p = state_dict_pickle ("0", 4, 0, 4, 1);
    GByteArray *zip = zip_with_pickle (p);
    GError *error = NULL;
    LdmTensorFile *file = open_bytes ("good.ckpt", zip, &error);
    g_assert_no_error (error);
    assert_values (file, "w", (const float[]) { 1, 2, 3, 4 }, 4);
    ldm_tensor_file_free (file);
    g_byte_array_unref (zip);
    g_byte_array_unref (p);

    p = state_dict_pickle ("9", 4, 0, 4, 1);
    assert_pickle_fails (p, "missing-storage.ckpt",
                         "tensor 'w' refers to storage '9' which is not in the zip");
    g_byte_array_unref (p);
    p = state_dict_pickle ("0", 4, 1, 4, 1);
    assert_pickle_fails (p, "past-storage.ckpt", "needs 16 bytes but its data has 12");
    g_byte_array_unref (p);
    p = state_dict_pickle ("0", 4, 0, 2, -1);
    assert_pickle_fails (p, "negative-stride.ckpt", "impossible shape or stride");
    g_byte_array_unref (p);
    p = state_dict_pickle ("0", 5, 0, 4, 1);
    assert_pickle_fails (p, "wrong-numel.ckpt", "16 bytes in the zip");
    g_byte_array_unref (p);
    p = state_dict_pickle ("0", 4, 5, 0, 1);
    assert_pickle_fails (p, "offset-past.ckpt", "starts past the end of its storage");
    g_byte_array_unref (p);

    p = pk_begin ();
    pk_op (p, '}');
    pk_op (p, 0xff);
    assert_pickle_fails (p, "opcode.ckpt", "pickle opcode 0xff at offset 3 is not supported");
    g_byte_array_unref (p);

    p = pk_begin ();
    pk_global (p, "os", "system");
    pk_str (p, "touch pwned");
    pk_op (p, 0x85);
    pk_op (p, 'R');
    pk_op (p, '.');
    assert_pickle_fails (p, "hostile.ckpt", "is an object made by os.system, not a dict");
    g_byte_array_unref (p);

    p = pk_begin ();
    pk_op (p, '}');
    pk_op (p, 'h');
    pk_op (p, 3);
    assert_pickle_fails (p, "memo.ckpt", "memo index 3 at offset 3 was never set");
    g_byte_array_unref (p);

    p = pk_begin ();
    pk_op (p, 't'); /* TUPLE without MARK */
    assert_pickle_fails (p, "nomark.ckpt", "needs a MARK");
    g_byte_array_unref (p);

    p = pk_begin ();
    pk_op (p, '}');
    pk_op (p, 's');
    assert_pickle_fails (p, "underflow.ckpt", "stack underflow");
    g_byte_array_unref (p);

    p = pk_begin ();
    pk_op (p, '}');
    assert_pickle_fails (p, "nostop.ckpt", "without a STOP");
    g_byte_array_unref (p);

    p = pk_begin ();
    pk_op (p, '}');
    pk_op (p, '.');
    assert_pickle_fails (p, "empty.ckpt", "holds no tensors");
    g_byte_array_unref (p);

    /* 100000 nested lists: no recursion, so this is just a list that is not a dict. */
    p = pk_begin ();
    for (int i = 0; i < 100000; i++)
        pk_op (p, ']');
    for (int i = 0; i < 99999; i++)
        pk_op (p, 'a');
    pk_op (p, '.');
    assert_pickle_fails (p, "deep.ckpt", "is a list, not a dict");
    g_byte_array_unref (p);
}

static void
test_zip_errors (void)
{
    GByteArray *p = state_dict_pickle ("0", 4, 0, 4, 1);
    static const float floats[4] = { 1, 2, 3, 4 };
    Record records[] = {
        { "archive/data.pkl", p->data, p->len },
        { "archive/data/0", floats, sizeof floats },
    };
    ZipOptions deflated = { .method = 8 };
    GByteArray *zip = write_zip (records, 2, &deflated);
    assert_open_fails ("deflated.ckpt", zip, LDM_ERROR_UNSUPPORTED,
                       "record 'archive/data.pkl' is compressed (method 8); only stored records "
                       "are supported");
    g_byte_array_unref (zip);

    ZipOptions bad_crc = { .bad_crc = TRUE };
    zip = write_zip (records, 2, &bad_crc);
    assert_open_fails ("crc.ckpt", zip, LDM_ERROR_FORMAT, "fails its CRC check");
    g_byte_array_unref (zip);

    ZipOptions plain = { 0 };
    zip = write_zip (records + 1, 1, &plain);
    assert_open_fails ("nopickle.ckpt", zip, LDM_ERROR_FORMAT, "no data.pkl in the zip");
    g_byte_array_unref (zip);

    Record outside[] = { records[0], records[1], { "other/x", "x", 1 } };
    zip = write_zip (outside, 3, &plain);
    assert_open_fails ("outside.ckpt", zip, LDM_ERROR_FORMAT, "is outside the checkpoint's folder");
    g_byte_array_unref (zip);

    zip = write_zip (records, 2, &plain);
    g_byte_array_set_size (zip, zip->len - 1);
    assert_open_fails ("truncated.ckpt", zip, LDM_ERROR_FORMAT, "no end of central directory");
    g_byte_array_unref (zip);
    g_byte_array_unref (p);
}

/* ============================================================ safetensors */

static GByteArray *
safetensors_bytes (const char *header, const void *data, size_t data_size)
{
    GByteArray *out = g_byte_array_new ();
    put_u64 (out, strlen (header));
    put_bytes (out, header, strlen (header));
    put_bytes (out, data, data_size);
    return out;
}

static void
test_safetensors_dtypes (void)
{
    /* Offsets in header order differ from data order on purpose. */
    uint8_t data[64] = { 0 };
    const uint16_t f16[2] = { 0x3c00, 0x0001 };
    const uint16_t bf16[2] = { 0xc049, 0x3f80 };
    const int64_t i64[1] = { -7 };
    const uint8_t f8[2] = { 0x38, 0x7e };
    memcpy (data + 0, i64, 8);
    memcpy (data + 8, f16, 4);
    memcpy (data + 12, bf16, 4);
    memcpy (data + 16, f8, 2);
    data[18] = 1; /* BOOL */
    const char *header =
        "{\"f16\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[8,12]},"
        "\"__metadata__\":{\"format\":\"pt\"},"
        "\"i64\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,8]},"
        "\"bf16\":{\"dtype\":\"BF16\",\"shape\":[1,2],\"data_offsets\":[12,16]},"
        "\"empty\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[16,16]},"
        "\"f8\":{\"dtype\":\"F8_E4M3\",\"shape\":[2,1],\"data_offsets\":[16,18]},"
        "\"flag\":{\"dtype\":\"BOOL\",\"shape\":[1],\"data_offsets\":[18,19]}}   ";
    GByteArray *bytes = safetensors_bytes (header, data, 19);
    GError *error = NULL;
    LdmTensorFile *file = open_bytes ("dtypes.safetensors", bytes, &error);
    g_assert_no_error (error);
    g_assert_cmpint (ldm_tensor_file_format (file), ==, LDM_FILE_SAFETENSORS);
    g_assert_cmpuint (ldm_tensor_file_count (file), ==, 6);
    g_assert_cmpstr (ldm_tensor_file_at (file, 0)->name, ==, "f16"); /* header order */
    g_assert_cmpstr (ldm_tensor_file_at (file, 5)->name, ==, "flag");
    assert_values (file, "f16", (const float[]) { 1.0f, 0x1p-24f }, 2);
    assert_values (file, "i64", (const float[]) { -7.0f }, 1);
    assert_values (file, "bf16", (const float[]) { -3.140625f, 1.0f }, 2);
    assert_values (file, "f8", (const float[]) { 1.0f, 448.0f }, 2);
    assert_values (file, "flag", (const float[]) { 1.0f }, 1);
    g_assert_cmpint (ldm_tensor_numel (ldm_tensor_file_lookup (file, "empty")), ==, 0);
    ldm_tensor_file_free (file);
    g_byte_array_unref (bytes);
}

static void
assert_safetensors_fails (const char *header, size_t data_size, const char *message_part)
{
    uint8_t data[64] = { 0 };
    GByteArray *bytes = safetensors_bytes (header, data, data_size);
    assert_open_fails ("bad.safetensors", bytes, LDM_ERROR_FORMAT, message_part);
    g_byte_array_unref (bytes);
}

static void
test_safetensors_errors (void)
{
    assert_safetensors_fails ("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                              "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
                              16, "key 'a' appears twice");
    assert_safetensors_fails ("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],"
                              "\"data_offsets\":[0,8]}}",
                              8, "key 'dtype' appears twice");
    assert_safetensors_fails ("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                              "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}",
                              20, "a gap in the data before tensor 'b'");
    assert_safetensors_fails ("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                              "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                              12, "overlaps");
    assert_safetensors_fails ("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                              12, "cover 8 bytes of data but the file holds 12");
    assert_safetensors_fails ("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}",
                              8, "the shape and dtype need 12");
    assert_safetensors_fails ("{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4],"
                              "\"data_offsets\":[0,8]}}",
                              8, "overflows");
    assert_safetensors_fails ("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}",
                              8, "not a non-negative integer");
    assert_safetensors_fails ("{\"a\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}",
                              8, "not a non-negative integer");
    assert_safetensors_fails ("{\"a\":{\"dtype\":\"F32\",\"shape\":[true],\"data_offsets\":[0,8]}}",
                              8, "not a non-negative integer");
    assert_safetensors_fails ("{\"a\":{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                              8, "unknown dtype 'F33'");
    assert_safetensors_fails ("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,80]}}",
                              8, "past the data");
    assert_safetensors_fails ("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],"
                              "\"x\":1}}",
                              8, "members other than");
    assert_safetensors_fails ("{\"__metadata__\":{\"k\":1},"
                              "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                              8, "__metadata__ entry 'k' is not a string");
    assert_safetensors_fails ("{\"a\":[[[[[[[[[[[[]]]]]]]]]]]]}", 0, "nested deeper");
    assert_safetensors_fails ("{}", 0, "holds no tensors");
    assert_safetensors_fails ("[1]", 0, "not a JSON object");
    assert_safetensors_fails ("{\"a\":", 0, "safetensors header");

    GByteArray *bytes = g_byte_array_new ();
    put_u64 (bytes, 1000);
    put_bytes (bytes, "{}", 2);
    assert_open_fails ("long.safetensors", bytes, LDM_ERROR_FORMAT,
                       "header length 1000 does not fit the file");
    g_byte_array_unref (bytes);
}

/* ============================================================ fixtures */

typedef struct {
    const char *name;
    size_t      count;
    gboolean    shares_cond_stage; /* cond_stage_model.* shares first_stage_model.* storages */
} Fixture;

static const Fixture fixtures[] = {
    { "ldm-inpaint-tiny", 728, TRUE },
    { "ldm-sr-tiny", 503, FALSE },
    { "sd-inpaint-tiny", 610, FALSE },
};

static LdmTensorFile *
open_fixture (const Fixture *fixture, const char *file_name)
{
    const char *shared = g_getenv ("LDM_SHARED_DIR");
    char *path = g_build_filename (shared, "fixtures", fixture->name, file_name, NULL);
    GError *error = NULL;
    LdmTensorFile *file = ldm_tensor_file_open (path, &error);
    g_assert_no_error (error);
    g_assert_nonnull (file);
    g_free (path);
    return file;
}

static void
test_fixture (gconstpointer data)
{
    const Fixture *fixture = data;
    const char *shared = g_getenv ("LDM_SHARED_DIR");
    char *dir = shared ? g_build_filename (shared, "fixtures", fixture->name, NULL) : NULL;
    gboolean present = dir && g_file_test (dir, G_FILE_TEST_IS_DIR);
    g_free (dir);
    if (!present) {
        g_test_skip ("LDM_SHARED_DIR/fixtures is not available");
        return;
    }
    LdmTensorFile *st = open_fixture (fixture, "model.safetensors");
    LdmTensorFile *ckpt = open_fixture (fixture, "model.ckpt");
    g_assert_cmpint (ldm_tensor_file_format (st), ==, LDM_FILE_SAFETENSORS);
    g_assert_cmpint (ldm_tensor_file_format (ckpt), ==, LDM_FILE_TORCH_ZIP);
    g_assert_cmpuint (ldm_tensor_file_count (st), ==, fixture->count);
    g_assert_cmpuint (ldm_tensor_file_count (ckpt), ==, fixture->count);

    /* Same names (equal counts, every safetensors name in the ckpt), shapes, dtypes, bits. */
    size_t ema_tensors = 0;
    for (size_t i = 0; i < ldm_tensor_file_count (st); i++) {
        const LdmTensor *a = ldm_tensor_file_at (st, i);
        const LdmTensor *b = ldm_tensor_file_lookup (ckpt, a->name);
        if (!b)
            g_error ("%s: '%s' is in model.safetensors but not in model.ckpt", fixture->name,
                     a->name);
        g_assert_cmpint (a->dtype, ==, b->dtype);
        g_assert_cmpint (a->ndim, ==, b->ndim);
        for (int d = 0; d < a->ndim; d++)
            g_assert_cmpint (a->shape[d], ==, b->shape[d]);
        float *va = read_all (a), *vb = read_all (b);
        if (memcmp (va, vb, (size_t) ldm_tensor_numel (a) * sizeof (float)) != 0)
            g_error ("%s: '%s' differs between the two files", fixture->name, a->name);
        g_free (va);
        g_free (vb);
        if (g_str_has_prefix (a->name, "model_ema.diffusion_model"))
            ema_tensors++;
    }
    g_assert_cmpuint (ema_tensors, >, 10);
    g_assert_nonnull (ldm_tensor_file_lookup (ckpt, "model_ema.decay"));
    const LdmTensor *updates = ldm_tensor_file_lookup (ckpt, "model_ema.num_updates");
    g_assert_nonnull (updates);
    g_assert_cmpint (updates->dtype, ==, LDM_DTYPE_I32);
    float count = 0;
    g_assert_true (ldm_tensor_read_f32 (updates, &count, 1, NULL));
    g_assert_cmpfloat (count, ==, 4242.0f);

    size_t shared_tensors = 0;
    for (size_t i = 0; i < ldm_tensor_file_count (ckpt); i++) {
        const LdmTensor *t = ldm_tensor_file_at (ckpt, i);
        if (!g_str_has_prefix (t->name, "cond_stage_model."))
            continue;
        char *twin_name = g_strconcat ("first_stage_model.", t->name + strlen ("cond_stage_model."),
                                       NULL);
        const LdmTensor *twin = ldm_tensor_file_lookup (ckpt, twin_name);
        g_assert_nonnull (twin);
        g_assert_true (t->data == twin->data);
        /* the hand-written safetensors has separate copies */
        g_assert_true (ldm_tensor_file_lookup (st, t->name)->data
                       != ldm_tensor_file_lookup (st, twin_name)->data);
        g_free (twin_name);
        shared_tensors++;
    }
    if (fixture->shares_cond_stage)
        g_assert_cmpuint (shared_tensors, >, 10);
    else
        g_assert_cmpuint (shared_tensors, ==, 0);

    ldm_tensor_file_free (ckpt);
    ldm_tensor_file_free (st);
}

int
main (int argc, char **argv)
{
    g_test_init (&argc, &argv, NULL);
    GError *error = NULL;
    temp_dir = g_dir_make_tmp ("ldm-test-tensor-file-XXXXXX", &error);
    g_assert_no_error (error);

    g_test_add_func ("/dtype/f16", test_dtype_f16);
    g_test_add_func ("/dtype/bf16", test_dtype_bf16);
    g_test_add_func ("/dtype/fp8", test_dtype_fp8);
    g_test_add_func ("/dtype/integers", test_dtype_integers);
    g_test_add_func ("/dtype/wrong-length", test_read_wrong_length);
    g_test_add_func ("/torch-zip/views", test_torch_views);
    g_test_add_func ("/torch-zip/zip64", test_torch_zip64);
    g_test_add_func ("/torch-zip/comment", test_torch_zip_comment);
    g_test_add_func ("/torch-zip/plain-state-dict", test_torch_plain_state_dict);
    g_test_add_func ("/torch-zip/pickle-errors", test_torch_errors);
    g_test_add_func ("/torch-zip/zip-errors", test_zip_errors);
    g_test_add_func ("/safetensors/dtypes", test_safetensors_dtypes);
    g_test_add_func ("/safetensors/errors", test_safetensors_errors);
    for (size_t i = 0; i < G_N_ELEMENTS (fixtures); i++) {
        char *path = g_strdup_printf ("/fixture/%s", fixtures[i].name);
        g_test_add_data_func (path, &fixtures[i], test_fixture);
        g_free (path);
    }
    int status = g_test_run ();
    g_rmdir (temp_dir);
    g_free (temp_dir);
    return status;
}
