"""bot/media/video_codec.py: a generated video is kept when it fits, else re-encoded (and scaled down when
the bitrate calls for it) into an H.264/AAC MP4 that fits and plays, checked by decoding the result; bytes
that are no whole video get one clear sentence."""

from __future__ import annotations

import asyncio

import pytest

from bot.media import video_codec
from bot.media.video_codec import (
    FittedVideo,
    VideoInfo,
    VideoTooLarge,
    VideoUnreadable,
    fit_video,
    fit_video_sync,
    probe_video,
    probe_video_sync,
)
from bot.rendering.user_facing import UserFacingError
from tests.media_samples import make_audio, make_mp4, media_info


@pytest.fixture(scope="module")
def clip() -> bytes:
    """3 s of noisy 640×360 at 24 fps with stereo sound (about 2 MB)."""
    return make_mp4(640, 360, 3.0)


def assert_plays(fitted: FittedVideo, *, seconds: float, limit: int) -> dict[str, object]:
    """The result is an H.264/AAC MP4 with its index first, of the stated size, lasting ``seconds``."""
    assert len(fitted.data) <= limit
    info = media_info(fitted.data)
    assert info["container"].startswith("mov,mp4")
    assert (info["video_codec"], info.get("audio_codec")) == ("h264", "aac")
    assert (info["width"], info["height"]) == (fitted.width, fitted.height)
    assert abs(info["duration"] - seconds) <= 0.2, info
    assert abs(info["audio_duration"] - seconds) <= 0.2, info
    assert 0 <= fitted.data.find(b"moov") < fitted.data.find(b"mdat"), "the index is not at the front"
    return info


def test_probe_gives_length_size_and_codec(clip: bytes) -> None:
    info = probe_video_sync(clip)
    assert info == VideoInfo(duration=pytest.approx(3.0, abs=0.05), width=640, height=360, codec="h264",
                             size_bytes=len(clip))


def test_a_video_that_fits_is_kept_as_it_is(clip: bytes) -> None:
    fitted = fit_video_sync(clip, len(clip))
    assert fitted == FittedVideo(data=clip, width=640, height=360, reencoded=False, scaled=False)


def test_a_video_discord_does_not_play_is_reencoded_even_when_it_fits() -> None:
    data = make_mp4(320, 240, 2.0, noisy=False, codec="mpeg4")
    fitted = fit_video_sync(data, 10 * len(data))
    assert fitted.reencoded and not fitted.scaled
    assert_plays(fitted, seconds=2.0, limit=10 * len(data))
    # more bits than the picture needs are not spent just because the limit allows them
    assert len(fitted.data) < 2 * len(data)


@pytest.mark.parametrize("share", [0.12, 0.06])
def test_a_video_over_the_limit_is_reencoded_to_fit_at_the_same_size(clip: bytes, share: float) -> None:
    # 12 %: about 700 kbit/s, 6 %: 350 (the 360-line source is the smallest rung: never scaled up or down)
    limit = int(len(clip) * share)
    fitted = fit_video_sync(clip, limit)
    assert fitted.reencoded and not fitted.scaled
    assert (fitted.width, fitted.height) == (640, 360)
    assert_plays(fitted, seconds=3.0, limit=limit)
    assert len(fitted.data) >= 0.6 * limit, "the limit is there to be used: the quality was thrown away"


def test_a_video_without_sound_stays_without_sound() -> None:
    data = make_mp4(320, 240, 2.0, audio=False)
    limit = len(data) // 4
    fitted = fit_video_sync(data, limit)
    info = media_info(fitted.data)
    assert fitted.reencoded and len(fitted.data) <= limit
    assert info["video_codec"] == "h264" and "audio_codec" not in info
    assert abs(info["duration"] - 2.0) <= 0.2


def test_a_low_bitrate_scales_the_picture_down_a_step() -> None:
    data = make_mp4(1280, 720, 2.0)
    # about 700 kbit/s of video: too few bits per pixel at 720 lines, enough at 480
    limit = 2 * (700_000 + 96_000) // 8
    fitted = fit_video_sync(data, limit)
    assert fitted.reencoded and fitted.scaled
    assert (fitted.width, fitted.height) == (854, 480)
    assert_plays(fitted, seconds=2.0, limit=limit)


def test_full_hd_goes_down_the_ladder_to_360_lines_when_it_must() -> None:
    data = make_mp4(1920, 1080, 1.0)
    limit = 30_000  # 240 kbit/s for picture and sound
    fitted = fit_video_sync(data, limit)
    assert (fitted.width, fitted.height) == (640, 360)
    assert_plays(fitted, seconds=1.0, limit=limit)


