"""The sandbox page in a real headless Chromium (Debian's, driven by Playwright): a member runs /chat
and watches the answer stream in, runs /imagine and presses U1, creates a relay key and posts to
/send-data from the relay panel. Everything goes through the sandbox as a newcomer starts it: the
Discord emulator, a gateway emulator and the real bot.

Assertions are on what the page shows (text, loaded images, embed titles), not on wording owned by
the cogs. A missing browser FAILS these tests: ``make test`` installs it (target ``browser``).
"""

from __future__ import annotations

import asyncio
import io
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bot.app.settings import Settings
from sandbox.launcher import Sandbox, SandboxOptions

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
UI_TIMEOUT_MS = 30_000
KEY_RE = re.compile(r"gcr_[A-Za-z0-9]+_[A-Za-z0-9_-]{16,}")


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[Sandbox]:
    """The sandbox with the emulated DigiCord gateway (chat, vision, FLUX), as `gatecord sandbox` starts it."""
    settings = Settings(gateway={"profile": "digicord"})
    # stream_tps=0: the tests keep their own pace (a test that wants one sets it on the gateway)
    async with Sandbox(settings, SandboxOptions(port=0, data_dir=tmp_path, stream_tps=0)) as sbx:
        yield sbx


@pytest.fixture
async def page(sandbox: Sandbox) -> AsyncIterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (apt-get install -y chromium)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.fail("the playwright package is missing: install the test extra (pip install -e '.[test]')")
    errors: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            pg = await browser.new_page(viewport={"width": 1400, "height": 900})
            pg.set_default_timeout(UI_TIMEOUT_MS)
            pg.on("pageerror", lambda exc: errors.append(str(exc)))
            await pg.goto(sandbox.url)
            await pg.wait_for_selector("body[data-ready='1']")
            yield pg
        finally:
            await browser.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


# -- what a person does ---------------------------------------------------------------------------

async def open_channel(pg: Any, name: str) -> None:
    await pg.locator("#channels .channel", has=pg.locator(".name", has_text=re.compile(f"^{re.escape(name)}$"))).click()
    await pg.wait_for_function("n => document.querySelector('#channel-name').textContent === n", arg=name)


async def run_command(pg: Any, path: str, **options: str) -> None:
    """Type /path, pick it from the suggestions, fill the options (adding optional ones), press Enter."""
    box = pg.locator("#composer-input")
    await box.click()
    await box.fill("/" + path.split()[0])
    await pg.locator(f'#command-suggestions .suggestion[data-path="{path}"]').click()
    for name, value in options.items():
        field = pg.locator(f'#command-options .option[data-option="{name}"]')
        if await field.count() == 0:
            await pg.locator(f'#command-optional [data-add-option="{name}"]').click()
        await field.locator(".opt-input").fill(value)
    await field_enter(pg)


async def field_enter(pg: Any) -> None:
    """Enter in the last option field (as a person would), or Send for a command without options."""
    inputs = pg.locator("#command-options .opt-input")
    if await inputs.count():
        await inputs.last.press("Enter")
    else:
        await pg.locator("#send-button").click()
    await pg.wait_for_selector("#command-form", state="hidden")


def bot_messages(pg: Any) -> Any:
    return pg.locator("#messages .message[data-author='Gatecord']")


async def loaded_images(pg: Any, scope: str) -> int:
    return await pg.evaluate(
        "sel => [...document.querySelectorAll(sel + ' img')].filter(i => i.complete && i.naturalWidth > 0).length", scope
    )


# -- tests ----------------------------------------------------------------------------------------

async def test_page_looks_like_a_text_channel(sandbox: Sandbox, page: Any) -> None:
    channels = await page.locator("#channels .channel .name").all_inner_texts()
    assert {"general", "random", "general-thread"} <= set(channels)
    assert await page.locator("#channels .channel.thread .name").all_inner_texts() == ["general-thread"]
    personas = await page.locator("#user-switch option").all_inner_texts()
    assert any("admin" in p for p in personas) and any("member" in p for p in personas)
    # The commands offered are the ones the bot registered with the emulator.
    await page.locator("#composer-input").fill("/")
    offered = set(await page.locator("#command-suggestions .suggestion").evaluate_all("els => els.map(e => e.dataset.path)"))
    # (those usable in a server channel: /owner is for the owner's DM with the bot only)
    registered = {c["name"] for c in sandbox.discord.global_commands()
                  if c["type"] == 1 and 0 in (c.get("contexts") or [0])}
    assert registered and {p.split()[0] for p in offered} == registered


