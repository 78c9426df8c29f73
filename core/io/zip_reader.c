/* zip_reader.c: the directory of a zip file read in place (ZIP64 too).
 *
 * Records must be STORED, so a record's bytes are used straight from the mapping, never
 * copied or inflated. Every offset and size comes from the file and is checked against it.
 */
#include "io/zip_reader.h"

#include <limits.h>
#include <string.h>

#define ZIP_LOCAL_HEADER_SIG   0x04034b50u
#define ZIP_CENTRAL_HEADER_SIG 0x02014b50u
#define ZIP_END_SIG            0x06054b50u
#define ZIP64_END_SIG          0x06064b50u
#define ZIP64_LOCATOR_SIG      0x07064b50u

#define ZIP_LOCAL_HEADER_SIZE   30
#define ZIP_CENTRAL_HEADER_SIZE 46
#define ZIP_END_SIZE            22
#define ZIP64_END_SIZE          56
#define ZIP64_LOCATOR_SIZE      20
#define ZIP_MAX_COMMENT         0xffff
#define ZIP64_EXTRA_ID          0x0001


static inline uint16_t
read_u16 (const uint8_t *p)
{
    return (uint16_t) (p[0] | p[1] << 8);
}

static inline uint32_t
read_u32 (const uint8_t *p)
{
    return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
}

static inline uint64_t
read_u64 (const uint8_t *p)
{
    return (uint64_t) read_u32 (p) | (uint64_t) read_u32 (p + 4) << 32;
}

void
zip_directory_clear (ZipDirectory *zip)
{
    for (size_t i = 0; i < zip->count; i++)
        g_free (zip->records[i].name);
    g_free (zip->records);
    if (zip->by_name)
        g_hash_table_unref (zip->by_name);
    memset (zip, 0, sizeof *zip);
}

uint32_t
zip_crc32 (const uint8_t *data, uint64_t size)
{
    static uint32_t table[256];
    static gsize table_ready = 0;
    if (g_once_init_enter (&table_ready)) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++)
                c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
        g_once_init_leave (&table_ready, 1);
    }
    uint32_t crc = 0xffffffffu;
    for (uint64_t i = 0; i < size; i++)
        crc = table[(crc ^ data[i]) & 0xff] ^ (crc >> 8);
    return crc ^ 0xffffffffu;
}

/* Where the central directory is, from the end record (and its ZIP64 version when present). */
typedef struct {
    uint64_t entries;
    uint64_t offset;
    uint64_t size;
    uint64_t limit; /* the directory must end before this (the end records follow it) */
} CentralDirectory;

