"""``gatecord sandbox``: try Gatecord in a browser with no Discord account and no gateway key.

Starts, in this one process: the Discord emulator, a gateway emulator (or the real gateway from the
configuration, when it has an API key), the real bot — ``bot.app.factory.create_bot``, unchanged,
pointed at the emulator through its ordinary settings — and the web UI. Prints one URL on
127.0.0.1 and serves until SIGINT/SIGTERM.

What is kept across runs: the bot's database, ``data/sandbox.db`` (settings, budgets and usage, relay
keys; ``--fresh`` starts it empty). The emulated Discord lives in memory: its messages start empty
on every run, while its members, servers and channels come back with the same ids, so what the
database points at (a relay key's channels, a member's budget) is still there. Besides the default
world: each persona's DM with Gatecord and "Friends' server", where Gatecord is not a member but every
persona installed the app to their account (add_user_install_places).

This is the only module of ``sandbox/`` that imports the bot: it has to start it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import secrets
import shutil
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Optional

from pydantic import BaseModel, SecretStr, ValidationError

from bot.app.factory import GatecordBot, create_bot
from bot.app.settings import Settings
from sandbox.discord_emulator import DiscordEmulator
from sandbox.discord_emulator.server import STABLE_WORLD_MS
from sandbox.gateways import GatewayEmulator
from sandbox.web_ui import WebUI

log = logging.getLogger(__name__)

DEFAULT_PORT = 8765
DEFAULT_DATA_DIR = Path("data")  # relative to the working directory, like storage.path's default
DB_NAME = "sandbox.db"
DEFAULT_STREAM_TPS = 40.0  # a realistic model's pace: the answer is seen streaming in
VIDEO_SECONDS = 20.0  # an emulated video job takes this long (queued → processing … → completed), as real ones do
DEFAULT_EMULATED_PROFILE = "digicord"  # chat, vision and FLUX images (U1…V4 buttons) all work there
BOT_READY_TIMEOUT = 60.0
FRIENDS_SERVER = "Friends' server"
PERSONAS = ("admin", "alice", "bob")
# The sandbox's shop: a "Pro" server subscription and a "1,000 credits" consumable, the same ids on every
# run (the kept database names them), sold by the emulated Discord and mapped to tiers in ``[premium]``.
SANDBOX_PRO_SKU = 1_190_000_000_000_000_001
SANDBOX_CREDITS_SKU = 1_190_000_000_000_000_002
SKU_SUBSCRIPTION, SKU_CONSUMABLE = 5, 3
SKU_GUILD, SKU_USER = 1 << 7, 1 << 8
SANDBOX_PREMIUM: dict[str, Any] = {
    "tiers": [{"sku_id": SANDBOX_PRO_SKU, "name": "Pro", "scope": "guild", "limits": {"member_images": -1}}],
    "free": {"member_images": 10},  # reachable by hand: the 11th /imagine of a day shows the premium button
    "consumables": [{"sku_id": SANDBOX_CREDITS_SKU, "name": "1,000 credits", "kind": "credits", "amount": 1000}],
    "upgrade_sku_id": SANDBOX_PRO_SKU,
}


@dataclass
class SandboxOptions:
    port: int = DEFAULT_PORT  # the page's port; taken → any free port. 0 = any free port
    gateway_profile: Optional[str] = None  # emulate this profile (default: the configured one, else digicord)
    data_dir: Path = DEFAULT_DATA_DIR  # the bot's database is kept here, as sandbox.db
    fresh: bool = False  # start with an empty database (the kept one is deleted)
    use_real_gateway: Optional[bool] = None  # None: the real gateway exactly when it has an API key
    stream_tps: float = DEFAULT_STREAM_TPS  # the emulated gateway's streaming pace; 0 = all at once


def database_path(options: SandboxOptions) -> Path:
    return Path(options.data_dir) / DB_NAME


def images_path(db_path: Path) -> Path:
    """/imagine's files of the sandbox, apart from a real bot's ``images/`` in the same directory."""
    return db_path.parent / "sandbox-images"


def persistence_note(options: SandboxOptions) -> str:
    """What the page and the console say about what is kept."""
    start = "Started empty (--fresh). " if options.fresh else ""
    return (f"{start}Kept in {database_path(options)}: settings, budgets, relay keys (--fresh starts "
            "empty). Messages are not kept: channels start empty on each run.")


def prepare_database(options: SandboxOptions) -> Path:
    """The database file to use, its directory made; with ``fresh``, any kept one is deleted first."""
    path = database_path(options)
    path.parent.mkdir(parents=True, exist_ok=True)
    if options.fresh:
        for name in (path.name, path.name + "-wal", path.name + "-shm", path.name + "-journal"):
            (path.parent / name).unlink(missing_ok=True)
        shutil.rmtree(images_path(path), ignore_errors=True)
    return path


def uses_real_gateway(settings: Settings, options: SandboxOptions) -> bool:
    if options.use_real_gateway is not None:
        return options.use_real_gateway
    return bool(settings.gateway.api_key.get_secret_value().strip())


def emulated_profile(settings: Settings, options: SandboxOptions) -> str:
    """The profile asked for, else the one named in the configuration, else one that can do everything."""
    if options.gateway_profile:
        return options.gateway_profile
    if "profile" in settings.gateway.model_fields_set:
        return settings.gateway.profile
    return DEFAULT_EMULATED_PROFILE


def sandbox_settings(
    settings: Settings, discord: DiscordEmulator, gateway: Optional[GatewayEmulator], db_path: Path
) -> Settings:
    """The configuration with Discord (and, without a key, the gateway) pointed at the emulators.

    Built with ``model_copy`` rather than re-validated, so a ``GATECORD_DISCORD__TOKEN`` in the
    environment cannot override the emulator's token.
    """
    discord_section = settings.discord.model_copy(
        update={
            "token": SecretStr(discord.token),
            "api_base_url": discord.api_base_url,
            "gateway_url": discord.gateway_url,
            "cdn_base_url": discord.cdn_base_url,
            "cdn_hosts": ["127.0.0.1"],
            "command_guilds": [],
        }
    )
    update: dict[str, Any] = {
        "discord": discord_section,
        # the kept SQLite file and its own image directory, whatever the configuration names
        "storage": settings.storage.model_copy(
            update={"path": str(db_path), "url": None, "media_dir": str(images_path(db_path))}
        ),
        "http": settings.http.model_copy(update={"host": "127.0.0.1", "port": 0}),
    }
    if gateway is not None:
        update["gateway"] = settings.gateway.model_copy(
            update={
                "profile": gateway.profile,
                "base_url": gateway.root_url,
                "api_key": SecretStr(gateway.api_key),
                "chat_model": gateway.default_chat_model,
                "vision_model": gateway.default_vision_model,
                "image_model": gateway.default_image_model,
                "fallback_models": [],
                "fallbacks": [],
            }
        )
    premium = premium_section(settings)
    if premium is not None:
        update["premium"] = premium
    return settings.model_copy(update=update)


def premium_section(settings: Settings) -> Any:
    """The ``[premium]`` section for the sandbox: the example tiers (``SANDBOX_PREMIUM``) unless the
    configuration has its own. ``None`` when this bot has no ``[premium]`` settings (its settings
    forbid unknown keys: writing one would stop the start-up) or they do not accept the example."""
    field = type(settings).model_fields.get("premium")
    if field is None or not isinstance(field.annotation, type) or not issubclass(field.annotation, BaseModel):
        return None
    if "premium" in settings.model_fields_set:
        return getattr(settings, "premium")
    try:
        return field.annotation.model_validate(SANDBOX_PREMIUM)
    except ValidationError as exc:
        log.warning("the sandbox's example [premium] tiers were not accepted; the shop sells them anyway: %s", exc)
        return None


def shop_skus(settings: Settings) -> list[tuple[int, str, int, int]]:
    """(sku_id, name, type, flags) the emulated Discord sells: the ``[premium]`` tiers and consumables
    of the sandbox's settings, else the example ones."""
    premium = getattr(settings, "premium", None)
    tiers = list(getattr(premium, "tiers", None) or [])
    consumables = list(getattr(premium, "consumables", None) or [])
    if not tiers and not consumables:
        return [(SANDBOX_PRO_SKU, "Pro", SKU_SUBSCRIPTION, SKU_GUILD),
                (SANDBOX_CREDITS_SKU, "1,000 credits", SKU_CONSUMABLE, SKU_GUILD)]
    out = [(t.sku_id, t.name, SKU_SUBSCRIPTION, SKU_USER if t.scope == "user" else SKU_GUILD) for t in tiers]
    out += [(c.sku_id, c.name, SKU_CONSUMABLE, SKU_GUILD) for c in consumables]  # a server's credits
    return out


