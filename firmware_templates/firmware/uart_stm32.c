/*
 * STM32 USART: 8 data bits, no parity, 1 stop bit, no flow control, receive interrupt.
 *
 * Two register layouts share this file (the status bits sit at the same positions):
 *   stm32f4 (RM0090/RM0390): SR 0x00, DR 0x04, BRR 0x08, CR1 0x0C (UE is bit 13);
 *                            errors clear by reading SR then DR.
 *   stm32h7 (RM0433):        CR1 0x00 (UE is bit 0), BRR 0x0C, ISR 0x1C, ICR 0x20,
 *                            RDR 0x24, TDR 0x28; errors clear through ICR.
 * The pins, their alternate function, the clock-enable bits and the USART's clock after
 * reset come from the board file (board_config.h). The firmware never touches the PLL,
 * so BRR = USART clock / baud (16x oversampling).
 *
 * Exercised on QEMU's netduinoplus2 (stm32f4 layout; QEMU ignores RCC, GPIO and BRR).
 * Not yet run on a board, and the stm32h7 layout has not run anywhere.
 */
#include "board_config.h"
#include "cortex_m.h"
#include "uart.h"

#if SVT_USART_REGS_STM32F4
#define USART_STATUS SVT_REG32(SVT_UART_BASE + 0x00u)
#define USART_RDR SVT_REG32(SVT_UART_BASE + 0x04u)
#define USART_TDR SVT_REG32(SVT_UART_BASE + 0x04u)
#define USART_BRR SVT_REG32(SVT_UART_BASE + 0x08u)
#define USART_CR1 SVT_REG32(SVT_UART_BASE + 0x0Cu)
#define CR1_UE (1u << 13)
#elif SVT_USART_REGS_STM32H7
#define USART_CR1 SVT_REG32(SVT_UART_BASE + 0x00u)
#define USART_BRR SVT_REG32(SVT_UART_BASE + 0x0Cu)
#define USART_STATUS SVT_REG32(SVT_UART_BASE + 0x1Cu)
#define USART_ICR SVT_REG32(SVT_UART_BASE + 0x20u)
#define USART_RDR SVT_REG32(SVT_UART_BASE + 0x24u)
#define USART_TDR SVT_REG32(SVT_UART_BASE + 0x28u)
#define CR1_UE (1u << 0)
#define ICR_ERRORS 0xFu /* PECF | FECF | NECF | ORECF */
#else
#error "set [uart] registers to stm32f4 or stm32h7 in the board file"
#endif

#define CR1_RE (1u << 2)
#define CR1_TE (1u << 3)
#define CR1_RXNEIE (1u << 5)
#define STATUS_ORE (1u << 3)
#define STATUS_RXNE (1u << 5)
#define STATUS_TC (1u << 6)
#define STATUS_TXE (1u << 7)

/* GPIO registers (the same on F4 and H7) */
#define GPIO_PORT(port) (SVT_GPIO_BASE + 0x400u * (port))
#define GPIO_MODER(port) SVT_REG32(GPIO_PORT(port) + 0x00u)
#define GPIO_OSPEEDR(port) SVT_REG32(GPIO_PORT(port) + 0x08u)
#define GPIO_PUPDR(port) SVT_REG32(GPIO_PORT(port) + 0x0Cu)
#define GPIO_AFR(port, pin) SVT_REG32(GPIO_PORT(port) + 0x20u + 4u * ((pin) >> 3))

static const svt_clock_enable_t clock_enables[SVT_CLOCK_ENABLE_COUNT] = {
    SVT_CLOCK_ENABLES
};

static void pin_alternate(uint32_t port, uint32_t pin, uint32_t af, uint32_t pull)
{
    uint32_t shift2 = 2u * pin, shift4 = 4u * (pin & 7u);
    GPIO_AFR(port, pin) = (GPIO_AFR(port, pin) & ~(0xFu << shift4)) | (af << shift4);
    GPIO_OSPEEDR(port) = (GPIO_OSPEEDR(port) & ~(3u << shift2)) | (1u << shift2); /* medium */
    GPIO_PUPDR(port) = (GPIO_PUPDR(port) & ~(3u << shift2)) | (pull << shift2);
    GPIO_MODER(port) = (GPIO_MODER(port) & ~(3u << shift2)) | (2u << shift2); /* alternate */
}

void svt_uart_init(void)
{
    svt_clocks_enable(clock_enables, SVT_CLOCK_ENABLE_COUNT);
    pin_alternate(SVT_UART_TX_PORT, SVT_UART_TX_PIN, SVT_UART_PIN_AF, 0u);
    pin_alternate(SVT_UART_RX_PORT, SVT_UART_RX_PIN, SVT_UART_PIN_AF, 1u); /* pull-up */
    USART_CR1 = 0;
    USART_BRR = SVT_UART_DIVISOR;
    USART_CR1 = CR1_TE | CR1_RE | CR1_RXNEIE;
    USART_CR1 |= CR1_UE;
    svt_nvic_enable(SVT_UART_IRQ);
}

void svt_uart_write(const uint8_t *data, uint32_t length)
{
    for (uint32_t i = 0; i < length; ++i) {
        while (!(USART_STATUS & STATUS_TXE)) {
        }
        USART_TDR = data[i];
    }
}

void svt_uart_flush(void)
{
    while (!(USART_STATUS & STATUS_TC)) {
    }
}

void svt_uart_rx_pause(void)
{
    USART_CR1 &= ~CR1_RXNEIE;
}

void svt_uart_rx_resume(void)
{
    USART_CR1 |= CR1_RXNEIE; /* RXNE is a level: a waiting byte interrupts at once */
}

void svt_uart_irq_handler(void)
{
    uint32_t status = USART_STATUS;
    if (status & STATUS_ORE) {
        svt_uart_count_overrun();
#if SVT_USART_REGS_STM32H7
        USART_ICR = ICR_ERRORS;
#endif
    }
    if ((status & STATUS_RXNE) && svt_uart_ring_accept()) {
        /* reading the data register clears RXNE (and, after the SR read, F4's errors) */
        svt_uart_ring_push((uint8_t)USART_RDR);
    }
}
