"""Properties of the host side of the serial protocol (toolchain/serial_link.py), over
random types, sequence numbers and payloads: frames round-trip, and a frame with one bit
flipped or cut short is never accepted, neither as itself nor as another valid frame,
while the intact resend right behind it is. The device side: tests/test_fuzz.py."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from svt_deploy.serial_link import (
    CRC_BYTES,
    HEADER_BYTES,
    DamagedFrame,
    Frame,
    FrameDecoder,
    encode_frame,
)

EXAMPLES = settings(max_examples=300, deadline=None)
types = st.integers(0, 255)
seqs = st.integers(0, 255)
payloads = st.binary(max_size=300)
noise = st.binary(max_size=16).map(lambda b: b.replace(b"\xa5", b""))  # no sync in it


def drain(decoder: FrameDecoder) -> list[Frame | DamagedFrame]:
    """All the decoder reports from what it holds; an incomplete frame is given up as the
    link gives it up after a silence (cut_short)."""
    events = []
    while (event := decoder.next() or decoder.cut_short()) is not None:
        events.append(event)
    return events


def after_damage(damaged: bytes, msg_type: int, seq: int, payload: bytes) -> list[Frame]:
    """Feeds the damaged frame and its resend (next seq): returns the frames accepted, and
    checks that a frame reported damaged names the damaged frame's own type and seq."""
    resend_seq = (seq + 1) & 0xFF
    decoder = FrameDecoder()
    decoder.feed(damaged + encode_frame(msg_type, resend_seq, payload))
    events = drain(decoder)
    assert all((e.type, e.seq) == (msg_type, seq) for e in events
               if isinstance(e, DamagedFrame))
    assert not decoder.buffer
    return [e for e in events if isinstance(e, Frame)]


@EXAMPLES
@given(types, seqs, payloads, noise, st.lists(st.integers(1, 64), max_size=8))
def test_frames_round_trip_in_any_pieces(msg_type, seq, payload, junk, pieces):
    frame = encode_frame(msg_type, seq, payload)
    assert len(frame) == HEADER_BYTES + len(payload) + CRC_BYTES
    stream, decoder, events, at = junk + frame, FrameDecoder(), [], 0
    for size in pieces:  # bytes arrive in arbitrary chunks
        decoder.feed(stream[at:at + size])
        at += size
        events += iter(decoder.next, None)
    decoder.feed(stream[at:])
    events += drain(decoder)
    assert events == [Frame(msg_type, seq, payload)]
    assert decoder.noise_bytes == len(junk) and not decoder.buffer


@EXAMPLES
@given(types, seqs, payloads, st.data())
def test_a_flipped_bit_is_never_accepted(msg_type, seq, payload, data):
    damaged = bytearray(encode_frame(msg_type, seq, payload))
    bit = data.draw(st.integers(0, 8 * len(damaged) - 1), label="bit")
    damaged[bit // 8] ^= 1 << (bit % 8)
    assert after_damage(bytes(damaged), msg_type, seq, payload) == \
        [Frame(msg_type, (seq + 1) & 0xFF, payload)]


@EXAMPLES
@given(types, seqs, payloads, st.data())
def test_a_frame_cut_short_is_never_accepted(msg_type, seq, payload, data):
    frame = encode_frame(msg_type, seq, payload)
    cut = data.draw(st.integers(0, len(frame) - 1), label="cut")
    assert after_damage(frame[:cut], msg_type, seq, payload) == \
        [Frame(msg_type, (seq + 1) & 0xFF, payload)]
