"""bot/voice/codec.py: real audio in every format the gateways return becomes a Discord voice message
(Ogg/Opus, 48 kHz, mono) whose duration and waveform match what is heard; bad bytes get one sentence."""

from __future__ import annotations

import base64
import io
import wave

import av
import numpy as np
import pytest

from bot.rendering.user_facing import UserFacingError
from bot.voice.codec import (
    VOICE_SAMPLE_RATE,
    WAVEFORM_MAX,
    AudioInfo,
    AudioUnreadable,
    VoiceClip,
    encode,
    encode_voice,
    ogg_duration,
    probe,
    probe_audio,
)
from tests.voice_audio import FORMATS, PCM_RATE, encode_samples, make_audio, silence, speech_like

ALL_FORMATS = [*FORMATS, "pcm"]
#: what FFmpeg calls each input's container and codec
EXPECTED = {
    "mp3": ("mp3", "mp3"), "wav": ("wav", "pcm_s16le"), "flac": ("flac", "flac"), "aac": ("aac", "aac"),
    "opus": ("ogg", "opus"), "m4a": ("mov", "aac"), "webm": ("matroska", "opus"),
    "pcm": ("pcm", "pcm_s16le"),
}


def hint(fmt: str) -> str | None:
    return "pcm" if fmt == "pcm" else None


def assert_voice_ogg(clip: VoiceClip) -> float:
    """The clip is what Discord plays as a voice message; returns the Ogg's real (decoded) duration."""
    with av.open(io.BytesIO(clip.data)) as container:
        assert container.format.name == "ogg"
        (stream,) = container.streams.audio
        assert stream.codec_context.name == "opus"
        assert stream.codec_context.sample_rate == VOICE_SAMPLE_RATE
        assert stream.codec_context.channels == 1
    assert clip.filename == "voice-message.ogg" and clip.content_type == "audio/ogg"
    assert 1 <= len(clip.waveform) <= WAVEFORM_MAX
    assert base64.b64decode(clip.waveform_b64) == clip.waveform
    real = ogg_duration(clip.data)
    assert abs(real - clip.duration_secs) < 0.1, (real, clip.duration_secs)
    return real


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_each_format_becomes_a_voice_message_of_the_same_length(fmt: str) -> None:
    clip = encode_voice([make_audio(fmt, 3.0)], hint(fmt))
    real = assert_voice_ogg(clip)
    assert abs(real - 3.0) < 0.1
    assert abs(clip.duration_secs - 3.0) < 0.1
    assert len(clip.waveform) == WAVEFORM_MAX  # 3 s is 300 blocks of 10 ms: the full 256 buckets
    # speech rises, falls and pauses: the bars do too
    assert max(clip.waveform) == 255
    assert min(clip.waveform) < 40
    assert len(set(clip.waveform)) > 20


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_probe_gives_format_and_duration(fmt: str) -> None:
    info = probe_audio(make_audio(fmt, 4.0), hint(fmt))
    assert isinstance(info, AudioInfo)
    assert (info.container, info.codec) == EXPECTED[fmt]
    assert abs(info.duration_secs - 4.0) < 0.1, info
    assert info.channels == 1
    assert info.sample_rate == (PCM_RATE if fmt == "pcm" else FORMATS[fmt][3])


def test_waveform_follows_loudness() -> None:
    """A loud second then a quiet one: the first half of the bars is about four times the second."""
    rate = 24_000
    loud, quiet = speech_like(1.0, rate, loudness=0.8), speech_like(1.0, rate, loudness=0.2)
    clip = encode_voice([encode_samples(np.concatenate((loud, quiet)), "wav")])
    bars = np.frombuffer(clip.waveform, dtype=np.uint8).astype(int)
    assert len(bars) == 200  # one per 10 ms under 2.56 s
    assert bars[:100].max() == 255
    assert 40 < bars[100:].max() < 90  # a quarter of the loudest, give or take the resampler


@pytest.mark.parametrize("fmt", ["wav", "mp3", "opus"])
def test_silence_draws_no_bars(fmt: str) -> None:
    clip = encode_voice([silence(fmt, 2.0)])
    assert_voice_ogg(clip)
    assert abs(clip.duration_secs - 2.0) < 0.1
    assert max(clip.waveform) <= 2


def test_quiet_speech_is_not_blown_up_to_full_height() -> None:
    """Bars are scaled to the loudest, but never amplified more than 10x: -30 dBFS speech stays low."""
    clip = encode_voice([make_audio("wav", 2.0, loudness=0.03)])
    assert 0 < max(clip.waveform) < 100


def test_parts_are_joined_in_order_and_durations_add_up() -> None:
    clip = encode_voice([make_audio("mp3", 2.0), silence("wav", 1.5), make_audio("flac", 1.0)])
    real = assert_voice_ogg(clip)
    assert abs(real - 4.5) < 0.1 and abs(clip.duration_secs - 4.5) < 0.1
    bars = np.frombuffer(clip.waveform, dtype=np.uint8)
    # 4.5 s in 256 bars: the silent part (2.0-3.5 s) is bars ~114..199, the speech around it is not silent
    assert bars[120:195].max() <= 2
    assert bars[:110].max() > 100 and bars[205:].max() > 100


