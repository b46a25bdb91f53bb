"""Real audio files for tests, made with PyAV: a tone whose loudness swells and fades (so a waveform
drawn from it is not flat), in any container and codec FFmpeg writes."""

from __future__ import annotations

import io
import math

import av
import numpy as np

# container format -> (codec, sample rate) as a member's file would typically be
FORMATS = {
    "wav": ("pcm_s16le", 44_100),
    "mp3": ("libmp3lame", 44_100),
    "flac": ("flac", 44_100),
    "ipod": ("aac", 44_100),  # .m4a
    "ogg": ("libopus", 48_000),
    "webm": ("libopus", 48_000),
}


def tone(seconds: float, fmt: str = "wav", *, channels: int = 1, rate: int | None = None) -> bytes:
    """``seconds`` of a 330 Hz tone, loudness swelling twice a second, in ``fmt`` (a key of FORMATS)."""
    codec, default_rate = FORMATS[fmt]
    rate = rate or default_rate
    layout = "mono" if channels == 1 else "stereo"
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.7 * np.abs(np.sin(math.pi * t)) * np.sin(2 * math.pi * 330 * t)
    samples = (wave * 32767).astype(np.int16)
    interleaved = np.repeat(samples, channels).reshape(1, -1)
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        assert isinstance(stream, av.AudioStream)
        frame = av.AudioFrame.from_ndarray(interleaved, format="s16", layout=layout)
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def decoded(data: bytes) -> tuple[str, str, int, int, float]:
    """(container, codec, sample rate, channels, seconds decoded) of ``data``."""
    with av.open(io.BytesIO(data), "r") as container:
        stream = container.streams.audio[0]
        samples: int = sum(frame.samples for frame in container.decode(stream))
        rate = stream.codec_context.sample_rate
        return container.format.name, stream.codec_context.name, rate, stream.codec_context.channels, samples / rate
