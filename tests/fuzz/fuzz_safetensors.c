/* fuzz_safetensors: libFuzzer harness for the safetensors parser (build with -Dfuzzers=true).
 *
 * Each input is written to a memory file and opened like a model file; every tensor that opens
 * is then converted to float32, which walks its whole extent (fuzz_loader.h).
 */
#include "fuzz_loader.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    open_as_model_file ("fuzz-safetensors", data, size);
    return 0;
}
