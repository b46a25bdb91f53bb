"""Audio in any common format to a Discord voice message (Ogg/Opus, 48 kHz mono), with PyAV (FFmpeg).

Everything here is synchronous CPU work: call ``probe``/``encode`` (``asyncio.to_thread``) from the event
loop. Decoding is streamed frame by frame; what stays in memory is the compressed input, the compressed
output and one peak per 10 ms of audio (for the waveform), so ten minutes of speech cost a few MB.
"""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import av
import av.error
import numpy as np
from av.audio.frame import AudioFrame
from av.audio.resampler import AudioResampler
from av.audio.stream import AudioStream
from av.container import InputContainer

from bot.media.av_frames import decoded_frames
from bot.rendering.user_facing import UserFacingError

__all__ = [
    "VOICE_SAMPLE_RATE",
    "WAVEFORM_MAX",
    "AudioInfo",
    "AudioUnreadable",
    "VoiceClip",
    "encode",
    "encode_voice",
    "ogg_duration",
    "probe",
    "probe_audio",
    "sniff_container",
]

VOICE_SAMPLE_RATE = 48_000
WAVEFORM_MAX = 256
VOICE_BIT_RATE = 32_000  # Opus is near transparent for mono speech at this rate; a minute is about 250 KB
# libopus's effort (0-10, FFmpeg's default 10): at 5 the encoder takes about 70 % of the CPU time (0.18 s
# instead of 0.26 s per minute of speech on the 2-core dev machine) for speech that sounds the same at this rate.
_OPUS_OPTIONS = {"compression_level": "5"}
# Resampled audio comes in 100 ms frames whatever the decoder's frame size (an MP3 frame is 24 ms, an Opus
# one 20 ms): five times fewer trips through Python per second of audio.
_BATCH = VOICE_SAMPLE_RATE // 10
_BLOCK = VOICE_SAMPLE_RATE // 100  # the waveform keeps one peak per 10 ms, merged into buckets at the end
# What OpenAI's `pcm` response format is: headerless signed 16-bit little-endian, 24 kHz, mono.
_RAW_PCM_HINTS = frozenset({"pcm", "s16le", "pcm_s16le"})
_RAW_PCM_OPTIONS = {"sample_rate": "24000", "ch_layout": "mono"}
# Container tags that describe the file's making, not its content: not carried into the voice message.
_TECHNICAL_TAGS = frozenset({"encoder", "major_brand", "minor_version", "compatible_brands", "creation_time",
                             "handler_name", "vendor_id", "language", "duration"})


@dataclass(frozen=True, slots=True)
class AudioInfo:
    """What ``probe_audio`` found (names as FFmpeg gives them; ``container`` is ``"pcm"`` for raw input)."""

    container: str
    codec: str
    duration_secs: float
    sample_rate: int
    channels: int


@dataclass(frozen=True, slots=True)
class VoiceClip:
    """A Discord voice message's file (Ogg/Opus, 48 kHz, mono) and the metadata its attachment carries."""

    data: bytes
    duration_secs: float
    waveform: bytes
    filename: str = "voice-message.ogg"
    content_type: str = "audio/ogg"

    @property
    def waveform_b64(self) -> str:
        """The attachment's ``waveform`` field as Discord wants it: base64 of the one-byte amplitudes."""
        return base64.b64encode(self.waveform).decode("ascii")


class AudioUnreadable(UserFacingError):
    """The bytes are not audio FFmpeg can decode; the message says what was wrong with them."""

    code = "audio_unreadable"


# --- opening and decoding ------------------------------------------------------------------------------


def sniff_container(data: bytes) -> str | None:
    """The FFmpeg demuxer for ``data`` by its magic bytes, or None when it is no audio container we take.

    FFmpeg is never left to guess: some of its demuxers (HLS playlists, ``concat`` scripts, …) open other
    files and URLs named inside the input, so a member's "audio" could make the bot read a local file or
    reach a host. Only self-contained audio containers are opened, each with its own demuxer named.
    """
    head = data[:12]
    if head.startswith(b"OggS"):
        return "ogg"
    if head.startswith(b"fLaC"):
        return "flac"
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return "wav"
    if head.startswith(b"FORM") and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if head.startswith(b"ID3"):
        return "mp3"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska"  # Matroska and WebM
    if head[4:8] == b"ftyp":
        return "mov"  # MP4 / M4A / 3GP (drefs to other files stay off: FFmpeg's default)
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        layer = (head[1] >> 1) & 0x03
        return "aac" if layer == 0 else "mp3"  # ADTS AAC has layer 00; MPEG audio layers I-III do not
    return None


