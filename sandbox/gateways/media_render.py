"""Real media for the emulators' video, music and image-edit endpoints (PyAV, Pillow, NumPy).

* ``make_mp4(width, height, seconds, rgb, seed)``: an H.264 (yuv420p) + AAC (mono, 44.1 kHz) MP4 of
  exactly that size and length, ``FPS`` frames a second, filled with ``rgb`` and crossed by a band of
  noise that moves left to right (so the file does not compress to nothing, and a re-encode has work).
* ``make_music(prompt, seconds, fmt)``: a few bars of chords picked from the prompt, ``fmt`` "mp3"
  (libmp3lame) or "wav", 44.1 kHz mono; the prompt rides in the ``title`` tag.
* ``edit_png(image, mask, prompt, seed, size)``: the input image (resized to ``size`` when given) with
  ``images.colour_for(prompt, seed)`` blended in where the mask is transparent (everywhere without one).

All are blocking: call them through :func:`asyncio.to_thread`. Results are cached per arguments, so
re-running a prompt costs nothing.
"""

from __future__ import annotations

import functools
import hashlib
import io
from fractions import Fraction

import av
import numpy as np
from PIL import Image

from . import images

__all__ = ["AUDIO_RATE", "FPS", "MUSIC_CONTENT_TYPES", "UnreadableImage", "edit_png", "make_mp4", "make_music"]

FPS = 12
AUDIO_RATE = 44_100
MUSIC_CONTENT_TYPES = {"mp3": "audio/mpeg", "wav": "audio/wav"}
_MUSIC_MUXERS = {"mp3": ("mp3", "libmp3lame"), "wav": ("wav", "pcm_s16le")}
#: how strongly an edit blends the instruction's colour in (0..1)
EDIT_STRENGTH = 0.6


class UnreadableImage(ValueError):
    """An upload Pillow cannot decode (``which``: "image" or "mask")."""

    def __init__(self, which: str) -> None:
        super().__init__(f"the {which} is not a readable image")
        self.which = which


def _tone(seconds: float, pitches: list[float], rate: int, loud: float = 0.3) -> np.ndarray:
    """Float32 mono: each pitch (with a fifth above) in turn, swelling and fading."""
    total = max(1, round(seconds * rate))
    out = np.zeros(total, dtype=np.float32)
    edges = np.linspace(0, total, len(pitches) + 1).astype(int)
    for k, pitch in enumerate(pitches):
        n = edges[k + 1] - edges[k]
        if n <= 0:
            continue
        t = np.arange(n, dtype=np.float32) / rate
        env = np.sin(np.pi * np.arange(n, dtype=np.float32) / n) ** 0.5
        wave = np.sin(2 * np.pi * pitch * t) + 0.5 * np.sin(2 * np.pi * pitch * 1.5 * t)
        out[edges[k]:edges[k + 1]] = (loud / 1.5) * env * wave
    return out


def _encode_audio(container: av.container.OutputContainer, stream: av.AudioStream, samples: np.ndarray) -> None:
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    formats = stream.codec_context.codec.audio_formats
    resampler = av.AudioResampler(format=formats[0].name if formats else "s16", layout="mono", rate=AUDIO_RATE)
    step = AUDIO_RATE  # one second per frame keeps memory flat for long pieces
    pts = 0
    for start in range(0, len(pcm), step):
        chunk = pcm[start:start + step]
        frame = av.AudioFrame.from_ndarray(chunk[None, :], format="s16", layout="mono")
        frame.sample_rate = AUDIO_RATE
        frame.pts = pts
        frame.time_base = Fraction(1, AUDIO_RATE)
        pts += len(chunk)
        for piece in resampler.resample(frame):
            container.mux(stream.encode(piece))
    for piece in resampler.resample(None):
        container.mux(stream.encode(piece))
    container.mux(stream.encode(None))


@functools.lru_cache(maxsize=4)
def make_mp4(width: int, height: int, seconds: int, rgb: tuple[int, int, int], seed: int) -> bytes:
    """An H.264 + AAC MP4 (see the module docstring)."""
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=FPS, options={"preset": "ultrafast", "crf": "26"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = container.add_stream("aac", rate=AUDIO_RATE, layout="mono")
        base = np.empty((height, width, 3), dtype=np.uint8)
        base[:] = rgb
        band = max(8, width // 4)
        frames = seconds * FPS
        # a few noise tiles, taken in turn (drawing fresh noise for every 1080p frame costs more than encoding)
        tiles = [np.clip(rng.integers(-56, 57, size=(height, band, 3), dtype=np.int16) + np.array(rgb, np.int16),
                         0, 255).astype(np.uint8) for _ in range(min(frames, 7))]
        for i in range(frames):
            arr = base.copy()
            x0 = int((width - band) * i / max(1, frames - 1))
            arr[:, x0:x0 + band] = tiles[i % len(tiles)]
            frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, FPS)
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        root = 110.0 + rgb[0] % 110
        _encode_audio(container, audio, _tone(seconds, [root, root * 1.25, root * 1.5, root], AUDIO_RATE, 0.2))
    return buf.getvalue()


@functools.lru_cache(maxsize=4)
def make_music(prompt: str, seconds: int, fmt: str) -> bytes:
    """Music of ``seconds`` in ``fmt`` (see the module docstring)."""
    muxer, encoder = _MUSIC_MUXERS[fmt]
    digest = hashlib.sha256(prompt.encode()).digest()
    root = 130.8 + digest[0] % 90
    scale = (1.0, 9 / 8, 5 / 4, 4 / 3, 3 / 2, 5 / 3, 15 / 8)
    notes = [root * scale[b % len(scale)] for b in digest[1:9]]
    beats = max(1, seconds * 2)  # two notes a second
    pitches = [notes[i % len(notes)] for i in range(beats)]
    buf = io.BytesIO()
    with av.open(buf, "w", format=muxer) as container:
        container.metadata["title"] = prompt[:200]
        stream = container.add_stream(encoder, rate=AUDIO_RATE, layout="mono")
        _encode_audio(container, stream, _tone(seconds, pitches, AUDIO_RATE))
    return buf.getvalue()


def _open(data: bytes, which: str) -> Image.Image:
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except Exception:  # Pillow raises several types for bad data
        raise UnreadableImage(which) from None
    return img


def image_size(data: bytes, which: str) -> tuple[int, int]:
    """(width, height) of an upload; ``UnreadableImage`` when Pillow cannot read it."""
    return _open(data, which).size


@functools.lru_cache(maxsize=8)
def edit_png(image: bytes, mask: bytes | None, prompt: str, seed: int, size: tuple[int, int] | None) -> bytes:
    """The edited image as PNG (see the module docstring); ``UnreadableImage`` for bad uploads."""
    src = _open(image, "image").convert("RGBA")
    if size is not None and src.size != size:
        src = src.resize(size, Image.Resampling.BILINEAR)
    tint = Image.new("RGBA", src.size, (*images.colour_for(prompt, seed), 255))
    tint.putalpha(src.getchannel("A"))
    edited = Image.blend(src, tint, EDIT_STRENGTH)
    if mask is None:
        where = Image.new("L", src.size, 255)
    else:
        m = _open(mask, "mask").convert("RGBA")
        if m.size != src.size:
            m = m.resize(src.size, Image.Resampling.NEAREST)
        where = m.getchannel("A").point(lambda a: 255 - a)  # transparent in the mask = edit here
    out = Image.composite(edited, src, where)
    buf = io.BytesIO()
    out.save(buf, format="PNG")
    return buf.getvalue()
