/*
 * Serial protocol framing: CRC-32, the receive state machine, frame building.
 * The wire format is described in protocol.h.
 */
#include <string.h>

#include "protocol.h"

/* CRC-32 four bits at a time: a 64-byte table instead of 1 KB, fast enough for a UART. */
static const uint32_t crc32_nibble[16] = {
    0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u,
    0x4DB26158u, 0x5005713Cu, 0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu,
    0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu,
};

uint32_t svt_crc32_update(uint32_t state, const uint8_t *data, uint32_t length)
{
    for (uint32_t i = 0; i < length; ++i) {
        state ^= data[i];
        state = (state >> 4) ^ crc32_nibble[state & 0xFu];
        state = (state >> 4) ^ crc32_nibble[state & 0xFu];
    }
    return state;
}

static uint32_t header_check(const uint8_t *header)
{
    return ~svt_crc32_update(SVT_CRC32_INIT, header, 6u) & 0xFFFFu;
}

void svt_rx_init(svt_rx_t *rx, uint8_t *payload, uint32_t capacity)
{
    rx->payload = payload;
    rx->payload_capacity = capacity;
    svt_rx_reset(rx);
}

void svt_rx_reset(svt_rx_t *rx)
{
    rx->pos = 0;
    rx->length = 0;
    rx->crc = SVT_CRC32_INIT;
    rx->received_crc = 0;
}

svt_rx_status_t svt_rx_feed(svt_rx_t *rx, uint8_t byte)
{
    if (rx->pos == 0u) { /* hunting for the first sync byte */
        if (byte == SVT_SYNC0) {
            rx->header[rx->pos++] = byte;
        }
        return SVT_RX_MORE;
    }
    if (rx->pos == 1u) {
        if (byte == SVT_SYNC1) {
            rx->header[rx->pos++] = byte;
        } else if (byte != SVT_SYNC0) { /* 0xA5 0xA5 0x5A: the second 0xA5 may start it */
            rx->pos = 0;
        }
        return SVT_RX_MORE;
    }
    if (rx->pos < SVT_HEADER_BYTES) {
        rx->header[rx->pos++] = byte;
        if (rx->pos < SVT_HEADER_BYTES) {
            return SVT_RX_MORE;
        }
        uint32_t check = (uint32_t)rx->header[6] | ((uint32_t)rx->header[7] << 8);
        rx->length = (uint32_t)rx->header[4] | ((uint32_t)rx->header[5] << 8);
        if (check != header_check(rx->header) || rx->length > rx->payload_capacity) {
            svt_rx_reset(rx);
            return SVT_RX_BAD_HEADER;
        }
        rx->crc = svt_crc32_update(SVT_CRC32_INIT, rx->header, SVT_HEADER_BYTES);
        rx->received_crc = 0;
        return SVT_RX_MORE;
    }
    uint32_t offset = rx->pos - SVT_HEADER_BYTES;
    rx->pos++;
    if (offset < rx->length) {
        rx->payload[offset] = byte;
        rx->crc = svt_crc32_update(rx->crc, &byte, 1u);
        return SVT_RX_MORE;
    }
    /* one of the four CRC bytes, least significant first */
    rx->received_crc |= (uint32_t)byte << (8u * (offset - rx->length));
    if (offset - rx->length < SVT_CRC_BYTES - 1u) {
        return SVT_RX_MORE;
    }
    /* Frame complete. Header, payload and received_crc stay readable until the next
     * byte is fed; the next header resets the running state. */
    rx->pos = 0;
    return rx->received_crc == ~rx->crc ? SVT_RX_FRAME : SVT_RX_BAD_CRC;
}

uint32_t svt_frame_seal(uint8_t *frame, uint8_t type, uint8_t seq, uint32_t length)
{
    frame[0] = SVT_SYNC0;
    frame[1] = SVT_SYNC1;
    frame[2] = type;
    frame[3] = seq;
    frame[4] = (uint8_t)length;
    frame[5] = (uint8_t)(length >> 8);
    uint32_t check = header_check(frame);
    frame[6] = (uint8_t)check;
    frame[7] = (uint8_t)(check >> 8);
    uint32_t crc = ~svt_crc32_update(SVT_CRC32_INIT, frame, SVT_HEADER_BYTES + length);
    svt_put_u32(frame + SVT_HEADER_BYTES + length, crc);
    return SVT_FRAME_OVERHEAD + length;
}

uint32_t svt_frame_build(uint8_t *frame, uint8_t type, uint8_t seq, const uint8_t *payload,
                         uint32_t length)
{
    if (length != 0u) {
        memcpy(frame + SVT_HEADER_BYTES, payload, length);
    }
    return svt_frame_seal(frame, type, seq, length);
}