static gboolean
find_central_directory (LdmTensorFile *file, CentralDirectory *cd, GError **error)
{
    const uint8_t *bytes = file->bytes;
    uint64_t size = file->size;
    if (size < ZIP_END_SIZE) {
        tensor_file_set_error (error, file, LDM_ERROR_FORMAT, "not a zip file: too short");
        return FALSE;
    }
    /* The end record is last, after a comment of up to 64 KiB: search backwards. */
    uint64_t last = size - ZIP_END_SIZE;
    uint64_t first = last > ZIP_MAX_COMMENT ? last - ZIP_MAX_COMMENT : 0;
    uint64_t end_at = UINT64_MAX;
    for (uint64_t pos = last + 1; pos-- > first;) {
        if (read_u32 (bytes + pos) == ZIP_END_SIG
            && pos + ZIP_END_SIZE + read_u16 (bytes + pos + 20) <= size) {
            end_at = pos;
            break;
        }
    }
    if (end_at == UINT64_MAX) {
        tensor_file_set_error (error, file, LDM_ERROR_FORMAT,
                               "not a zip file, or a truncated one: no end of central directory "
                               "record");
        return FALSE;
    }
    const uint8_t *end = bytes + end_at;
    uint32_t disk = read_u16 (end + 4), cd_disk = read_u16 (end + 6);
    uint64_t entries_here = read_u16 (end + 8);
    cd->entries = read_u16 (end + 10);
    cd->size = read_u32 (end + 12);
    cd->offset = read_u32 (end + 16);
    cd->limit = end_at;

    if (end_at >= ZIP64_LOCATOR_SIZE
        && read_u32 (bytes + end_at - ZIP64_LOCATOR_SIZE) == ZIP64_LOCATOR_SIG) {
        const uint8_t *locator = bytes + end_at - ZIP64_LOCATOR_SIZE;
        uint64_t end64_at = read_u64 (locator + 8);
        if (end64_at > end_at - ZIP64_LOCATOR_SIZE
            || end_at - ZIP64_LOCATOR_SIZE - end64_at < ZIP64_END_SIZE
            || read_u32 (bytes + end64_at) != ZIP64_END_SIG) {
            tensor_file_set_error (error, file, LDM_ERROR_FORMAT,
                                   "damaged zip: the ZIP64 locator points to no ZIP64 end record");
            return FALSE;
        }
        const uint8_t *end64 = bytes + end64_at;
        if (read_u64 (end64 + 4) < ZIP64_END_SIZE - 12) {
            tensor_file_set_error (error, file, LDM_ERROR_FORMAT,
                                   "damaged zip: the ZIP64 end record is too short");
            return FALSE;
        }
        uint64_t entries64 = read_u64 (end64 + 32), size64 = read_u64 (end64 + 40),
                 offset64 = read_u64 (end64 + 48);
        /* Writers put either the sentinel or the (possibly truncated) true value in the old
         * record; anything else means one of the two records is damaged. */
        if ((cd->entries != 0xffff && cd->entries != (entries64 & 0xffff))
            || (entries_here != 0xffff && entries_here != (read_u64 (end64 + 24) & 0xffff))
            || (cd->size != 0xffffffffu && cd->size != (size64 & 0xffffffffu))
            || (cd->offset != 0xffffffffu && cd->offset != (offset64 & 0xffffffffu))) {
            tensor_file_set_error (error, file, LDM_ERROR_FORMAT,
                                   "damaged zip: the end record and the ZIP64 end record "
                                   "disagree");
            return FALSE;
        }
        if ((disk != 0 && disk != 0xffff) || (cd_disk != 0 && cd_disk != 0xffff)) {
            tensor_file_set_error (error, file, LDM_ERROR_UNSUPPORTED,
                                   "multi-part zip files are not supported");
            return FALSE;
        }
        disk = read_u32 (end64 + 16);
        cd_disk = read_u32 (end64 + 20);
        entries_here = read_u64 (end64 + 24);
        cd->entries = entries64;
        cd->size = size64;
        cd->offset = offset64;
        cd->limit = end64_at;
    } else if (cd->entries == 0xffff || cd->size == 0xffffffffu || cd->offset == 0xffffffffu) {
        tensor_file_set_error (error, file, LDM_ERROR_FORMAT,
                               "damaged zip: the end record asks for ZIP64 values but there is "
                               "no ZIP64 end record");
        return FALSE;
    }
    if (disk != 0 || cd_disk != 0 || entries_here != cd->entries) {
        tensor_file_set_error (error, file, LDM_ERROR_UNSUPPORTED,
                               "multi-part zip files are not supported");
        return FALSE;
    }
    uint64_t cd_end;
    if (!checked_add_u64 (cd->offset, cd->size, &cd_end) || cd_end > cd->limit) {
        tensor_file_set_error (error, file, LDM_ERROR_FORMAT,
                               "damaged zip: the central directory (offset %" G_GUINT64_FORMAT
                               ", %" G_GUINT64_FORMAT " bytes) lies outside the file",
                               cd->offset, cd->size);
        return FALSE;
    }
    if (cd->entries > cd->size / ZIP_CENTRAL_HEADER_SIZE) {
        tensor_file_set_error (error, file, LDM_ERROR_FORMAT,
                               "damaged zip: %" G_GUINT64_FORMAT " entries cannot fit in a "
                               "central directory of %" G_GUINT64_FORMAT " bytes",
                               cd->entries, cd->size);
        return FALSE;
    }
    return TRUE;
}

/* Replaces the 32-bit fields marked 0xffffffff by the 64-bit values of the ZIP64 extra field,
 * which holds only those, in this order. */
