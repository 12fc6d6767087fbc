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

void SysTick_Handler(void)
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

void svt_counter_align(void)
{
    uint32_t start = ticks;
    while (ticks == start) {
        /* spin, not WFI: QEMU wakes a sleeping core a varying time after the tick */
    }
}

void svt_counter_spin(uint32_t iterations)
{
    if (iterations == 0u) {
        return;
    }
    __asm__ volatile("1: subs %0, %0, #1\n\tbne 1b" : "+r"(iterations) : : "cc");
}
