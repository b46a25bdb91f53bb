"""Real audio files made with PyAV for the codec's tests and bench: speech-like tones in any common format.

"Speech-like": a voiced tone (fundamental plus two harmonics) whose loudness rises and falls about four
times a second, with a short pause every second, so a waveform of it is anything but flat.
"""

from __future__ import annotations

import io
from typing import Any

import av
import numpy as np
from av.audio.stream import AudioStream

#: format -> (FFmpeg muxer, encoder, sample format, sample rate); "pcm" is raw s16le 24 kHz mono (OpenAI's)
FORMATS: dict[str, tuple[str, str, str, int]] = {
    "mp3": ("mp3", "libmp3lame", "fltp", 24_000),
    "wav": ("wav", "pcm_s16le", "s16", 24_000),
    "flac": ("flac", "flac", "s16", 24_000),
    "aac": ("adts", "aac", "fltp", 24_000),
    "opus": ("ogg", "libopus", "flt", 48_000),
    "m4a": ("ipod", "aac", "fltp", 44_100),
    "webm": ("webm", "libopus", "flt", 48_000),
}
PCM_RATE = 24_000


def speech_like(secs: float, rate: int, *, loudness: float = 0.8) -> np.ndarray[Any, np.dtype[np.float32]]:
    """Mono float samples in -1..1."""
    t = np.arange(round(secs * rate)) / rate
    syllables = 0.15 + 0.85 * np.abs(np.sin(2 * np.pi * 2.0 * t))  # 4 loudness peaks a second
    pauses = np.where((t % 1.0) > 0.85, 0.0, 1.0)  # 150 ms of silence each second
    pitch = 140 + 30 * np.sin(2 * np.pi * 0.5 * t)  # an intonation
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voiced = 0.6 * np.sin(phase) + 0.25 * np.sin(2 * phase) + 0.15 * np.sin(3 * phase)
    return (loudness * syllables * pauses * voiced).astype(np.float32)


def encode_samples(samples: np.ndarray[Any, np.dtype[np.float32]], fmt: str, *,
                   tags: dict[str, str] | None = None, channels: int = 1) -> bytes:
    """``samples`` (mono float at the format's rate, see ``FORMATS``/``PCM_RATE``) as a file in ``fmt``,
    the same sound in each of ``channels`` channels (1 or 2)."""
    if fmt == "pcm":
        return (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
    muxer, codec, sample_fmt, rate = FORMATS[fmt]
    layout = "mono" if channels == 1 else "stereo"
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=muxer) as container:
        if tags:
            container.metadata.update(tags)
        stream = container.add_stream(codec, rate=rate)
        assert isinstance(stream, AudioStream)
        stream.layout = layout
        stream.format = sample_fmt
        for start in range(0, len(samples), 4096):
            chunk = samples[None, start:start + 4096]
            # planar formats (fltp) take one row per channel; packed ones one row of interleaved samples
            chunk = np.repeat(chunk, channels, axis=0) if sample_fmt.endswith("p") else \
                np.repeat(chunk, channels, axis=1)
            array = (chunk * 32767).astype(np.int16) if sample_fmt == "s16" else chunk
            frame = av.AudioFrame.from_ndarray(array, format=sample_fmt, layout=layout)
            frame.sample_rate = rate
            frame.pts = start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buf.getvalue()


def rate_of(fmt: str) -> int:
    return PCM_RATE if fmt == "pcm" else FORMATS[fmt][3]


def make_audio(fmt: str, secs: float, *, loudness: float = 0.8, tags: dict[str, str] | None = None,
               channels: int = 1) -> bytes:
    """``secs`` of speech-like audio as a file in ``fmt`` (a key of ``FORMATS``, or "pcm")."""
    return encode_samples(speech_like(secs, rate_of(fmt), loudness=loudness), fmt, tags=tags, channels=channels)


def decoded(data: bytes) -> tuple[str, str, int, int, float]:
    """(container, codec, sample rate, channels, seconds decoded) of ``data``."""
    with av.open(io.BytesIO(data), "r") as container:
        stream = container.streams.audio[0]
        samples: int = sum(frame.samples for frame in container.decode(stream))
        rate = stream.codec_context.sample_rate
        return container.format.name, stream.codec_context.name, rate, stream.codec_context.channels, samples / rate


def silence(fmt: str, secs: float) -> bytes:
    return encode_samples(np.zeros(round(secs * rate_of(fmt)), dtype=np.float32), fmt)
