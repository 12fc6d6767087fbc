/*
 * svt-deploy serial protocol, device side. The host side is toolchain/serial_link.py;
 * the two must agree byte for byte.
 *
 * Frame (all integers little-endian):
 *
 *   offset  size  field
 *   0       2     sync      0xA5 0x5A
 *   2       1     type      request (host -> device) or reply (device -> host) code
 *   3       1     seq       sequence number chosen by the host, echoed in replies
 *   4       2     length    payload bytes, at most SVT_MAX_PAYLOAD
 *   6       2     hcrc      low 16 bits of CRC-32 over bytes 0..5: a damaged length is
 *                           caught before the receiver waits for a payload that never comes
 *   8       len   payload
 *   8+len   4     crc       CRC-32 (IEEE 802.3, as zlib.crc32) over bytes 0..8+len-1
 *
 * Requests and their replies:
 *   INFO      (empty)                 -> INFO_REPLY: see serve_info in main.c
 *   INFER     SVT_INPUT_SIZE float32  -> ACK at once, again every second or so while it
 *                                        computes, then INFER_REPLY: u32 class, u64
 *                                        counter delta, float32 scores[SVT_NUM_CLASSES]
 *   STATS     (empty)                 -> STATS_REPLY: u32 counters (see svt_stats_t)
 *   CALIBRATE u32 n                   -> CALIBRATE_REPLY: u64 counter delta of a loop of
 *                                        n iterations of two instructions (subs, bne)
 *   EXIT      (empty)                 -> EXIT_REPLY, then the emulator stops (QEMU only)
 * A request the device cannot serve gets ERROR: u32 code (SVT_ERROR_BAD_LENGTH for a
 * payload of the wrong size, an empty request's included). A frame whose header is intact
 * but whose payload is damaged or cut short gets NAK: u32 reason, with the header's seq.
 * A damaged frame can swallow the request sent right behind it (its bytes are taken as
 * the rest of the damaged one), so a NAK may name an older seq than the host waits on:
 * the host then resends after a short quiet (serial_link.py, SerialLink._await).
 *
 * Retries: the host resends a request with the same seq. The device remembers the seq
 * and CRC of the last request it executed and its reply; a repeat is answered from that
 * copy without running it again, so an inference is never run twice for one request.
 */
#ifndef SVT_PROTOCOL_H
#define SVT_PROTOCOL_H

#include <stdint.h>

#define SVT_PROTOCOL_VERSION 1u
#define SVT_SYNC0 0xA5u
#define SVT_SYNC1 0x5Au
#define SVT_HEADER_BYTES 8u
#define SVT_CRC_BYTES 4u
#define SVT_FRAME_OVERHEAD (SVT_HEADER_BYTES + SVT_CRC_BYTES)

enum {
    SVT_MSG_INFO = 0x01,
    SVT_MSG_INFER = 0x02,
    SVT_MSG_STATS = 0x03,
    SVT_MSG_CALIBRATE = 0x04,
    SVT_MSG_EXIT = 0x05,
    SVT_MSG_PROFILE = 0x08, /* the last inference's cost per model step */
    SVT_MSG_REPLY = 0x80, /* reply type = request type | SVT_MSG_REPLY */
    SVT_MSG_ACK = 0x06,   /* request received intact; the reply follows */
    SVT_MSG_NAK = 0x15,   /* frame damaged: resend it */
    SVT_MSG_ERROR = 0x7F, /* request understood but refused */
};

enum { SVT_NAK_CRC = 1, SVT_NAK_TRUNCATED = 2 };
enum { SVT_ERROR_UNKNOWN_TYPE = 1, SVT_ERROR_BAD_LENGTH = 2, SVT_ERROR_UNSUPPORTED = 3 };

/* Counter kinds reported by INFO: what one unit of a counter delta is. */
enum { SVT_COUNTER_CYCLES = 1, SVT_COUNTER_QEMU_SYSTICK = 2 };

/* CRC-32 (reflected, polynomial 0xEDB88320). Start from SVT_CRC32_INIT, finish with ~. */
#define SVT_CRC32_INIT 0xFFFFFFFFu
uint32_t svt_crc32_update(uint32_t state, const uint8_t *data, uint32_t length);

/* Receiver: a byte-at-a-time state machine over one frame buffer. */
typedef enum {
    SVT_RX_MORE,       /* need more bytes */
    SVT_RX_FRAME,      /* a complete, intact frame */
    SVT_RX_BAD_HEADER, /* header check failed (or length too large): hunting for sync */
    SVT_RX_BAD_CRC,    /* intact header, damaged payload: header type/seq still valid */
} svt_rx_status_t;

typedef struct {
    uint8_t *payload;   /* caller's buffer of payload_capacity bytes */
    uint32_t payload_capacity;
    uint8_t header[SVT_HEADER_BYTES];
    uint32_t pos;       /* bytes of the current frame seen so far (0: hunting for sync) */
    uint32_t length;    /* payload length from the header */
    uint32_t crc;       /* running CRC over header and payload */
    uint32_t received_crc;
} svt_rx_t;

void svt_rx_init(svt_rx_t *rx, uint8_t *payload, uint32_t capacity);
void svt_rx_reset(svt_rx_t *rx);
svt_rx_status_t svt_rx_feed(svt_rx_t *rx, uint8_t byte);
static inline int svt_rx_in_frame(const svt_rx_t *rx) { return rx->pos != 0u; }
static inline int svt_rx_header_ok(const svt_rx_t *rx) { return rx->pos >= SVT_HEADER_BYTES; }
static inline uint8_t svt_rx_type(const svt_rx_t *rx) { return rx->header[2]; }
static inline uint8_t svt_rx_seq(const svt_rx_t *rx) { return rx->header[3]; }
static inline uint32_t svt_rx_frame_crc(const svt_rx_t *rx) { return rx->received_crc; }

/* Writes a complete frame (header, payload copied from `payload`, CRC) into `frame`,
 * which must hold SVT_FRAME_OVERHEAD + length bytes; returns the frame's length. */
uint32_t svt_frame_build(uint8_t *frame, uint8_t type, uint8_t seq, const uint8_t *payload,
                         uint32_t length);
/* The same, for a payload already written at frame + SVT_HEADER_BYTES. */
uint32_t svt_frame_seal(uint8_t *frame, uint8_t type, uint8_t seq, uint32_t length);

static inline void svt_put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static inline uint32_t svt_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

#endif /* SVT_PROTOCOL_H */
