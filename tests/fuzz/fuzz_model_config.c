/* fuzz_model_config: libFuzzer harness for the CompVis config reader.
 *
 * Each input is written to an in-memory file and read with model_config_read_yaml, as a
 * config beside a model would be; a config that reads is then checked again and expanded
 * into its parameter lists, so the enumerators see every config the reader accepts.
 *
 *   CC=clang meson setup build-fuzz -Dfuzzers=true -Db_sanitize=address,undefined
 *   ninja -C build-fuzz tests/fuzz/fuzz_model_config
 *   build-fuzz/tests/fuzz/fuzz_model_config ../shared/model-configs ../shared/fixtures/x/config.yaml
 */
#include "arch/model_config.h"

#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

static int   memory_fd = -1;
static char  memory_path[64];

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (memory_fd < 0) {
        memory_fd = memfd_create ("fuzz_model_config", MFD_CLOEXEC);
        if (memory_fd < 0)
            return 0;
        snprintf (memory_path, sizeof memory_path, "/proc/self/fd/%d", memory_fd);
    }
    if (ftruncate (memory_fd, 0) != 0 || pwrite (memory_fd, data, size, 0) != (ssize_t) size)
        return 0;

    LdmModelConfig config;
    GError *error = NULL;
    if (model_config_read_yaml (memory_path, &config, &error)) {
        if (!model_config_check (&config, "fuzz", NULL))
            __builtin_trap (); /* the reader returned a config its own check refuses */
        GArray *unet = model_config_unet_params (&config.unet);
        GArray *ae = model_config_autoencoder_params (&config.first_stage);
        (void) model_config_param_count (unet);
        (void) model_config_param_count (ae);
        g_array_unref (unet);
        g_array_unref (ae);
    } else {
        if (!error || !error->message[0])
            __builtin_trap (); /* every failure explains itself */
        g_error_free (error);
    }
    return 0;
}