static gboolean
apply_zip64_extra (const uint8_t *extra, size_t extra_size, uint64_t *uncompressed,
                   uint64_t *compressed, uint64_t *local_offset, gboolean *malformed)
{
    *malformed = FALSE;
    while (extra_size >= 4) {
        uint16_t id = read_u16 (extra), field_size = read_u16 (extra + 2);
        if (field_size > extra_size - 4) {
            *malformed = TRUE;
            return FALSE;
        }
        if (id == ZIP64_EXTRA_ID) {
            const uint8_t *p = extra + 4;
            size_t left = field_size;
            uint64_t *wanted[3] = { uncompressed, compressed, local_offset };
            for (int i = 0; i < 3; i++) {
                if (*wanted[i] != 0xffffffffu)
                    continue;
                if (left < 8) {
                    *malformed = TRUE;
                    return FALSE;
                }
                *wanted[i] = read_u64 (p);
                p += 8;
                left -= 8;
            }
            return TRUE;
        }
        extra += 4 + field_size;
        extra_size -= 4 + field_size;
    }
    return *uncompressed != 0xffffffffu && *compressed != 0xffffffffu
           && *local_offset != 0xffffffffu;
}

/* Finds a record's data through its local header, whose name and extra field may differ in
 * length from the central directory's (torch pads the extra field to align the data). */
static gboolean
locate_record_data (LdmTensorFile *file, ZipRecord *record, const uint8_t *central_name,
                    size_t name_length, uint64_t local_offset, GError **error)
{
    uint64_t size = file->size;
    if (local_offset > size || size - local_offset < ZIP_LOCAL_HEADER_SIZE) {
        tensor_file_set_error (error, file, LDM_ERROR_FORMAT,
                               "damaged zip: the local header of record '%s' lies outside the "
                               "file",
                               record->name);
        return FALSE;
    }
    const uint8_t *local = file->bytes + local_offset;
    if (read_u32 (local) != ZIP_LOCAL_HEADER_SIG) {
        tensor_file_set_error (error, file, LDM_ERROR_FORMAT,
                               "damaged zip: no local header where record '%s' should start",
                               record->name);
        return FALSE;
    }
    uint16_t method = read_u16 (local + 8);
    uint64_t local_name_length = read_u16 (local + 26);
    uint64_t local_extra_length = read_u16 (local + 28);
    uint64_t data_offset = local_offset + ZIP_LOCAL_HEADER_SIZE + local_name_length
                           + local_extra_length; /* cannot overflow: all terms are small */
    if (data_offset > size || local_name_length != name_length
        || memcmp (local + ZIP_LOCAL_HEADER_SIZE, central_name, name_length) != 0) {
        tensor_file_set_error (error, file, LDM_ERROR_FORMAT,
                               "damaged zip: the local header of record '%s' does not match the "
                               "central directory",
                               record->name);
        return FALSE;
    }
    if (method != 0) {
        tensor_file_set_error (error, file, LDM_ERROR_UNSUPPORTED,
                               "record '%s' is compressed (method %u); only stored records are "
                               "supported",
                               record->name, method);
        return FALSE;
    }
    if (record->size > size - data_offset) {
        tensor_file_set_error (error, file, LDM_ERROR_FORMAT,
                               "damaged zip: record '%s' (%" G_GUINT64_FORMAT
                               " bytes) runs past the end of the file",
                               record->name, record->size);
        return FALSE;
    }
    record->data = file->bytes + data_offset;
    return TRUE;
}

