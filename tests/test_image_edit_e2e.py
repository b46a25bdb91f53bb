"""Image edits end to end: "Edit image" (message command → modal) and /imagine edit, the real bot against
the Discord emulator and the OpenAI-surface gateway emulator (which recolours the picture it receives by
the instruction, only where the mask is transparent). Assertions are on what members see — the grid, its
buttons, private refusals — on what the gateway received, and on what was charged."""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image

from sandbox.gateways.images import colour_for, seed_for
from sandbox.gateways.media_render import EDIT_STRENGTH
from tests.e2e import wait_shown
from tests.test_imagine_e2e import buttons, close_to, decode, has_result, posted_file

EPHEMERAL = 64
GREEN = (0, 160, 0)


def png(width: int, height: int, rgb: tuple[int, int, int] = GREEN) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), rgb).save(out, format="PNG")
    return out.getvalue()


def left_half_mask(width: int, height: int) -> bytes:
    """Transparent on the left half (edit there), opaque on the right (keep)."""
    img = Image.new("RGBA", (width, height), (0, 0, 0, 255))
    img.paste((0, 0, 0, 0), (0, 0, width // 2, height))
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def edited(rgb: tuple[int, ...], prompt: str, index: int) -> tuple[int, ...]:
    """The emulator's edit of a pixel: the instruction's colour for result ``index`` blended in."""
    tint = colour_for(prompt, seed_for(prompt) + index - 1)
    return tuple(round(a * (1 - EDIT_STRENGTH) + b * EDIT_STRENGTH) for a, b in zip(rgb, tint, strict=True))


def edit_calls(gateway: Any) -> list[Any]:
    return [r for r in gateway.requests if r.path.endswith("/images/edits") and r.method == "POST"]


def command_names(emu: Any) -> set[tuple[str, int]]:
    return {(c["name"], c.get("type", 1)) for c in emu.global_commands()}


def imagine_subcommands(emu: Any) -> set[str]:
    (imagine,) = [c for c in emu.global_commands() if c["name"] == "imagine" and c.get("type", 1) == 1]
    return {o["name"] for o in imagine.get("options") or [] if o.get("type") == 1}


async def images_used(env: Any, user: str = "alice") -> tuple[float, float]:
    emu = env.discord
    return await env.bot.quotas.counter("member", emu.guild_id, emu.users[user].id, "images")


async def edit_image(env: Any, picture: bytes, instruction: str, *, count: str = "", user: str = "alice") -> Any:
    """Post a message with ``picture``, run "Edit image" on it and submit the modal; the submission."""
    emu = env.discord
    posted = await emu.send_user_message("my picture", user="bob", attachments=[("photo.png", picture, "image/png")])
    menu = await emu.inject_context_menu("Edit image", posted.id, user=user)
    await menu.wait_acked()
    assert menu.response_type == 9 and menu.modal is not None, "the menu opens a modal"
    values = {"edit:instruction": instruction}
    if count:
        values["edit:count"] = count
    return await emu.submit_modal(menu.modal["custom_id"], values, user=user)


# -- registration ---------------------------------------------------------------------------------------


@pytest.mark.gateway_profile("digicord")
async def test_without_image_edits_only_imagine_create_is_registered(bot_env: Any) -> None:
    emu = bot_env.discord
    assert ("imagine", 1) in command_names(emu)
    assert imagine_subcommands(emu) == {"create"}
    assert ("Edit image", 3) not in command_names(emu)
    with pytest.raises(KeyError):
        await emu.inject_slash_command("imagine edit", {"prompt": "x"})


@pytest.mark.gateway_profile("openai")
async def test_with_image_edits_both_are_registered(bot_env: Any) -> None:
    emu = bot_env.discord
    assert imagine_subcommands(emu) == {"create", "edit"}
    assert ("Edit image", 3) in command_names(emu)


# -- Edit image -----------------------------------------------------------------------------------------


@pytest.mark.gateway_profile("openai")
async def test_edit_image_menu_edits_the_picture_into_a_grid_with_buttons(bot_env: Any) -> None:
    env, emu = bot_env, bot_env.discord
    sub = await edit_image(env, png(256, 256), "make it purple", count="2")
    msg = await sub.wait_final(has_result, timeout=30)
    assert msg is not None and not msg.flags & EPHEMERAL
    assert "make it purple" in msg.content
    assert list(buttons(msg)) == ["U1", "U2", "V1", "V2", "Re-roll", "Delete"]

    # the gateway received one multipart edit carrying the picture as a PNG, the instruction and n
    (call,) = edit_calls(env.gateway)
    assert call.form is not None
    assert call.form["prompt"] == "make it purple" and call.form["n"] == "2"
    assert call.form["image"]["content_type"] == "image/png" and "mask" not in call.form

    # charged as images, per result
    assert await images_used(env) == (2, 0)

    # U2: result 2 alone — the green picture that was sent, edited with result 2's colour; no new
    # gateway call, nothing charged
    labels = buttons(msg)
    u2 = await emu.press_button(msg.id, labels["U2"])
    await u2.wait_final(posted_file, timeout=15)
    single = posted_file(u2)
    assert "Image 2 of 2" in single.content
    image2 = decode(single.attachments[0].data)
    assert image2.size == (256, 256)
    assert close_to(image2.getpixel((128, 128)), edited(GREEN, "make it purple", 2)), image2.getpixel((128, 128))
    assert len(edit_calls(env.gateway)) == 1 and await images_used(env) == (2, 0)

    # V1: the same instruction on result 1 — the gateway edits result 1 (not the first picture), charged again
    v1 = await emu.press_button(msg.id, labels["V1"])
    again = await v1.wait_final(has_result, timeout=30)
    assert again is not None and again.id != msg.id and "make it purple" in again.content
    first, second = edit_calls(env.gateway)
    assert second.form["prompt"] == "make it purple" and second.form["n"] == "2"
    assert second.form["image"]["content_type"] == "image/png"
    assert await images_used(env) == (4, 0)
    u1 = await emu.press_button(again.id, buttons(again)["U1"])
    await u1.wait_final(posted_file, timeout=15)
    twice = decode(posted_file(u1).attachments[0].data).getpixel((128, 128))
    assert close_to(twice, edited(edited(GREEN, "make it purple", 1), "make it purple", 1)), twice


@pytest.mark.gateway_profile("openai")
async def test_edit_image_on_a_message_without_a_picture_is_refused_privately(bot_env: Any) -> None:
    env, emu = bot_env, bot_env.discord
    posted = await emu.send_user_message("just words")
    rec = await emu.inject_context_menu("Edit image", posted.id)
    msg = await wait_shown(rec)
    assert "no image attached" in msg.content and msg.flags & EPHEMERAL
    assert rec.modal is None, "no modal is opened for a message without a picture"
    assert edit_calls(env.gateway) == []
    assert await images_used(env) == (0, 0)


@pytest.mark.gateway_profile("openai")
async def test_edit_image_with_a_bad_count_is_refused_privately(bot_env: Any) -> None:
    env = bot_env
    sub = await edit_image(env, png(64, 64), "add a hat", count="9")
    msg = await wait_shown(sub)
    assert "**count**" in msg.content and "1, 2, 3, 4" in msg.content and msg.flags & EPHEMERAL
    assert edit_calls(env.gateway) == []


# -- /imagine edit ---------------------------------------------------------------------------------------


@pytest.mark.gateway_profile("openai")
async def test_imagine_edit_with_a_mask_changes_only_the_transparent_part(bot_env: Any) -> None:
    env, emu = bot_env, bot_env.discord
    rec = await emu.inject_slash_command(
        "imagine edit", {"prompt": "paint it blue", "count": 1},
        attachments={"image": ("photo.png", png(200, 100), "image/png"),
                     "mask": ("mask.png", left_half_mask(200, 100), "image/png")})
    msg = await rec.wait_final(has_result, timeout=30)
    (call,) = edit_calls(env.gateway)
    assert call.form["image"]["content_type"] == "image/png" and call.form["mask"]["content_type"] == "image/png"
    result = decode(msg.attachments[0].data)
    assert close_to(result.getpixel((result.width - 10, result.height // 2)), GREEN), "opaque mask: kept"
    assert close_to(result.getpixel((10, result.height // 2)), edited(GREEN, "paint it blue", 1)), "transparent: edited"
    assert await images_used(env) == (1, 0)


@pytest.mark.gateway_profile("openai")
async def test_imagine_edit_with_a_mask_of_another_shape_is_refused_privately(bot_env: Any) -> None:
    env, emu = bot_env, bot_env.discord
    rec = await emu.inject_slash_command(
        "imagine edit", {"prompt": "paint it blue"},
        attachments={"image": ("photo.png", png(200, 100), "image/png"),
                     "mask": ("mask.png", left_half_mask(100, 100), "image/png")})
    msg = await wait_shown(rec)
    assert "does not have the picture's shape" in msg.content and msg.flags & EPHEMERAL
    assert edit_calls(env.gateway) == []
    assert await images_used(env) == (0, 0)
