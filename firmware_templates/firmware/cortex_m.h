/*
 * Cortex-M4/M7 core registers used by the firmware (ARMv7-M Architecture Reference
 * Manual, section B3). Only what we touch: no CMSIS dependency.
 */
#ifndef SVT_CORTEX_M_H
#define SVT_CORTEX_M_H

#include <stdint.h>

#define SVT_REG32(address) (*(volatile uint32_t *)(uintptr_t)(address))

/* System control block */
#define SCB_ICSR SVT_REG32(0xE000ED04u)   /* interrupt control and state */
#define SCB_VTOR SVT_REG32(0xE000ED08u)   /* vector table offset */
#define SCB_CCR SVT_REG32(0xE000ED14u)    /* configuration and control */
#define SCB_CPACR SVT_REG32(0xE000ED88u)  /* coprocessor access control */
#define SCB_ICSR_PENDSTSET (1u << 26)     /* SysTick exception pending */
#define SCB_CCR_DC (1u << 16)             /* Cortex-M7: data cache enable */
#define SCB_CCR_IC (1u << 17)             /* Cortex-M7: instruction cache enable */
#define SCB_CPACR_FPU (0xFu << 20)        /* CP10 and CP11 full access */

/* Cortex-M7 cache maintenance (ARMv7-M B3.2.2, Cortex-M7 TRM 4.8) */
#define SCB_CLIDR SVT_REG32(0xE000ED78u)
#define SCB_CCSIDR SVT_REG32(0xE000ED80u)
#define SCB_CSSELR SVT_REG32(0xE000ED84u)
#define SCB_ICIALLU SVT_REG32(0xE000EF50u)
#define SCB_DCISW SVT_REG32(0xE000EF60u)

/* SysTick: a 24-bit down-counter */
#define SYST_CSR SVT_REG32(0xE000E010u)
#define SYST_RVR SVT_REG32(0xE000E014u)
#define SYST_CVR SVT_REG32(0xE000E018u)
#define SYST_CSR_ENABLE (1u << 0)
#define SYST_CSR_TICKINT (1u << 1)
#define SYST_CSR_CLKSOURCE (1u << 2)      /* 1: the processor clock */
#define SYST_MAX_RELOAD 0x00FFFFFFu

/* NVIC */
#define NVIC_ISER(n) SVT_REG32(0xE000E100u + 4u * (n))
#define NVIC_ISPR(n) SVT_REG32(0xE000E200u + 4u * (n))
#define NVIC_ICPR(n) SVT_REG32(0xE000E280u + 4u * (n))

/* Debug: DWT cycle counter (reads 0 in QEMU) */
#define DEMCR SVT_REG32(0xE000EDFCu)
#define DEMCR_TRCENA (1u << 24)
#define DWT_CTRL SVT_REG32(0xE0001000u)
#define DWT_CYCCNT SVT_REG32(0xE0001004u)
#define DWT_LAR SVT_REG32(0xE0001FB0u)    /* Cortex-M7: write 0xC5ACCE55 to unlock */
#define DWT_CTRL_CYCCNTENA (1u << 0)

/* A clock to switch on: `mask` is ORed into the register at `address` (an RCC enable
 * register); the read back makes sure the write has landed before the peripheral is used. */
typedef struct {
    uint32_t address;
    uint32_t mask;
} svt_clock_enable_t;

static inline void svt_clocks_enable(const svt_clock_enable_t *list, uint32_t count)
{
    for (uint32_t i = 0; i < count; ++i) {
        SVT_REG32(list[i].address) |= list[i].mask;
        (void)SVT_REG32(list[i].address);
    }
}

static inline void svt_irq_disable(void) { __asm__ volatile("cpsid i" ::: "memory"); }
static inline void svt_irq_enable(void) { __asm__ volatile("cpsie i" ::: "memory"); }
static inline void svt_dsb(void) { __asm__ volatile("dsb 0xF" ::: "memory"); }
static inline void svt_isb(void) { __asm__ volatile("isb 0xF" ::: "memory"); }
/* Sleeps until an interrupt is pending; wakes even while PRIMASK masks it. */
static inline void svt_wfi(void) { __asm__ volatile("wfi" ::: "memory"); }

static inline void svt_nvic_enable(uint32_t irq)
{
    NVIC_ICPR(irq >> 5) = 1u << (irq & 31u);
    NVIC_ISER(irq >> 5) = 1u << (irq & 31u);
}

/* Marks an interrupt pending from software: its handler runs when it is unmasked. */
static inline void svt_nvic_pend(uint32_t irq)
{
    NVIC_ISPR(irq >> 5) = 1u << (irq & 31u);
}

#endif /* SVT_CORTEX_M_H */