def _open(data: bytes, fmt_hint: str | None) -> tuple[InputContainer, AudioStream]:
    """The container and its first audio stream. ``fmt_hint`` only matters for raw PCM (it has no header
    to recognise); every other format is recognised from its bytes, so a wrong hint cannot break decoding."""
    if not data:
        raise AudioUnreadable("That file is empty, so there is no audio in it to play.")
    raw = (fmt_hint or "").lower() in _RAW_PCM_HINTS
    demuxer = "s16le" if raw else sniff_container(data)
    if demuxer is None:
        raise AudioUnreadable("That file is not audio I can play (I take Ogg/Opus, MP3, WAV, FLAC, AAC, M4A, "
                              "WebM and AIFF).")
    try:
        container = av.open(io.BytesIO(data), mode="r", format=demuxer,
                            options=_RAW_PCM_OPTIONS if raw else None, metadata_errors="replace")
    except (av.error.FFmpegError, ValueError, OSError) as exc:
        raise AudioUnreadable("That file is not audio I can play (it is in no audio format I recognise).") from exc
    if not container.streams.audio:
        container.close()
        raise AudioUnreadable("That file is not audio I can play (it has no sound track).")
    return container, container.streams.audio[0]


def _frames(container: InputContainer, stream: AudioStream) -> Iterator[AudioFrame]:
    """Decoded frames, one at a time; a few damaged packets are skipped, a file where most are bad is
    ``AudioUnreadable`` (bot/media/av_frames.py)."""
    damaged = AudioUnreadable("That file is not audio I can play (it is damaged and cannot be decoded).")
    for frame in decoded_frames(container, [stream], damaged):
        if isinstance(frame, AudioFrame):
            yield frame


def _container_name(container: InputContainer, fmt_hint: str | None) -> str:
    return "pcm" if (fmt_hint or "").lower() in _RAW_PCM_HINTS else container.format.name


def _no_samples() -> AudioUnreadable:
    return AudioUnreadable("That file is not audio I can play (it holds no sound at all: zero samples).")


class _To48kMono:
    """Resamples any decoded frame to 48 kHz mono float (one of the formats libopus takes).

    A stream may change its sample rate or layout midway (an MP3 can): PyAV's resampler is bound to its
    first frame's setup, so a new one is started (after flushing the old) whenever the input changes."""

    def __init__(self) -> None:
        self._resampler: AudioResampler | None = None
        self._setup: tuple[str, str, int] | None = None

    def push(self, frame: AudioFrame) -> list[AudioFrame]:
        setup = (frame.format.name, frame.layout.name, frame.sample_rate)
        out: list[AudioFrame] = []
        if setup != self._setup:
            out.extend(self.flush())
            self._resampler = AudioResampler(format="flt", layout="mono", rate=VOICE_SAMPLE_RATE, frame_size=_BATCH)
            self._setup = setup
        frame.pts = None  # each part's timestamps start anew; the encoder gets its own running ones
        assert self._resampler is not None
        out.extend(self._resampler.resample(frame))
        return out

    def flush(self) -> list[AudioFrame]:
        if self._resampler is None:
            return []
        out = self._resampler.resample(None)
        self._resampler, self._setup = None, None
        return out


# --- the waveform ------------------------------------------------------------------------------------------


class _Peaks:
    """The peak of |sample| per 10 ms block, fed frame by frame (a block may straddle two frames)."""

    def __init__(self) -> None:
        self._blocks: list[np.ndarray[Any, np.dtype[np.float32]]] = []
        self._carry = np.zeros(0, dtype=np.float32)

    def add(self, samples: np.ndarray[Any, Any]) -> None:
        joined = np.concatenate((self._carry, np.abs(samples.reshape(-1).astype(np.float32, copy=False))))
        whole = len(joined) // _BLOCK * _BLOCK
        if whole:
            self._blocks.append(joined[:whole].reshape(-1, _BLOCK).max(axis=1))
        self._carry = joined[whole:]

    def waveform(self) -> bytes:
        """At most ``WAVEFORM_MAX`` one-byte amplitudes (one per 10 ms for shorter audio, at least one).

        Each byte is the loudest sample of its bucket, scaled so the loudest bucket is 255, but never
        amplified more than 10× (a clip that stays below -20 dBFS draws smaller bars, and silence or the
        codec's hiss stays at or near 0 instead of being blown up to full height)."""
        blocks = self._blocks + ([self._carry.max(keepdims=True)] if len(self._carry) else [])
        peaks = np.concatenate(blocks) if blocks else np.zeros(1, dtype=np.float32)
        buckets = min(WAVEFORM_MAX, len(peaks))
        starts = (np.arange(buckets) * len(peaks)) // buckets  # strictly increasing: buckets <= len(peaks)
        bucket_peaks = np.maximum.reduceat(peaks, starts)
        scale = 255.0 / max(float(bucket_peaks.max()), 0.1)
        return np.clip(np.rint(bucket_peaks * scale), 0, 255).astype(np.uint8).tobytes()


