"""Generated music made playable in Discord and small enough to upload, with PyAV (FFmpeg).

Discord plays MP3, Ogg (Vorbis/Opus), WAV and FLAC attachments inline: those are kept as they are when
they fit. Anything else (AAC, M4A, WebM, AIFF), or a file over the limit, becomes an MP3 (libmp3lame, CBR)
at the highest standard bitrate that fits, with a sample rate and channel count that suit that bitrate.
The result's size is checked and encoded once more, one bitrate lower, when it is over. ``AudioTooLarge``
when not even the lowest MP3 bitrate fits.

The input is opened like a voice message's (``bot.voice.codec``): recognised by its magic bytes, with its
own demuxer named, never guessed; bytes that are no audio are ``AudioUnreadable``.
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass

import av
import av.error
from av.audio.frame import AudioFrame
from av.audio.stream import AudioStream

from bot.media.av_frames import AudioConverter, decoded_frames
from bot.rendering.user_facing import UserFacingError
from bot.voice.codec import AudioUnreadable, probe_audio, sniff_container
from bot.voice.errors import describe_seconds, describe_size

__all__ = [
    "MP3_BITRATES",
    "AudioTooLarge",
    "AudioUnreadable",
    "FittedAudio",
    "fit_audio",
    "fit_audio_sync",
]

#: Discord plays these inline: FFmpeg's demuxer name -> (mime, extension)
PLAYABLE = {
    "mp3": ("audio/mpeg", "mp3"),
    "ogg": ("audio/ogg", "ogg"),
    "wav": ("audio/wav", "wav"),
    "flac": ("audio/flac", "flac"),
}
#: libmp3lame's CBR bitrates, highest first (8 kbit/s needs 8 kHz; up to 160 kbit/s works at 24 kHz).
MP3_BITRATES = (192_000, 160_000, 128_000, 112_000, 96_000, 80_000, 64_000, 56_000, 48_000, 40_000, 32_000,
                24_000, 16_000, 8_000)
#: The ID3 header and the Xing frame (about 400 bytes), and some slack: a CBR MP3 is otherwise exactly
#: bitrate × duration.
MP3_OVERHEAD_BYTES = 1024
#: A conversion spends at most this times the source's bitrate (at least ``MIN_CAP``): MP3 needs somewhat
#: more bits than AAC or Opus for the same sound, more than that only makes the file bigger.
SOURCE_BITRATE_FACTOR = 1.5
MIN_CAP = 96_000
MP3_FRAME = 1152


@dataclass(frozen=True)
class FittedAudio:
    """Audio Discord plays inline, within the limit; ``reencoded`` when it is not the input."""

    data: bytes
    mime: str
    extension: str
    reencoded: bool


class AudioTooLarge(UserFacingError):
    """Even as the lowest-bitrate MP3, the audio is bigger than the upload limit."""

    code = "audio_too_large"

    def __init__(self, size_bytes: int, limit: int, duration: float) -> None:
        self.size_bytes = size_bytes
        self.limit = limit
        self.duration = duration
        super().__init__(f"audio of {size_bytes} bytes, {duration:.1f} s, cannot fit {limit} bytes")

    def user_message(self) -> str:
        return (f"The audio lasts {describe_seconds(self.duration)}: even compressed as far as it goes it "
                f"would not fit the {describe_size(self.limit)} upload limit here.")


def _mp3_setup(bitrate: int, rate: int, channels: int) -> tuple[int, str]:
    """The sample rate and layout for an MP3 at ``bitrate``: full band and stereo only when there is room."""
    if bitrate >= 64_000:
        out_rate = rate if rate in (32_000, 44_100, 48_000) else 44_100
    elif bitrate >= 32_000:
        out_rate = 24_000
    elif bitrate >= 16_000:
        out_rate = 16_000
    else:
        out_rate = 8_000
    return out_rate, "stereo" if channels >= 2 and bitrate >= 96_000 else "mono"


def _to_mp3(data: bytes, demuxer: str, bitrate: int) -> bytes:
    damaged = AudioUnreadable("That file is not audio I can play (it is damaged and cannot be decoded).")
    try:
        container = av.open(io.BytesIO(data), mode="r", format=demuxer, metadata_errors="replace")
    except (av.error.FFmpegError, ValueError, OSError) as exc:
        raise damaged from exc
    buf = io.BytesIO()
    with container, av.open(buf, mode="w", format="mp3") as out:
        source = container.streams.audio[0]
        rate, layout = _mp3_setup(bitrate, source.codec_context.sample_rate, source.codec_context.channels)
        stream = out.add_stream("libmp3lame", rate=rate)
        assert isinstance(stream, AudioStream)
        stream.layout = layout
        stream.bit_rate = bitrate
        converter = AudioConverter(format=stream.format.name, layout=layout, rate=rate, frame_size=MP3_FRAME)
        for frame in decoded_frames(container, [source], damaged):
            if isinstance(frame, AudioFrame):
                for chunk in converter.push(frame):
                    out.mux(stream.encode(chunk))
        for chunk in converter.flush():
            out.mux(stream.encode(chunk))
        out.mux(stream.encode(None))
        if not converter.samples:
            raise AudioUnreadable("That file is not audio I can play (it holds no sound at all: zero samples).")
    return buf.getvalue()


def fit_audio_sync(data: bytes, max_bytes: int) -> FittedAudio:
    """``data`` as it is when Discord plays it and it fits ``max_bytes``; else an MP3 that fits."""
    info = probe_audio(data)  # AudioUnreadable for anything that is no audio (sniffed, never guessed)
    demuxer = sniff_container(data)
    assert demuxer is not None  # probe_audio refuses what sniff_container does not recognise
    if demuxer in PLAYABLE and len(data) <= max_bytes:
        mime, extension = PLAYABLE[demuxer]
        return FittedAudio(data=data, mime=mime, extension=extension, reencoded=False)
    duration = max(info.duration_secs, 0.1)
    cap = max(MIN_CAP, len(data) * 8 / duration * SOURCE_BITRATE_FACTOR)
    fitting = [b for b in MP3_BITRATES if b <= cap and MP3_OVERHEAD_BYTES + b * duration / 8 <= max_bytes]
    # a second try one bitrate lower, should the first come out over (it should not: CBR is exact)
    for bitrate in fitting[:2]:
        out = _to_mp3(data, demuxer, bitrate)
        if len(out) <= max_bytes:
            return FittedAudio(data=out, mime="audio/mpeg", extension="mp3", reencoded=True)
    raise AudioTooLarge(len(data), max_bytes, info.duration_secs)


async def fit_audio(data: bytes, max_bytes: int) -> FittedAudio:
    """``fit_audio_sync`` in a thread."""
    return await asyncio.to_thread(fit_audio_sync, data, max_bytes)
