"""Fake speech audio that round-trips: ``synthesize`` hides the text in the bytes and
``transcribe`` finds it again, so a TTS→STT test can predict the transcript.

The bytes are real enough for their content type: WAV is a valid RIFF/PCM file of silence (with
the text in an extra ``gctx`` chunk, which readers skip); MP3 is a run of valid silent MPEG-1
Layer III frames; other formats start with their magic number. Unknown audio transcribes to
``Transcribed <n> bytes of <format> audio.``
"""

from __future__ import annotations

import base64
import io
import re
import struct
import wave

CONTENT_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
_MARK = re.compile(rb"GCTTS\[([A-Za-z0-9+/=]*)\]")
# MPEG-1 Layer III, 128 kbit/s, 44.1 kHz, no padding: 417-byte frames.
_MP3_FRAME = b"\xff\xfb\x90\x64" + b"\x00" * 413
_MAGIC = {"opus": b"OggS\x00\x02", "aac": b"\xff\xf1\x50\x80", "flac": b"fLaC\x00\x00\x00\x22"}


def _marker(text: str) -> bytes:
    return b"GCTTS[" + base64.b64encode(text.encode()) + b"]"


def _seconds(text: str) -> float:
    return min(30.0, 0.5 + len(text) / 15)  # ~15 chars per second of speech


def synthesize(text: str, fmt: str) -> bytes:
    """Audio bytes in ``fmt`` for ``text`` (silence, with the text embedded)."""
    seconds = _seconds(text)
    if fmt in ("wav", "pcm"):
        rate = 8000
        frames = b"\x00\x00" * int(rate * seconds)
        if fmt == "pcm":
            return frames + _marker(text)
        buf = io.BytesIO()
        with wave.open(buf, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes(frames)
        data = buf.getvalue()
        mark = _marker(text)
        mark += b"\x00" * (len(mark) % 2)
        chunk = b"gctx" + struct.pack("<I", len(mark)) + mark
        riff_size = len(data) - 8 + len(chunk)
        return b"RIFF" + struct.pack("<I", riff_size) + data[8:] + chunk
    if fmt == "mp3":
        frames = max(1, int(seconds * 38.28))  # 1152 samples per frame at 44.1 kHz
        return _MP3_FRAME * frames + _marker(text)
    return _MAGIC.get(fmt, b"") + b"\x00" * 256 + _marker(text)


def transcribe(data: bytes, fmt: str) -> str:
    """The text hidden by :func:`synthesize`, or a description of the bytes."""
    found = _MARK.search(data)
    if found:
        try:
            return base64.b64decode(found.group(1)).decode()
        except (ValueError, UnicodeDecodeError):
            pass
    return f"Transcribed {len(data)} bytes of {fmt or 'unknown'} audio."
