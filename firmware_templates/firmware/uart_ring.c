/*
 * Receive ring between the UART interrupt (the only writer of head) and the main loop
 * (the only writer of tail). Indices run freely and are masked on access.
 *
 * Flow control: when the ring is full (the host sent while an inference was running),
 * the interrupt handler leaves the byte in the UART and pauses the receive interrupt;
 * svt_uart_read resumes it once there is room. In QEMU the byte then waits in the
 * emulator, so nothing is lost. A real UART has no such back-pressure without RTS/CTS:
 * further bytes overrun, the driver counts them, and the damaged frame is resent.
 */
#include "uart.h"

static volatile uint8_t ring[SVT_UART_RING_BYTES];
static volatile uint32_t head; /* next slot the interrupt writes */
static volatile uint32_t tail; /* next slot the main loop reads */
static volatile int paused;
static volatile uint32_t overruns;

int svt_uart_ring_accept(void)
{
    if (head - tail < SVT_UART_RING_BYTES) {
        return 1;
    }
    paused = 1;
    svt_uart_rx_pause();
    return 0;
}

void svt_uart_ring_push(uint8_t byte)
{
    uint32_t h = head;
    ring[h & (SVT_UART_RING_BYTES - 1u)] = byte;
    head = h + 1u;
}

int svt_uart_read(uint8_t *byte)
{
    uint32_t t = tail;
    if (t == head) {
        return 0;
    }
    *byte = ring[t & (SVT_UART_RING_BYTES - 1u)];
    tail = t + 1u;
    if (paused) {
        paused = 0;
        svt_uart_rx_resume();
    }
    return 1;
}

uint32_t svt_uart_overruns(void)
{
    return overruns;
}

void svt_uart_count_overrun(void)
{
    overruns++;
}
