"""A Discord-like page for trying Gatecord in a browser, driving an in-process ``DiscordEmulator``.

    ui = await WebUI(discord_emu, relay_url=lambda: bot_web_base_url).start()
    ui.url            # http://127.0.0.1:<port>/ — the page
    await ui.close()

The page (``static/``: plain HTML, CSS and JavaScript, no build step, nothing fetched from elsewhere)
shows the emulated guilds, channels and threads, and every message as a member would see it: bot
replies streaming in (pushed over the ``/api/live`` websocket on each emulator change), embeds,
images, buttons, select menus, ephemeral replies (only for the member they are for), errors. The
composer runs the slash commands the bot registered (read from the emulator's command registry,
with options, attachments and the bot's own autocomplete answers) or posts plain messages with
images, or sends an audio file as a voice message (converted to Ogg/Opus 48 kHz mono with PyAV when
it is not); a switch picks the member (admin or a plain member). A relay panel posts JSON to the
bot's ``/send-data``. Voice messages and audio files play in a Discord-like player (waveform bars,
duration), streamed from the emulator's CDN URL.

User installs: "Direct Messages" (first in the server rail) holds the current member's DM with
Gatecord; a server the bot is not in (the sandbox's "Friends' server") says so above its channels, and
offers only the commands an installation authorizes there (the member's own user install). The
command list follows each command's ``contexts``/``integration_types`` per place and member, as
Discord's client does (views.commands_view; DMs are the guild id "@me").

The shop ("Shop" in the channel header; sandbox.web_ui.shop): the application's SKUs with "Buy" (the
current member's purchase in Discord's store: a server SKU goes to the channel's server, others to the
member; the bot gets ENTITLEMENT_CREATE) and the active entitlements with "End" (a subscription ends:
ENTITLEMENT_UPDATE; a one-time purchase is refunded: ENTITLEMENT_DELETE). A premium button (style 6) in
a message is drawn as Discord's shop button with its SKU's name; clicking it is that "Buy".

Everything the page does is a user action of the emulator (``inject_slash_command``,
``inject_autocomplete``, ``press_button``, ``select_menu``, ``submit_modal``, ``inject_context_menu``,
``send_user_message``, ``send_user_voice_message``), so the bot receives the same gateway events as from Discord.

HTTP API (JSON; refusals are ``400 {"error"}``):
    GET  /api/state                 snapshot {world, commands, messages, typing, shop: {skus, entitlements}}
    GET  /api/live                  websocket: snapshot, then {type: world|commands|messages|typing|shop|notice|modal}
    GET  /api/info                  {relay_url: the bot's web server,
                                     persistence: what the sandbox keeps across runs}
    POST /api/command               {name, options, user, channel_id} (multipart: json + files "option:<name>")
    POST /api/autocomplete          {name, options, focused, user, channel_id} -> {choices}
    POST /api/button | /api/select  {message_id, custom_id, user[, values]}
    POST /api/modal                 {interaction_id, values, user}
    POST /api/context-menu          {name, message_id, user}
    POST /api/message               {content, user, channel_id, reply_to} (multipart: json + files "files")
    POST /api/voice-message         multipart: json {user, channel_id, reply_to} + one file "audio" (≤ 25 MiB)
    POST /api/relay                 {key, body} -> forwarded to <bot>/send-data -> {status, body}
    POST /api/buy                   {sku_id, user, channel_id} -> {entitlement_id} (emu.buy)
    POST /api/end-entitlement       {entitlement_id} -> {entitlement_id, deleted}
    GET  /attachments/<id>/<name>   attachment bytes
"""

from .server import WebUI

__all__ = ["WebUI"]