async def test_chat_answer_streams_into_the_page(sandbox: Sandbox, page: Any) -> None:
    gateway = sandbox.gateway
    assert gateway is not None
    first, last = "The first part arrives early.", "The very last words arrive at the end."
    answer = " ".join([first] + [f"Sentence number {i} of a longer streamed answer." for i in range(12)] + [last])
    gateway.queue_reply(answer, chunk_size=6)
    gateway.chunk_delay = 0.04  # ~4 s of streaming: the bot edits its message several times meanwhile

    await run_command(page, "chat", prompt="Tell me a long story")
    # Part of the answer is on the page while the rest is still coming…
    await page.wait_for_function(
        """([a, b]) => [...document.querySelectorAll('#messages .message[data-author="Gatecord"] .content')]
             .some(e => e.textContent.includes(a) && !e.textContent.includes(b))""",
        arg=[first, last], polling="raf",
    )
    # …then all of it, in the same message.
    final = bot_messages(page).filter(has_text=last)
    await final.wait_for()
    text = await final.locator(".content").inner_text()
    assert first in text and last in text
    assert await bot_messages(page).filter(has_text=first).count() == 1
    assert "used /chat" in await page.locator("#messages .context").first.inner_text()


async def test_imagine_grid_then_u1_posts_the_upscaled_image(sandbox: Sandbox, page: Any) -> None:
    await open_channel(page, "random")
    await run_command(page, "imagine create", prompt="a red fox in the snow")
    grid = bot_messages(page).filter(has=page.locator("button.component-button", has_text=re.compile(r"^U1$")))
    await grid.wait_for()
    grid_id = await grid.get_attribute("data-message-id")
    scope = f'#messages .message[data-message-id="{grid_id}"]'
    await page.wait_for_function(
        "sel => [...document.querySelectorAll(sel + ' img')].some(i => i.complete && i.naturalWidth > 0)", arg=scope
    )
    src = await page.locator(f"{scope} .attachment-image img").first.evaluate("img => img.src")
    served = await page.request.get(src)
    assert served.status == 200 and served.headers["content-type"].startswith("image/")
    Image.open(io.BytesIO(await served.body())).verify()  # real image bytes

    before = set(await page.locator("#messages .message").evaluate_all("els => els.map(e => e.dataset.messageId)"))
    await grid.locator("button.component-button", has_text=re.compile(r"^U1$")).click()
    # A new message from the bot with a loaded image: the upscale of image 1.
    await page.wait_for_function(
        """known => [...document.querySelectorAll('#messages .message[data-author="Gatecord"]')]
             .some(m => !known.includes(m.dataset.messageId)
                        && [...m.querySelectorAll('.attachment-image img')].some(i => i.complete && i.naturalWidth > 0))""",
        arg=sorted(before),
    )
    presses = [r for r in sandbox.discord.interactions.values() if r.type == 3]
    assert presses and presses[-1].custom_id and presses[-1].message_id == int(grid_id)


