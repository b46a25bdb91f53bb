"""Discord emulator for Gatecord's tests: REST + websocket gateway + CDN on 127.0.0.1, spoken to
by the real discord.py 2.7 client through its own HTTP and websocket code.

Point discord.py at it::

    emu = await DiscordEmulator(token="T").start()      # or: async with DiscordEmulator() as emu
    discord.http.Route.BASE = emu.api_base_url            # http://127.0.0.1:<port>/api/v10
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(emu.gateway_url)
    discord.asset.Asset.BASE = emu.cdn_base_url

Standalone: ``python -m sandbox.discord_emulator --host 127.0.0.1 --port 0 --token T`` prints
``READY <api_base_url> <gateway_url>`` and serves until SIGTERM.

Constructor and lifecycle
    DiscordEmulator(*, host="127.0.0.1", port=0, token="emulator-token", schemas_path=None, shards=1,
        max_concurrency=1, clock=None, stable_ids=False)  (stable_ids: the default world has the same ids
        on every run, as the sandbox needs for the database it keeps)
    await emu.start() / await emu.close() / async with; emu.api_base_url, emu.gateway_url,
    emu.cdn_base_url, emu.base_url. A wrong bot token gets 401 on REST, close code 4004 on the gateway.

Default world (attributes)
    emu.guild_id ("Gatecord Test": #general = emu.channel_id, #random = emu.channel2_id, public
    thread "general-thread" under #general = emu.thread_id, forum #help = emu.forum_channel_id),
    emu.guild2_id ("Other Guild": #lobby = emu.other_guild_channel_id). emu.users["admin" | "alice" | "bob" | "bot"] -> User (.id, .username).
    admin owns both guilds and has the Admin role (Manage Guild); alice and bob are plain members.
    emu.admin_role_id, emu.moderator_role_id (Manage Messages, no Manage Guild; nobody has it),
    emu.bot_role_id; emu.bot_user_id == emu.application_id. The bot may view, send, embed, attach,
    read history, react and create public threads.
    Helpers (async, each dispatches the gateway event): add_user(name, guild_ids=None, roles=None),
    add_member(guild_id, user_id, roles), set_member_roles(guild_id, user_id, roles),
    add_role(name, permissions, guild_id=None) -> Role, add_channel(name, guild_id=None, type=0,
    parent_id=None, topic=None) -> id, set_channel_permissions(channel_id, target_id, allow=0, deny=0).
    grant_bot_permissions(perms, guild_id=None) (e.g. permissions.MANAGE_WEBHOOKS, which the bot lacks
    by default), deny_bot(channel_id, permission_bit) (a member overwrite for the bot in one channel).
    emu.permissions_for(user, channel_id) -> int. Bits: sandbox.discord_emulator.permissions.
    The bot has SEND_VOICE_MESSAGES; emu.world.channels[cid].voice_messages = False (also covers the
    channel's threads) makes voice messages there get 403 50173.
    Per-guild upload limit: emu.world.guilds[gid].filesize_limit (10 MiB).

Sharding (as Discord routes it)
    GET /gateway/bot answers ``shards`` (emu.recommended_shards, the ``shards`` argument) and
    session_start_limit {total, remaining (less one per IDENTIFY), reset_after, max_concurrency
    (emu.max_concurrency)}. An IDENTIFY with ``shard: [id, count]`` gets READY and GUILD_CREATE, and
    afterwards every event, only for the guilds with ``shard_of(guild_id, count) == id``
    (``(guild_id >> 22) % count``); DMs go to shard 0; no ``shard`` means every guild. A shard id
    outside 0..count-1 is closed with 4010 Invalid shard; with emu.gateway.guilds_per_shard_limit set,
    a session that would hold more guilds is closed with 4011 Sharding required.
    emu.guild_id is on shard 0 of 2 and emu.guild2_id on shard 1 of 2. await emu.add_guild(name,
    shard=(id, count), members=("alice", "bob")) -> guild id: a new guild with #general on that shard
    (GUILD_CREATE sent). emu.ids.next_on_shard(id, count) -> a snowflake on that shard.
    emu.gateway.identifies: [IdentifyRecord(shard_id, shard_count, at, bucket, session_id)], ``at``
    from ``clock`` (monotonic by default; emu.gateway.clock), bucket = shard_id % max_concurrency.

User installs, DMs, guilds without the bot (sandbox.discord_emulator.installs)
    await emu.add_guild(name, bot_member=False) -> a guild the bot is NOT in: no GUILD_CREATE, none of
    its events reach the bot, and every bot REST call about it or its channels (any route, known or
    not: messages, typing, threads, webhooks, members, channel GET, guild commands...) answers 403
    50001 Missing Access. emu.install_for_user(user) / uninstall_for_user / is_installed_for: the app
    installed to a user's account. emu.dm_channel_id(user="alice") -> the DM (type 1, no guild) between
    the user and the bot, created on first use (also answered by the bot's POST /users/@me/channels
    {recipient_id}); the bot may send, edit, reply, attach, react, type there; threads, webhooks and
    deleting the user's messages get 400 50003. emu.private_channel_id(users=("alice", "bob")) -> a group
    DM (type 3) the bot is not in (403 50001 for it; reachable only by interactions). DM messages
    (send_user_message(channel_id=dm)) are MESSAGE_CREATE without guild_id, sent with the
    DIRECT_MESSAGES intent, content never blanked, to shard 0. emu.forbidden_calls: every request
    answered 403 50001 (RecordedRequest).
    Commands keep ``integration_types`` ([0] guild install, [1] user install; default [0]) and
    ``contexts`` ([0] guild, [1] bot DM, [2] private channel; unset: all, less DMs with
    dm_permission false; guild commands: their guild only). Injecting one where Discord's client
    would not offer it raises installs.CommandNotAvailable (a KeyError): context not allowed, or no
    installation authorizes it there. Interactions carry, as Discord documents:
      context 0 guild / 1 the bot's DM / 2 another DM or group DM (rec.context);
      authorizing_integration_owners (rec.authorizing_integration_owners): "0" = guild id where the
        bot is a member and the command supports guild install ("0" = "0" in the bot's DM), "1" = the
        user's id when they installed the app and the command supports user install; components and
        modals keep the owners of the interaction whose message (or modal) they come from;
      app_permissions: the bot's in a guild it is in; in a guild without it @everyone's in the
        channel limited to ATTACH_FILES|EMBED_LINKS|MENTION_EVERYONE|USE_EXTERNAL_EMOJIS; in its DM
        those four (P.DM_APP_PERMISSIONS); in other (group) DMs the first three;
      member + guild_id + partial guild + partial channel (with ``permissions``) in guilds (also
        without the bot), user (not member) and a partial DM channel with ``recipients`` otherwise.
    Follow-ups: when only a user install authorized the interaction (owners == {"1": ...}: a guild
    without the bot, a group DM, a DM with a user-install-only command), at most 5 accepted POSTs to
    the follow-up endpoint (the one replacing a "thinking" response counts; the callback and edits of
    @original do not): the 6th answers 400 40094 (rec.followup_posts; limits.USER_INSTALL_FOLLOWUPS_MAX).

Users acting (async; each returns once the event is dispatched)
    inject_slash_command(name, options=None, *, user="alice", guild_id=None, channel_id=None,
        attachments={opt: (filename, bytes, content_type)}, locale="en-US", attachment_size_limit=None)
        -> InteractionRecord. name may be "relay key create". Option types come from the registered
        schema (plain Python values; users by name or id, roles/channels by name or id). Sent even if
        the user lacks default_member_permissions. Raises KeyError when the command is not registered.
    inject_autocomplete(name, options, focused, *, user=...) -> list of choices (waits for type 8).
    inject_context_menu(name, target_message_id=None, *, target_user=None, user=..., channel_id=None)
        -> InteractionRecord. Slash and user commands run in a DM or group DM with channel_id=... (the
        user must be in it); components and modals where their message is.
    press_button(message_id, custom_id, *, user="alice") -> InteractionRecord
    select_menu(message_id, custom_id, values, *, user="alice") -> InteractionRecord
    submit_modal(custom_id, {input_custom_id: value}, *, user=..., interaction=None) -> InteractionRecord
    send_user_message(content, *, user="alice", channel_id=None, reply_to=None,
        attachments=[(filename, bytes, content_type)], mention_bot=False, embeds=None) -> MessageState
        (ValueError in a forum: it holds posts, not messages)
    create_forum_post(channel_id, title, content, *, user="alice", attachments=None) -> MessageState: a
        forum post as Discord makes it: a public thread named ``title`` (THREAD_CREATE, newly_created) and
        its first message, with the thread's id (MESSAGE_CREATE); msg.channel_id is the thread.
        emu.forum_posts(channel_id) -> the posts' thread ids. Forums (type 15) take no message of their
        own (POST /channels/{forum}/messages -> 400 50008); the bot opens a post with POST
        /channels/{forum}/threads and a ``message`` (required, else 400 50035).
    send_user_voice_message(audio, *, user="alice", channel_id=None, reply_to=None,
        content_type="audio/ogg", filename="voice-message.ogg") -> MessageState: a voice message (flags
        8192, one attachment with duration_secs and waveform computed from the audio with PyAV)
    edit_user_message(message_id, content), delete_user_message(message_id)

Observing
    emu.messages: {id: MessageState} (every message incl. ephemeral and interaction responses);
    emu.channel_messages(channel_id, include_deleted=False, include_ephemeral=True); emu.bot_messages().
    MessageState: id, channel_id, guild_id, author_id, content, embeds, components, attachments
    (Attachment: filename, data, content_type, size, url), flags, ephemeral, loading, allowed_mentions
    (as sent), mention_ids, message_reference, nonce, created_at/edits[] (monotonic .at, content,
    embeds...), edit_count, deleted, thread_id, reactions.
    emu.interactions: {id: InteractionRecord}. InteractionRecord: id, token, type, payload, context,
    authorizing_integration_owners, followup_posts, created_at,
    first_response_at, ack_latency, response_type, response_data, original (MessageState|None),
    followups, autocomplete_choices, modal, callbacks (every attempt with status);
    await rec.wait_acked(timeout); await rec.wait_final(predicate=None, timeout) -> original message
    (default predicate: answered and no longer "thinking").
    await emu.wait_for(predicate, timeout): woken by every emulator state change (requests, events),
    re-checked shortly after each dispatch and at least every 0.25 s so predicates may also read the
    bot's own state; raises asyncio.TimeoutError. await emu.wait_for_message(predicate, timeout);
    await emu.wait_until_connected(); await emu.wait_for_session().
    emu.requests: [RecordedRequest(method, path, route, query, json, files, status, response, at)];
    emu.requests_to(substring, method=None); emu.rate_limited: [RateLimitHit]; emu.typing;
    emu.global_commands(), emu.guild_commands(guild_id=None), emu.commands.find(name, type, guild_id)
    (registered schemas with ids, options, default_member_permissions; emu.commands.sync_count);
    emu.gateway.sessions, emu.gateway.identify_payloads; await emu.drop_gateway(code=4000) (discord.py
    RESUMEs; events meanwhile are buffered and replayed); await emu.gateway.request_reconnect() (op 7).

Faults and limits
    emu.inject_rate_limit(route_substring, count=1, retry_after=0.5, is_global=False)
    emu.inject_error(route_substring, status, code=0, message="Injected error", count=1)
    emu.set_rate_limits(enabled=None, scale=None); emu.configure_bucket(name, limit, per)
    (buckets: message_create and message_edit 5/5 s per channel, webhook 5/2 s per token, global
    50/s with interaction endpoints exempt). emu.interaction_ack_deadline (3 s: later callbacks get
    404 10062), emu.interaction_token_ttl (15 min: then 401 50027), emu.default_attachment_size_limit.
    emu.expire_interaction(rec) ages a token past 15 minutes. Every limit lives in
    sandbox.discord_emulator.limits.

Channel webhooks (relay): GET/POST /channels/{id}/webhooks (need Manage Webhooks), POST
/webhooks/{id}/{token}?wait=true&thread_id=..., GET/PATCH/DELETE .../messages/{id}; messages carry
webhook_id and the per-message username. emu.channel_webhooks.live(channel_id), .add(channel_id,
name), .remove(webhook_id) (later executions get 404 10015).

Validation (what the bot sends): JSON schema from discord-schemas.json (schemas_path, else
$GATECORD_DISCORD_SCHEMAS, else ../shared/discord-schemas.json, else the copy in this package) plus
Discord's own limits (content 2000, embeds 10/6000 total and per-field limits, 5 action rows of 5
buttons, custom_id 100) -> 400 code 50035 with an ``errors`` tree naming the field. Empty message
-> 400 50006. A file over the attachment size limit or a request over 25 MiB -> 413 code 40005 (as
Discord). Unknown route -> 404 {"message", "code": 0}; unknown channel 404 10003; unknown message
404 10008; missing access 403 50001; missing permissions 403 50013. ``nonce`` + ``enforce_nonce``
within 5 minutes returns the first message instead of creating another.

Monetization (sandbox.discord_emulator.monetization; Discord's SKU and Entitlement resources)
    emu.add_sku(sku_id, name, *, type=5, flags=1 << 7) -> SKU dict (type 5 SUBSCRIPTION, 3 CONSUMABLE,
        2 DURABLE; flags 1 << 7 guild subscription, 1 << 8 user subscription).
    await emu.grant_entitlement(sku_id, *, guild_id=None, user_id=None, dispatch=True, type=None,
        ends_at=None) -> entitlement dict {id, sku_id, application_id, user_id?, guild_id?, type (8 for a
        subscription SKU, else 1), deleted, consumed, starts_at, ends_at (null while a subscription is
        active)}; ENTITLEMENT_CREATE to the guild's shard (a user's: shard 0); dispatch=False is a missed
        event (the entitlement is only listed).
    await emu.end_entitlement(entitlement_id, *, dispatch=True, delete=False): ``ends_at`` = now and
        ENTITLEMENT_UPDATE, or (delete=True, a refund) ``deleted: true`` and ENTITLEMENT_DELETE.
    await emu.redispatch_entitlement(entitlement_id): the same ENTITLEMENT_CREATE again (a duplicate).
    await emu.buy(sku_id, *, user="alice", guild_id=None) -> entitlement: a member's purchase in the
        store (the page's "buy", a premium button's click): an SKU with flag 1 << 7 (consumables too)
        goes to the guild with the buyer as user_id, others to the buyer alone; ValueError when the store
        refuses (already owned, a consumable not consumed yet, a guild SKU outside a guild).
    emu.entitlements: {id: entitlement dict}; emu.consume_calls: every POST .../consume's id, in order,
    whatever its answer; emu.monetization.skus: {id: SKU dict}; emu.premium_buttons(message or id) ->
    the SKU ids of its premium buttons.
    REST: GET /applications/{app}/skus; GET /applications/{app}/entitlements (ascending ids; user_id,
    sku_ids (comma-separated), guild_id, before, after, limit 1-100 (default 100; else 400 50035),
    exclude_ended (default false), exclude_deleted (default true)); GET .../entitlements/{id} (404 10029);
    POST .../entitlements/{id}/consume: 204, 400 40018 for a non-consumable SKU, 404 10029 unknown or
    already consumed (Discord does not document that answer: the emulator's choice); POST
    .../entitlements {sku_id, owner_id, owner_type 1 guild / 2 user}: a test entitlement (type 4, no
    dates) with ENTITLEMENT_CREATE; DELETE .../entitlements/{id}: 204 and ENTITLEMENT_DELETE, 400 40019
    for anything but a test entitlement.
    Interactions carry ``entitlements`` (and ``entitlement_sku_ids``): the user's own and the guild's
    active ones (not ended, not deleted, not consumed).
    The premium button ``{type: 2, style: 6, sku_id}`` (discord.ui.Button(style=ButtonStyle.premium,
    sku_id=...)) is valid in messages, edits, webhooks and interaction responses; with a custom_id,
    label, emoji or url, without sku_id, or naming an SKU the application does not have -> 400 50035
    naming the field (``sku_id`` on any other button style too).

Polls (POST /channels/{id}/messages with ``poll``): validated as Discord's ``PollCreateRequest`` (1-10
answers, texts of 1-300 characters, 1-768 hours) -> 400 50035 naming the field; the bot needs
SEND_POLLS (1 << 49, in the bot role and @everyone by default) -> 403 50013. The message keeps the poll
as Discord returns it (``msg.poll``: question, answers numbered from 1, expiry, no votes yet), in every
payload of the message; the sandbox page shows it.

Voice messages (flags 8192; sandbox.discord_emulator.voice), on POST /channels/{id}/messages, the
interaction callback (type 4), interaction follow-ups and channel webhooks: additional content (content,
embeds, components, stickers, poll) -> 400 50159; not exactly one Ogg/Opus audio/* file -> 400 50160;
its ``attachments`` entry without a number ``duration_secs`` and a base64 ``waveform`` of 1..256 bytes
-> 400 50161 (a waveform string over 400 characters is already 50035 by the schema); channel setting
off -> 403 50173; bot without SEND_VOICE_MESSAGES -> 403 50013 (not checked for channel webhooks).
Editing a voice message -> 400 50162. A deferred ("thinking") response becomes a voice message when the
first follow-up is one. Attachments of voice messages keep ``duration_secs`` and ``waveform``.
"""

from .gateway_ws import IdentifyRecord
from .models import Attachment, InteractionRecord, MessageEdit, MessageState, RateLimitHit, RecordedRequest, User
from .server import DiscordEmulator
from .snowflake import shard_of

__all__ = [
    "Attachment",
    "DiscordEmulator",
    "IdentifyRecord",
    "InteractionRecord",
    "MessageEdit",
    "MessageState",
    "RateLimitHit",
    "RecordedRequest",
    "User",
    "shard_of",
]
