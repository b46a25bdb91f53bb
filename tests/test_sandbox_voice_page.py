"""The sandbox page's voice messages without a browser: the conversion of a member's audio file to
what a Discord voice message carries (Ogg/Opus, 48 kHz, mono), and the refusals of the page's
``POST /api/voice-message`` (one clear sentence, never a traceback)."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from bot.app.settings import Settings
from sandbox.launcher import Sandbox, SandboxOptions
from sandbox.web_ui import WebUI
from sandbox.web_ui import voice as voice_mod
from sandbox.web_ui.voice import MAX_AUDIO_BYTES, NotAudio, to_voice_ogg, voice_ogg
from tests.voice_audio import decoded, make_audio


@pytest.mark.parametrize(
    ("fmt", "channels"), [("wav", 1), ("wav", 2), ("mp3", 2), ("flac", 1), ("m4a", 2), ("webm", 1), ("opus", 2)]
)
def test_audio_becomes_ogg_opus_48k_mono_of_the_same_length(fmt: str, channels: int) -> None:
    source = make_audio(fmt, 3.0, channels=channels)
    converted = to_voice_ogg(source)
    container, codec, rate, chans, seconds = decoded(converted)
    assert (container, codec, rate, chans) == ("ogg", "opus", 48_000, 1)
    assert seconds == pytest.approx(decoded(source)[4], abs=0.03)


def test_ogg_opus_mono_is_sent_unchanged() -> None:
    source = make_audio("opus", 2.0, channels=1)
    assert to_voice_ogg(source) is source


def test_the_sound_survives_the_conversion() -> None:
    """Not just a valid file: the loud and the quiet parts are where they were."""
    import av
    import numpy as np

    with av.open(io.BytesIO(to_voice_ogg(make_audio("mp3", 2.0))), "r") as container:
        pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)]).astype(np.float64)

    def peak(at: float) -> float:  # over 40 ms around `at` seconds
        middle = int(at * 48_000)
        return float(np.abs(pcm[middle - 960:middle + 960]).max())

    # the speech-like sound (tests/voice_audio.py) is loudest at 0.375 s and 1.375 s (syllables four times a
    # second) and pauses from 0.85 s to 1 s of every second
    assert peak(0.375) > 0.4 and peak(1.375) > 0.4 and peak(0.925) < 0.2 * peak(0.375)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"just some text, not a sound file at all\n" * 50, "not audio in a format the page takes"),
        (b"", "not audio in a format the page takes"),
        ("png", "not audio in a format the page takes"),
        # FFmpeg would follow a playlist's entries (local files, URLs): never handed to it
        (b"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n", "in a format"),
        (b"ffconcat version 1.0\nfile /etc/hostname\n", "in a format"),
        (b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"garbage" * 100, "not audio FFmpeg can read"),
        ("video", "not audio (no sound in it)"),
    ],
)
def test_what_is_not_audio_is_refused_with_a_sentence(data: bytes | str, words: str) -> None:
    if data == "png":
        buf = io.BytesIO()
        Image.new("RGB", (8, 8), (200, 10, 10)).save(buf, format="PNG")
        data = buf.getvalue()
    elif data == "video":
        data = silent_video()
    assert isinstance(data, bytes)
    with pytest.raises(NotAudio) as caught:
        to_voice_ogg(data)
    assert words in str(caught.value) and "pick an audio file" in str(caught.value)


def silent_video() -> bytes:
    """A WebM with one video frame and no sound track."""
    import av
    import numpy as np

    buf = io.BytesIO()
    with av.open(buf, "w", format="webm") as out:
        stream = out.add_stream("libvpx", rate=1)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
        frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), dtype=np.uint8), format="rgb24")
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return buf.getvalue()


async def test_conversion_runs_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[threading.Thread] = []
    real = voice_mod.to_voice_ogg

    def spy(data: bytes) -> bytes:
        threads.append(threading.current_thread())
        return real(data)

    monkeypatch.setattr(voice_mod, "to_voice_ogg", spy)
    out = await voice_ogg(make_audio("wav", 1.0))
    assert decoded(out)[:2] == ("ogg", "opus")
    assert threads and threads[0] is not threading.main_thread()


# -- the page's API ---------------------------------------------------------------------------

@pytest.fixture
async def ui(discord_emu: Any) -> AsyncIterator[str]:
    async with WebUI(discord_emu) as web_ui:
        yield web_ui.url.rstrip("/")


async def post_voice(base: str, blob: bytes, filename: str, content_type: str) -> tuple[int, Any]:
    form = aiohttp.FormData()
    form.add_field("json", '{"user": "alice"}')
    form.add_field("audio", blob, filename=filename, content_type=content_type)
    async with aiohttp.ClientSession() as http, http.post(base + "/api/voice-message", data=form) as resp:
        return resp.status, await resp.json()


async def test_api_refuses_a_file_that_is_not_audio(ui: str, discord_emu: Any) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="PNG")
    status, body = await post_voice(ui, buf.getvalue(), "photo.png", "image/png")
    assert status == 400 and body["error"].startswith("photo.png: it is not audio in a format the page takes")
    assert not discord_emu.messages


async def test_api_refuses_audio_over_25_mib(ui: str, discord_emu: Any) -> None:
    big = make_audio("wav", 1.0) + bytes(MAX_AUDIO_BYTES)
    status, body = await post_voice(ui, big, "long.wav", "audio/wav")
    assert status == 400 and body["error"] == "long.wav is 25.1 MiB: a voice message can be at most 25 MiB"
    status, body = await post_voice(ui, bytes(31 * 2**20), "huge.wav", "audio/wav")  # past the page's request limit
    assert status == 413 and "at most 25 MiB" in body["error"]
    assert not discord_emu.messages


async def test_api_needs_exactly_one_audio_file(ui: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(ui + "/api/voice-message", json={"user": "alice"}) as resp:
            assert resp.status == 400 and "one audio file" in (await resp.json())["error"]


async def test_api_sends_the_converted_audio_as_a_voice_message(tmp_path: Path) -> None:
    """What the page hands the emulator (with the bot connected, as `make run` has it): Ogg/Opus
    48 kHz mono, as the member's voice message, replying to the message the member picked."""
    async with Sandbox(Settings(), SandboxOptions(port=0, data_dir=tmp_path)) as sbx:
        emu = sbx.discord
        first = await emu.send_user_message("say something", user="bob")
        form = aiohttp.FormData()
        fields = {"user": "alice", "channel_id": str(emu.channel_id), "reply_to": str(first.id)}
        form.add_field("json", json.dumps(fields))
        form.add_field("audio", make_audio("mp3", 2.5, channels=2), filename="memo.mp3", content_type="audio/mpeg")
        async with aiohttp.ClientSession() as http, http.post(sbx.url + "api/voice-message", data=form) as resp:
            status, body = resp.status, await resp.json()
        assert status == 200, body
        msg = emu.messages[int(body["message_id"])]
    assert msg.flags & 8192 and msg.author_id == emu.users["alice"].id and not msg.content
    assert msg.message_reference and int(msg.message_reference["message_id"]) == first.id
    (att,) = msg.attachments
    assert att.content_type == "audio/ogg"
    assert decoded(att.data)[:4] == ("ogg", "opus", 48_000, 1)
    payload = att.payload()
    assert payload["duration_secs"] == pytest.approx(2.5, abs=0.05) and payload["waveform"]