async def test_relay_key_from_admin_command_then_post_from_the_panel(sandbox: Sandbox, page: Any) -> None:
    await page.select_option("#user-switch", "admin")
    await run_command(page, "relay key create", name="browser-test")
    reply = page.locator("#messages .message.ephemeral").filter(has_text=KEY_RE)
    await reply.wait_for()
    assert "Only you can see this" in await reply.inner_text()
    # The reply's curl line names the sandbox bot's real web server, not a placeholder.
    assert sandbox.bot_url and f"{sandbox.bot_url}/send-data" in await reply.inner_text()
    assert "<bot-url>" not in await reply.inner_text()
    key = KEY_RE.search(await reply.inner_text())
    assert key is not None

    await page.locator("#relay-toggle").click()
    await page.locator("#relay-use-key").click()
    assert await page.locator("#relay-key").input_value() == key.group(0)
    payload = {
        "channelId": str(sandbox.discord.channel_id),
        "content": "Relayed from the browser",
        "embeds": [{"title": "Nightly build passed", "description": "All **green**.", "color": 0x57F287}],
    }
    await page.locator("#relay-body").fill(json.dumps(payload))
    await page.locator("#relay-send").click()
    await page.wait_for_selector("#relay-result[data-status]")
    assert await page.locator("#relay-result").get_attribute("data-status") in ("200", "201", "202")
    embed = page.locator("#messages .embed .embed-title", has_text="Nightly build passed")
    await embed.wait_for()
    assert await page.locator("#messages .message", has_text="Relayed from the browser").count() == 1

    # A plain member sees the relayed post, but neither the admin's key nor the admin-only command.
    await page.select_option("#user-switch", "alice")
    await page.locator("#messages .message.ephemeral").filter(has_text=KEY_RE).wait_for(state="detached")
    await embed.wait_for()
    await page.locator("#composer-input").fill("/relay")
    await page.wait_for_selector("#command-suggestions .ac-empty")
    assert await page.locator('#command-suggestions .suggestion[data-path="relay key create"]').count() == 0

    # A wrong key gets the bot's 401, shown in the panel.
    await page.locator("#relay-key").fill("gcr_nope_" + "x" * 20)
    await page.locator("#relay-send").click()
    await page.wait_for_selector('#relay-result[data-status="401"]')


async def test_autocomplete_comes_from_the_bot(sandbox: Sandbox, page: Any) -> None:
    gateway = sandbox.gateway
    assert gateway is not None
    box = page.locator("#composer-input")
    await box.fill("/chat")
    await page.locator('#command-suggestions .suggestion[data-path="chat"]').click()
    await page.locator('#command-options .option[data-option="prompt"] .opt-input').fill("hello")
    await page.locator('#command-optional [data-add-option="model"]').click()
    model = page.locator('#command-options .option[data-option="model"] .opt-input')
    await model.fill(gateway.default_chat_model[:6])
    choice = page.locator(f'.ac-list .ac-choice[data-value="{gateway.default_chat_model}"]')
    await choice.wait_for()
    autocompletes = [r for r in sandbox.discord.interactions.values() if r.type == 4]
    assert autocompletes and autocompletes[-1].autocomplete_choices
    await choice.click()
    assert await model.input_value() == gateway.default_chat_model


async def test_image_attachment_on_a_plain_message(sandbox: Sandbox, page: Any, tmp_path: Path) -> None:
    picture = tmp_path / "red.png"
    Image.new("RGB", (64, 48), (220, 30, 30)).save(picture)
    await page.locator("#file-input").set_input_files(str(picture))
    await page.locator("#file-chips .chip", has_text="red.png").wait_for()
    await page.locator("#composer-input").fill("@Gatecord what colour is this?")
    await page.locator("#composer-input").press("Enter")
    mine = page.locator("#messages .message", has=page.locator(".attachment-image img"))
    await mine.first.wait_for()
    await page.wait_for_function(
        "() => [...document.querySelectorAll('#messages .attachment-image img')].some(i => i.naturalWidth === 64)"
    )
    sent = [m for m in sandbox.discord.messages.values() if m.attachments and m.author_id == sandbox.discord.users["admin"].id]
    assert sent and sent[0].attachments[0].data == picture.read_bytes()
    assert f"<@{sandbox.discord.bot_user_id}>" in sent[0].content  # a real mention, as Discord's client sends it
    # The bot answers the mention (whatever it says) in the channel.
    await bot_messages(page).first.wait_for()


async def test_an_interaction_the_bot_cannot_answer_shows_an_error(sandbox: Sandbox, page: Any) -> None:
    sandbox.discord.interaction_ack_deadline = 0.5
    sandbox.discord.inject_error("/callback", 500, message="Injected failure", count=20)
    await run_command(page, "about")
    notice = page.locator("#notices .notice.error", has_text="did not respond")
    await notice.wait_for()


# -- voice messages -------------------------------------------------------------------------------

def voice_players(pg: Any, author: str) -> Any:
    return pg.locator(f"#messages .message[data-author='{author}'] .audio-player.voice")


async def bar_values(player: Any) -> list[int]:
    return await player.locator("rect.bar").evaluate_all("els => els.map(e => Number(e.dataset.value))")


