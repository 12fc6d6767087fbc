/*
 * ARM CMSDK APB UART (the UARTs of the MPS2 FPGA images, as modelled by QEMU's
 * mps2-an500). Registers from the Cortex-M System Design Kit TRM: DATA 0x00,
 * STATE 0x04 (bit 0 TX full, bit 1 RX full, bits 2-3 overruns), CTRL 0x08 (bit 0 TX
 * enable, bit 1 RX enable, bit 3 RX interrupt enable), INTSTATUS/INTCLEAR 0x0C,
 * BAUDDIV 0x10 (clock / baud, at least 16). It has a one-byte receive buffer.
 *
 * Its receive interrupt is an event, not a level: INTSTATUS.RX is set when a byte
 * arrives and stays set until cleared. So the handler clears it *before* reading DATA: a
 * byte that arrives meanwhile (QEMU hands over the next one as soon as DATA is read)
 * raises it again instead of being cleared unseen, which would stall reception.
 */
#include "board_config.h"
#include "cortex_m.h"
#include "uart.h"

#define UART_DATA SVT_REG32(SVT_UART_BASE + 0x00u)
#define UART_STATE SVT_REG32(SVT_UART_BASE + 0x04u)
#define UART_CTRL SVT_REG32(SVT_UART_BASE + 0x08u)
#define UART_INTCLEAR SVT_REG32(SVT_UART_BASE + 0x0Cu)
#define UART_BAUDDIV SVT_REG32(SVT_UART_BASE + 0x10u)

#define STATE_TX_FULL (1u << 0)
#define STATE_RX_FULL (1u << 1)
#define STATE_RX_OVERRUN (1u << 3)
#define CTRL_TX_ENABLE (1u << 0)
#define CTRL_RX_ENABLE (1u << 1)
#define CTRL_RX_INT_ENABLE (1u << 3)
#define INT_RX (1u << 1)

void svt_uart_init(void)
{
    UART_BAUDDIV = SVT_UART_DIVISOR;
    UART_CTRL = CTRL_TX_ENABLE | CTRL_RX_ENABLE | CTRL_RX_INT_ENABLE;
    svt_nvic_enable(SVT_UART_IRQ);
}

void svt_uart_write(const uint8_t *data, uint32_t length)
{
    for (uint32_t i = 0; i < length; ++i) {
        while (UART_STATE & STATE_TX_FULL) {
        }
        UART_DATA = data[i];
    }
}

void svt_uart_flush(void)
{
    while (UART_STATE & STATE_TX_FULL) {
    }
}

void svt_uart_rx_pause(void)
{
    UART_CTRL &= ~CTRL_RX_INT_ENABLE;
}

void svt_uart_rx_resume(void)
{
    UART_CTRL |= CTRL_RX_INT_ENABLE;
    if (UART_STATE & STATE_RX_FULL) {
        svt_nvic_pend(SVT_UART_IRQ); /* a byte waited while paused: no new event for it */
    }
}

void svt_uart_irq_handler(void)
{
    UART_INTCLEAR = INT_RX;
    while ((UART_STATE & STATE_RX_FULL) && svt_uart_ring_accept()) {
        svt_uart_ring_push((uint8_t)UART_DATA);
    }
    if (UART_STATE & STATE_RX_OVERRUN) {
        UART_STATE = STATE_RX_OVERRUN; /* write 1 to clear */
        svt_uart_count_overrun();
    }
}
