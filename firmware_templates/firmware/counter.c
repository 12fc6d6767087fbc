/* Time base and cost counter: see counter.h. */
#include "board_config.h"
#include "cortex_m.h"
#include "counter.h"

#define TICK_CYCLES (SVT_CORE_CLOCK_HZ / SVT_TICK_HZ) /* SysTick period in clock cycles */

/* SysTick's reload register holds 24 bits. */
typedef char svt_tick_fits_systick[(TICK_CYCLES - 1u <= SYST_MAX_RELOAD) ? 1 : -1];

static volatile uint32_t ticks; /* SysTick periods since svt_counter_init */

#if SVT_COUNTER_DWT
static volatile uint32_t cyccnt_high; /* wraps of the 32-bit cycle counter */
static volatile uint32_t cyccnt_last; /* its value at the last SysTick */
#endif

void svt_counter_init(void)
{
#if SVT_COUNTER_DWT
    DEMCR |= DEMCR_TRCENA;
    DWT_LAR = 0xC5ACCE55u; /* Cortex-M7 locks the DWT; ignored on the M4 */
    DWT_CYCCNT = 0;
    DWT_CTRL |= DWT_CTRL_CYCCNTENA;
#endif
    SYST_RVR = TICK_CYCLES - 1u;
    SYST_CVR = 0;
    SYST_CSR = SYST_CSR_CLKSOURCE | SYST_CSR_TICKINT | SYST_CSR_ENABLE;
}

/* SysTick's entry: passes the interrupted code's stacked exception frame (on the main or
 * the process stack, per EXC_RETURN bit 2) to svt_systick. */
__attribute__((naked)) void SysTick_Handler(void)
{
    __asm__ volatile("tst lr, #4\n\t"
                     "ite eq\n\t"
                     "mrseq r0, msp\n\t"
                     "mrsne r0, psp\n\t"
                     "b svt_systick\n\t");
}

/* The one-instruction wait loop of svt_counter_align (a label, not a function). */
extern const char svt_align_spin[];

#define FRAME_PC 6u /* stacked r0-r3, r12, lr, pc, xpsr: the same in an FPU frame */

void svt_systick(uint32_t *frame);
void svt_systick(uint32_t *frame)
{
    ticks++;
#if SVT_COUNTER_DWT
    uint32_t now = DWT_CYCCNT;
    if (now < cyccnt_last) {
        cyccnt_high++;
    }
    cyccnt_last = now;
#endif
    svt_on_tick();
    if ((frame[FRAME_PC] & ~1u) == ((uint32_t)(uintptr_t)svt_align_spin & ~1u)) {
        frame[FRAME_PC] += 2u; /* release svt_counter_align: return past its loop */
    }
}

uint32_t svt_time_ms(void)
{
    return ticks * (1000u / SVT_TICK_HZ);
}

uint64_t svt_counter_now(void)
{
    uint64_t value;
    svt_irq_disable();
#if SVT_COUNTER_DWT
    uint32_t now = DWT_CYCCNT, high = cyccnt_high;
    if (now < cyccnt_last) {
        high++; /* wrapped since the last SysTick sample */
    }
    value = ((uint64_t)high << 32) | now;
#else
    uint32_t periods = ticks, current = SYST_CVR;
    if (SCB_ICSR & SCB_ICSR_PENDSTSET) {
        /* the counter reloaded but the handler has not run yet: count that period and
         * read again, so `current` belongs to the new period */
        current = SYST_CVR;
        periods++;
    }
    /* The interrupt comes as the count reaches 0, the reload one clock later: a 0 read
     * after the handler ran is the first clock of the new period, not the last of the
     * old one (read right after svt_counter_align, it was a whole period off). */
    value = (uint64_t)periods * TICK_CYCLES + (current == 0u ? 0u : TICK_CYCLES - current);
#endif
    svt_irq_enable();
    return value;
}

/* The loop is one instruction, so the tick always interrupts it at the same place and
 * the handler returns past it at the same instruction after the tick: the count that
 * starts there is exactly repeatable under -icount. A C loop testing `ticks` (three
 * instructions) left it where the tick came, which moved the end across a SysTick clock
 * edge now and then (40 instructions on mps2-an500). */
__attribute__((naked, noinline)) void svt_counter_align(void)
{
    __asm__ volatile("svt_align_spin: b svt_align_spin\n\t"
                     "bx lr\n\t");
}

void svt_counter_spin(uint32_t iterations)
{
    if (iterations == 0u) {
        return;
    }
    __asm__ volatile("1: subs %0, %0, #1\n\tbne 1b" : "+r"(iterations) : : "cc");
}