async def plays(pg: Any, player: Any) -> None:
    """Press play: the audio (from the emulator's CDN) really advances and bars light up; press pause."""
    handle = await player.element_handle()
    await player.locator(".audio-play").click()
    await pg.wait_for_function(
        "p => p.classList.contains('playing') && p.querySelector('audio').currentTime > 0.3"
        " && p.querySelectorAll('rect.bar.played').length > 0", arg=handle,
    )
    await player.locator(".audio-play").click()
    await pg.wait_for_function("p => !p.classList.contains('playing') && p.querySelector('audio').paused", arg=handle)


async def test_audio_file_sent_as_a_voice_message_from_the_page(sandbox: Sandbox, page: Any, tmp_path: Path) -> None:
    from tests.voice_audio import decoded, make_audio

    memo = tmp_path / "memo.mp3"
    memo.write_bytes(make_audio("mp3", 3.2, channels=2))
    await page.locator("#voice-input").set_input_files(str(memo))
    player = voice_players(page, "Admin")
    await player.wait_for()

    sent = [m for m in sandbox.discord.messages.values() if m.author_id == sandbox.discord.users["admin"].id]
    assert len(sent) == 1 and sent[0].flags & 8192 and not sent[0].content
    (att,) = sent[0].attachments
    assert decoded(att.data)[:4] == ("ogg", "opus", 48_000, 1)  # converted by the page's server
    assert await player.locator(".audio-time").inner_text() == "0:03"
    values = await bar_values(player)
    assert 1 <= len(values) <= 64 and max(values) > 2 * min(values) + 10  # the swelling tone, not a flat line
    assert await player.locator("audio").get_attribute("src") == att.url  # the emulator's CDN URL
    await plays(page, player)


async def test_voice_message_refusals_show_on_the_page(sandbox: Sandbox, page: Any, tmp_path: Path) -> None:
    picture = tmp_path / "photo.png"
    Image.new("RGB", (16, 16), (0, 90, 200)).save(picture)
    await page.locator("#voice-input").set_input_files(str(picture))
    await page.locator("#notices .notice.error", has_text="photo.png: it is not audio").wait_for()
    big = tmp_path / "long.wav"
    big.write_bytes(bytes(26 * 2**20))
    await page.locator("#voice-input").set_input_files(str(big))
    await page.locator("#notices .notice.error", has_text="long.wav is 26.0 MiB").wait_for()
    assert not [m for m in sandbox.discord.messages.values() if m.author_id == sandbox.discord.users["admin"].id]


async def test_bot_voice_message_shows_its_waveform_and_duration(sandbox: Sandbox, page: Any) -> None:
    """A voice message the bot posts (flags 8192, duration_secs and waveform on the attachment, as
    Discord's REST takes it) is drawn with those bars and that duration, also on a phone-sized screen."""
    import base64

    import discord

    from tests.voice_audio import make_audio

    assert sandbox.bot is not None
    clip = make_audio("opus", 4.4)
    waveform = bytes(range(256))  # a ramp: 64 bars, each the peak of 4 samples
    payload = {"flags": 8192, "attachments": [{"id": "0", "filename": "voice-message.ogg", "duration_secs": 4.4,
                                               "waveform": base64.b64encode(waveform).decode()}]}
    route = discord.http.Route("POST", "/channels/{channel_id}/messages", channel_id=sandbox.discord.channel_id)
    await sandbox.bot.http.request(route, form=[
        {"name": "payload_json", "value": json.dumps(payload)},
        {"name": "files[0]", "value": clip, "filename": "voice-message.ogg", "content_type": "audio/ogg"},
    ])
    player = voice_players(page, "Gatecord")
    await player.wait_for()
    assert await bar_values(player) == [4 * k + 3 for k in range(64)]
    heights = await player.locator("rect.bar").evaluate_all("els => els.map(e => Number(e.getAttribute('height')))")
    assert heights == sorted(heights) and heights[0] < heights[-1] == 32
    assert await player.locator(".audio-time").inner_text() == "0:04"
    await plays(page, player)

    await page.set_viewport_size({"width": 390, "height": 800})
    box = await player.bounding_box()
    wave = await player.locator(".audio-wave").bounding_box()
    assert box is not None and wave is not None
    assert box["x"] >= 0 and box["x"] + box["width"] <= 390 and wave["width"] >= 48


# -- video and music attachments ------------------------------------------------------------------

