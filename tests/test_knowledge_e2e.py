"""The knowledge base end to end: the real bot against the Discord emulator and an embeddings gateway
(the OpenAI surface, AICredits). What members see — /knowledge add, list, search, remove and Add to
knowledge — what the gateway was asked, what the store holds, and the embedding tokens charged."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e import wait_shown
from tests.knowledge_samples import GUIDE_MD, make_pdf

HANDBOOK = ("handbook.md", GUIDE_MD.encode(), "text/markdown")


def embedding_calls(env: Any) -> list[Any]:
    return [r for r in env.gateway.requests if r.path.endswith("/embeddings")]


async def run(env: Any, name: str, options: dict | None = None, *, user: str = "admin", **kw: Any) -> Any:
    rec = await env.discord.inject_slash_command(name, options or {}, user=user, **kw)
    msg = await wait_shown(rec, timeout=20)
    assert msg.ephemeral, f"/{name}: knowledge replies are private"
    return msg


async def add_file(env: Any, spec: tuple[str, bytes, str], *, user: str = "admin") -> Any:
    return await run(env, "knowledge add", attachments={"file": spec}, user=user)


async def search(env: Any, query: str, **kw: Any) -> Any:
    return await run(env, "knowledge search", {"query": query}, user="alice", **kw)


async def charged(env: Any) -> list[tuple[str, int, int]]:
    rows = await env.bot.store.fetchall(
        "SELECT feature, embedding_tokens, charged FROM usage_ledger WHERE feature = 'embedding' ORDER BY id")
    return [(r["feature"], r["embedding_tokens"], r["charged"]) for r in rows]


@pytest.mark.gateway_profile("openai")
async def test_add_list_search_replace_remove_in_one_guild_only(bot_env: Any) -> None:
    env, emu = bot_env, bot_env.discord
    msg = await add_file(env, HANDBOOK)
    doc = (await env.bot.knowledge.list(emu.guild_id))[0]
    assert msg.content == f"Added **Gatecord handbook** (`handbook.md`): 4 chunks, {doc.tokens:,} embedding tokens."
    (call,) = embedding_calls(env)
    assert call.json["model"] == "text-embedding-3-small" and len(call.json["input"]) == 4
    assert call.json["input"][1].startswith("Gatecord handbook › Resetting your password\n\nOpen Settings")
    # the tokens the gateway counted are charged to the admin, in the ledger and the counters
    assert await charged(env) == [("embedding", doc.tokens, 1)] and doc.tokens > 0
    admin = emu.users["admin"].id
    assert await env.bot.quotas.counter("member", emu.guild_id, admin, "embedding_tokens") == (doc.tokens, 0)

    listed = await run(env, "knowledge list")
    assert listed.content.startswith("**Knowledge base of this server** (1 document)\n")
    assert f"• **Gatecord handbook** — `handbook.md` · 4 chunks · added by <@{admin}>" in listed.content

    found = await search(env, "How do I reset my password?")
    first = found.content.split("\n")[1]
    assert first.startswith("**1. Gatecord handbook › Resetting your password** — `handbook.md`")
    assert "Open Settings, choose Account" in found.content.split("\n")[2]
    assert "Events calendar" not in found.content  # nothing about game nights (below min_score)
    alice = emu.users["alice"].id
    query_tokens = (await env.bot.quotas.counter("member", emu.guild_id, alice, "embedding_tokens"))[0]
    assert query_tokens > 0, "the member's query is charged to the member"

    # the same question in another server finds nothing: its knowledge base is its own
    other = await search(env, "How do I reset my password?", guild_id=emu.guild2_id,
                         channel_id=emu.other_guild_channel_id)
    assert other.content == "Nothing in this server's knowledge base matches “How do I reset my password?”."
    assert await env.bot.knowledge.list(emu.guild2_id) == []

    # the same file again: unchanged, nothing embedded or charged
    before = len(embedding_calls(env))
    again = await add_file(env, HANDBOOK)
    assert again.content == ("**Gatecord handbook** (`handbook.md`) is already in the knowledge base and has not "
                             "changed: nothing was embedded.")
    assert len(embedding_calls(env)) == before

    # a changed file replaces its chunks
    changed = GUIDE_MD.replace("## Moderation rules", "## Lost and found\n\nLost items wait at the front desk."
                               "\n\n## Moderation rules")
    replaced = await add_file(env, ("handbook.md", changed.encode(), "text/markdown"))
    assert replaced.content.startswith("Updated **Gatecord handbook** (`handbook.md`): 5 chunks, ")
    [doc2] = await env.bot.knowledge.list(emu.guild_id)
    assert doc2.id == doc.id and doc2.chunk_count == 5
    assert await env.bot.store.fetchval("SELECT COUNT(*) FROM knowledge_chunks WHERE document_id = ?",
                                        (doc.id,)) == 5
    assert "Lost and found" in (await search(env, "where are lost items kept")).content

    # remove, picked by autocomplete
    choices = await emu.inject_autocomplete("knowledge remove", {"document": "hand"}, "document", user="admin")
    assert [c["value"] for c in choices] == [str(doc.id)] and choices[0]["name"].startswith("Gatecord handbook — ")
    assert await emu.inject_autocomplete("knowledge remove", {"document": ""}, "document", user="alice") == []
    removed = await run(env, "knowledge remove", {"document": str(doc.id)})
    assert removed.content == "Removed **Gatecord handbook** (`handbook.md`) and its 5 chunks."
    assert await env.bot.store.fetchval("SELECT COUNT(*) FROM knowledge_chunks") == 0
    assert (await run(env, "knowledge list")).content.startswith("The knowledge base of this server is empty.")
    assert (await search(env, "reset password")).content.startswith("Nothing in this server's knowledge base")
    gone = await run(env, "knowledge remove", {"document": str(doc.id)})
    assert gone.content.startswith("There is no such document")


@pytest.mark.gateway_profile("openai")
async def test_members_cannot_manage_and_a_channel_can_turn_search_off(bot_env: Any) -> None:
    env, emu = bot_env, bot_env.discord
    schema, _ = emu.commands.find("knowledge", 1, emu.guild_id)
    assert schema.get("default_member_permissions") is None  # search is for everyone
    menu, _ = emu.commands.find("Add to knowledge", 3, emu.guild_id)
    assert int(menu["default_member_permissions"]) == 1 << 5  # Manage Server
    for name, kw in (("knowledge add", {"attachments": {"file": HANDBOOK}}), ("knowledge list", {}),
                     ("knowledge remove", {"options": {"document": "1"}})):
        options = kw.pop("options", {})
        msg = await run(env, name, options, user="alice", **kw)
        assert msg.content == f"You need the **Manage Server** permission to use `/{name}`."
    assert embedding_calls(env) == [] and await env.bot.store.fetchval("SELECT COUNT(*) FROM knowledge_documents") == 0

    await add_file(env, HANDBOOK)
    msg = await run(env, "config channel", {"channel": emu.channel_id, "knowledge_search": False})
    assert "knowledge search" in msg.content
    calls = len(embedding_calls(env))
    thread = await emu.add_channel("help-thread", type=11, parent_id=emu.channel_id)
    for channel_id in (emu.channel_id, thread):  # threads inherit the setting
        off = await search(env, "reset password", channel_id=channel_id)
        assert off.content == "Searching the knowledge base is turned off in this channel."
    assert len(embedding_calls(env)) == calls  # refused before anything is embedded or charged


@pytest.mark.gateway_profile("aicredits")
async def test_pdf_and_refusals(bot_env: Any) -> None:
    env = bot_env
    pdf = make_pdf([["Backups run nightly at 02:00 UTC.", "They are kept for thirty days."],
                    ["Restores are requested in the support channel."]], title="Operations manual")
    msg = await add_file(env, ("ops.pdf", pdf, "application/pdf"))
    assert msg.content.startswith("Added **Operations manual** (`ops.pdf`): 2 chunks, ")
    assert embedding_calls(env)[0].json["model"] == "openai/text-embedding-3-small"
    found = await search(env, "when do backups run")
    assert found.content.split("\n")[1].startswith("**1. Operations manual › Page 1** — `ops.pdf`")

    scanned = await add_file(env, ("scan.pdf", make_pdf([[], [], []]), "application/pdf"))
    assert scanned.content == ("⚠️ `scan.pdf` has no text I can read: its 3 page(s) look scanned (pictures of text). "
                               "Add a PDF with selectable text, or the text itself as a .txt or .md file.")
    unknown = await add_file(env, ("deck.pptx", b"PK\x03\x04", "application/vnd.ms-powerpoint"))
    assert unknown.content == ("⚠️ I can't add `deck.pptx` to the knowledge base: I read .txt, .md, .html and .pdf "
                               "files (this one is .pptx).")
    long = await add_file(env, ("long.txt", b"word " * 300_000, "text/plain"))
    assert long.content.startswith("⚠️ `long.txt` is too long for the knowledge base: it makes 1,")
    assert long.content.endswith("chunks, and one document may have at most 1,000. Split it into smaller documents.")
    assert len(embedding_calls(env)) == 2  # the PDF and one search: no refused file reached the gateway
    assert [(f, c) for f, _t, c in await charged(env)] == [("embedding", 1), ("embedding", 1)]


@pytest.mark.gateway_profile("openai")
@pytest.mark.bot_settings(knowledge={"max_file_bytes": 1024 * 1024})
async def test_oversized_file_is_refused_before_download(bot_env: Any) -> None:
    msg = await add_file(bot_env, ("big.txt", b"word " * 300_000, "text/plain"))
    assert msg.content == ("⚠️ `big.txt` is 1.4 MiB; the knowledge base takes files of at most 1 MiB. "
                           "Split it into smaller files.")
    assert embedding_calls(bot_env) == []


@pytest.mark.gateway_profile("openai")
async def test_add_to_knowledge_on_a_message_and_by_link(bot_env: Any) -> None:
    env, emu = bot_env, bot_env.discord
    post = await emu.send_user_message(
        "Parking rules\n\nVisitors park on level two; staff badges open level three.", user="bob")
    rec = await emu.inject_context_menu("Add to knowledge", post.id, user="admin")
    msg = await wait_shown(rec, timeout=20)
    link = f"https://discord.com/channels/{emu.guild_id}/{emu.channel_id}/{post.id}"
    assert msg.ephemeral and msg.content.startswith(f"Added **Parking rules** ({link}): 1 chunk, ")
    found = await search(env, "where do visitors park")
    assert found.content.split("\n")[1].startswith(f"**1. Parking rules** — {link} (score ")

    denied = await emu.inject_context_menu("Add to knowledge", post.id, user="alice")
    assert "Manage Server" in (await wait_shown(denied)).content

    # /knowledge add link: the same message again (unchanged), then one of another server
    again = await run(env, "knowledge add", {"link": link})
    assert again.content.endswith("is already in the knowledge base and has not changed: nothing was embedded.")
    elsewhere = await run(env, "knowledge add", {
        "link": f"https://discord.com/channels/{emu.guild2_id}/{emu.other_guild_channel_id}/{post.id}"})
    assert elsewhere.content.startswith("That message is in another server")
    neither = await run(env, "knowledge add", {})
    assert neither.content == "Give either a file or a message link (one of the two)."


@pytest.mark.gateway_profile("digicord")
async def test_not_registered_where_the_gateway_has_no_embeddings(bot_env: Any) -> None:
    emu = bot_env.discord
    names = {c["name"] for c in emu.commands.list(None)} | {c["name"] for c in emu.commands.list(emu.guild_id)}
    assert "knowledge" not in names and "Add to knowledge" not in names
    assert not bot_env.bot.knowledge.available
    assert "offers no embeddings" in bot_env.bot.knowledge.unavailable_reason
