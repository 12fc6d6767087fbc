/*
 * Start-up code and vector table for Cortex-M3/M4/M7.
 *
 * Reset_Handler: enable the FPU (CPACR bits 20-23, on cores built with one) before any
 * floating-point instruction, point VTOR at our table, switch on the clocks of memories that need one
 * (STM32H7 D2 SRAMs), copy .data from flash, zero .bss and the arena,
 * enable the Cortex-M7 caches where the board asks for it, then call main().
 * The linker script (linker_*.ld) defines the symbols used here.
 */
#include <stdint.h>

#include "board_config.h"
#include "cortex_m.h"
#include "counter.h"
#include "uart.h"
#if SVT_EMULATED
#include "semihosting.h"
#endif

extern uint32_t __data_load[], __data_start[], __data_end[];
extern uint32_t __bss_start[], __bss_end[];
extern uint32_t __svt_arena_start[], __svt_arena_end[];
extern uint32_t __stack_top[];

int main(void);
void Reset_Handler(void);
void svt_default_handler(void);
void svt_fault_handler(void);
void svt_fault_report(const uint32_t *frame);

/* A vector is the initial stack pointer (entry 0) or a handler. */
typedef union {
    void (*handler)(void);
    const void *stack;
} svt_vector_t;

#define SVT_HANDLER(fn) { .handler = (fn) }

__attribute__((section(".isr_vector"), used))
const svt_vector_t svt_vectors[] = {
    { .stack = __stack_top },
    SVT_HANDLER(Reset_Handler),
    SVT_HANDLER(svt_default_handler), /* NMI */
    SVT_HANDLER(svt_fault_handler),   /* HardFault */
    SVT_HANDLER(svt_fault_handler),   /* MemManage */
    SVT_HANDLER(svt_fault_handler),   /* BusFault */
    SVT_HANDLER(svt_fault_handler),   /* UsageFault */
    SVT_HANDLER(0), SVT_HANDLER(0), SVT_HANDLER(0), SVT_HANDLER(0), /* reserved */
    SVT_HANDLER(svt_default_handler), /* SVCall */
    SVT_HANDLER(svt_default_handler), /* DebugMonitor */
    SVT_HANDLER(0),                   /* reserved */
    SVT_HANDLER(svt_default_handler), /* PendSV */
    SVT_HANDLER(SysTick_Handler),
    SVT_IRQ_VECTORS
};

#if SVT_STARTUP_CLOCK_ENABLE_COUNT
/* Memories that need a clock before Reset_Handler may touch them (board file [firmware]). */
static const svt_clock_enable_t startup_clocks[SVT_STARTUP_CLOCK_ENABLE_COUNT] = {
    SVT_STARTUP_CLOCK_ENABLES
};
#endif

#if SVT_ENABLE_CACHES
/* Cortex-M7: invalidate, then enable, the instruction and data caches (the sequence of
 * CMSIS SCB_EnableICache / SCB_EnableDCache). Not yet run on hardware. */
static void enable_caches(void)
{
    svt_dsb();
    svt_isb();
    SCB_ICIALLU = 0;
    svt_dsb();
    svt_isb();
    SCB_CCR |= SCB_CCR_IC;

    SCB_CSSELR = 0; /* level 1 data cache */
    svt_dsb();
    uint32_t ccsidr = SCB_CCSIDR;
    uint32_t sets = (ccsidr >> 13) & 0x7FFFu;
    do {
        uint32_t ways = (ccsidr >> 3) & 0x3FFu;
        do {
            SCB_DCISW = ((sets << 5) & 0x3FE0u) | ((ways << 30) & 0xC0000000u);
        } while (ways-- != 0u);
    } while (sets-- != 0u);
    svt_dsb();
    SCB_CCR |= SCB_CCR_DC;
    svt_dsb();
    svt_isb();
}
#endif

/* The loops below must stay loops: no .data exists yet for a memcpy/memset to rely on. */
__attribute__((noreturn, optimize("no-tree-loop-distribute-patterns")))
void Reset_Handler(void)
{
#if defined(__ARM_FP) /* the compiler emits FPU instructions: switch the FPU on */
    SCB_CPACR |= SCB_CPACR_FPU;
    svt_dsb();
    svt_isb();
#endif
    SCB_VTOR = (uint32_t)(uintptr_t)svt_vectors;
#if SVT_STARTUP_CLOCK_ENABLE_COUNT
    svt_clocks_enable(startup_clocks, SVT_STARTUP_CLOCK_ENABLE_COUNT);
#endif

    const uint32_t *src = __data_load;
    for (uint32_t *dst = __data_start; dst < __data_end; ++dst) {
        *dst = *src++;
    }
    for (uint32_t *dst = __bss_start; dst < __bss_end; ++dst) {
        *dst = 0;
    }
    /* The arena is not loaded from flash (NOLOAD), but zero it so that every run starts
     * from the state the host build starts from. */
    for (uint32_t *dst = __svt_arena_start; dst < __svt_arena_end; ++dst) {
        *dst = 0;
    }
#if SVT_ENABLE_CACHES
    enable_caches();
#endif
    (void)main();
    for (;;) {
    }
}

void svt_default_handler(void)
{
    for (;;) {
    }
}

/* Fault entry: pass the stacked exception frame (r0-r3, r12, lr, pc, xpsr) on. */
__attribute__((naked)) void svt_fault_handler(void)
{
    __asm__ volatile("tst lr, #4\n\t"
                     "ite eq\n\t"
                     "mrseq r0, msp\n\t"
                     "mrsne r0, psp\n\t"
                     "b svt_fault_report\n\t");
}

#if SVT_EMULATED
static void hex32(char *out, uint32_t value)
{
    for (int i = 7; i >= 0; --i) {
        out[i] = "0123456789abcdef"[value & 0xFu];
        value >>= 4;
    }
}
#endif

void svt_fault_report(const uint32_t *frame)
{
#if SVT_EMULATED
    /* QEMU: say where it happened on the emulator's console and stop with exit code 3. */
    uint32_t ipsr;
    __asm__ volatile("mrs %0, ipsr" : "=r"(ipsr));
    char text[] = "svt firmware: fault (exception xxxxxxxx) at pc xxxxxxxx\n";
    hex32(text + 31, ipsr & 0x1FFu);
    hex32(text + 47, frame[6]);
    svt_semihost_write(text);
    svt_semihost_exit(3u);
#else
    /* Hardware: stop here; a debugger shows the stacked pc at frame[6]. */
    (void)frame;
    for (;;) {
    }
#endif
}
