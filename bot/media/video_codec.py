"""A generated video made to fit Discord's upload limit: probed, and re-encoded when needed, with PyAV (FFmpeg).

``fit_video`` keeps a video as it is when it already fits and Discord plays it (H.264 in MP4). Otherwise it
re-encodes it to H.264/AAC in an MP4 with the index at the front (``+faststart``: it plays while it loads)
at the bitrate that fills the limit, leaving room for the container and the sound. When that bitrate is
too low for the picture (few bits per pixel look blocky), the picture is scaled down step by step
(1080 → 720 → 480 → 360 lines, the shorter side), as a smaller sharp picture looks better than a large
blurred one. x264's rate control lands near its target but not on it, so the result's size is checked and
encoded once more, at a lower bitrate, when it is over. ``VideoTooLarge`` when even the smallest picture
at the lowest bitrate worth watching cannot fit.

Only self-contained containers are opened (MP4/MOV, WebM/MKV), each recognised by its magic bytes and
opened with its own demuxer named (``bot.voice.codec.sniff_container``): FFmpeg never guesses, so
no playlist or concat script can make it read a local file or reach a host.

The work is synchronous CPU work; the async functions run it in a thread.
"""

from __future__ import annotations

import asyncio
import io
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.error
from av.audio.frame import AudioFrame
from av.audio.stream import AudioStream
from av.container import InputContainer, OutputContainer
from av.video.frame import VideoFrame
from av.video.stream import VideoStream

from bot.media.av_frames import AudioConverter, decoded_frames
from bot.rendering.user_facing import UserFacingError
from bot.voice.codec import sniff_container
from bot.voice.errors import describe_seconds, describe_size

__all__ = [
    "LADDER",
    "FittedVideo",
    "VideoInfo",
    "VideoTooLarge",
    "VideoUnreadable",
    "fit_video",
    "fit_video_sync",
    "probe_video",
    "probe_video_sync",
]

#: The picture heights (shorter side) tried in turn when the bitrate is too low for the picture.
LADDER = (1080, 720, 480, 360)
#: H.264 bits per pixel per frame below which the next smaller picture looks better (about 3 Mbit/s at
#: 1080p30, 1.4 at 720p30, 0.6 at 480p30).
GOOD_BPP = 0.05
#: Below this even the smallest picture is mush (about 80 kbit/s at 360p30): the video is too large.
FLOOR_BPP = 0.012
#: Above this more bits buy nothing visible: a video re-encoded only to be playable is not made bigger.
CAP_BPP = 0.15
#: x264's average bitrate ends within a few percent of its target: aim that much below the limit.
RATE_SAFETY = 0.93
#: The second try aims this much further below what the first one missed by.
RETRY_MARGIN = 0.9
#: What the MP4 index costs: a fixed part and about 16 bytes per video frame and 8 per audio frame.
INDEX_BYTES = 4096
INDEX_BYTES_PER_VIDEO_FRAME = 16
INDEX_BYTES_PER_AUDIO_SECOND = 8 * 48
MAX_FPS = Fraction(60)
MAX_SIDE = 8192
X264_PRESET = "veryfast"  # about twice as fast as "medium" for a few percent more bits at the same quality
AAC_RATES = frozenset({8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000})
VIDEO_DEMUXERS = frozenset({"mov", "matroska"})
#: Played by Discord as they are: H.264 in MP4, with AAC or MP3 sound or none.
PLAYABLE_AUDIO = frozenset({"aac", "mp3", None})


@dataclass(frozen=True)
class VideoInfo:
    """What ``probe_video`` found: length in seconds, picture size, FFmpeg's codec name, the file's size."""

    duration: float
    width: int
    height: int
    codec: str
    size_bytes: int


@dataclass(frozen=True)
class FittedVideo:
    """An MP4 that fits: ``reencoded`` when it is not the input, ``scaled`` when its picture is smaller."""

    data: bytes
    width: int
    height: int
    reencoded: bool
    scaled: bool


class VideoUnreadable(UserFacingError):
    """The bytes are no video FFmpeg can read; the message says what was wrong with them."""

    code = "video_unreadable"


class VideoTooLarge(UserFacingError):
    """Even re-encoded as small as is worth watching, the video is bigger than the upload limit."""

    code = "video_too_large"

    def __init__(self, size_bytes: int, limit: int, duration: float) -> None:
        self.size_bytes = size_bytes
        self.limit = limit
        self.duration = duration
        super().__init__(f"video of {size_bytes} bytes, {duration:.1f} s, cannot fit {limit} bytes")

    def user_message(self) -> str:
        return (f"The video is {describe_size(self.size_bytes)} for {describe_seconds(self.duration)}: even "
                f"re-encoded smaller it would not fit the {describe_size(self.limit)} upload limit here.")


# --- probing ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Source:
    info: VideoInfo
    container: str
    fps: Fraction
    audio_codec: str | None
    audio_rate: int
    audio_channels: int

    @property
    def playable(self) -> bool:
        return self.container == "mov" and self.info.codec == "h264" and self.audio_codec in PLAYABLE_AUDIO