async def test_bot_video_and_mp3_attachments_play_inline(sandbox: Sandbox, page: Any) -> None:
    """A bot message with an MP4 and an MP3 (as /video and /music post them): the MP4 is an inline video
    with controls that loads only its metadata, streams from the emulator's CDN and really plays; its name
    and size show above it. The MP3 gets the audio card and player."""
    import discord

    from tests.media_samples import make_audio, make_mp4

    assert sandbox.bot is not None
    mp4 = make_mp4(320, 240, 2.0, noisy=False, faststart=True)
    mp3 = make_audio("mp3", 3.0)
    payload = {"content": "Here you go", "attachments": [{"id": "0", "filename": "clip.mp4"},
                                                         {"id": "1", "filename": "song.mp3"}]}
    route = discord.http.Route("POST", "/channels/{channel_id}/messages", channel_id=sandbox.discord.channel_id)
    await sandbox.bot.http.request(route, form=[
        {"name": "payload_json", "value": json.dumps(payload)},
        {"name": "files[0]", "value": mp4, "filename": "clip.mp4", "content_type": "video/mp4"},
        {"name": "files[1]", "value": mp3, "filename": "song.mp3", "content_type": "audio/mpeg"},
    ])
    (sent,) = [m for m in sandbox.discord.messages.values() if m.content == "Here you go"]
    video_att, audio_att = sent.attachments

    card = bot_messages(page).locator(".attachment-video")
    await card.wait_for()
    video = card.locator("video")
    assert await video.get_attribute("src") == video_att.url  # the emulator's CDN URL
    assert await video.get_attribute("preload") == "metadata"
    assert await video.evaluate("v => v.controls")
    assert await card.locator(".video-file a").inner_text() == "clip.mp4"
    assert await card.locator(".size").inner_text() == f"{len(mp4) / 1024:.1f} KB"
    handle = await video.element_handle()
    await page.wait_for_function("v => v.readyState >= 1 && v.videoWidth === 320 && v.videoHeight === 240", arg=handle)
    assert abs(await video.evaluate("v => v.duration") - 2.0) < 0.2
    await video.evaluate("v => { v.muted = true; return v.play(); }")  # muted: no user gesture needed
    await page.wait_for_function("v => !v.paused && v.currentTime > 0.3", arg=handle)
    await video.evaluate("v => v.pause()")
    assert not await card.evaluate("c => c.classList.contains('failed')")

    audio_card = bot_messages(page).locator(".attachment-audio")
    player = audio_card.locator(".audio-player")
    await player.wait_for()
    assert await audio_card.locator(".audio-file a").inner_text() == "song.mp3"
    assert await player.locator("audio").get_attribute("src") == audio_att.url
    player_handle = await player.element_handle()
    await page.wait_for_function("p => p.querySelector('.audio-time').textContent === '0:03'", arg=player_handle)
    await player.locator(".audio-play").click()
    await page.wait_for_function(
        "p => p.classList.contains('playing') && p.querySelector('audio').currentTime > 0.3", arg=player_handle)
    await player.locator(".audio-play").click()
    await page.wait_for_function("p => p.querySelector('audio').paused", arg=player_handle)


async def test_unclosed_code_fence_shows_as_text_as_in_discord(sandbox: Sandbox, page: Any) -> None:
    """Discord shows a fence without its closing fence as text (backticks included): it does not swallow
    the rest of the message. A closed fence is still a code block."""
    await open_channel(page, "general")
    unclosed = "Cut short:\n```py\nprint('partial')\n⚠️ the notice after it\n-# `m` · 12 tokens"
    closed = "Whole:\n```py\nprint('whole')\n```\n-# `m` · 7 tokens"
    cut_id = (await sandbox.discord.send_user_message(unclosed, user="alice")).id
    whole_id = (await sandbox.discord.send_user_message(closed, user="alice")).id
    cut = page.locator(f'#messages .message[data-message-id="{cut_id}"]')
    whole = page.locator(f'#messages .message[data-message-id="{whole_id}"]')
    await whole.wait_for()
    assert await cut.locator("pre").count() == 0, "an unclosed fence is not a code block"
    cut_text = await cut.locator(".content").inner_text()
    assert "```py" in cut_text, "its backticks show as text"
    assert await cut.locator(".content .subtext").inner_text() == "m · 12 tokens", "the footer is not swallowed"
    assert await whole.locator("pre code").inner_text() == "print('whole')"
    assert "```" not in await whole.locator(".content").inner_text()
    assert await whole.locator(".content .subtext").inner_text() == "m · 7 tokens"