class Sandbox:
    """Everything of the sandbox, started and closed together (``async with Sandbox(settings)``)."""

    def __init__(self, settings: Settings, options: Optional[SandboxOptions] = None) -> None:
        self.base_settings = settings
        self.options = options or SandboxOptions()
        # stable ids: the kept database points at the same members, servers and channels on every run
        self.discord = DiscordEmulator(token=secrets.token_urlsafe(24), stable_ids=True)
        self.gateway: Optional[GatewayEmulator] = None
        self.settings: Optional[Settings] = None
        self.bot: Optional[GatecordBot] = None
        self.ui: Optional[WebUI] = None
        self._bot_task: Optional[asyncio.Task[None]] = None

    @property
    def url(self) -> str:
        assert self.ui is not None, "the sandbox is not started"
        return self.ui.url

    @property
    def bot_url(self) -> Optional[str]:
        """The bot's own web server (``/send-data``, ``/health``) once it listens."""
        if self.bot is None or self.bot.web.bound_port is None:
            return None
        return self.bot.web.base_url

    async def start(self) -> "Sandbox":
        try:
            await self._start()
        except BaseException:
            await self.close()
            raise
        return self

    async def _start(self) -> None:
        await self.discord.start()
        await add_user_install_places(self.discord)
        if not uses_real_gateway(self.base_settings, self.options):
            self.gateway = GatewayEmulator(emulated_profile(self.base_settings, self.options),
                                           stream_tps=self.options.stream_tps, demo_answers=True)
            self.gateway.video_seconds_to_complete = VIDEO_SECONDS  # /video's progress is seen moving
            await self.gateway.start()
        db_path = prepare_database(self.options)
        self.settings = sandbox_settings(self.base_settings, self.discord, self.gateway, db_path)
        for sku_id, name, sku_type, flags in shop_skus(self.settings):
            self.discord.add_sku(sku_id, name, type=sku_type, flags=flags)
        await self._start_ui()
        await self._start_bot(self.settings)

    async def _start_ui(self) -> None:
        note = persistence_note(self.options)
        self.ui = WebUI(self.discord, relay_url=lambda: self.bot_url, port=self.options.port, persistence=note)
        try:
            await self.ui.start()
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or self.options.port == 0:
                raise
            log.warning("port %s is taken; using a free one", self.options.port)
            await self.ui.close()
            self.ui = WebUI(self.discord, relay_url=lambda: self.bot_url, persistence=note)
            await self.ui.start()

    async def _start_bot(self, settings: Settings) -> None:
        self.bot = create_bot(settings)
        bot = self.bot
        self._bot_task = asyncio.create_task(bot.start(settings.discord.token.get_secret_value()), name="gatecord-bot")

        async def ready() -> None:
            await bot.wait_until_ready()
            while not bot.commands_synced:
                await asyncio.sleep(0.05)

        waiter = asyncio.create_task(ready())
        done, _ = await asyncio.wait({self._bot_task, waiter}, timeout=BOT_READY_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:
            waiter.cancel()
            if self._bot_task in done:
                self._bot_task.result()  # raises the bot's start-up error
            raise TimeoutError(f"the bot was not ready within {BOT_READY_TIMEOUT:.0f} s")

    @property
    def bot_stopped(self) -> Optional[asyncio.Task[None]]:
        """The bot's task (done when the bot stops on its own)."""
        return self._bot_task

    async def close(self) -> None:
        if self.ui is not None:
            with contextlib.suppress(Exception):
                await self.ui.close()
        if self.bot is not None:
            with contextlib.suppress(Exception):
                await self.bot.close()
        if self._bot_task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._bot_task, 10)
            self._bot_task = None
        if self.gateway is not None:
            with contextlib.suppress(Exception):
                await self.gateway.close()
        with contextlib.suppress(Exception):
            await self.discord.close()

    async def __aenter__(self) -> "Sandbox":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def add_user_install_places(emu: DiscordEmulator) -> None:
    """Where the page shows user installs: each persona's DM with Gatecord, and "Friends' server",
    which Gatecord is not a member of but every persona installed the app to their account for (its
    commands work there through interactions only). Made before anything else, with the world's
    stable ids, so they keep their ids across runs like the rest of the world."""
    with emu.ids.pinned(STABLE_WORLD_MS):
        await emu.add_guild(FRIENDS_SERVER, members=("alice", "bob"), bot_member=False)
        for persona in PERSONAS:
            emu.install_for_user(persona)
            emu.dm_channel_id(persona)