def _damaged() -> VideoUnreadable:
    return VideoUnreadable("That video is damaged or cut short, so I cannot read it.")


def _open(data: bytes) -> InputContainer:
    """The container, opened with the demuxer its magic bytes name; it has a video stream."""
    if not data:
        raise VideoUnreadable("That video file is empty.")
    demuxer = sniff_container(data)
    if demuxer not in VIDEO_DEMUXERS:
        raise VideoUnreadable("That file is not a video I can read (I take MP4, MOV, WebM and MKV).")
    try:
        container = av.open(io.BytesIO(data), mode="r", format=demuxer, metadata_errors="replace")
    except (av.error.FFmpegError, ValueError, OSError) as exc:
        raise _damaged() from exc
    if not container.streams.video:
        container.close()
        raise VideoUnreadable("That file has no picture, so it is not a video.")
    return container


def _probe(data: bytes) -> _Source:
    """Reads the header, then every packet's timing (demuxed, not decoded: cheap), so a file cut short is
    found out here rather than half-way through an encode."""
    with _open(data) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        ctx = video.codec_context
        width, height = ctx.width, ctx.height
        if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
            raise VideoUnreadable(f"That video's picture size ({width}×{height}) is not one I can work with.")
        stated: float | None = None
        if video.duration is not None and video.time_base is not None:
            stated = float(video.duration * video.time_base)
        elif container.duration is not None:
            stated = container.duration / av.time_base
        seen = 0.0
        frames = 0
        try:
            for packet in container.demux(video):
                if packet.pts is None or packet.time_base is None:
                    continue
                frames += 1
                seen = max(seen, float((packet.pts + (packet.duration or 0)) * packet.time_base))
        except (av.error.FFmpegError, ValueError, OSError) as exc:
            raise _damaged() from exc
        if not frames:
            raise VideoUnreadable("That video has no frames in it.")
        start = float(video.start_time * video.time_base) if video.start_time and video.time_base else 0.0
        seen -= start
        if stated is not None and seen < stated - max(0.5, 0.1 * stated):
            raise VideoUnreadable(f"That video is cut off: {describe_seconds(seen)} of its "
                                  f"{describe_seconds(stated)} are there.")
        duration = stated if stated and stated > 0 else seen
        rate = video.average_rate or video.guessed_rate or Fraction(30)
        info = VideoInfo(duration=duration, width=width, height=height, codec=ctx.name, size_bytes=len(data))
        return _Source(info=info, container=container.format.name.split(",")[0], fps=Fraction(min(rate, MAX_FPS)),
                       audio_codec=audio.codec_context.name if audio else None,
                       audio_rate=audio.codec_context.sample_rate if audio else 0,
                       audio_channels=audio.codec_context.channels if audio else 0)


def probe_video_sync(data: bytes) -> VideoInfo:
    """The length, picture size and codec of ``data``; ``VideoUnreadable`` when it is no whole video."""
    return _probe(data).info


# --- planning ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Plan:
    width: int
    height: int
    fps: Fraction
    video_bps: int
    audio_bps: int


def _audio_bps(total_bps: float) -> int:
    """The AAC bitrate for a budget: transparent-ish when there is room, speech-grade when there is not."""
    for floor, bps in ((2_000_000, 128_000), (600_000, 96_000), (250_000, 64_000)):
        if total_bps >= floor:
            return bps
    return 32_000


def _even(value: float) -> int:
    return max(2, int(round(value / 2)) * 2)


def _rungs(width: int, height: int) -> list[tuple[int, int]]:
    """The picture sizes to try, largest first: the source's (at most 1080 lines), then the ladder below."""
    short = min(width, height)
    first = min(short, LADDER[0])
    sizes = []
    for lines in (first, *(r for r in LADDER if r < first)):
        scale = lines / short
        sizes.append((width, height) if lines == short else (_even(width * scale), _even(height * scale)))
    return sizes


def _plan(src: _Source, max_bytes: int, video_bps: float | None = None) -> _Plan:
    """The picture size and bitrates that fill ``max_bytes``; ``video_bps`` (the second try's, lower) instead
    of the one computed from the limit."""
    info = src.info
    duration = max(info.duration, 0.1)
    index = INDEX_BYTES + duration * (float(src.fps) * INDEX_BYTES_PER_VIDEO_FRAME + INDEX_BYTES_PER_AUDIO_SECOND)
    total_bps = (max_bytes - index) * 8 * RATE_SAFETY / duration
    audio_bps = _audio_bps(total_bps) if src.audio_codec else 0
    if video_bps is None:
        video_bps = total_bps - audio_bps
    rungs = _rungs(info.width, info.height)
    for i, (width, height) in enumerate(rungs):
        pixels = width * height * float(src.fps)
        bpp = video_bps / pixels
        if bpp >= GOOD_BPP or (i == len(rungs) - 1 and bpp >= FLOOR_BPP):
            return _Plan(width, height, src.fps, int(min(video_bps, CAP_BPP * pixels)), audio_bps)
    raise VideoTooLarge(info.size_bytes, max_bytes, info.duration)


