/* ARM semihosting calls for QEMU builds: see semihosting.h. */
#include "semihosting.h"

#define SYS_WRITE0 0x04u
#define SYS_EXIT_EXTENDED 0x20u
#define ADP_STOPPED_APPLICATION_EXIT 0x20026u

static uint32_t semihost_call(uint32_t operation, const void *argument)
{
    register uint32_t r0 __asm__("r0") = operation;
    register const void *r1 __asm__("r1") = argument;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

void svt_semihost_write(const char *text)
{
    (void)semihost_call(SYS_WRITE0, text);
}

void svt_semihost_exit(uint32_t code)
{
    const uint32_t block[2] = { ADP_STOPPED_APPLICATION_EXIT, code };
    (void)semihost_call(SYS_EXIT_EXTENDED, block);
    for (;;) {
    }
}
