/*
 * The firmware never allocates. If something pulls in malloc, newlib's _sbrk gets the
 * fixed heap the linker script reserves (SVT_HEAP_BYTES in the Makefile) and fails
 * cleanly beyond it instead of growing into the stack.
 */
#include <errno.h>
#include <stdint.h>

extern uint8_t __heap_start[];
extern uint8_t __heap_end[];

void *_sbrk(intptr_t increment);

void *_sbrk(intptr_t increment)
{
    static uint8_t *brk = __heap_start;
    if (increment > __heap_end - brk || increment < __heap_start - brk) {
        errno = ENOMEM;
        return (void *)-1;
    }
    uint8_t *previous = brk;
    brk += increment;
    return previous;
}
