/*
 * UART: interrupt-driven receive into a ring buffer, blocking transmit. One driver file
 * is linked per build: uart_cmsdk.c (QEMU mps2) or uart_stm32.c (STM32 USART).
 */
#ifndef SVT_UART_H
#define SVT_UART_H

#include <stdint.h>

/* Clocks, pins, baud rate, receive interrupt. */
void svt_uart_init(void);
/* Sends length bytes; returns when the last one is in the transmitter. */
void svt_uart_write(const uint8_t *data, uint32_t length);
/* Waits until the transmitter has sent everything (before the emulator is stopped). */
void svt_uart_flush(void);
/* The driver's receive interrupt handler (placed in the vector table). */
void svt_uart_irq_handler(void);

/* Driver: turn the receive interrupt off / back on (flow control, see uart_ring.c). */
void svt_uart_rx_pause(void);
void svt_uart_rx_resume(void);

/* Receive ring, shared by the drivers (uart_ring.c). */
#define SVT_UART_RING_BYTES 1024u /* a power of two */
/* Interrupt handler only: room for one more byte? If not, the receive interrupt is
 * paused and the byte stays in the UART until the main loop has made room. */
int svt_uart_ring_accept(void);
/* Interrupt handler only: store a byte (after svt_uart_ring_accept said yes). */
void svt_uart_ring_push(uint8_t byte);
/* Takes one received byte; returns 0 when none is waiting. Call with interrupts masked. */
int svt_uart_read(uint8_t *byte);
/* Hardware overruns reported by the driver (bytes lost on the line). */
uint32_t svt_uart_overruns(void);
void svt_uart_count_overrun(void);

#endif /* SVT_UART_H */
