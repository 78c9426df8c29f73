/* fuzz_torch_zip: libFuzzer harness for the PyTorch zip parser and its pickle machine (build
 * with -Dfuzzers=true).
 *
 * An input that starts with "PK" is used as a whole checkpoint. Any other input is taken as a
 * data.pkl and wrapped in a checkpoint whose storages "0".."7" hold 4096 bytes each, so that
 * mutations of the pickle are not lost in the zip structure around it.
 */
#include "fuzz_loader.h"

#include <string.h>

#define WRAPPED_STORAGES  8
#define STORAGE_BYTES     4096

static uint32_t
crc32_of (const uint8_t *data, size_t size)
{
    static uint32_t table[256];
    if (!table[1]) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++)
                c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
    }
    uint32_t crc = 0xffffffffu;
    for (size_t i = 0; i < size; i++)
        crc = table[(crc ^ data[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

static void
put_u16 (GByteArray *out, uint32_t v)
{
    uint8_t b[2] = { (uint8_t) v, (uint8_t) (v >> 8) };
    g_byte_array_append (out, b, 2);
}

static void
put_u32 (GByteArray *out, uint32_t v)
{
    put_u16 (out, v & 0xffff);
    put_u16 (out, v >> 16);
}

/* What a local header and a central directory entry share: version needed 2.0, no flags,
 * stored, no time or date, the CRC, both sizes (the same: stored) and the name's length. */
static void
put_shared_fields (GByteArray *zip, const char *name, const uint8_t *data, size_t size)
{
    put_u16 (zip, 20);
    put_u16 (zip, 0);
    put_u16 (zip, 0);
    put_u32 (zip, 0);
    put_u32 (zip, crc32_of (data, size));
    put_u32 (zip, (uint32_t) size);
    put_u32 (zip, (uint32_t) size);
    put_u16 (zip, (uint32_t) strlen (name));
}

/* A stored zip like torch.save writes (without its alignment padding, which is optional). */
static GByteArray *
wrap_pickle (const uint8_t *pickle, size_t size)
{
    static uint8_t storage[STORAGE_BYTES];
    for (size_t i = 0; i < sizeof storage; i++)
        storage[i] = (uint8_t) (i * 37 + 11);
    char names[WRAPPED_STORAGES + 1][32];
    const uint8_t *datas[WRAPPED_STORAGES + 1];
    size_t sizes[WRAPPED_STORAGES + 1];
    uint32_t offsets[WRAPPED_STORAGES + 1];
    snprintf (names[0], sizeof names[0], "archive/data.pkl");
    datas[0] = pickle;
    sizes[0] = size;
    for (int i = 1; i <= WRAPPED_STORAGES; i++) {
        snprintf (names[i], sizeof names[i], "archive/data/%d", i - 1);
        datas[i] = storage;
        sizes[i] = sizeof storage;
    }

    GByteArray *zip = g_byte_array_new ();
    for (int i = 0; i <= WRAPPED_STORAGES; i++) {
        offsets[i] = zip->len;
        put_u32 (zip, 0x04034b50);
        put_shared_fields (zip, names[i], datas[i], sizes[i]);
        put_u16 (zip, 0);
        g_byte_array_append (zip, (const uint8_t *) names[i], (guint) strlen (names[i]));
        g_byte_array_append (zip, datas[i], (guint) sizes[i]);
    }
    uint32_t directory_offset = zip->len;
    for (int i = 0; i <= WRAPPED_STORAGES; i++) {
        put_u32 (zip, 0x02014b50);
        put_u16 (zip, 20); /* version made by */
        put_shared_fields (zip, names[i], datas[i], sizes[i]);
        put_u32 (zip, 0); /* extra and comment lengths */
        put_u32 (zip, 0); /* disk, internal attributes */
        put_u32 (zip, 0); /* external attributes */
        put_u32 (zip, offsets[i]);
        g_byte_array_append (zip, (const uint8_t *) names[i], (guint) strlen (names[i]));
    }
    uint32_t directory_size = zip->len - directory_offset;
    put_u32 (zip, 0x06054b50);
    put_u32 (zip, 0);
    put_u16 (zip, WRAPPED_STORAGES + 1);
    put_u16 (zip, WRAPPED_STORAGES + 1);
    put_u32 (zip, directory_size);
    put_u32 (zip, directory_offset);
    put_u16 (zip, 0);
    return zip;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    GByteArray *wrapped = NULL;
    if (size < 2 || memcmp (data, "PK", 2) != 0) {
        if (size > 16 * 1024 * 1024)
            return 0; /* keeps the 32-bit zip fields valid */
        wrapped = wrap_pickle (data, size);
        data = wrapped->data;
        size = wrapped->len;
    }
    open_as_model_file ("fuzz-torch-zip", data, size);
    if (wrapped)
        g_byte_array_unref (wrapped);
    return 0;
}
