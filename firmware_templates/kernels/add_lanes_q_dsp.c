/*
 * Cortex-M4/M7 variant of add_lanes_q.c (same lanes, tested against it). Eight int8
 * weights of a column come in with one LDRD (two LDRs where the column is not
 * word-aligned); SXTAB16 sign-extends bytes 0 and 2 of a word and adds them to the two
 * int16 lanes of one word, SXTAB16 ..., ROR #8 bytes 1 and 3 to the next: that is the lane
 * order. Up to four columns share one LDM/STM of eight outputs' lanes, so a pass adds 32
 * weights in 24 instructions (one column alone: 8 weights in 9).
 * The lanes are word-aligned (they live in int32 storage).
 */
#include "svt_kernels.h"

#if defined(__ARM_FEATURE_DSP)

/* the next eight weights of column c into r8, r9 */
#define SVT_LOAD_LDRD(c) "ldrd    r8, r9, [%[" c "]], #8\n\t"
#define SVT_LOAD_LDR(c)  "ldr     r8, [%[" c "]], #4\n\t" "ldr     r9, [%[" c "]], #4\n\t"
/* ... added to the lanes of eight outputs in r2-r5 */
#define SVT_ADD_COLUMN(LOAD, c)                                                            \
    LOAD(c)                                                                                \
    "sxtab16 r2, r2, r8\n\t"                                                               \
    "sxtab16 r3, r3, r8, ror #8\n\t"                                                       \
    "sxtab16 r4, r4, r9\n\t"                                                               \
    "sxtab16 r5, r5, r9, ror #8\n\t"
/* one pass per eight outputs: their lanes loaded, every column added, stored */
#define SVT_PASSES(COLUMNS)                                                                \
    "1:\n\t"                                                                               \
    "ldm     %[l], {r2, r3, r4, r5}\n\t" COLUMNS "stm     %[l]!, {r2, r3, r4, r5}\n\t"       \
    "subs    %[k], %[k], #1\n\t"                                                           \
    "bne     1b\n\t"
#define SVT_CLOBBERS "r2", "r3", "r4", "r5", "r8", "r9", "cc", "memory"

/* lanes of the first 8 * passes outputs += c0 + c1 + c2 + c3 (and with three, two, one
 * column), for word-aligned columns (LDRD) and for any (LDR) */
#define SVT_DEFINE_ADDS(suffix, LOAD)                                                      \
    static void add_four_##suffix(int16_t *lanes, const uint8_t *c0, const uint8_t *c1,    \
                                  const uint8_t *c2, const uint8_t *c3, uint32_t passes)   \
    {                                                                                      \
        __asm__ volatile(SVT_PASSES(SVT_ADD_COLUMN(LOAD, "c0") SVT_ADD_COLUMN(LOAD, "c1")   \
                                    SVT_ADD_COLUMN(LOAD, "c2") SVT_ADD_COLUMN(LOAD, "c3"))  \
                         : [l] "+r"(lanes), [c0] "+r"(c0), [c1] "+r"(c1), [c2] "+r"(c2),   \
                           [c3] "+r"(c3), [k] "+r"(passes)                                 \
                         :                                                                 \
                         : SVT_CLOBBERS);                                                  \
    }                                                                                      \
    static void add_three_##suffix(int16_t *lanes, const uint8_t *c0, const uint8_t *c1,   \
                                   const uint8_t *c2, uint32_t passes)                     \
    {                                                                                      \
        __asm__ volatile(SVT_PASSES(SVT_ADD_COLUMN(LOAD, "c0") SVT_ADD_COLUMN(LOAD, "c1")   \
                                    SVT_ADD_COLUMN(LOAD, "c2"))                            \
                         : [l] "+r"(lanes), [c0] "+r"(c0), [c1] "+r"(c1), [c2] "+r"(c2),   \
                           [k] "+r"(passes)                                                \
                         :                                                                 \
                         : SVT_CLOBBERS);                                                  \
    }                                                                                      \
    static void add_two_##suffix(int16_t *lanes, const uint8_t *c0, const uint8_t *c1,     \
                                 uint32_t passes)                                          \
    {                                                                                      \
        __asm__ volatile(SVT_PASSES(SVT_ADD_COLUMN(LOAD, "c0") SVT_ADD_COLUMN(LOAD, "c1"))  \
                         : [l] "+r"(lanes), [c0] "+r"(c0), [c1] "+r"(c1), [k] "+r"(passes) \
                         :                                                                 \
                         : SVT_CLOBBERS);                                                  \
    }                                                                                      \
    static void add_one_##suffix(int16_t *lanes, const uint8_t *c0, uint32_t passes)      \
    {                                                                                      \
        __asm__ volatile(SVT_PASSES(SVT_ADD_COLUMN(LOAD, "c0"))                            \
                         : [l] "+r"(lanes), [c0] "+r"(c0), [k] "+r"(passes)                \
                         :                                                                 \
                         : SVT_CLOBBERS);                                                  \
    }                                                                                      \
    static void add_##suffix(int16_t *lanes, const uint8_t *const *columns, uint32_t count, \
                             uint32_t passes)                                              \
    {                                                                                      \
        uint32_t c = 0;                                                                    \
        for (; c + 4u <= count; c += 4u) {                                                 \
            add_four_##suffix(lanes, columns[c], columns[c + 1u], columns[c + 2u],         \
                              columns[c + 3u], passes);                                    \
        }                                                                                  \
        switch (count - c) { /* the last one to three columns, in one pass too */        \
        case 3u:                                                                           \
            add_three_##suffix(lanes, columns[c], columns[c + 1u], columns[c + 2u],        \
                               passes);                                                    \
            break;                                                                         \
        case 2u:                                                                           \
            add_two_##suffix(lanes, columns[c], columns[c + 1u], passes);                  \
            break;                                                                         \
        case 1u:                                                                           \
            add_one_##suffix(lanes, columns[c], passes);                                   \
            break;                                                                         \
        default:                                                                           \
            break;                                                                         \
        }                                                                                  \
    }

SVT_DEFINE_ADDS(aligned, SVT_LOAD_LDRD)
SVT_DEFINE_ADDS(unaligned, SVT_LOAD_LDR)

void svt_add_lanes_q_dsp(int16_t *lanes, const uint8_t *const *columns, uint32_t count,
                         uint32_t n)
{
    const uint32_t passes = n / 8u, done = passes * 8u;
    if (passes != 0u) {
        uintptr_t any = 0;
        for (uint32_t c = 0; c < count; ++c) {
            any |= (uintptr_t)columns[c];
        }
        if ((any & 3u) == 0u) { /* LDRD needs word-aligned addresses */
            add_aligned(lanes, columns, count, passes);
        } else {
            add_unaligned(lanes, columns, count, passes);
        }
    }
    if (done < n) { /* the last n % 8 outputs (done is a multiple of 4: same lane order) */
        for (uint32_t c = 0; c < count; ++c) {
            const uint8_t *rest = columns[c] + done;
            svt_add_lanes_q_ref(lanes + done, &rest, 1u, n - done);
        }
    }
}

#endif /* __ARM_FEATURE_DSP */