gboolean
zip_read_directory (LdmTensorFile *file, ZipDirectory *zip, GError **error)
{
    CentralDirectory cd;
    if (!find_central_directory (file, &cd, error))
        return FALSE;

    zip->records = g_new0 (ZipRecord, cd.entries);
    zip->by_name = g_hash_table_new (g_str_hash, g_str_equal);
    const uint8_t *p = file->bytes + cd.offset;
    uint64_t left = cd.size;
    for (uint64_t i = 0; i < cd.entries; i++) {
        if (left < ZIP_CENTRAL_HEADER_SIZE || read_u32 (p) != ZIP_CENTRAL_HEADER_SIG) {
            tensor_file_set_error (error, file, LDM_ERROR_FORMAT,
                                   "damaged zip: central directory entry %" G_GUINT64_FORMAT
                                   " is missing or has a bad signature",
                                   i);
            return FALSE;
        }
        uint16_t flags = read_u16 (p + 8);
        uint16_t method = read_u16 (p + 10);
        uint32_t crc = read_u32 (p + 16);
        uint64_t compressed = read_u32 (p + 20);
        uint64_t uncompressed = read_u32 (p + 24);
        size_t name_length = read_u16 (p + 28);
        size_t extra_length = read_u16 (p + 30);
        size_t comment_length = read_u16 (p + 32);
        uint64_t local_offset = read_u32 (p + 42);
        size_t entry_size = ZIP_CENTRAL_HEADER_SIZE + name_length + extra_length + comment_length;
        if (entry_size > left) {
            tensor_file_set_error (error, file, LDM_ERROR_FORMAT,
                                   "damaged zip: central directory entry %" G_GUINT64_FORMAT
                                   " runs past the directory",
                                   i);
            return FALSE;
        }
        const uint8_t *name = p + ZIP_CENTRAL_HEADER_SIZE;
        if (name_length == 0 || memchr (name, 0, name_length)
            || !g_utf8_validate_len ((const char *) name, name_length, NULL)) {
            tensor_file_set_error (error, file, LDM_ERROR_FORMAT,
                                   "damaged zip: central directory entry %" G_GUINT64_FORMAT
                                   " has an empty or invalid name",
                                   i);
            return FALSE;
        }
        ZipRecord *record = &zip->records[zip->count++];
        record->name = g_strndup ((const char *) name, name_length);
        record->crc32 = crc;

        gboolean malformed;
        if (!apply_zip64_extra (name + name_length, extra_length, &uncompressed, &compressed,
                                &local_offset, &malformed)) {
            tensor_file_set_error (error, file, LDM_ERROR_FORMAT,
                                   "damaged zip: record '%s' has %s", record->name,
                                   malformed ? "a malformed extra field"
                                             : "ZIP64 sizes but no ZIP64 extra field");
            return FALSE;
        }
        if (flags & 1) {
            tensor_file_set_error (error, file, LDM_ERROR_UNSUPPORTED,
                                   "record '%s' is encrypted", record->name);
            return FALSE;
        }
        if (method != 0) {
            tensor_file_set_error (error, file, LDM_ERROR_UNSUPPORTED,
                                   "record '%s' is compressed (method %u); only stored records "
                                   "are supported",
                                   record->name, method);
            return FALSE;
        }
        if (compressed != uncompressed) {
            tensor_file_set_error (error, file, LDM_ERROR_FORMAT,
                                   "damaged zip: stored record '%s' has two different sizes",
                                   record->name);
            return FALSE;
        }
        record->size = uncompressed;
        if (g_hash_table_contains (zip->by_name, record->name)) {
            tensor_file_set_error (error, file, LDM_ERROR_FORMAT,
                                   "damaged zip: record '%s' appears twice", record->name);
            return FALSE;
        }
        g_hash_table_insert (zip->by_name, record->name, record);
        if (!locate_record_data (file, record, name, name_length, local_offset, error))
            return FALSE;
        p += entry_size;
        left -= entry_size;
    }
    return TRUE;
}

/* torch.save puts every record under one folder, "<name>/" (torch 1.x) or "archive/" (2.x). */
gboolean
zip_find_archive_folder (LdmTensorFile *file, const ZipDirectory *zip, char **folder,
                         const ZipRecord **pickle, GError **error)
{
    static const char suffix[] = "/data.pkl";
    const size_t suffix_length = sizeof suffix - 1;
    const ZipRecord *found = NULL;
    for (size_t i = 0; i < zip->count; i++) {
        const char *name = zip->records[i].name;
        size_t length = strlen (name);
        if (length <= suffix_length || strcmp (name + length - suffix_length, suffix) != 0
            || memchr (name, '/', length - suffix_length))
            continue;
        if (found) {
            tensor_file_set_error (error, file, LDM_ERROR_FORMAT,
                                   "not a PyTorch checkpoint: two data.pkl records ('%s' and "
                                   "'%s')",
                                   found->name, name);
            return FALSE;
        }
        found = &zip->records[i];
    }
    if (!found) {
        tensor_file_set_error (error, file, LDM_ERROR_FORMAT,
                               "not a PyTorch checkpoint: no data.pkl in the zip");
        return FALSE;
    }
    size_t folder_length = strlen (found->name) - suffix_length;
    for (size_t i = 0; i < zip->count; i++) {
        const char *name = zip->records[i].name;
        if (strncmp (name, found->name, folder_length + 1) != 0) {
            tensor_file_set_error (error, file, LDM_ERROR_FORMAT,
                                   "not a PyTorch checkpoint: record '%s' is outside the "
                                   "checkpoint's folder '%.*s/'",
                                   name, (int) folder_length, found->name);
            return FALSE;
        }
    }
    *folder = g_strndup (found->name, folder_length);
    *pickle = found;
    return TRUE;
}
