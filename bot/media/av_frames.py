"""Decoding several streams of a PyAV container at once, tolerating a few damaged packets (as ffmpeg does).

Shared by the video fitter and the audio fitter. Synchronous: call it from a worker thread.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from fractions import Fraction

import av.error
from av.audio.frame import AudioFrame
from av.audio.resampler import AudioResampler
from av.container import InputContainer
from av.stream import Stream
from av.video.frame import VideoFrame

__all__ = ["AudioConverter", "decoded_frames"]


def decoded_frames(container: InputContainer, streams: Sequence[Stream],
                   damaged: Exception) -> Iterator[AudioFrame | VideoFrame]:
    """The frames of ``streams`` in the container's order (decoders flushed at the end).

    A packet its decoder rejects is skipped (a few bad bytes cost a moment, not the file); ``damaged`` is
    raised when most packets are bad or the demuxer cannot read on."""
    good = bad = 0
    try:
        for packet in container.demux(list(streams)):
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                bad += 1
                continue
            good += 1
            for frame in frames:
                if isinstance(frame, AudioFrame | VideoFrame):
                    yield frame
    except (av.error.FFmpegError, ValueError, OSError) as exc:
        raise damaged from exc
    if bad > good:
        raise damaged


class AudioConverter:
    """Any decoded audio frame to one sample format, layout and rate, in frames of ``frame_size`` samples
    (what an encoder with a fixed frame size, like AAC's 1024 or MP3's 1152, takes), with running timestamps.

    A stream may change its sample rate or layout midway: PyAV's resampler is bound to its first frame's
    setup, so a new one is started (after flushing the old) whenever the input changes."""

    def __init__(self, *, format: str, layout: str, rate: int, frame_size: int | None) -> None:
        self._target = (format, layout, rate, frame_size)
        self._resampler: AudioResampler | None = None
        self._setup: tuple[str, str, int] | None = None
        self.samples = 0  # written so far: the next frame's pts, in 1/rate

    def push(self, frame: AudioFrame) -> list[AudioFrame]:
        setup = (frame.format.name, frame.layout.name, frame.sample_rate)
        flushed: list[AudioFrame] = []
        if setup != self._setup:
            flushed = self.flush()
            fmt, layout, rate, frame_size = self._target
            self._resampler = AudioResampler(format=fmt, layout=layout, rate=rate, frame_size=frame_size)
            self._setup = setup
        frame.pts = None  # the input's timestamps are not needed: the output gets its own running ones
        assert self._resampler is not None
        return flushed + self._stamped(self._resampler.resample(frame))

    def flush(self) -> list[AudioFrame]:
        if self._resampler is None:
            return []
        out = self._resampler.resample(None)
        self._resampler, self._setup = None, None
        return self._stamped(out)

    def _stamped(self, frames: list[AudioFrame]) -> list[AudioFrame]:
        for frame in frames:
            frame.pts = self.samples
            frame.time_base = Fraction(1, self._target[2])
            self.samples += frame.samples
        return frames