# --- encoding ---------------------------------------------------------------------------------------------


def _add_video(out: OutputContainer, plan: _Plan) -> VideoStream:
    stream = out.add_stream("libx264", rate=plan.fps, options={
        "preset": X264_PRESET,
        # a VBV keeps any stretch from running far over the average, so the total lands near the target
        "maxrate": str(int(plan.video_bps * 1.5)), "bufsize": str(int(plan.video_bps * 2)),
    })
    stream.width, stream.height, stream.pix_fmt = plan.width, plan.height, "yuv420p"
    stream.bit_rate = plan.video_bps
    return stream


def _add_audio(out: OutputContainer, src: _Source, plan: _Plan) -> tuple[AudioStream, AudioConverter]:
    rate = src.audio_rate if src.audio_rate in AAC_RATES else 48_000
    layout = "stereo" if src.audio_channels >= 2 else "mono"
    stream = out.add_stream("aac", rate=rate)
    stream.layout = layout
    stream.bit_rate = plan.audio_bps
    frame_size = stream.codec_context.frame_size or 1024
    return stream, AudioConverter(format=stream.format.name, layout=layout, rate=rate, frame_size=frame_size)


def _encode(data: bytes, src: _Source, plan: _Plan) -> bytes:
    """``data`` as H.264/AAC MP4 by ``plan``. The muxer moves the index to the front by re-reading the file
    (``+faststart``), which it does by its name: the output is a file in a private temporary directory."""
    with tempfile.TemporaryDirectory(prefix="gatecord-video-") as tmp:
        path = Path(tmp) / "fitted.mp4"
        with _open(data) as container, av.open(str(path), mode="w", format="mp4",
                                                container_options={"movflags": "+faststart"}) as out:
            video_in = container.streams.video[0]
            video_in.thread_type = "AUTO"
            audio_in = container.streams.audio[0] if container.streams.audio and plan.audio_bps else None
            video = _add_video(out, plan)
            audio, converter = _add_audio(out, src, plan) if audio_in else (None, None)
            tick = 1 / plan.fps
            first: float | None = None
            last_pts = -1
            streams = [video_in, audio_in] if audio_in else [video_in]
            for frame in decoded_frames(container, streams, _damaged()):
                if isinstance(frame, VideoFrame):
                    at = float(frame.time) if frame.time is not None else (last_pts + 1) * float(tick)
                    first = at if first is None else first
                    pts = round((at - first) / tick)
                    if pts <= last_pts:
                        continue  # more frames than the output rate holds: this one is dropped
                    last_pts = pts
                    scaled = frame.reformat(width=plan.width, height=plan.height, format="yuv420p")
                    scaled.pts, scaled.time_base = pts, tick
                    out.mux(video.encode(scaled))
                elif audio is not None and converter is not None and isinstance(frame, AudioFrame):
                    for chunk in converter.push(frame):
                        out.mux(audio.encode(chunk))
            if last_pts < 0:
                raise VideoUnreadable("That video has no frames I can decode.")
            out.mux(video.encode(None))
            if audio is not None and converter is not None:
                for chunk in converter.flush():
                    out.mux(audio.encode(chunk))
                out.mux(audio.encode(None))
        return path.read_bytes()


def fit_video_sync(data: bytes, max_bytes: int) -> FittedVideo:
    """``data`` as it is when it fits ``max_bytes`` and Discord plays it; else re-encoded to fit (see the
    module's docstring). ``VideoUnreadable`` for bytes that are no whole video, ``VideoTooLarge`` when it
    cannot fit."""
    src = _probe(data)
    info = src.info
    if len(data) <= max_bytes and src.playable:
        return FittedVideo(data=data, width=info.width, height=info.height, reencoded=False, scaled=False)
    plan = _plan(src, max_bytes)
    out = _encode(data, src, plan)
    if len(out) > max_bytes:
        plan = _plan(src, max_bytes, video_bps=plan.video_bps * max_bytes / len(out) * RETRY_MARGIN)
        out = _encode(data, src, plan)
        if len(out) > max_bytes:
            raise VideoTooLarge(info.size_bytes, max_bytes, info.duration)
    return FittedVideo(data=out, width=plan.width, height=plan.height, reencoded=True,
                       scaled=(plan.width, plan.height) != (info.width, info.height))


async def probe_video(data: bytes) -> VideoInfo:
    """``probe_video_sync`` in a thread."""
    return await asyncio.to_thread(probe_video_sync, data)


async def fit_video(data: bytes, max_bytes: int) -> FittedVideo:
    """``fit_video_sync`` in a thread."""
    return await asyncio.to_thread(fit_video_sync, data, max_bytes)
