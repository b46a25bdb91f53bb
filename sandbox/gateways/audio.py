"""Real, decodable speech-like audio that round-trips through the emulators' transcription.

``synthesize(text, fmt)`` makes about ``len(text) / 15`` seconds (0.5 s minimum, 300 s maximum) of
24 kHz mono audio with PyAV: a few tones per word whose loudness rises and falls, short pauses
between words (so a waveform drawn from it is not flat). The text rides in the container's metadata
where the format has any (``comment`` tag: Ogg/Opus comment, ID3 for mp3, RIFF INFO for wav, vorbis
comment for flac); ADTS aac and raw pcm (s16le, 24 kHz, mono, as OpenAI returns it) have none.

``transcribe(data, fmt)`` decodes the audio: the text found in the metadata (or in the old
``GCTTS[...]`` marker), else ``Heard {seconds:.1f} s of audio ({sha256 first 8 hex}).`` with the
decoded duration — so a test can tell which bytes arrived. Bytes FFmpeg cannot decode raise
:class:`UndecodableAudio`. Both functions are blocking: call them in a thread.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import math
import re
import zlib
from dataclasses import dataclass

import av
import numpy as np

__all__ = ["CONTENT_TYPES", "SAMPLE_RATE", "Heard", "UndecodableAudio", "analyse", "has_metadata", "seconds_for",
           "synthesize", "transcribe"]

CONTENT_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
SAMPLE_RATE = 24_000
MIN_SECONDS = 0.5
MAX_SECONDS = 300.0
CHARS_PER_SECOND = 15
#: prefix of the ``comment`` tag that carries the text (other audio's comments are not transcripts).
TEXT_TAG = "comment"
TEXT_PREFIX = "gatecord-tts:"
# response_format -> (FFmpeg muxer, encoder); "pcm" is written by hand (raw samples, no container).
_MUXERS = {
    "mp3": ("mp3", "libmp3lame"),
    "opus": ("ogg", "libopus"),
    "aac": ("adts", "aac"),
    "flac": ("flac", "flac"),
    "wav": ("wav", "pcm_s16le"),
}
_HAS_METADATA = frozenset({"mp3", "opus", "flac", "wav"})
_OLD_MARK = re.compile(rb"GCTTS\[([A-Za-z0-9+/=]*)\]")


class UndecodableAudio(ValueError):
    """The bytes are not audio FFmpeg can decode."""


@dataclass(frozen=True, slots=True)
class Heard:
    """What :func:`analyse` found: the transcript and the decoded duration in seconds."""

    text: str
    duration: float


def seconds_for(text: str) -> float:
    """Length of the speech for ``text``: ~15 characters per second, 0.5 s to 300 s."""
    return min(MAX_SECONDS, max(MIN_SECONDS, len(text) / CHARS_PER_SECOND))


def has_metadata(fmt: str) -> bool:
    """Whether ``synthesize(text, fmt)`` carries the text (ADTS aac and raw pcm cannot)."""
    return fmt in _HAS_METADATA


def _samples(text: str) -> np.ndarray:
    """Float32 mono samples in [-1, 1]: per word a few tones, each swelling and fading."""
    total = round(seconds_for(text) * SAMPLE_RATE)
    out = np.zeros(total, dtype=np.float32)
    words = text.split() or [text or " "]
    weights = np.array([len(w) + 1 for w in words], dtype=np.float64)
    bounds = np.concatenate(([0.0], np.cumsum(weights) / weights.sum())) * total
    for i, word in enumerate(words):
        start, end = int(bounds[i]), int(bounds[i + 1])
        voiced = int((end - start) * 0.8)  # the rest is the pause before the next word
        if voiced < 16:
            continue
        seed = zlib.crc32(word.encode("utf-8", "replace"))
        tones = max(1, min(4, math.ceil(len(word) / 3)))
        loudness = 0.35 + 0.5 * ((seed >> 8) % 100) / 100
        edges = np.linspace(0, voiced, tones + 1).astype(int)
        for k in range(tones):
            n = edges[k + 1] - edges[k]
            if n < 8:
                continue
            pitch = 110.0 + ((seed >> (3 * k)) % 220)  # a voice-like fundamental, 110-330 Hz
            t = np.arange(n, dtype=np.float32) / SAMPLE_RATE
            envelope = np.sin(np.pi * np.arange(n, dtype=np.float32) / n) ** 2
            tone = np.sin(2 * np.pi * pitch * t) + 0.4 * np.sin(2 * np.pi * 2 * pitch * t)
            out[start + edges[k]:start + edges[k + 1]] = (loudness / 1.4) * envelope * tone
    return out


@functools.lru_cache(maxsize=8)  # a 300 s wav is 14 MB: keep few
def synthesize(text: str, fmt: str) -> bytes:
    """Speech-like audio for ``text`` in ``fmt`` (mp3, opus, aac, flac, wav, pcm); cached per (text, fmt)."""
    pcm = (np.clip(_samples(text), -1.0, 1.0) * 32767).astype("<i2")
    if fmt == "pcm":
        return pcm.tobytes()
    if fmt not in _MUXERS:
        raise ValueError(f"unknown audio format {fmt!r}")
    muxer, encoder = _MUXERS[fmt]
    buf = io.BytesIO()
    with av.open(buf, "w", format=muxer) as container:
        if fmt in _HAS_METADATA:
            container.metadata[TEXT_TAG] = TEXT_PREFIX + text
        stream = container.add_stream(encoder, rate=SAMPLE_RATE, layout="mono")
        formats = stream.codec_context.codec.audio_formats
        resampler = av.AudioResampler(format=formats[0].name if formats else "s16", layout="mono",
                                      rate=SAMPLE_RATE)
        frame = av.AudioFrame.from_ndarray(pcm[None, :], format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        for piece in [*resampler.resample(frame), *resampler.resample(None)]:
            container.mux(stream.encode(piece))
        container.mux(stream.encode(None))
    return buf.getvalue()


def _open(data: bytes, fmt: str) -> av.container.InputContainer:
    if fmt == "pcm":
        return av.open(io.BytesIO(data), format="s16le",
                       options={"sample_rate": str(SAMPLE_RATE), "ch_layout": "mono"})
    return av.open(io.BytesIO(data))


def analyse(data: bytes, fmt: str) -> Heard:
    """Decode ``data``: the transcript (see the module docstring) and the decoded duration."""
    try:
        with _open(data, fmt) as container:
            if not container.streams.audio:
                raise UndecodableAudio("no audio stream")
            stream = container.streams.audio[0]
            tags = {**container.metadata, **stream.metadata}
            samples, rate = 0, 0
            for frame in container.decode(stream):
                samples += frame.samples
                rate = frame.sample_rate or rate
    except (av.FFmpegError, UndecodableAudio) as exc:
        legacy = _old_marker(data)
        if legacy is not None:
            return Heard(legacy, 0.0)
        raise UndecodableAudio(str(exc)) from None
    if samples == 0 or rate == 0:
        raise UndecodableAudio("no audio samples")
    duration = samples / rate
    tag = tags.get(TEXT_TAG, "")
    if tag.startswith(TEXT_PREFIX):
        return Heard(tag[len(TEXT_PREFIX):], duration)
    legacy = _old_marker(data)
    if legacy is not None:
        return Heard(legacy, duration)
    digest = hashlib.sha256(data).hexdigest()[:8]
    return Heard(f"Heard {duration:.1f} s of audio ({digest}).", duration)


def _old_marker(data: bytes) -> str | None:
    """The text of the previous emulator's ``GCTTS[base64]`` marker, if any."""
    found = _OLD_MARK.search(data)
    if found is None:
        return None
    try:
        return base64.b64decode(found.group(1)).decode()
    except (ValueError, UnicodeDecodeError):
        return None


def transcribe(data: bytes, fmt: str) -> str:
    """The text of audio made by :func:`synthesize` where its metadata survived, else what was heard."""
    return analyse(data, fmt).text