# -- first impressions (issue 22): streaming pace, autocomplete, mentions, persistence, phones ---------

BOT_CONTENT = '#messages .message[data-author="Gatecord"] .content'


async def next_text(pg: Any, previous: str, final_words: str) -> str:
    """Wait until the bot's answer shows text other than ``previous`` that is not yet the whole answer."""
    handle = await pg.wait_for_function(
        """([sel, prev, end]) => {
             const e = document.querySelector(sel);
             const t = e ? e.textContent : "";
             return t && t !== prev && !t.includes(end) ? t : false;
           }""",
        arg=[BOT_CONTENT, previous, final_words], polling="raf",
    )
    return str(await handle.json_value())


async def test_an_answer_streams_in_through_visible_states(sandbox: Sandbox, page: Any) -> None:
    """At the sandbox's pace the answer arrives token by token; a gate in place of the pace's sleep lets
    the tokens through step by step, so each state is on the page before the next tokens exist."""
    from sandbox.gateways.answers import demo_reply

    gateway = sandbox.gateway
    assert gateway is not None
    gate = asyncio.Semaphore(0)

    async def step(_seconds: float) -> None:
        await gate.acquire()

    gateway.stream_tps, gateway.sleep = 40, step
    answer = demo_reply("stream it", 40)
    final_words = answer[-40:]
    await run_command(page, "chat", prompt="stream it")
    states = [await next_text(page, "", final_words)]  # the first token, posted at once
    for _ in range(2):
        for _ in range(12):
            gate.release()
        states.append(await next_text(page, states[-1], final_words))
    for _ in range(1000):
        gate.release()
    await page.wait_for_function(
        "([sel, end]) => document.querySelector(sel)?.textContent.includes(end)", arg=[BOT_CONTENT, final_words]
    )
    final = await page.locator(BOT_CONTENT).first.inner_text()
    assert len(set(states)) == 3 and final not in states
    assert all(s.split("\n")[0].strip() and answer.startswith(s.split("\n")[0].strip()[:8]) for s in states)
    assert " ".join(answer.split()) in " ".join(final.split())


async def open_model_option(pg: Any) -> Any:
    """/chat with a prompt, then the optional model field, with the bot's suggestions for it showing."""
    await pg.locator("#composer-input").fill("/chat")
    await pg.locator('#command-suggestions .suggestion[data-path="chat"]').click()
    await pg.locator('#command-options .option[data-option="prompt"] .opt-input').fill("hello")
    await pg.locator('#command-optional [data-add-option="model"]').click()
    await pg.locator('#command-options .option[data-option="model"] .ac-list .ac-choice').first.wait_for()
    return pg.locator('#command-options .option[data-option="model"] .opt-input')


def sent_model(sandbox: Sandbox) -> Any:
    commands = [r for r in sandbox.discord.interactions.values() if r.type == 2 and r.name == "chat"]
    options = {o["name"]: o.get("value") for o in commands[-1].payload["data"].get("options", [])}
    return options.get("model")


async def test_enter_sends_exactly_the_typed_model_name(sandbox: Sandbox, page: Any) -> None:
    """Typed or pasted, then Enter at once: the bot gets that name, never a suggestion made for other text."""
    for enter_text in ("type", "paste"):
        model = await open_model_option(page)
        before = len(sandbox.discord.interactions)
        if enter_text == "type":
            await model.press_sequentially("does-not-exist")
        else:
            await page.keyboard.insert_text("does-not-exist")
        await model.press("Enter")
        await page.wait_for_selector("#command-form", state="hidden")
        await sandbox.discord.wait_for(lambda: len(sandbox.discord.interactions) > before, timeout=10)
        assert sent_model(sandbox) == "does-not-exist", enter_text

    # A suggestion the member picks (arrow key, then Enter) is used.
    gateway = sandbox.gateway
    assert gateway is not None
    model = await open_model_option(page)
    await model.press("ArrowDown")
    picked = await page.locator('#command-options .ac-list .ac-choice.selected').get_attribute("data-value")
    await model.press("Enter")
    assert await model.input_value() == picked
    await model.press("Enter")
    await page.wait_for_selector("#command-form", state="hidden")
    await sandbox.discord.wait_for(lambda: sent_model(sandbox) == picked, timeout=10)


