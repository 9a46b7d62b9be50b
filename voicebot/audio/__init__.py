"""Audio formats, codecs, resampling and endpointing.

Internally every call carries 16 kHz mono signed 16-bit little-endian PCM in 20 ms frames.
"""

SAMPLE_RATE = 16_000
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000  # 320
FRAME_BYTES = FRAME_SAMPLES * 2  # 640
DTMF_KEYS = frozenset("0123456789*#")  # the telephone keypad
