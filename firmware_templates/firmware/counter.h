/*
 * Time base and cost counter.
 *
 * SysTick runs from the processor clock and interrupts SVT_TICK_HZ times a second: that
 * gives the millisecond clock (for the serial receive timeout) in every build.
 *
 * svt_counter_now() is the cost counter, 64 bits:
 *   hardware builds  DWT CYCCNT, core clock cycles; the SysTick interrupt samples it
 *                    often enough to count its 32-bit wraps.
 *   QEMU builds      SysTick ticks (QEMU has no DWT counter: CYCCNT reads 0). Run under
 *                    `-icount shift=0`, QEMU advances its virtual clock by exactly 1 ns per
 *                    guest instruction, so a tick at SVT_CORE_CLOCK_HZ is
 *                    1e9 / SVT_CORE_CLOCK_HZ instructions (40 on mps2-an500 at 25 MHz).
 *                    The host converts; CALIBRATE checks the factor against a loop of
 *                    known length.
 */
#ifndef SVT_COUNTER_H
#define SVT_COUNTER_H

#include <stdint.h>

#define SVT_TICK_HZ 100u

void svt_counter_init(void);
uint64_t svt_counter_now(void);
uint32_t svt_time_ms(void);
/* Waits for the next SysTick interrupt and returns at a fixed instruction after it. A
 * measurement started right after it starts at the same phase of the tick every time, so
 * under -icount every later interrupt falls at the same instruction and the count repeats
 * exactly (otherwise one more or one fewer SysTick handler, and the counter's 1-tick
 * resolution, make it vary). Costs up to one tick period (10 ms). */
void svt_counter_align(void);
/* Runs `iterations` of a two-instruction loop (subs, bne). */
void svt_counter_spin(uint32_t iterations);
void SysTick_Handler(void);
/* Called from the SysTick interrupt; defined by the application (main.c). */
void svt_on_tick(void);

#endif /* SVT_COUNTER_H */
