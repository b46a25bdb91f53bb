"""bot/media/audio_fit.py: generated music Discord plays inline (MP3, Ogg, WAV, FLAC) is kept when it fits;
anything else, or a file over the limit, becomes an MP3 that fits, checked by decoding it; bytes that are no
audio get one clear sentence."""

from __future__ import annotations

import asyncio

import pytest

from bot.media import audio_fit
from bot.media.audio_fit import AudioTooLarge, AudioUnreadable, FittedAudio, fit_audio, fit_audio_sync
from bot.rendering.user_facing import UserFacingError
from tests.media_samples import make_audio, make_mp4, media_info

KEPT = {"mp3": "audio/mpeg", "ogg": "audio/ogg", "wav": "audio/wav", "flac": "audio/flac"}


def assert_mp3(fitted: FittedAudio, *, seconds: float, limit: int) -> dict[str, object]:
    assert (fitted.mime, fitted.extension, fitted.reencoded) == ("audio/mpeg", "mp3", True)
    assert len(fitted.data) <= limit
    info = media_info(fitted.data)
    assert (info["container"], info["audio_codec"]) == ("mp3", "mp3float")
    assert abs(info["audio_duration"] - seconds) <= 0.2, info
    return info


@pytest.mark.parametrize("fmt", sorted(KEPT))
def test_a_format_discord_plays_is_kept_when_it_fits(fmt: str) -> None:
    data = make_audio(fmt, 2.0)
    fitted = fit_audio_sync(data, len(data))
    assert fitted == FittedAudio(data=data, mime=KEPT[fmt], extension=fmt, reencoded=False)


@pytest.mark.parametrize("fmt", ["aac", "m4a", "webm"])
def test_other_formats_become_mp3_even_when_they_fit(fmt: str) -> None:
    data = make_audio(fmt, 3.0)
    fitted = fit_audio_sync(data, 10 * len(data))
    assert_mp3(fitted, seconds=3.0, limit=10 * len(data))
    assert len(fitted.data) < 2.5 * len(data), "a conversion spends bits the source never had"


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3", "ogg"])
def test_audio_over_the_limit_becomes_an_mp3_that_fits(fmt: str) -> None:
    data = make_audio(fmt, 10.0)
    limit = 32_000  # room for 24 kbit/s for 10 s and the MP3's headers
    assert len(data) > limit
    fitted = fit_audio_sync(data, limit)
    info = assert_mp3(fitted, seconds=10.0, limit=limit)
    assert len(fitted.data) >= 0.6 * limit, "the limit is there to be used"
    assert info["channels"] == 1 and info["sample_rate"] == 16_000  # what suits 24 kbit/s


def test_there_is_room_stereo_and_full_band_are_kept() -> None:
    from tests.voice_audio import encode_samples, speech_like

    stereo = encode_samples(speech_like(4.0, 24_000), "wav", channels=2)
    fitted = fit_audio_sync(stereo, len(stereo) // 2)
    info = assert_mp3(fitted, seconds=4.0, limit=len(stereo) // 2)
    assert info["channels"] == 2 and info["sample_rate"] == 44_100


def test_an_encode_over_the_limit_is_tried_once_more_lower(monkeypatch: pytest.MonkeyPatch) -> None:
    bitrates: list[int] = []
    real = audio_fit._to_mp3

    def counting(data: bytes, demuxer: str, bitrate: int) -> bytes:
        bitrates.append(bitrate)
        return real(data, demuxer, bitrate)

    monkeypatch.setattr(audio_fit, "_to_mp3", counting)
    # the first pick is 24 kbit/s, which for 10 s fills 30 000 bytes before the MP3's headers: over
    monkeypatch.setattr(audio_fit, "MP3_OVERHEAD_BYTES", -6000)
    fitted = fit_audio_sync(make_audio("wav", 10.0), 30_000)
    assert bitrates == [24_000, 16_000]
    assert_mp3(fitted, seconds=10.0, limit=30_000)


def test_an_absurd_limit_is_audio_too_large() -> None:
    data = make_audio("wav", 10.0)
    with pytest.raises(AudioTooLarge) as raised:
        fit_audio_sync(data, 5_000)
    error = raised.value
    assert isinstance(error, UserFacingError) and error.code == "audio_too_large"
    assert error.user_message() == ("The audio lasts 10 s: even compressed as far as it goes it would not fit the "
                                    "4.9 KiB upload limit here.")


def test_bytes_that_are_no_audio_are_refused_with_one_sentence(tmp_path: object) -> None:
    from pathlib import Path

    real = Path(str(tmp_path)) / "real.wav"
    real.write_bytes(make_audio("wav", 1.0))
    not_audio = ("That file is not audio I can play (I take Ogg/Opus, MP3, WAV, FLAC, AAC, M4A, WebM and "
                 "AIFF).")
    cases = {
        b"": "That file is empty, so there is no audio in it to play.",
        bytes(range(256)) * 64: not_audio,
        f"ffconcat version 1.0\nfile '{real}'\n".encode(): not_audio,  # would open the real file next to it
        f"#EXTM3U\n#EXTINF:1,\nfile://{real}\n".encode(): not_audio,
        make_mp4(160, 120, 1.0, audio=False): "That file is not audio I can play (it has no sound track).",
    }
    for data, sentence in cases.items():
        with pytest.raises(AudioUnreadable) as raised:
            fit_audio_sync(data, 1_000_000)
        assert raised.value.user_message() == sentence


async def test_fit_audio_runs_in_a_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[object] = []
    real = asyncio.to_thread

    async def spy(func: object, *args: object) -> object:
        threads.append(func)
        return await real(func, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(audio_fit.asyncio, "to_thread", spy)
    data = make_audio("m4a", 1.0)
    fitted = await fit_audio(data, 1_000_000)
    assert fitted.extension == "mp3" and threads == [fit_audio_sync]