def test_raw_pcm_parts_join_with_the_hint() -> None:
    clip = encode_voice([make_audio("pcm", 1.0), make_audio("pcm", 2.5)], "pcm")
    assert abs(assert_voice_ogg(clip) - 3.5) < 0.1


def test_very_short_audio_has_at_least_one_bar() -> None:
    clip = encode_voice([make_audio("wav", 0.05)])
    assert_voice_ogg(clip)
    assert len(clip.waveform) == 5  # one per 10 ms
    tiny = encode_voice([make_audio("wav", 0.002)])
    assert len(tiny.waveform) == 1 and tiny.duration_secs > 0


def test_tags_are_kept_in_the_ogg_comments() -> None:
    """Like ffmpeg's default: a title or comment survives the transcode (the gateway emulator reads it)."""
    clip = encode_voice([make_audio("mp3", 1.0, tags={"title": "Hello there."}),
                         make_audio("flac", 1.0, tags={"title": "General Kenobi."})])
    with av.open(io.BytesIO(clip.data)) as container:
        tags = {**container.metadata, **container.streams.audio[0].metadata}
    assert tags["title"] == "Hello there. General Kenobi."


def test_a_few_damaged_bytes_cost_a_moment_not_the_file() -> None:
    data = bytearray(make_audio("mp3", 5.0))
    middle = len(data) // 2
    data[middle:middle + 2000] = bytes(2000)
    clip = encode_voice([bytes(data)])
    assert 3.5 < clip.duration_secs <= 5.0


def test_audio_damaged_throughout_is_refused() -> None:
    """An ADTS AAC file whose every frame payload is noise: the headers parse, the decoder rejects all."""
    data = bytearray(make_audio("aac", 2.0))
    with av.open(io.BytesIO(bytes(data)), mode="r") as container:
        frames = [(packet.pos, packet.size) for packet in container.demux() if packet.size and packet.pos is not None]
    noise = np.random.default_rng(17)
    for pos, size in frames:
        data[pos + 7:pos + size] = noise.bytes(size - 7)  # keep each 7-byte ADTS header
    message = unreadable(bytes(data))
    assert message == "That file is not audio I can play (it is damaged and cannot be decoded)."


def unreadable(data: bytes, fmt_hint: str | None = None) -> str:
    """The sentence both probe_audio and encode_voice give for ``data``."""
    with pytest.raises(AudioUnreadable) as probed:
        probe_audio(data, fmt_hint)
    with pytest.raises(AudioUnreadable) as encoded:
        encode_voice([make_audio("wav", 0.5), data], fmt_hint)
    assert isinstance(probed.value, UserFacingError) and probed.value.code == "audio_unreadable"
    assert probed.value.user_message() == encoded.value.user_message()
    assert "Traceback" not in probed.value.user_message() and "avcodec" not in probed.value.user_message()
    return probed.value.user_message()


def video_only() -> bytes:
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for _ in range(3):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")))
        container.mux(stream.encode(None))
    return buf.getvalue()


def test_bad_input_gets_one_specific_sentence() -> None:
    assert unreadable(b"") == "That file is empty, so there is no audio in it to play."
    not_audio = ("That file is not audio I can play (I take Ogg/Opus, MP3, WAV, FLAC, AAC, M4A, WebM and "
                 "AIFF).")
    assert unreadable(b"Hello, I am a text file and not a song.\n" * 20) == not_audio
    assert unreadable(bytes(range(256)) * 40) == not_audio
    # FFmpeg demuxers that open other files or URLs named inside the input are never reached
    assert unreadable(b"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n") \
        == not_audio
    assert unreadable(b"ffconcat version 1.0\nfile '/etc/passwd'\n") == not_audio
    assert unreadable(video_only()) == "That file is not audio I can play (it has no sound track)."
    assert unreadable(b"", "pcm") == "That file is empty, so there is no audio in it to play."


def test_audio_without_a_single_sample_is_refused() -> None:
    header_only = io.BytesIO()
    with wave.open(header_only, "wb") as wav:  # a valid WAV of 0 frames
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(24_000)
    message = unreadable(header_only.getvalue())
    assert message == "That file is not audio I can play (it holds no sound at all: zero samples)."


def test_nothing_to_encode_is_refused() -> None:
    with pytest.raises(AudioUnreadable, match="nothing was given"):
        encode_voice([])


async def test_async_wrappers_give_the_same_answers() -> None:
    data = make_audio("mp3", 1.5)
    info = await probe(data)
    assert info == probe_audio(data)
    clip = await encode([data])
    assert abs(clip.duration_secs - 1.5) < 0.1
    assert clip.waveform == encode_voice([data]).waveform
    with pytest.raises(AudioUnreadable):
        await encode([b"not audio"])
