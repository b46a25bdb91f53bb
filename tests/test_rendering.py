"""bot/rendering/text.py (splitting on paragraph/fence boundaries, footers) and bot/rendering/stream.py
(the stream renderer's pacing, on a fake clock)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from bot.app.discord_pacing import Deferral, DiscordPacer
from bot.rendering.stream import ANSWER_LIMIT, WRITING_MARKER, FileData, StreamRenderer
from bot.rendering.text import close_open_fence, footer_line, split_message
from gateway_client.meta import CallMeta
from gateway_client.models import Usage
from tests.fake_clock import FakeClock
from tests.waiting import Changes

FENCE_LINE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")


def fences_balanced(piece: str) -> bool:
    open_marker = None
    for line in piece.split("\n"):
        m = FENCE_LINE.match(line)
        if not m:
            continue
        if open_marker is None:
            open_marker = m.group(1)
        elif m.group(1)[0] == open_marker[0] and not m.group(2).strip():
            open_marker = None
    return open_marker is None


def rejoin(pieces: Sequence[str]) -> str:
    """Undo the splitter: drop the closing/re-opening fence pairs and join on the cut."""
    out = pieces[0]
    for nxt in pieces[1:]:
        m = re.search(r"\n(`{3,}|~{3,})$", out)
        if m and not fences_balanced(out[: m.start()]):
            opening = nxt.split("\n", 1)[0]
            assert FENCE_LINE.match(opening), f"continuation does not reopen the fence: {opening!r}"
            out = out[: m.start()] + "\n" + nxt.split("\n", 1)[1]
        else:
            out = out + "\n\n" + nxt
    return out


def norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def test_short_text_is_one_piece_and_empty_is_none() -> None:
    assert split_message("hello") == ["hello"]
    assert split_message("") == []
    assert split_message("\n \n") == []


def test_prose_splits_on_paragraphs_within_limit() -> None:
    paragraphs = [f"Paragraph {i}. " + "word " * 60 for i in range(40)]
    text = "\n\n".join(p.strip() for p in paragraphs)
    pieces = split_message(text, 2000)
    assert len(pieces) > 1
    assert all(len(p) <= 2000 for p in pieces)
    # every cut is on a paragraph boundary: each piece starts with "Paragraph"
    assert all(p.startswith("Paragraph ") for p in pieces)
    assert norm(" ".join(pieces)) == norm(text)


def test_code_block_across_split_is_closed_and_reopened_with_language() -> None:
    code = "\n".join(f"    result_{i} = compute({i}) + offset  # step {i}" for i in range(120))
    text = "Here is the script:\n\n```python\n" + code + "\n```\n\nThat is all."
    pieces = split_message(text, 2000)
    assert len(pieces) >= 3
    for p in pieces:
        assert len(p) <= 2000
        assert fences_balanced(p), p[-200:]
    assert pieces[1].startswith("```python\n")
    assert pieces[0].endswith("\n```")
    assert rejoin(pieces) == text
    # no code line is cut in the middle
    code_lines = set(code.split("\n"))
    for p in pieces:
        for line in p.split("\n"):
            if line.startswith("    result_"):
                assert line in code_lines


def test_nine_thousand_characters_with_code_block() -> None:
    prose = "\n\n".join("Some explanation sentence number %d, with details." % i * 3 for i in range(40))
    code = "\n".join(f"console.log('line {i}', value{i});" for i in range(80))
    text = prose[:4000] + "\n\n```js\n" + code + "\n```\n\n" + prose[:2500]
    assert len(text) > 8000
    pieces = split_message(text, ANSWER_LIMIT)
    assert all(len(p) <= ANSWER_LIMIT for p in pieces)
    assert all(fences_balanced(p) for p in pieces)
    assert rejoin(pieces).replace("\n\n", "\n") == text.replace("\n\n", "\n")


def test_tilde_fence_and_long_fence_marker() -> None:
    body = "\n".join("x" * 70 for _ in range(60))
    text = "~~~~text\n" + body + "\n~~~~"
    pieces = split_message(text, 1000)
    assert all(len(p) <= 1000 and fences_balanced(p) for p in pieces)
    assert all(p.startswith("~~~~text\n") for p in pieces)
    assert rejoin(pieces) == text


def test_single_long_word_is_hard_cut() -> None:
    text = "a" * 4500
    pieces = split_message(text, 2000)
    assert [len(p) for p in pieces] == [2000 - 12, 2000 - 12, 4500 - 2 * (2000 - 12)]
    assert "".join(pieces) == text


def test_long_line_splits_on_spaces() -> None:
    text = " ".join(f"w{i}" for i in range(1500))
    pieces = split_message(text, 500)
    assert all(len(p) <= 500 for p in pieces)
    assert " ".join(pieces).split() == text.split()


def test_inline_triple_backticks_are_not_a_fence() -> None:
    text = ("Use ```inline``` here.\n\n" + "b " * 600).strip()
    pieces = split_message(text, 500)
    assert not any(p.endswith("```") and not p.endswith("inline```") for p in pieces[:-1])


def test_close_open_fence() -> None:
    assert close_open_fence("```py\nx = 1") == "```py\nx = 1\n```"
    assert close_open_fence("```py\nx = 1\n```") == "```py\nx = 1\n```"
    assert close_open_fence("plain") == "plain"


def test_footer_shows_model_fallback_tokens_and_credits() -> None:
    meta = CallMeta(profile="openai", model_used="small-model", fallback_from="big-model", fallback_depth=1,
                    credits_used=0.0021, cost_unit="credits")
    line = footer_line(meta, Usage(prompt_tokens=1000, completion_tokens=234, total_tokens=1234))
    assert line.startswith("-# ")
    assert "`small-model`" in line and "fallback from `big-model`" in line
    assert "1.2k tokens" in line and "0.0021 credits" in line
    gw = CallMeta(profile="digicord", gateway="digicord", model_used="m", gateway_fallback_from="aicordcloud")
    assert "fallback gateway `digicord`" in footer_line(gw, None)
    assert footer_line(None, None) == ""
    # model names never break out of the code span or ping anyone
    assert "@\u200beveryone" in footer_line(CallMeta(profile="x", model_used="@everyone`"), None)


# --------------------------------------------------------------------------------------------------
# StreamRenderer against a recording target, on a fake clock
# --------------------------------------------------------------------------------------------------
#
# The renderer's clock only moves when a test advances it, and every request the renderer makes and
# every sleep it starts pokes one change signal, so each step below waits for exactly what it needs.
# Times in the log are fake-clock seconds.

EPS = 1e-9


class RecordingTarget:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.messages: dict[int, str] = {}
        self.files: dict[int, list[FileData]] = {}
        self.log: list[tuple[float, str, int, str]] = []

    async def put(self, index: int, content: str, *, files: Sequence[FileData] = ()) -> None:
        assert len(content) <= 2000
        assert index <= len(self.messages), "messages are created in order"
        kind = "edit" if index in self.messages else "create"
        self.log.append((self.clock.now(), kind, index, content))
        self.messages[index] = content
        if files:
            self.files[index] = list(files)
        self.clock.changes.changed()

    async def remove(self, index: int) -> None:
        self.log.append((self.clock.now(), "delete", index, ""))
        del self.messages[index]
        self.clock.changes.changed()


def setup(**options: Any) -> tuple[FakeClock, RecordingTarget, StreamRenderer]:
    clock = FakeClock()
    target = RecordingTarget(clock)
    return clock, target, StreamRenderer(target, clock=clock, **options)


def intermediate_times(log: list[tuple[float, str, int, str]], index: int) -> list[float]:
    return [t for t, kind, i, content in log if i == index and WRITING_MARKER in content]


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in zip(times, times[1:])]


async def settled(clock: FakeClock, target: RecordingTarget, requests_before: int) -> None:
    """Until the renderer has reacted to new text: it sent a request, or it sleeps on the clock."""
    await clock.changes.wait_until(lambda: clock.deadlines or len(target.log) > requests_before,
                                   what="a request or a paced wait")


async def finish_without_the_clock(r: StreamRenderer, **final: Any) -> None:
    """``finish``, which must not wait on the (frozen) clock: the final edit goes out at once."""
    try:
        await asyncio.wait_for(r.finish(**final), 5)
    except TimeoutError:
        raise AssertionError("the final edit waited for the clock") from None


async def test_first_text_is_shown_at_once_and_final_edit_removes_marker() -> None:
    clock, target, r = setup(edit_interval=0.3)
    r.feed("Hello")
    await settled(clock, target, 0)
    assert target.log == [(0.0, "create", 0, "Hello\n" + WRITING_MARKER)]
    clock.advance(0.05)
    r.feed(" there")
    await settled(clock, target, 1)
    assert len(target.log) == 1, "an edit less than edit_interval after the first message"
    assert clock.deadlines == [pytest.approx(0.3)], "the next edit waits for edit_interval after the last one"
    for word in [", how", " are", " you?"]:
        clock.advance(0.05)
        r.feed(word)
    assert clock.now() == pytest.approx(0.2) and len(target.log) == 1
    await finish_without_the_clock(r, footer="-# `m` · 12 tokens")
    assert target.log[1:] == [(pytest.approx(0.2), "edit", 0, "Hello there, how are you?\n-# `m` · 12 tokens")]
    assert target.messages == {0: "Hello there, how are you?\n-# `m` · 12 tokens"}
    assert clock.deadlines == [], "the paced wait was dropped when the answer completed"


async def test_intermediate_edits_are_paced_per_message() -> None:
    interval, step = 0.2, 0.01
    clock, target, r = setup(edit_interval=interval)
    for i in range(60):
        before = len(target.log)
        r.feed(f"token{i} ")
        await settled(clock, target, before)
        before = len(target.log)
        if clock.advance_to(round((i + 1) * step, 6)):
            await clock.changes.wait_until(lambda: len(target.log) > before, what="the paced edit")
    await finish_without_the_clock(r)
    times = intermediate_times(target.log, 0)
    assert len(times) >= 3
    assert min(gaps(times)) >= interval - EPS, "edits of one message no more often than edit_interval"
    assert max(gaps(times[1:])) <= interval + step + EPS, "a paced edit goes out as soon as it may"
    assert target.messages[0] == " ".join(f"token{i}" for i in range(60))
    assert WRITING_MARKER not in target.messages[0]
    assert target.log[-1][0] == pytest.approx(clock.now()), "the final edit right after the last text"


async def test_long_stream_continues_in_more_messages_with_code_reopened() -> None:
    code = "\n".join(f"int value_{i} = {i} * factor;" for i in range(150))
    answer = "Intro paragraph.\n\n```c\n" + code + "\n```\n\nDone."
    interval = 0.05
    clock, target, r = setup(edit_interval=interval)
    for i in range(0, len(answer), 97):
        before = len(target.log)
        r.feed(answer[i : i + 97])
        await settled(clock, target, before)
        before = len(target.log)
        if clock.advance(0.01):
            await clock.changes.wait_until(lambda: len(target.log) > before, what="the paced edit")
    await finish_without_the_clock(r, footer="-# footer")
    pieces = [target.messages[i] for i in sorted(target.messages)]
    assert len(pieces) >= 3
    assert pieces[-1].endswith("\n-# footer")
    pieces[-1] = pieces[-1][: -len("\n-# footer")]
    assert all(WRITING_MARKER not in p for p in pieces)
    assert all(fences_balanced(p) for p in pieces)
    assert rejoin(pieces) == answer
    for index in sorted(target.messages):
        times = intermediate_times(target.log, index)
        assert all(g >= interval - EPS for g in gaps(times)), f"message {index} edited faster than the interval"
    # finished parts were never rewritten after their final content
    for index in sorted(target.messages)[:-1]:
        contents = [c for _, _, i, c in target.log if i == index]
        assert contents[-1] == target.messages[index]


async def test_answer_over_threshold_becomes_a_file() -> None:
    answer = "\n\n".join(f"Paragraph {i}: " + "text " * 50 for i in range(30))
    clock, target, r = setup(edit_interval=0.01, file_over=5000, file_name="answer.txt")
    for i in range(0, len(answer), 500):
        r.feed(answer[i : i + 500])
        await asyncio.sleep(0)  # yield once, as a stream reader does between chunks
        clock.advance(0.015)
    await finish_without_the_clock(r, footer="-# f")
    assert list(target.messages) == [0]
    assert "attached as `answer.txt`" in target.messages[0]
    assert target.files[0][0].filename == "answer.txt"
    assert target.files[0][0].data.decode() == answer
    assert any(kind == "delete" for _, kind, _, _ in target.log) or len(answer) < 2 * ANSWER_LIMIT


async def test_incomplete_notice_keeps_partial_text() -> None:
    clock, target, r = setup()
    r.feed("Partial answer so")
    await settled(clock, target, 0)
    await finish_without_the_clock(r, notice="⚠️ **Incomplete answer.** The stream was cut.", footer="-# `m`")
    assert target.messages[0] == "Partial answer so\n⚠️ **Incomplete answer.** The stream was cut.\n-# `m`"


async def test_nothing_streamed_shows_notice_only() -> None:
    clock, target, r = setup()
    await finish_without_the_clock(r, notice="The gateway is down.")
    assert target.messages == {0: "The gateway is down."}


# --------------------------------------------------------------------------------------------------
# A header line above the answer (the quoted transcript of a voice message)
# --------------------------------------------------------------------------------------------------

HEARD = "🎙️ *what was heard*"


async def test_header_shows_with_the_first_text_and_stays_on_the_first_message() -> None:
    clock, target, r = setup(edit_interval=0.3, header=HEARD)
    r.feed("Hello")
    await settled(clock, target, 0)
    assert target.log == [(0.0, "create", 0, f"{HEARD}\nHello\n{WRITING_MARKER}")]
    r.feed(" there")
    await finish_without_the_clock(r, footer="-# f")
    assert target.messages == {0: f"{HEARD}\nHello there\n-# f"}
    assert r.text == "Hello there", "the header is not part of the answer's text"


async def test_header_counts_toward_each_message_limit() -> None:
    header = "🎙️ *" + "w" * 200 + "…*"
    answer = "\n\n".join(f"Paragraph {i}: " + "word " * 60 for i in range(25))
    clock, target, r = setup(edit_interval=0.0, header=header)
    for i in range(0, len(answer), 300):
        before = len(target.log)
        r.feed(answer[i : i + 300])
        await settled(clock, target, before)
    await finish_without_the_clock(r, footer="-# footer")
    pieces = [target.messages[i] for i in sorted(target.messages)]  # RecordingTarget checks ≤ 2000 each
    assert len(pieces) >= 3
    assert all(header not in p for p in pieces[1:]) and pieces[0].startswith(header + "\n")
    assert all(c.startswith(header) for _, _, i, c in target.log if i == 0), "every edit of message 0 keeps it"
    pieces[0] = pieces[0][len(header) + 1 :]
    pieces[-1] = pieces[-1].removesuffix("\n-# footer")
    assert norm(" ".join(pieces)) == norm(answer)


async def test_header_stays_in_the_message_never_in_the_answer_file() -> None:
    answer = "\n\n".join(f"Paragraph {i}: " + "text " * 50 for i in range(30))
    clock, target, r = setup(edit_interval=0.01, file_over=5000, header=HEARD)
    r.feed(answer)
    await finish_without_the_clock(r, footer="-# f")
    (content,) = target.messages.values()
    assert content.startswith(HEARD + "\nParagraph 0") and "attached as `answer.txt`" in content
    assert len(content) <= 2000
    assert target.files[0][0].data.decode() == answer


async def test_header_above_a_notice_or_an_empty_answer() -> None:
    clock, target, r = setup(header=HEARD)
    await finish_without_the_clock(r, notice="⚠️ The gateway is down.")
    assert target.messages == {0: f"{HEARD}\n⚠️ The gateway is down."}
    clock, target, r = setup(header=HEARD)
    await finish_without_the_clock(r, footer="-# f")
    assert target.messages == {0: f"{HEARD}\n*(The model returned an empty answer.)*\n-# f"}


# --------------------------------------------------------------------------------------------------
# Under pressure: Discord's budget is congested (the process-wide pacer, bot/app/discord_pacing.py)
# --------------------------------------------------------------------------------------------------


class CongestionSwitch:
    """A ``Pressure`` the test turns on and off; each question pokes ``changes`` (the renderer
    decides without yielding, so a waiter woken by it sees the decision)."""

    def __init__(self, changes: Changes) -> None:
        self.changes = changes
        self.on = False

    def congested(self) -> bool:
        self.changes.changed()
        return self.on

    @contextlib.contextmanager
    def deferrable(self) -> Iterator[Deferral]:
        yield Deferral()


async def test_congested_budget_skips_intermediate_edits_never_the_final_one() -> None:
    clock = FakeClock()
    target = RecordingTarget(clock)
    pressure = CongestionSwitch(clock.changes)
    r = StreamRenderer(target, clock=clock, edit_interval=1.0, pressure=pressure)
    r.feed("Hello")
    await settled(clock, target, 0)
    pressure.on = True
    for i in range(5):  # 5 s of text, an edit would be due every second
        clock.advance(1.0)
        r.feed(f" word{i}")
        await clock.changes.wait_until(lambda: r.stats.skipped > i, what="the edit skipped")
    assert [kind for _, kind, _, _ in target.log] == ["create"], "no intermediate edit while congested"
    pressure.on = False
    clock.advance(1.0)
    r.feed(" more")
    await settled(clock, target, 1)
    assert intermediate_times(target.log, 0) == [0.0, 6.0], "edits resume once the budget has room"
    pressure.on = True
    clock.advance(0.5)
    r.feed(" end.")
    await finish_without_the_clock(r, footer="-# f")
    assert target.log[-1] == (6.5, "edit", 0, "Hello word0 word1 word2 word3 word4 more end.\n-# f"), \
        "the final edit goes out at once, congested or not"


class PacedTarget(RecordingTarget):
    """Every request waits for its token from a real ``DiscordPacer`` first, as discord.py's do."""

    def __init__(self, clock: FakeClock, pacer: DiscordPacer) -> None:
        super().__init__(clock)
        self.pacer = pacer

    async def put(self, index: int, content: str, *, files: Sequence[FileData] = ()) -> None:
        self.clock.changes.changed()  # a request is about to queue (acquire queues it without yielding)
        await self.pacer.acquire()
        await super().put(index, content, files=files)