# --- public API --------------------------------------------------------------------------------------------


def probe_audio(data: bytes, fmt_hint: str | None = None) -> AudioInfo:
    """The format and length of ``data``; decoded (streamed) when the container does not state a duration.

    ADTS AAC is always decoded: FFmpeg only estimates its duration from the bit rate."""
    container, stream = _open(data, fmt_hint)
    with container:
        ctx = stream.codec_context
        name, rate = _container_name(container, fmt_hint), ctx.sample_rate
        duration: float | None = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        if duration is None or duration <= 0 or container.format.name == "aac":
            samples, rate = _count_samples(container, stream)
            duration = samples / rate
        return AudioInfo(container=name, codec=ctx.codec.canonical_name, duration_secs=duration, sample_rate=rate,
                         channels=ctx.channels)


def _count_samples(container: InputContainer, stream: AudioStream) -> tuple[int, int]:
    """How many samples the stream decodes to, and at what rate (streamed, nothing kept)."""
    samples = rate = 0
    for frame in _frames(container, stream):
        samples += frame.samples
        rate = frame.sample_rate
    if not samples:
        raise _no_samples()
    return samples, rate


def _tags(container: InputContainer, stream: AudioStream) -> dict[str, str]:
    tags = {**container.metadata, **stream.metadata}
    return {k: v for k, v in tags.items() if k.lower() not in _TECHNICAL_TAGS and v}


def encode_voice(parts: Sequence[bytes], fmt_hint: str | None = None) -> VoiceClip:
    """One voice message from ``parts`` (each in any format FFmpeg decodes, raw PCM with ``fmt_hint="pcm"``),
    played one after the other: resampled to 48 kHz mono, encoded once with libopus into Ogg.

    Every part is opened (and so checked) before anything is encoded. The duration and the waveform come
    from the decoded 48 kHz samples. The parts' tags (title, comment …) are kept in the Ogg's comments, as
    ffmpeg keeps them by default; a tag several parts carry (differently) is joined with spaces in part order."""
    if not parts:
        raise AudioUnreadable("There is no audio to send: nothing was given.")
    out_buf = io.BytesIO()
    peaks = _Peaks()
    total = 0
    with ExitStack() as opened:
        inputs = []
        for data in parts:
            container, stream = _open(data, fmt_hint)
            opened.enter_context(container)
            inputs.append((container, stream))
        tags: dict[str, str] = {}
        for container, stream in inputs:
            for key, value in _tags(container, stream).items():
                if key not in tags:
                    tags[key] = value
                elif not tags[key].endswith(value):
                    tags[key] = f"{tags[key]} {value}"

        with av.open(out_buf, mode="w", format="ogg") as output:
            voice = output.add_stream("libopus", rate=VOICE_SAMPLE_RATE, options=_OPUS_OPTIONS)
            voice.layout = "mono"
            voice.format = "flt"
            voice.bit_rate = VOICE_BIT_RATE
            voice.metadata.update(tags)  # written with the headers, at the first mux

            def emit(frames: list[AudioFrame]) -> None:
                nonlocal total
                for frame in frames:
                    peaks.add(frame.to_ndarray())
                    frame.pts = total
                    total += frame.samples
                    output.mux(voice.encode(frame))

            for container, stream in inputs:
                before = total
                resample = _To48kMono()
                for frame in _frames(container, stream):
                    emit(resample.push(frame))
                emit(resample.flush())
                container.close()  # its buffers go now, not when the last part is done
                if total == before:  # each part must be audio, not only the whole
                    raise _no_samples()
            output.mux(voice.encode(None))
    return VoiceClip(data=out_buf.getvalue(), duration_secs=total / VOICE_SAMPLE_RATE, waveform=peaks.waveform())


def ogg_duration(data: bytes) -> float:
    """The duration of an Ogg/Opus (or any) file from its decoded samples, in seconds."""
    container, stream = _open(data, None)
    with container:
        samples, rate = _count_samples(container, stream)
    return samples / rate


async def probe(data: bytes, fmt_hint: str | None = None) -> AudioInfo:
    """``probe_audio`` in a thread."""
    return await asyncio.to_thread(probe_audio, data, fmt_hint)


async def encode(parts: Sequence[bytes], fmt_hint: str | None = None) -> VoiceClip:
    """``encode_voice`` in a thread."""
    return await asyncio.to_thread(encode_voice, parts, fmt_hint)