def test_an_encode_over_the_limit_is_tried_once_more_lower(clip: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    encodes: list[int] = []
    real = video_codec._encode

    def counting(data: bytes, src: object, plan: video_codec._Plan) -> bytes:
        encodes.append(plan.video_bps)
        return real(data, src, plan)  # type: ignore[arg-type]

    monkeypatch.setattr(video_codec, "_encode", counting)
    monkeypatch.setattr(video_codec, "RATE_SAFETY", 1.4)  # the first try aims 40 % over the limit
    limit = len(clip) // 10
    fitted = fit_video_sync(clip, limit)
    assert len(encodes) == 2 and encodes[1] < encodes[0]
    assert_plays(fitted, seconds=3.0, limit=limit)


def test_an_absurd_limit_is_video_too_large(clip: bytes) -> None:
    with pytest.raises(VideoTooLarge) as raised:
        fit_video_sync(clip, 20_000)
    error = raised.value
    assert isinstance(error, UserFacingError) and error.code == "video_too_large"
    assert (error.size_bytes, error.limit, error.duration) == (len(clip), 20_000, pytest.approx(3.0, abs=0.05))
    assert error.user_message() == ("The video is 2.1 MiB for 3 s: even re-encoded smaller it would not fit the "
                                    "19.5 KiB upload limit here.")


def unreadable(data: bytes) -> str:
    """The sentence both probe_video and fit_video give for ``data``."""
    with pytest.raises(VideoUnreadable) as probed:
        probe_video_sync(data)
    with pytest.raises(VideoUnreadable) as fitted:
        fit_video_sync(data, 10_000_000)
    assert probed.value.code == "video_unreadable"
    message = probed.value.user_message()
    assert message == fitted.value.user_message()
    assert "Traceback" not in message and "Errno" not in message and "moov" not in message
    return message


def test_bytes_that_are_no_video_are_refused_with_one_sentence() -> None:
    not_video = "That file is not a video I can read (I take MP4, MOV, WebM and MKV)."
    assert unreadable(b"") == "That video file is empty."
    assert unreadable(bytes(range(256)) * 64) == not_video
    assert unreadable(b"<html><body>Not found</body></html>\n" * 10) == not_video
    assert unreadable(make_audio("mp3", 1.0)) == not_video
    assert unreadable(make_audio("m4a", 1.0)) == "That file has no picture, so it is not a video."


def test_a_cut_off_video_is_refused() -> None:
    whole = make_mp4(320, 240, 3.0)  # index at the end, as most encoders write it: cut off, it is lost
    assert unreadable(whole[: len(whole) // 2]) == "That video is damaged or cut short, so I cannot read it."
    front = make_mp4(320, 240, 3.0, faststart=True)  # index first: the frames it lists are missing
    assert unreadable(front[: int(len(front) * 0.6)]) == "That video is cut off: 1.8 s of its 3 s are there."


def test_playlists_and_scripts_naming_other_files_are_never_opened(tmp_path: object) -> None:
    from pathlib import Path

    real = Path(str(tmp_path)) / "real.mp4"
    real.write_bytes(make_mp4(160, 120, 1.0))
    not_video = "That file is not a video I can read (I take MP4, MOV, WebM and MKV)."
    # were FFmpeg left to guess, each of these would open the real video next to it (or a URL)
    assert unreadable(f"ffconcat version 1.0\nfile '{real}'\n".encode()) == not_video
    assert unreadable(f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nfile://{real}\n#EXT-X-ENDLIST\n"
                      .encode()) == not_video
    assert unreadable(b"#EXTM3U\n#EXTINF:1,\nhttp://169.254.169.254/latest/meta-data\n") == not_video


async def test_the_async_functions_run_in_a_thread_and_give_the_same_answers(
        clip: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[object] = []
    real = asyncio.to_thread

    async def spy(func: object, *args: object) -> object:
        threads.append(func)
        return await real(func, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(video_codec.asyncio, "to_thread", spy)
    assert await probe_video(clip) == probe_video_sync(clip)
    fitted = await fit_video(clip, len(clip) // 2)
    assert fitted.reencoded and len(fitted.data) <= len(clip) // 2
    assert threads == [probe_video_sync, fit_video_sync]
    with pytest.raises(VideoUnreadable):
        await fit_video(b"nope", 1000)
