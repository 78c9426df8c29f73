/* zip_reader.h (private to core/io): the records of a zip file, read in place.
 *
 * zip_reader.c reads the directory (ZIP64 too) of a zip of STORED records; pickle.c runs
 * PyTorch's data.pkl found in it and adds the tensors whose storages are records.
 */
#pragma once

#include "io/tensor_file.h"

typedef struct {
    char          *name; /* owned, NUL-free UTF-8 */
    const uint8_t *data; /* in the mapping */
    uint64_t       size;
    uint32_t       crc32;
} ZipRecord;

typedef struct {
    ZipRecord  *records; /* owned */
    size_t      count;
    GHashTable *by_name; /* name -> ZipRecord * (borrowed) */
} ZipDirectory;

/* Reads the central directory: every record STORED, inside the file, names unique. */
gboolean zip_read_directory (LdmTensorFile *file, ZipDirectory *zip, GError **error);
void     zip_directory_clear (ZipDirectory *zip);

/* The CRC-32 of zip records (polynomial 0xedb88320). */
uint32_t zip_crc32 (const uint8_t *data, uint64_t size);

/* torch.save's layout: every record under one folder holding data.pkl; *folder (g_free it)
 * and *pickle (that record) on success. */
gboolean zip_find_archive_folder (LdmTensorFile *file, const ZipDirectory *zip, char **folder,
                                  const ZipRecord **pickle, GError **error);