async def test_mentions_show_as_names_in_the_reply_header_and_the_message(sandbox: Sandbox, page: Any) -> None:
    emu = sandbox.discord
    question = f"@Gatecord what is 2+2? ask <@&{emu.moderator_role_id}> in <#{emu.channel2_id}>"
    await page.locator("#composer-input").fill(question)
    await page.locator("#composer-input").press("Enter")
    shown = "@Gatecord what is 2+2? ask @Moderator in #random"
    mine = page.locator("#messages .message[data-author='Admin']").first
    await mine.wait_for()
    assert (await mine.locator(".content").inner_text()).strip() == shown
    header = page.locator("#messages .message-wrap", has=page.locator(".message[data-author='Gatecord']")).locator(".context")
    await header.first.wait_for()
    text = await header.first.inner_text()
    assert shown in text and "<" not in text, text


async def test_the_page_says_what_is_kept_across_runs(sandbox: Sandbox, page: Any, tmp_path: Path) -> None:
    note = page.locator("#persistence")
    await note.wait_for()
    text = await note.inner_text()
    assert str(tmp_path / "sandbox.db") in text and "relay keys" in text and "Messages are not kept" in text


def inside(box: Any, width: int) -> bool:
    return box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width + 0.5 and box["width"] > 0


@pytest.mark.parametrize("width", [390, 600])
async def test_the_page_works_on_a_phone(sandbox: Sandbox, page: Any, width: int) -> None:
    await page.set_viewport_size({"width": width, "height": 800})
    assert await page.evaluate("document.documentElement.scrollWidth") <= width
    # The composer has the width; a command's options fit, and the command runs.
    composer = await page.locator("#composer-input").bounding_box()
    assert inside(composer, width) and composer["width"] >= width * 0.45
    await page.locator("#composer-input").fill("/")
    assert inside(await page.locator("#command-suggestions").bounding_box(), width)
    await page.locator('#command-suggestions .suggestion[data-path="chat"]').click()
    await page.locator('#command-optional [data-add-option="model"]').click()
    for name in ("prompt", "model"):
        field = await page.locator(f'#command-options .option[data-option="{name}"] .opt-input').bounding_box()
        assert inside(field, width) and field["width"] >= 120, name
    assert inside(await page.locator("#command-options .ac-list").bounding_box(), width)
    await page.locator('#command-options .option[data-option="prompt"] .opt-input').fill("from a phone")
    await page.locator('#command-options .option[data-option="prompt"] .opt-input').press("Enter")
    await bot_messages(page).first.wait_for()
    assert await page.evaluate("document.documentElement.scrollWidth") <= width
    # Channels are a drawer: open it, pick #random, and it closes.
    await page.locator("#sidebar-toggle").click()
    assert inside(await page.locator("#channels").bounding_box(), width)
    await open_channel(page, "random")
    await page.wait_for_function("() => !document.body.classList.contains('drawer-open')")
    # The relay panel covers the page and every control in it is reachable.
    await page.locator("#relay-toggle").click()
    for sel in ("#relay-key", "#relay-body", "#relay-send", "#relay-close"):
        box = await page.locator(sel).bounding_box()
        assert inside(box, width), sel
    await page.locator("#relay-send").click()
    await page.wait_for_selector("#relay-result[data-status]")
    await page.locator("#relay-close").click()
    assert inside(await page.locator("#composer-input").bounding_box(), width)


# -- user installs: the DM with Gatecord, a server Gatecord is not a member of ---------------------

async def be(pg: Any, persona: str) -> None:
    await pg.locator("#user-switch").select_option(persona)
    await pg.wait_for_function("p => localStorage.getItem('gatecord.persona') === p", arg=persona)


