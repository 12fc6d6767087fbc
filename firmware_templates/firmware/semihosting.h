/*
 * ARM semihosting, used by QEMU builds only: the debugger (here QEMU, started with
 * `-semihosting-config enable=on,target=native`) serves the call. On a board without a
 * debugger attached, `bkpt 0xAB` would stop the core, so hardware builds never call it.
 */
#ifndef SVT_SEMIHOSTING_H
#define SVT_SEMIHOSTING_H

#include <stdint.h>

/* Prints a NUL-terminated string on the emulator's console (SYS_WRITE0). */
void svt_semihost_write(const char *text);
/* Stops the emulator; QEMU exits with `code` (SYS_EXIT_EXTENDED). */
void svt_semihost_exit(uint32_t code) __attribute__((noreturn));

#endif /* SVT_SEMIHOSTING_H */
