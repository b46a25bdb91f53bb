"""An audio file a member picks on the page, made into what a Discord voice message carries:
Ogg/Opus, 48 kHz, mono (PyAV). The sandbox may not import bot/, so this is its own small copy."""

from __future__ import annotations

import asyncio
import io

import av

MAX_AUDIO_BYTES = 25 * 1024 * 1024  # Discord's upload limit
VOICE_RATE = 48_000
PICK = ": pick an audio file (ogg, mp3, wav, m4a, flac, aac, webm)"


class NotAudio(ValueError):
    """The upload is not audio FFmpeg can decode; the message is for the member."""


def _demuxer(head: bytes) -> str | None:
    """The FFmpeg demuxer named by the file's magic bytes. FFmpeg is never left to guess: some of its
    demuxers (HLS playlists, concat scripts) open files and URLs named inside the input."""
    magic = {b"OggS": "ogg", b"fLaC": "flac", b"ID3": "mp3", b"\x1a\x45\xdf\xa3": "matroska"}
    for prefix, name in magic.items():
        if head.startswith(prefix):
            return name
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return "wav"
    if head[4:8] == b"ftyp":
        return "mov"  # MP4 / M4A
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:  # MPEG audio frame sync
        return "aac" if (head[1] >> 1) & 0x03 == 0 else "mp3"  # ADTS AAC has layer 00
    return None


def _is_voice_ogg(container: av.container.InputContainer, stream: av.AudioStream) -> bool:
    return "ogg" in container.format.name.split(",") and stream.codec_context.name == "opus" and stream.channels == 1


def to_voice_ogg(data: bytes) -> bytes:
    """``data`` unchanged when it is already Ogg/Opus mono, else decoded, resampled to 48 kHz mono
    and encoded once as Ogg/Opus. Raises ``NotAudio`` for anything without decodable sound."""
    demuxer = _demuxer(data[:12])
    if demuxer is None:
        raise NotAudio(f"it is not audio in a format the page takes{PICK}")
    try:
        with av.open(io.BytesIO(data), "r", format=demuxer) as src:
            if not src.streams.audio:
                raise NotAudio(f"it is not audio (no sound in it){PICK}")
            stream = src.streams.audio[0]
            if _is_voice_ogg(src, stream):
                return data
            out_buf = io.BytesIO()
            resampler = av.AudioResampler(format="s16", layout="mono", rate=VOICE_RATE)
            samples = 0
            with av.open(out_buf, "w", format="ogg") as out:
                enc = out.add_stream("libopus", rate=VOICE_RATE, layout="mono")
                for frame in src.decode(stream):
                    for chunk in resampler.resample(frame):
                        samples += chunk.samples
                        out.mux(enc.encode(chunk))
                for chunk in resampler.resample(None):
                    samples += chunk.samples
                    out.mux(enc.encode(chunk))
                if not samples:
                    raise NotAudio("the audio is empty: there is no sound to send")
                out.mux(enc.encode(None))
            return out_buf.getvalue()
    except NotAudio:
        raise
    except (av.FFmpegError, ValueError, OSError):
        raise NotAudio(f"it is not audio FFmpeg can read{PICK}") from None


async def voice_ogg(data: bytes) -> bytes:
    """``to_voice_ogg`` off the event loop (decoding takes a while for long files)."""
    return await asyncio.to_thread(to_voice_ogg, data)