async def test_the_dm_with_gatecord_is_a_conversation_without_a_server(sandbox: Sandbox, page: Any) -> None:
    emu = sandbox.discord
    await be(page, "alice")
    await page.locator("#guilds .guild-icon.dm").click()
    await page.wait_for_function("() => document.querySelector('#channel-name').textContent === 'Gatecord'")
    assert await page.locator("#channel-header .hash").inner_text() == "@"
    assert await page.locator("#channels .channel .name").all_inner_texts() == ["Gatecord"]  # only alice's own DM

    box = page.locator("#composer-input")
    await box.fill("hello from my DM")
    await box.press("Enter")
    await page.locator("#messages .message", has_text="hello from my DM").first.wait_for()
    sent = next(m for m in emu.messages.values() if m.content == "hello from my DM")
    dm = emu.dm_channel_id("alice")
    assert sent.channel_id == dm and sent.guild_id is None
    # the bot got it as Discord sends a DM: MESSAGE_CREATE without guild_id
    await emu.wait_for(lambda: any(
        p["t"] == "MESSAGE_CREATE" and p["d"]["id"] == str(sent.id) and "guild_id" not in p["d"]
        for s in emu.gateway.sessions.values() for p in s.buffer
    ))
    # and answers it there (a DM with the bot is a conversation: no mention needed), shown on the page
    answer = await emu.wait_for(lambda: next((m for m in emu.messages.values() if m.channel_id == dm
                                              and m.author_id == emu.bot_user_id and not m.loading), None))
    await page.locator(f'#messages .message[data-message-id="{answer.id}"]').wait_for()

    await be(page, "bob")  # another member sees their own DM, not alice's
    await page.wait_for_function("() => !document.querySelector('#messages').textContent.includes('hello from my DM')")
    assert await page.locator("#channels .channel .name").all_inner_texts() == ["Gatecord"]


async def test_a_server_without_gatecord_where_the_member_installed_it(sandbox: Sandbox, page: Any) -> None:
    emu, gateway = sandbox.discord, sandbox.gateway
    assert gateway is not None
    friends = next(g for g in emu.world.guilds.values() if g.name == "Friends' server")
    assert emu.bot_user_id not in friends.members and emu.is_installed_for("alice")
    # /chat as the bot registers it for user installs (allowed_installs users=True, every context)
    chat, _ = emu.commands.find("chat", 1, None)
    chat.update(integration_types=[0, 1], contexts=[0, 1, 2])
    emu.signal.changed()

    await be(page, "alice")
    await page.locator("#guilds .guild-icon[title=\"Friends' server\"]").click()
    await page.wait_for_function("() => document.querySelector('#guild-name').textContent === \"Friends' server\"")
    note = page.locator("#guild-note")
    await note.wait_for()
    assert "not a member of this server" in await note.inner_text()
    await page.locator("#composer-input").fill("/")
    suggestions = page.locator("#command-suggestions .suggestion")
    offered = set(await suggestions.evaluate_all("els => els.map(e => e.dataset.path)"))
    assert offered and {p.split()[0] for p in offered} <= {
        c["name"] for c in emu.global_commands() if 1 in (c.get("integration_types") or [0])
    }
    await page.locator("#composer-input").fill("")

    gateway.queue_reply("Hello from a server I am not in.")
    await run_command(page, "chat", prompt="hello friends")
    await bot_messages(page).filter(has_text="Hello from a server I am not in.").wait_for()
    rec = next(r for r in emu.interactions.values() if r.name == "chat")
    assert rec.authorizing_integration_owners == {"1": str(emu.users["alice"].id)}
    assert not emu.forbidden_calls, [(r.method, r.path) for r in emu.forbidden_calls]


async def test_a_forum_lists_its_posts_and_a_new_post_opens_as_a_thread(sandbox: Sandbox, page: Any) -> None:
    await open_channel(page, "help")
    assert await page.locator("#channel-header .hash").inner_text() == "💬"
    await page.wait_for_selector("#messages .empty-channel >> text=No posts yet")
    box = page.locator("#composer-input")
    await box.fill("Printer on fire\nIt smokes when I print.")
    await box.press("Enter")
    card = page.locator("#messages .forum-post", has_text="Printer on fire")
    await card.wait_for()
    assert "It smokes when I print." in await card.inner_text()
    post = next(c for c in sandbox.discord.world.channels.values() if c.name == "Printer on fire")
    assert post.parent_id == sandbox.discord.forum_channel_id
    # the post is a thread under the forum in the channel list; opening it shows its first message
    await card.click()
    await page.wait_for_function("n => document.querySelector('#channel-name').textContent === n",
                                 arg="Printer on fire")
    await page.locator("#messages .message .content", has_text="It smokes when I print.").wait_for()
    assert "Printer on fire" in await page.locator("#channels .channel.thread .name").all_inner_texts()
