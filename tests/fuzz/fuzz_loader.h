/* fuzz_loader.h: what the model-file fuzzers share: the input as a memory file opened like a
 * model file, and every tensor that opens converted to float32, which walks its whole extent. */
#pragma once

#include "ldm.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* Bounds the work per input: larger tensors are parsed but not converted. */
#define MAX_READ_ELEMENTS (1 << 22)

static void
read_every_tensor (const LdmTensorFile *file)
{
    for (size_t i = 0; i < ldm_tensor_file_count (file); i++) {
        const LdmTensor *tensor = ldm_tensor_file_at (file, i);
        if (ldm_tensor_file_lookup (file, tensor->name) != tensor)
            abort ();
        int64_t count = ldm_tensor_numel (tensor);
        if (count > MAX_READ_ELEMENTS)
            continue;
        float *values = g_new (float, (size_t) count + 1);
        if (!ldm_tensor_read_f32 (tensor, values, (size_t) count, NULL))
            abort (); /* the right length cannot fail */
        g_free (values);
    }
}

/* Writes DATA to the process's memory file NAME (made on the first call) and opens it with
 * ldm_tensor_file_open; a file that opens has every tensor read. */
static void
open_as_model_file (const char *name, const uint8_t *data, size_t size)
{
    static int memory_fd = -1;
    static char memory_path[64];
    if (memory_fd < 0) {
        memory_fd = memfd_create (name, 0);
        if (memory_fd < 0)
            abort ();
        snprintf (memory_path, sizeof memory_path, "/proc/self/fd/%d", memory_fd);
    }
    if (ftruncate (memory_fd, 0) != 0
        || (size && pwrite (memory_fd, data, size, 0) != (ssize_t) size))
        abort ();

    GError *error = NULL;
    LdmTensorFile *file = ldm_tensor_file_open (memory_path, &error);
    if (file) {
        read_every_tensor (file);
        ldm_tensor_file_free (file);
    } else {
        g_clear_error (&error);
    }
}
