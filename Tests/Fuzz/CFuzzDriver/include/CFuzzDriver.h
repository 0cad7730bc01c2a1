#ifndef WHARF_FUZZ_DRIVER_H
#define WHARF_FUZZ_DRIVER_H

#include <stddef.h>
#include <stdint.h>

/// One fuzz input: return 0 (libFuzzer's convention).
typedef int (*wharf_fuzz_callback)(const uint8_t *data, size_t size);

/// Runs libFuzzer's driver with `argv` (libFuzzer flags, corpus directories) on `callback`.
/// Returns -1 when the binary was not linked with `-sanitize=fuzzer` (libFuzzer's
/// `LLVMFuzzerRunDriver` is declared weak, so the module also links without it).
int wharf_fuzz_run(int *argc, char ***argv, wharf_fuzz_callback callback);

#endif
