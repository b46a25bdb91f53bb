"""Real media made with PyAV for the media codec's tests and bench (no file of bot/ is used to make them).

``make_mp4``: a video of a colour with moving noise (hard to compress, like generated video) or a calm
gradient with a moving bar (compresses to little), and a tone as its sound. ``make_audio``: a music-like
signal in any common format.
"""

from __future__ import annotations

import io
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from av.audio.stream import AudioStream
from av.video.stream import VideoStream

from tests.voice_audio import FORMATS, encode_samples

AUDIO_RATE = 48_000
#: make_audio's formats -> the tests/voice_audio.py format that makes it
AUDIO_FORMATS = {"mp3": "mp3", "ogg": "opus", "wav": "wav", "flac": "flac", "aac": "aac", "m4a": "m4a",
                 "webm": "webm"}


def _picture(width: int, height: int, index: int, fps: int, noisy: bool,
             rng: np.random.Generator) -> np.ndarray[Any, np.dtype[np.uint8]]:
    """One RGB frame: a reddish background, a bar moving across, and (noisy) 4×4-pixel blocks of noise."""
    frame = np.empty((height, width, 3), np.uint8)
    frame[...] = (190, 70, 40)
    x = int(index * width / (2 * fps)) % width
    frame[:, x:x + max(2, width // 20)] = (250, 240, 120)
    if noisy:
        noise = rng.integers(0, 70, (height // 4 + 1, width // 4 + 1, 1), dtype=np.uint8)
        frame += np.repeat(np.repeat(noise, 4, axis=0), 4, axis=1)[:height, :width]
    return frame


def tone(seconds: float, rate: int = AUDIO_RATE) -> np.ndarray[Any, np.dtype[np.float32]]:
    """A chord of three sines whose loudness swells twice a second (mono float)."""
    t = np.arange(round(seconds * rate)) / rate
    chord = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6)) / 3
    return (0.5 * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * t)) * chord).astype(np.float32)


def make_mp4(width: int, height: int, seconds: float, noisy: bool = True, *, fps: int = 24,
             audio: bool = True, codec: str = "libx264", crf: int = 20, faststart: bool = False) -> bytes:
    """An MP4 of ``seconds`` at ``width``×``height`` and ``fps``, with AAC stereo sound when ``audio``.

    Without ``faststart`` the index is at the end, as most encoders write it: cutting the file short loses
    the index. ``codec="mpeg4"`` makes one Discord does not play."""
    if faststart:  # the muxer re-reads its output by name to move the index: a real file
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "sample.mp4"
            _write_mp4(str(path), width, height, seconds, noisy, fps, audio, codec, crf, {"movflags": "+faststart"})
            return path.read_bytes()
    buf = io.BytesIO()
    _write_mp4(buf, width, height, seconds, noisy, fps, audio, codec, crf, {})
    return buf.getvalue()


def _write_mp4(target: Any, width: int, height: int, seconds: float, noisy: bool, fps: int, audio: bool,
               codec: str, crf: int, options: dict[str, str]) -> None:
    rng = np.random.default_rng(width * height)
    with av.open(target, mode="w", format="mp4", container_options=options) as container:
        video = container.add_stream(codec, rate=fps)
        assert isinstance(video, VideoStream)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        if codec == "libx264":
            video.options = {"preset": "ultrafast", "crf": str(crf)}
        else:
            video.bit_rate = 4_000_000
        sound = None
        if audio:
            sound = container.add_stream("aac", rate=AUDIO_RATE)
            assert isinstance(sound, AudioStream)
            sound.layout = "stereo"
            sound.bit_rate = 128_000
        for index in range(round(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(_picture(width, height, index, fps, noisy, rng), format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, fps)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if sound is not None:
            samples = tone(seconds)
            for start in range(0, len(samples), 1024):
                chunk = np.repeat(samples[None, start:start + 1024], 2, axis=0)
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
                frame.sample_rate, frame.pts = AUDIO_RATE, start
                container.mux(sound.encode(frame))
            container.mux(sound.encode(None))


def make_audio(format: str, seconds: float) -> bytes:
    """``seconds`` of a music-like chord as a file in ``format`` (mp3, ogg, wav, flac, aac, m4a, webm)."""
    fmt = AUDIO_FORMATS[format]
    rate = FORMATS[fmt][3]
    return encode_samples(tone(seconds, rate), fmt)


def media_info(data: bytes) -> dict[str, Any]:
    """What a player sees in ``data``: container, codecs, picture size and the decoded duration (seconds).

    The duration is the end of the last decoded video frame (or of the audio, for audio files)."""
    with av.open(io.BytesIO(data)) as container:
        out: dict[str, Any] = {"container": container.format.name}
        if container.streams.video:
            stream = container.streams.video[0]
            out.update(video_codec=stream.codec_context.name, width=stream.codec_context.width,
                       height=stream.codec_context.height)
            rate = stream.average_rate or Fraction(30)
            frames = [float(f.time) for f in container.decode(stream) if f.time is not None]
            out["frames"] = len(frames)
            out["duration"] = (max(frames) - min(frames) + 1 / float(rate)) if frames else 0.0
            container.seek(0)
        if container.streams.audio:
            stream = container.streams.audio[0]
            out.update(audio_codec=stream.codec_context.name, sample_rate=stream.codec_context.sample_rate,
                       channels=stream.codec_context.channels)
            samples = sum(f.samples for f in container.decode(stream))
            out["audio_duration"] = samples / stream.codec_context.sample_rate
            out.setdefault("duration", out["audio_duration"])
        return out