def describe(sandbox: Sandbox) -> str:
    """One line for the console: the page's URL and what is behind it (no other URL, no secret)."""
    if sandbox.gateway is not None:
        gateway = f"emulated {sandbox.gateway.profile} gateway"
    else:
        gateway = f"your {sandbox.base_settings.gateway.profile} gateway"
    kept = "fresh database" if sandbox.options.fresh else "database kept"
    return (f"Gatecord sandbox ready: open {sandbox.url} (emulated Discord, {gateway}; {kept} in "
            f"{database_path(sandbox.options)}; Ctrl+C to stop)")


async def run_sandbox(settings: Settings, options: Optional[SandboxOptions] = None, *, out: IO[str] = sys.stdout) -> int:
    """Run the sandbox until SIGINT/SIGTERM (or until the bot stops); returns the exit code."""
    if "level" not in settings.logging.model_fields_set:
        for name in ("", "discord.gateway"):  # the page is the interface; keep the console to one line
            logging.getLogger(name).setLevel(logging.WARNING)
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stopping.set)
    sandbox = Sandbox(settings, options)
    try:
        await sandbox.start()
    except Exception as exc:
        print(f"gatecord: the sandbox could not start: {exc}", file=sys.stderr)
        return 1
    try:
        print(describe(sandbox), file=out, flush=True)
        stopper = asyncio.create_task(stopping.wait())
        bot_task = sandbox.bot_stopped
        waiting: set[asyncio.Future[Any]] = {stopper} | ({bot_task} if bot_task is not None else set())
        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if stopper not in done:
            print("gatecord: the bot stopped; closing the sandbox", file=sys.stderr)
            return 1
        return 0
    finally:
        await sandbox.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
