/*
 * ARM PrimeCell PL011 UART (the UARTs of TI Stellaris parts such as the LM3S6965, and of
 * QEMU's lm3s6965evb). Registers from the PL011 TRM (DDI 0183): DR 0x00, RSR/ECR 0x04
 * (bit 3 overrun; any write clears), FR 0x18 (bit 4 RX empty, bit 5 TX full, bit 3 busy),
 * IBRD 0x24 and FBRD 0x28 (the baud divisor clock / (16 * baud) in 1/64ths), LCRH 0x2C
 * (bits 5-6 word length; written after IBRD/FBRD, which it latches), CR 0x30 (bit 0
 * enable, bit 8 TX, bit 9 RX), IMSC 0x38 (bit 4 RX interrupt), ICR 0x44.
 *
 * The FIFOs stay off (LCRH.FEN = 0): one byte at a time. A byte that came before the
 * interrupt was enabled (the host may send as soon as the port opens) raises no
 * interrupt of its own, and with the FIFO off nothing more arrives behind it: so wherever
 * the receive interrupt is switched on, a waiting byte pends it by hand.
 */
#include "board_config.h"
#include "cortex_m.h"
#include "uart.h"

#define UART_DR SVT_REG32(SVT_UART_BASE + 0x00u)
#define UART_RSR_ECR SVT_REG32(SVT_UART_BASE + 0x04u)
#define UART_FR SVT_REG32(SVT_UART_BASE + 0x18u)
#define UART_IBRD SVT_REG32(SVT_UART_BASE + 0x24u)
#define UART_FBRD SVT_REG32(SVT_UART_BASE + 0x28u)
#define UART_LCRH SVT_REG32(SVT_UART_BASE + 0x2Cu)
#define UART_CR SVT_REG32(SVT_UART_BASE + 0x30u)
#define UART_IMSC SVT_REG32(SVT_UART_BASE + 0x38u)
#define UART_ICR SVT_REG32(SVT_UART_BASE + 0x44u)

#define FR_BUSY (1u << 3)
#define FR_RX_EMPTY (1u << 4)
#define FR_TX_FULL (1u << 5)
#define RSR_OVERRUN (1u << 3)
#define LCRH_8_BITS (3u << 5)
#define CR_ENABLE (1u << 0)
#define CR_TX_ENABLE (1u << 8)
#define CR_RX_ENABLE (1u << 9)
#define INT_RX (1u << 4)
#define INT_ALL 0x7FFu

#if SVT_CLOCK_ENABLE_COUNT
static const svt_clock_enable_t clock_enables[SVT_CLOCK_ENABLE_COUNT] = {
    SVT_CLOCK_ENABLES
};
#endif

void svt_uart_init(void)
{
#if SVT_CLOCK_ENABLE_COUNT
    svt_clocks_enable(clock_enables, SVT_CLOCK_ENABLE_COUNT);
#endif
    UART_CR = 0u; /* the divisor and format change only while the UART is off */
    UART_IBRD = SVT_UART_DIVISOR >> 6;
    UART_FBRD = SVT_UART_DIVISOR & 0x3Fu;
    UART_LCRH = LCRH_8_BITS;
    UART_ICR = INT_ALL;
    UART_IMSC = INT_RX;
    UART_CR = CR_ENABLE | CR_TX_ENABLE | CR_RX_ENABLE;
    svt_nvic_enable(SVT_UART_IRQ);
    svt_uart_rx_resume();
}

void svt_uart_write(const uint8_t *data, uint32_t length)
{
    for (uint32_t i = 0; i < length; ++i) {
        while (UART_FR & FR_TX_FULL) {
        }
        UART_DR = data[i];
    }
}

void svt_uart_flush(void)
{
    while (UART_FR & FR_BUSY) {
    }
}

void svt_uart_rx_pause(void)
{
    UART_IMSC &= ~INT_RX;
}

void svt_uart_rx_resume(void)
{
    UART_IMSC |= INT_RX;
    if (!(UART_FR & FR_RX_EMPTY)) {
        svt_nvic_pend(SVT_UART_IRQ); /* a byte waited while the interrupt was off */
    }
}

void svt_uart_irq_handler(void)
{
    while (!(UART_FR & FR_RX_EMPTY) && svt_uart_ring_accept()) {
        svt_uart_ring_push((uint8_t)UART_DR);
    }
    if (UART_RSR_ECR & RSR_OVERRUN) {
        UART_RSR_ECR = 0u; /* any write clears the error flags */
        svt_uart_count_overrun();
    }
}