async def test_a_queued_intermediate_edit_is_withdrawn_when_the_final_edit_comes() -> None:
    clock = FakeClock()
    pacer = DiscordPacer(rate=0.1, burst=1, congestion_wait=100.0, clock=clock)  # one request per 10 s
    target = PacedTarget(clock, pacer)
    r = StreamRenderer(target, clock=clock, edit_interval=1.0, pressure=pacer)
    r.feed("Hello")
    await settled(clock, target, 0)  # the first message took the only token
    clock.advance(1.0)
    r.feed(" there")
    await clock.changes.wait_until(lambda: pacer.waiting == 1, what="the intermediate edit queued")
    finishing = asyncio.ensure_future(r.finish(footer="-# f"))
    await clock.changes.wait_until(lambda: pacer.waiting == 1 and r.stats.withdrawn == 1,
                                   what="the final edit queued in its place")
    clock.advance(9.0)  # the next token
    await asyncio.wait_for(finishing, 5)
    assert [(t, kind, content) for t, kind, _, content in target.log] == [
        (0.0, "create", "Hello\n" + WRITING_MARKER),
        (10.0, "edit", "Hello there\n-# f"),
    ], "the final edit takes the first free turn; the superseded intermediate edit never goes out"


@pytest.mark.parametrize("n", [1, 1999, 2000, 2001, 3999, 4000, 4001, 9000])
def test_every_piece_within_limit_for_sizes(n: int) -> None:
    text = ("abc def\n" * (n // 8 + 1))[:n]
    pieces = split_message(text, 2000)
    assert all(0 < len(p) <= 2000 for p in pieces)
    assert norm(" ".join(pieces)) == norm(text)


# --------------------------------------------------------------------------------------------------
# Answers cut in the middle of code (issue 23): every message balanced, the footer outside the code,
# a split reopens with the fence and its language only, nothing shown twice.
# --------------------------------------------------------------------------------------------------

LANG_ONLY = re.compile(r"^(`{3,}|~{3,})[A-Za-z0-9_+\-.#]*$")
CUT_FOOTER = "-# `small-model` · 1.0k tokens · stopped at the token limit"


def opening_line_with_code() -> str:
    """An opening fence the model wrote code on (about 200 characters)."""
    return "```python print('starting the job now')  # " + "explained at length " * 8


def code_answer() -> str:
    """A sample answer: prose, a long code block opened by a line with code on it, prose, a second block."""
    prose = "\n\n".join(f"Paragraph {i}: " + "the reason is simple " * 6 for i in range(4))
    code = "\n".join(f"    total += compute_value({i}, factor)  # step {i}" for i in range(60))
    js = "\n".join(f"console.log('line {i}', value{i});" for i in range(30))
    return (prose + "\n\nHere is the code:\n\n" + opening_line_with_code() + "\ndef run():\n" + code
            + "\n    return total\n```\n\nAnd in JavaScript:\n\n```js\n" + js + "\n```\n\nThat is all.")


def without_bare_fences(text: str) -> str:
    """``text`` without its bare fence lines (a fence and at most a language tag) and whitespace
    runs: what the splitter adds at a cut disappears, anything it repeated or lost does not."""
    return norm("\n".join(line for line in text.split("\n") if not LANG_ONLY.match(line.strip())))


def check_layout(messages: Sequence[str], shown: str, tail: str) -> None:
    """What a member sees for the answer text ``shown`` with ``tail`` (marker or footer) under it."""
    assert all(len(m) <= 2000 for m in messages), [len(m) for m in messages]
    for m in messages:
        assert fences_balanced(m) and m.count("```") % 2 == 0, m[-300:]
    assert messages[-1].endswith("\n" + tail) or messages[-1] == tail
    body = list(messages)
    body[-1] = body[-1].removesuffix(tail).rstrip("\n")
    assert fences_balanced(body[-1]), "the tail is inside the code block"
    assert without_bare_fences("\n".join(body)) == without_bare_fences(shown), "text lost or shown twice"
    for m in messages[:-1]:  # (the last one may end where the model stopped: just after an opening fence)
        assert not has_empty_code_block(m), m


def has_empty_code_block(piece: str) -> bool:
    """A fence opened and closed on the next line: Discord shows the language tag as the code."""
    lines = piece.split("\n")
    return any(FENCE_LINE.match(a) and not fences_balanced(a) and fences_balanced(a + "\n" + lines[i + 1])
               and fences_balanced("\n".join(lines[:i])) for i, a in enumerate(lines[:-1]))


def cut_points(text: str, step: int) -> list[int]:
    return [n for n in range(1, len(text) + 1, step) if text[:n].strip()] + [len(text)]


def test_split_reopens_a_fence_with_its_language_only() -> None:
    code = "\n".join(f"    total += compute_value({i}, factor)  # step {i}" for i in range(60))
    text = "Intro.\n\n" + opening_line_with_code() + "\n" + code + "\n```"
    pieces = split_message(text, 1000)
    assert len(pieces) >= 3
    assert pieces[0].startswith("Intro.\n\n" + opening_line_with_code() + "\n")
    assert all(p.startswith("```python\n    total") for p in pieces[1:]), [p[:60] for p in pieces]
    assert sum(p.count("print('starting the job now')") for p in pieces) == 1, "the opening line is shown twice"
    assert rejoin(pieces) == text


async def test_final_message_closes_a_fence_cut_by_the_token_limit() -> None:
    clock, target, r = setup()
    r.feed("Here:\n\n```py\nfor i in range(3):\n    print(i")
    await settled(clock, target, 0)
    await finish_without_the_clock(r, footer=CUT_FOOTER)
    assert target.messages == {0: "Here:\n\n```py\nfor i in range(3):\n    print(i\n```\n" + CUT_FOOTER}


async def test_incomplete_notice_and_footer_go_outside_an_open_fence() -> None:
    clock, target, r = setup()
    await finish_without_the_clock(r, text="```\nx = 1", notice="⚠️ **Incomplete answer.** Cut.", footer="-# `m`")
    assert target.messages == {0: "```\nx = 1\n```\n⚠️ **Incomplete answer.** Cut.\n-# `m`"}


async def test_final_layout_at_every_cut_point_of_an_answer_with_code() -> None:
    answer = code_answer()
    assert len(answer) > 2 * ANSWER_LIMIT
    for n in cut_points(answer, 11):
        clock, target, r = setup()
        await finish_without_the_clock(r, text=answer[:n], footer=CUT_FOOTER)
        messages = [target.messages[i] for i in sorted(target.messages)]
        check_layout(messages, answer[:n].strip("\n"), CUT_FOOTER)


async def test_streaming_layout_at_every_cut_point_of_an_answer_with_code() -> None:
    answer = code_answer()
    for n in cut_points(answer, 11):
        check_layout(await streamed(answer[:n]), answer[:n].strip("\n"), WRITING_MARKER)


async def streamed(text: str) -> list[str]:
    """The messages shown while ``text`` is being written (all of it arrived in one delta)."""
    clock, target, r = setup()
    r.feed(text)
    await clock.changes.wait_until(lambda: any(WRITING_MARKER in c for c in target.messages.values()),
                                   what="the streaming layout shown")
    await r.aclose()
    return [target.messages[i] for i in sorted(target.messages)]


@pytest.mark.parametrize("seed", range(40))
def test_random_answers_with_code_split_cleanly(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(25):
        parts = []
        for _ in range(rng.randint(3, 12)):
            if rng.random() < 0.4:
                lines = ["x" * rng.randint(1, 80) for _ in range(rng.randint(1, 40))]
                parts.append("```py\n" + "\n".join(lines) + "\n```")
            else:
                parts.append(" ".join("w" * rng.randint(1, 9) for _ in range(rng.randint(1, 120))))
        text = "\n\n".join(parts)
        pieces = split_message(text, 500)
        assert all(len(p) <= 500 and fences_balanced(p) and p.count("```") % 2 == 0 for p in pieces)
        assert not [p for p in pieces if has_empty_code_block(p)], "a cut left an empty code block"
        assert without_bare_fences("\n".join(pieces)) == without_bare_fences(text)


def test_a_block_ends_where_discord_ends_it() -> None:
    """Discord closes a ``` block at the next ```, even with text after it on the line or in the middle
    of a line: no fence is added there (an extra one would open a block in Discord)."""
    for text in ['You said: "see\n```python\nprint(1)\n```". Done.', "```py\ns = '```'\nprint(s)"]:
        assert split_message(text) == [text]
        assert close_open_fence(text) == text
    long = "```py\n" + "\n".join(f"x_{i} = '```'" if i == 50 else f"x_{i} = {i}" for i in range(100))
    pieces = split_message(long, 500)
    assert all(p.count("```") % 2 == 0 for p in pieces), [p.count("```") for p in pieces]


async def test_max_messages_never_exceeded_and_a_longer_answer_becomes_one_file() -> None:
    """An interaction with few follow-ups left (a server the bot is not in): streaming never creates more
    than ``max_messages`` messages, and the final answer, too long for them, is one message and a file."""
    answer = "\n\n".join(f"Paragraph {i}: " + "word " * 60 for i in range(30))  # about 9,600 characters
    clock, target, r = setup(edit_interval=0.05, max_messages=4)
    for i in range(0, len(answer), 200):
        before = len(target.log)
        r.feed(answer[i:i + 200])
        if len(target.messages) < 4:  # past that, more text changes nothing shown until the final edit
            await settled(clock, target, before)
        clock.advance(0.05)
    await finish_without_the_clock(r, footer="-# `m`")
    created = [entry for entry in target.log if entry[1] == "create"]
    assert 1 < len(created) <= 4
    assert list(target.messages) == [0]
    assert "is attached as `answer.txt`" in target.messages[0] and target.messages[0].endswith("-# `m`")
    assert [f.filename for f in target.files[0]] == ["answer.txt"]
    assert target.files[0][0].data.decode() == answer


async def test_max_messages_leaves_an_answer_that_fits_as_it_is() -> None:
    clock, target, r = setup(max_messages=4)
    r.feed("short answer")
    await finish_without_the_clock(r, footer="-# `m`")
    assert target.messages == {0: "short answer\n-# `m`"} and not target.files
