"""The shop in the sandbox page, in a real browser against the real bot: buying from the panel, a
premium button the bot posts drawn as Discord's shop button whose click buys, ending an entitlement."""

from __future__ import annotations

from typing import Any

import discord

from sandbox.launcher import SANDBOX_CREDITS_SKU, SANDBOX_PRO_SKU, Sandbox
from tests.test_sandbox_browser import page, sandbox  # noqa: F401  (the fixtures)


def owned(sbx: Sandbox, sku_id: int) -> list[dict[str, Any]]:
    return [e for e in sbx.discord.monetization.all_active() if e["sku_id"] == str(sku_id)]


async def test_buy_from_the_shop_panel_and_from_a_premium_button_then_end(sandbox: Sandbox, page: Any) -> None:  # noqa: F811
    emu = sandbox.discord
    await page.select_option("#user-switch", "alice")
    await page.locator("#shop-toggle").click()
    skus = page.locator("#shop-skus .sku")
    assert [t.split("\n")[0] for t in await skus.all_inner_texts()] == ["Pro", "1,000 credits"]

    await page.locator(f'#shop-skus [data-shop="buy"][data-sku-id="{SANDBOX_PRO_SKU}"]').click()
    mine = page.locator("#shop-entitlements .entitlement", has_text="Pro")
    await mine.wait_for()
    assert "Gatecord Test" in await mine.inner_text() and "Alice" in await mine.inner_text()
    [pro] = owned(sandbox, SANDBOX_PRO_SKU)
    assert (pro["guild_id"], pro["user_id"]) == (str(emu.guild_id), str(emu.users["alice"].id))

    # The bot offers the credits with Discord's premium button: the page draws the SKU's shop button.
    assert sandbox.bot is not None
    channel = sandbox.bot.get_channel(emu.channel_id)
    assert isinstance(channel, discord.TextChannel)
    view = discord.ui.View()
    view.add_item(discord.ui.Button(style=discord.ButtonStyle.premium, sku_id=SANDBOX_CREDITS_SKU))
    await channel.send("Out of credits?", view=view)
    button = page.locator("#messages .component-button.premium", has_text="1,000 credits")
    await button.click()
    # The bot sells them in [premium]: it grants them to the server once and consumes them on Discord.
    [credits] = await emu.wait_for(lambda: [e for e in emu.entitlements.values()
                                            if e["sku_id"] == str(SANDBOX_CREDITS_SKU) and e.get("consumed")])
    assert credits["guild_id"] == str(emu.guild_id) and emu.consume_calls == [int(credits["id"])]

    # Ending the subscription takes it off the list (the bot got ENTITLEMENT_UPDATE with ends_at).
    await mine.locator('[data-shop="end"]').click()
    await mine.wait_for(state="detached")
    assert emu.entitlements[int(pro["id"])]["ends_at"] is not None
