#include "CFuzzDriver.h"

// libFuzzer's entry for programs that have their own main (SwiftPM renames a Swift executable's main,
// so libFuzzer's main would never run). Weak: absent unless linked with -sanitize=fuzzer.
extern int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size))
    __attribute__((weak));

int wharf_fuzz_run(int *argc, char ***argv, wharf_fuzz_callback callback) {
    if (!LLVMFuzzerRunDriver) return -1;
    return LLVMFuzzerRunDriver(argc, argv, callback);
}
