/*
 * Cortex-M4/M7 variant of add_column_q.c (same results, tested against it). int8: four
 * weights come in with one load and each is sign-extended and added by one SXTAB (DSP
 * extension); four columns share one LDM/STM of four sums, so a pass over 8 sums adds 32
 * weights in 46 instructions (1.44 per weight; one column alone: 2). int4: one SBFX and
 * one add per weight. The sums stay int32: quantization bounds them, nothing saturates.
 * Unaligned word loads of the weights are fine on these cores; the sums are aligned.
 */
#include "svt_kernels.h"

#if defined(__ARM_FEATURE_DSP)

/* GCC splits such code into single loads and stores and sign-extends separately (about
 * twice the instructions), hence the assembly. */
#define SVT_SXTAB4(w)                                                                      \
    "sxtab r2, r2, " w "\n\t"                                                              \
    "sxtab r3, r3, " w ", ror #8\n\t"                                                      \
    "sxtab r4, r4, " w ", ror #16\n\t"                                                     \
    "sxtab r5, r5, " w ", ror #24\n\t"

/* acc[j] += c0[j] + c1[j] + c2[j] + c3[j] for the first 8 * passes sums */
static void add_four_int8(int32_t *acc, const uint8_t *c0, const uint8_t *c1,
                          const uint8_t *c2, const uint8_t *c3, uint32_t passes)
{
    __asm__ volatile(
        "1:\n\t"
        "ldm   %[a], {r2, r3, r4, r5}\n\t"
        "ldr   r8, [%[c0]], #4\n\t" SVT_SXTAB4("r8")
        "ldr   r8, [%[c1]], #4\n\t" SVT_SXTAB4("r8")
        "ldr   r8, [%[c2]], #4\n\t" SVT_SXTAB4("r8")
        "ldr   r8, [%[c3]], #4\n\t" SVT_SXTAB4("r8")
        "stm   %[a]!, {r2, r3, r4, r5}\n\t"
        "ldm   %[a], {r2, r3, r4, r5}\n\t"
        "ldr   r8, [%[c0]], #4\n\t" SVT_SXTAB4("r8")
        "ldr   r8, [%[c1]], #4\n\t" SVT_SXTAB4("r8")
        "ldr   r8, [%[c2]], #4\n\t" SVT_SXTAB4("r8")
        "ldr   r8, [%[c3]], #4\n\t" SVT_SXTAB4("r8")
        "stm   %[a]!, {r2, r3, r4, r5}\n\t"
        "subs  %[k], %[k], #1\n\t"
        "bne   1b\n\t"
        : [a] "+r"(acc), [c0] "+r"(c0), [c1] "+r"(c1), [c2] "+r"(c2), [c3] "+r"(c3),
          [k] "+r"(passes)
        :
        : "r2", "r3", "r4", "r5", "r8", "cc", "memory");
}

/* acc[j] += c0[j] for the first 8 * passes sums */
static void add_one_int8(int32_t *acc, const uint8_t *c0, uint32_t passes)
{
    __asm__ volatile(
        "1:\n\t"
        "ldr   r8, [%[c0]], #4\n\t"
        "ldm   %[a], {r2, r3, r4, r5}\n\t" SVT_SXTAB4("r8")
        "stm   %[a]!, {r2, r3, r4, r5}\n\t"
        "ldr   r8, [%[c0]], #4\n\t"
        "ldm   %[a], {r2, r3, r4, r5}\n\t" SVT_SXTAB4("r8")
        "stm   %[a]!, {r2, r3, r4, r5}\n\t"
        "subs  %[k], %[k], #1\n\t"
        "bne   1b\n\t"
        : [a] "+r"(acc), [c0] "+r"(c0), [k] "+r"(passes)
        :
        : "r2", "r3", "r4", "r5", "r8", "cc", "memory");
}

/* the signed nibble of w at bit 4 * k: SBFX w, #4k, #4 */
#define SVT_NIBBLE(w, k) ((int32_t)((w) << (28u - 4u * (k))) >> 28)

static void add_one_int4(int32_t *acc, const uint8_t *column, uint32_t passes)
{
    for (uint32_t i = 0; i < passes; ++i, acc += 8, column += 4) {
        uint32_t w;
        memcpy(&w, column, 4u);
        acc[0] += SVT_NIBBLE(w, 0u);
        acc[1] += SVT_NIBBLE(w, 1u);
        acc[2] += SVT_NIBBLE(w, 2u);
        acc[3] += SVT_NIBBLE(w, 3u);
        acc[4] += SVT_NIBBLE(w, 4u);
        acc[5] += SVT_NIBBLE(w, 5u);
        acc[6] += SVT_NIBBLE(w, 6u);
        acc[7] += SVT_NIBBLE(w, 7u);
    }
}

void svt_add_columns_q_dsp(int32_t *acc, const uint8_t *const *columns, uint32_t count,
                           uint32_t n, uint32_t bits)
{
    const uint32_t passes = n / 8u, done = n - n % 8u;
    if (passes != 0u) {
        uint32_t c = 0;
        if (bits == 8u) {
            for (; c + 4u <= count; c += 4u) {
                add_four_int8(acc, columns[c], columns[c + 1u], columns[c + 2u],
                              columns[c + 3u], passes);
            }
            for (; c < count; ++c) {
                add_one_int8(acc, columns[c], passes);
            }
        } else {
            for (; c < count; ++c) {
                add_one_int4(acc, columns[c], passes);
            }
        }
    }
    if (done < n) { /* the last n % 8 sums (a row of int4 starts on a byte: done is even) */
        for (uint32_t c = 0; c < count; ++c) {
            svt_accumulate_q(acc + done, columns[c] + (bits == 8u ? done : done / 2u),
                             n - done, bits, 1);
        }
    }
}

#endif /* __ARM_FEATURE_DSP */
