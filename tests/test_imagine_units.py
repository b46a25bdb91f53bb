"""Pure /imagine helpers: the FIFO queue with positions, message texts, button custom ids."""

from __future__ import annotations

import asyncio

import discord
import pytest

from bot.media.queue import FairQueue
from bot.media.render import (
    progress_bar,
    progress_fraction,
    quote_prompt,
    render_progress,
    render_result,
)
from bot.media.buttons import TEMPLATE, ImagineButton, custom_id, result_view, retry_view


async def test_queue_grants_in_order_and_reports_positions() -> None:
    q = FairQueue(1)
    a, b, c = q.enter(), q.enter(), q.enter()
    assert (a.position, b.position, c.position) == (0, 1, 2)
    assert a.granted and not b.granted
    q.leave(b)  # b gives up its place: c moves up
    assert c.position == 1
    q.leave(a)
    await asyncio.wait_for(c.wait(), 1)
    assert c.position == 0 and q.running == 1 and q.waiting == 0
    q.leave(c)
    q.leave(c)  # idempotent
    assert q.running == 0


async def test_queue_newcomer_never_overtakes_a_waiter() -> None:
    q = FairQueue(2)
    first, second = q.enter(), q.enter()
    third = q.enter()
    q.leave(first)
    assert third.granted
    fourth = q.enter()
    assert fourth.position == 1
    q.leave(second)
    q.leave(third)
    assert fourth.granted and q.running == 1


async def test_queue_slot_frees_on_cancellation() -> None:
    q = FairQueue(1)
    holder = q.enter()
    started = asyncio.Event()
    entering = asyncio.Event()

    async def waiter() -> None:
        entering.set()  # no await between this and blocking inside slot()
        async with q.slot():
            started.set()

    task = asyncio.create_task(waiter())
    await entering.wait()
    assert q.waiting == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert q.waiting == 0
    q.leave(holder)
    assert q.running == 0 and not started.is_set()


def test_progress_never_claims_done() -> None:
    assert progress_fraction(0, 10) == 0
    assert 0.6 < progress_fraction(10, 10) < 0.7
    assert progress_fraction(10_000, 1) == 0.95
    assert progress_bar(0.5, 10) == "█████░░░░░"


def test_progress_text_shows_queue_position_then_bar() -> None:
    waiting = render_progress(prompt="a *fox*", model="flux", count=4, elapsed=3.2, expected=10, queue_position=2, job_id=5)
    assert "position 2" in waiting and "3 s" in waiting and "a \\*fox\\*" in waiting and "job #5" in waiting
    running = render_progress(prompt="fox", model="flux", count=1, elapsed=75, expected=10, queue_position=0, job_id=5)
    assert "1 image ·" in running and "1 min 15 s" in running and "█" in running and "95%" in running


def test_result_text_and_long_prompt_fit_discord() -> None:
    text = render_result(prompt="x" * 5000, model="m", seeds=[1, 2], user_id=9, job_id=3, elapsed=2, notes=["note"])
    assert len(text) <= 2000 and "seeds 1, 2" in text and "<@9>" in text and "-# note" in text
    assert "seed 7 " in render_result(prompt="p", model="m", seeds=[7, 7], user_id=9, job_id=3, elapsed=2)
    assert quote_prompt("a\n\nb   c") == "a b c"


def test_custom_ids_round_trip_through_the_template() -> None:
    import re

    cid = custom_id("u", 123456789012345678, 2)
    assert cid == "img:u:123456789012345678:2" and len(cid) <= 100
    m = re.fullmatch(TEMPLATE, cid)
    assert m and (m["action"], m["job"], m["index"]) == ("u", "123456789012345678", "2")
    assert re.fullmatch(TEMPLATE, custom_id("reroll", 5))["index"] is None  # type: ignore[index]
    with pytest.raises(ValueError):
        custom_id("x", 1)


async def test_result_view_layout() -> None:
    view = result_view(42, 4)
    rows = view.to_components()
    assert len(rows) == 3
    labels = [[c["label"] for c in row["components"]] for row in rows]
    assert labels == [["U1", "U2", "U3", "U4"], ["V1", "V2", "V3", "V4"], ["Re-roll", "Delete"]]
    ids = [c["custom_id"] for row in rows for c in row["components"]]
    assert ids[1] == "img:u:42:2" and ids[6] == "img:v:42:3" and ids[-1] == "img:delete:42"
    assert all(isinstance(i, ImagineButton) for i in view.children)
    retry = retry_view(42).to_components()
    assert [c["custom_id"] for c in retry[0]["components"]] == ["img:retry:42", "img:delete:42"]
    assert result_view(1, 1).to_components()[0]["components"][0]["style"] == discord.ButtonStyle.secondary.value


# -- options → validated request (pure: the gateway client's validator, no I/O) ---------------------

def _client(profile: str) -> object:
    from gateway_client import GatewayConfig
    from gateway_client.client import GatewayClient

    return GatewayClient(GatewayConfig(profile=profile, base_url="http://127.0.0.1:9", api_key="k"))


def _build(profile: str, **opts: object):  # type: ignore[no-untyped-def]
    from bot.media.options import ImagineOptions, build_request

    return build_request(_client(profile), ImagineOptions(prompt="a fox", **opts),  # type: ignore[arg-type]
                         default_model=None, default_count=4, default_steps=4)


def test_flux_defaults_fill_seed_steps_and_size() -> None:
    req = _build("digicord")
    assert (req.n, req.steps, req.width, req.height) == (4, 4, 1024, 1024)
    assert req.model == "black-forest-labs/FLUX.1-schnell-Free"
    assert req.seed is not None and 0 <= req.seed < 2**32
    assert _build("digicord", seed=7, count=2, width=512, height=256).seed == 7


def test_openai_profile_drops_defaults_it_does_not_take() -> None:
    req = _build("aicredits")
    assert (req.n, req.steps, req.seed, req.model) == (1, None, None, "dall-e-3")


def test_option_errors_name_the_option_and_allowed_values() -> None:
    from bot.media.options import OptionError

    with pytest.raises(OptionError) as err:
        _build("digicord", width=1000)
    assert err.value.option == "width" and "multiples of 16" in err.value.user_message()
    with pytest.raises(OptionError) as err:
        _build("aicredits", count=3)
    assert err.value.option == "count" and err.value.user_message().endswith("Allowed: 1.")
    with pytest.raises(OptionError) as err:
        _build("aicredits", negative_prompt="blur")
    assert "not supported" in err.value.user_message()
