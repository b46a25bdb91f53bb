"""The ``gatecord`` command: ``run``, ``web``, ``migrate``, ``check``, ``backup``, ``copy-db``, ``quota``,
``secrets new-key``, ``rotate-secrets``, ``sandbox``.

What stops the bot from starting at all prints one line and exits with code 2: a configuration
problem (naming the key and the file, or the environment variable), a database at a newer schema
version than the code or one that cannot be reached, an installation without its migrations. A
command that ran and failed (a problem found by ``check``, a migration that failed, a backup or a
copy that could not be made) prints one line and exits with code 1. No traceback, no secret (a
PostgreSQL URL is shown without its password).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bot.app.logging_setup import configure_logging
from bot.app.settings import ConfigError, Settings, has_token, load_settings, require_token
from bot.storage.errors import StorageError
from bot.storage.migrations import (
    DatabaseTooNew,
    MigrationError,
    NoMigrations,
    ensure_usable,
    latest_version,
    stored_version,
)

if TYPE_CHECKING:
    from bot.app.factory import GatecordBot
    from gateway_client import Profile

#: gateway close codes that mean the shard settings do not fit the bot (Discord's words, then what to do)
SHARD_CLOSE_CODES = {
    4010: "Discord refused the shard settings (gateway close code 4010, invalid shard): check discord.shard_count "
          "and discord.shard_ids",
    4011: "Discord requires more shards for this bot's servers (gateway close code 4011, sharding required): raise "
          "discord.shard_count (GATECORD_DISCORD__SHARD_COUNT), or leave it unset for Discord's recommended count",
}
EXIT_FAILURE = 1  # the command ran and failed: a problem found by check, a failed migration or backup
EXIT_CONFIG = 2  # cannot start: the configuration is wrong or incomplete, or the database or installation
# is one this code cannot use (a newer schema version, no migrations)


def exit_code_for(exc: MigrationError) -> int:
    """2 for a database or installation this code refuses to start with, 1 for a migration that failed."""
    return EXIT_CONFIG if isinstance(exc, DatabaseTooNew | NoMigrations) else EXIT_FAILURE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gatecord", description="Gatecord: a Discord bot backed by an AI gateway.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in (
        ("run", "start the bot (needs a Discord token; with --sandbox-if-no-token, the sandbox when there is none)"),
        ("web", "the web tier alone (/send-data, /ready, /metrics …), no Discord connection; needs PostgreSQL"),
        ("migrate", "apply database migrations and print the schema version"),
        ("check", "validate the configuration and reach the configured AI gateway"),
        ("backup", "copy the database, consistently, while the bot runs (SQLite's online backup)"),
        ("copy-db", "copy every row of one database into a new, empty one (SQLite to PostgreSQL or back)"),
        ("quota", "the bot owner's budgets: `quota user show|set|reset USER_ID …` (a member's own budget)"),
        ("secrets", "`secrets new-key`: print a new encryption key for [secrets] key (GATECORD_SECRETS__KEY)"),
        ("rotate-secrets", "re-encrypt every stored server gateway key with the first [secrets] key"),
        ("sandbox", "try Gatecord in a browser: emulated Discord and gateway, the real bot, one local URL"),
    ):
        cmd = sub.add_parser(name, help=help_text)
        if name == "copy-db":  # both databases are on its command line: no configuration
            cmd.add_argument("--from", dest="source", required=True, metavar="DATABASE",
                             help="sqlite:PATH or postgresql://user:password@host:5432/dbname")
            cmd.add_argument("--to", dest="target", required=True, metavar="DATABASE",
                             help="the same forms; migrated to the newest schema, and must hold no rows")
            continue
        if name == "secrets":  # needs no configuration (it makes the key the configuration lacks)
            action = cmd.add_subparsers(dest="secrets_action", required=True, metavar="ACTION")
            action.add_parser("new-key", help="print a new random Fernet key (nothing is stored)")
            continue
        cmd.add_argument("--config", metavar="PATH", default=None, help="TOML file (default ./config.toml)")
        if name == "quota":
            _quota_arguments(cmd)
        if name == "check":
            cmd.add_argument("--no-calls", action="store_true",
                             help="make no model call (by default: a 1-token chat per chat model, one spoken word)")
        if name == "backup":
            cmd.add_argument("path", metavar="PATH", help="the file to write the copy to")
            cmd.add_argument("--force", action="store_true", help="replace PATH if it exists")
        if name == "run":
            cmd.add_argument(
                "--sandbox-if-no-token", action="store_true",
                help="start the local sandbox instead of failing when no Discord token is configured (`make run`)",
            )
        if name in ("run", "sandbox"):
            cmd.add_argument(
                "--port", type=int, default=None, help="sandbox page port (default 8765; 0 = any free port)"
            )
            cmd.add_argument("--gateway-profile", default=None, help="sandbox: gateway profile to emulate")
            cmd.add_argument("--stream-tps", type=float, default=None, metavar="N",
                             help="sandbox: the emulated gateway streams N tokens per second (default 40; 0 = at once)")
            cmd.add_argument("--fresh", action="store_true",
                             help="sandbox: start with an empty database instead of the one kept in data/sandbox.db")
    return parser


def _quota_arguments(cmd: argparse.ArgumentParser) -> None:
    """``gatecord quota user show|set|reset USER_ID …``: a member's own budget ([quotas.user]: DMs, user installs)."""
    whose = cmd.add_subparsers(dest="quota_scope", required=True, metavar="SCOPE")
    user = whose.add_parser("user", help="a member's own daily budget (DMs, servers where only they installed it)")
    action = user.add_subparsers(dest="quota_action", required=True, metavar="ACTION")
    show = action.add_parser("show", help="the member's limits and what they used today")
    show.add_argument("user_id", type=int, metavar="USER_ID")
    put = action.add_parser("set", help="the member's own daily limit of one kind, instead of [quotas.user]")
    put.add_argument("user_id", type=int, metavar="USER_ID")
    put.add_argument("kind", metavar="KIND", help="chat_requests, tokens, vision_requests, images, credits, …")
    put.add_argument("value", type=float, metavar="VALUE", help="the daily limit; -1 = unlimited")
    reset = action.add_parser("reset", help="back to the [quotas.user] defaults (every kind, or one)")
    reset.add_argument("user_id", type=int, metavar="USER_ID")
    reset.add_argument("kind", nargs="?", default=None, metavar="KIND")


def choose_command(args: argparse.Namespace, settings: Settings) -> str:
    """The command to carry out: ``run`` without a token is the sandbox only when asked for, else a ConfigError."""
    if args.command != "run" or has_token(settings):
        return str(args.command)
    if args.sandbox_if_no_token:
        print("gatecord: no Discord token configured (discord.token): starting the local sandbox", file=sys.stderr)
        return "sandbox"
    require_token(settings, args.config)
    return "run"  # pragma: no cover - require_token raised


async def _sandbox(settings: Settings, args: argparse.Namespace) -> int:
    from sandbox.launcher import (  # lazily: bot/ never needs the sandbox
        DEFAULT_PORT,
        DEFAULT_STREAM_TPS,
        SandboxOptions,
        run_sandbox,
    )

    port = DEFAULT_PORT if args.port is None else args.port
    tps = DEFAULT_STREAM_TPS if args.stream_tps is None else args.stream_tps
    if tps < 0:
        print("gatecord: --stream-tps must be 0 (at once) or a positive number of tokens per second", file=sys.stderr)
        return EXIT_CONFIG
    return await run_sandbox(settings, SandboxOptions(
        port=port, gateway_profile=args.gateway_profile, stream_tps=tps, fresh=args.fresh))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "copy-db":
        return _copy_db(args.source, args.target)
    if args.command == "secrets":  # before the settings: a malformed [secrets] key must not stop this one
        return _new_key()
    try:
        settings = load_settings(args.config, require_file=args.config is not None)
        command = choose_command(args, settings)
    except ConfigError as exc:
        print(f"gatecord: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if command == "backup":  # reads any database, even one newer than this code (a copy before a downgrade)
        return _backup(settings, args.path, force=args.force)
    try:
        # Before anything starts: the package must carry its migrations, and an SQLite file must not be
        # newer than the code (the sandbox's own, data/sandbox.db, is checked as its bot migrates it).
        # PostgreSQL is checked when it is first connected to (_ensure_database, Store.open).
        ensure_usable(None if command == "sandbox" or settings.storage.url else settings.storage.path)
    except MigrationError as exc:
        print(f"gatecord: {exc}", file=sys.stderr)
        return exit_code_for(exc)
    configure_logging(settings)
    handler = {"run": _run, "web": _web, "migrate": _migrate,
               "check": lambda s: _check(s, calls=not args.no_calls),
               "quota": lambda s: _quota(s, args),
               "rotate-secrets": _rotate_secrets,
               "sandbox": lambda s: _sandbox(s, args)}[command]
    try:
        return asyncio.run(handler(settings))
    except KeyboardInterrupt:
        return 130


def storage_exit_code(exc: StorageError) -> int:
    """A database that cannot be reached or opened is one the process cannot start with (2)."""
    return exit_code_for(exc) if isinstance(exc, MigrationError) else EXIT_CONFIG


async def _migrate(settings: Settings) -> int:
    from bot.storage.store import Store

    store = Store.from_settings(settings.storage)
    try:
        version = await store.open()
    except StorageError as exc:  # a failed or refused migration, or a database that cannot be reached
        print(f"gatecord: {exc}", file=sys.stderr)
        return storage_exit_code(exc)
    finally:
        await store.close()
    print(f"{store.describe()}: schema version {version}")
    return 0


async def ensure_database(settings: Settings) -> None:
    """PostgreSQL's counterpart of ``ensure_usable``: reachable and not newer than the code, checked
    before a process connects to anything else. Raises ``StorageError`` (one line); SQLite: nothing."""
    from bot.storage.store import Store

    if not settings.storage.url:
        return
    store = Store.from_settings(settings.storage)
    try:
        await store.open(migrate=False)
    finally:
        await store.close()


def _copy_db(source: str, target: str) -> int:
    from bot.storage.copy import CopyError, copy_database, parse_endpoint

    try:
        plan = (parse_endpoint(source, "--from"), parse_endpoint(target, "--to"))
        asyncio.run(copy_database(*plan, report=print))
    except CopyError as exc:
        print(f"gatecord: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return 0


def _backup(settings: Settings, path: str, *, force: bool) -> int:
    """Blocking, outside any event loop: the bot, if running, is another process and keeps writing."""
    from bot.storage.backup import BackupError, backup_database
    from bot.storage.store import Store

    if settings.storage.url:
        print(
            f"gatecord: {Store.from_settings(settings.storage).describe()} is PostgreSQL: back it up with pg_dump "
            f"(pg_dump --format=custom --file {path} DATABASE_URL); `gatecord backup` copies SQLite files",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    try:
        version = backup_database(settings.storage.path, path, force=force)
    except BackupError as exc:
        print(f"gatecord: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"backup of {settings.storage.path} written to {path}: schema version {version}")
    return 0


async def _run(settings: Settings) -> int:
    """Run until Discord ends the session or a signal comes. On SIGTERM/SIGINT the bot drains (new work
    refused, work in progress finished within ``shutdown.drain_seconds``) and exits 0; a second
    signal during the drain exits at once (128 + the signal's number)."""
    import aiohttp
    import discord

    from bot.app.discord_reach import DiscordUnreachable, describe_connection_error, wait_for_discord
    from bot.app.factory import create_bot

    try:
        await ensure_database(settings)  # before logging in to Discord
    except StorageError as exc:
        print(f"gatecord: {exc}", file=sys.stderr)
        return storage_exit_code(exc)
    try:
        await wait_for_discord(settings.discord.api_base_url, retries=settings.discord.connect_retries,
                               backoff=settings.discord.connect_backoff_seconds, say=_say)
    except DiscordUnreachable as exc:
        print(f"gatecord: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    bot = create_bot(settings)
    stopping = _stop_on_signals()
    log = logging.getLogger("gatecord")
    try:
        async with bot:
            runner = asyncio.create_task(bot.start(settings.discord.token.get_secret_value()))
            freezer = asyncio.create_task(_freeze_startup_objects(bot))
            stopper = asyncio.create_task(stopping.wait())
            done, _ = await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if stopper in done:
                log.info("stopping on a signal (send it again to stop at once)")
                await bot.drain()  # logs what was drained
                await bot.close()
            stopper.cancel()
            freezer.cancel()
            await asyncio.gather(runner, return_exceptions=stopper in done)
    except discord.LoginFailure:
        print("gatecord: Discord rejected the bot token (discord.token); check it and try again", file=sys.stderr)
        return EXIT_CONFIG
    except StorageError as exc:  # raised by the bot's set-up when it opens (and migrates) the database
        print(f"gatecord: {exc}", file=sys.stderr)
        return storage_exit_code(exc)
    except discord.PrivilegedIntentsRequired:
        print(
            "gatecord: Discord refused the Message Content intent; enable it for the bot in the developer portal",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    except discord.ConnectionClosed as exc:
        if exc.code not in SHARD_CLOSE_CODES:
            raise
        print(f"gatecord: {SHARD_CLOSE_CODES[exc.code]}", file=sys.stderr)
        return EXIT_CONFIG
    except aiohttp.ClientConnectionError as exc:  # Discord answered the probe, then went away during start-up
        print(f"gatecord: lost the connection to Discord while starting ({describe_connection_error(exc)}); "
              "try again", file=sys.stderr)
        return EXIT_FAILURE
    return 0


def _say(line: str) -> None:
    print(f"gatecord: {line}", file=sys.stderr, flush=True)


async def _web(settings: Settings) -> int:
    """The web tier until a signal: then it drains (new posts 503, requests in progress finish within
    ``shutdown.drain_seconds``) and exits 0; a second signal exits at once. See ``bot.app.webtier``."""
    from bot.app.webtier import NEEDS_POSTGRESQL, WebTier
    from bot.storage.errors import DatabaseTooOld

    if settings.storage.url is None:  # before anything is opened or created
        print(f"gatecord: {NEEDS_POSTGRESQL}", file=sys.stderr)
        return EXIT_CONFIG
    tier = WebTier(settings)
    stopping = _stop_on_signals()
    try:
        try:
            await tier.start()
        except MigrationError as exc:  # a database older or newer than the code: one line, exit 2
            print(f"gatecord: {exc}", file=sys.stderr)
            return EXIT_CONFIG if isinstance(exc, DatabaseTooOld) else exit_code_for(exc)
        except StorageError as exc:  # unreachable: it cannot start (the reason, never the password)
            print(f"gatecord: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        except OSError as exc:
            http = settings.http
            print(f"gatecord: cannot listen on {http.host}:{http.port} ({exc.strerror or exc}); check http.host "
                  "and http.port", file=sys.stderr)
            return EXIT_CONFIG
        await stopping.wait()
        logging.getLogger("gatecord").info("stopping on a signal (send it again to stop at once)")
        await tier.drain()  # logs what was drained
    finally:
        await tier.close()
    return 0


def _stop_on_signals() -> asyncio.Event:
    """An event SIGINT or SIGTERM sets (a second one exits at once: ``_on_stop_signal``)."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, _on_stop_signal, sig, stopping)
    return stopping


def _on_stop_signal(sig: signal.Signals, stopping: asyncio.Event) -> None:
    """The first signal starts the drain; a second one ends the process at once, without a traceback.

    Stopping at once is as safe as a crash, which the storage is built for: accepted relay posts are
    committed and resume on the next start, open budget holds are returned when they expire, and an
    image job cut off mid-call shows as unknown with a Retry button. Answers cut off keep what was shown.
    """
    if not stopping.is_set():
        stopping.set()
        return
    print(f"gatecord: {sig.name} again during the drain: stopping at once", file=sys.stderr, flush=True)
    logging.shutdown()
    os._exit(128 + sig.value)


async def _freeze_startup_objects(bot: GatecordBot) -> None:
    """Once connected, move everything built at start-up (which lives as long as the process) out
    of the cyclic GC's generations, so later collections stay short and don't stall interactions."""
    await bot.wait_until_ready()
    gc.collect()
    gc.freeze()


#: the actor the audit log records for a change made on the command line (no Discord user)
CLI_ACTOR = 0


async def _quota(settings: Settings, args: argparse.Namespace) -> int:
    """``gatecord quota user …``: read or change a member's own budget in the database the bot uses
    (migrated first, as the bot does at start); a running bot sees a change within a few seconds."""
    from bot.budgets.reports import own_budget_lines
    from bot.budgets.rules import limit_text
    from bot.budgets.service import BudgetService
    from bot.guilds.audit import InvalidSetting
    from bot.storage.store import Store

    store = Store.from_settings(settings.storage)
    try:
        await store.open()
    except StorageError as exc:
        print(f"gatecord: {exc}", file=sys.stderr)
        return storage_exit_code(exc)
    try:
        quotas = BudgetService(store, settings)
        user_id = args.user_id
        try:
            if args.quota_action == "set":
                old, new = await quotas.set_user_limit(user_id, args.kind, args.value, CLI_ACTOR)
                print(f"user {user_id}: {args.kind} {limit_text(args.kind, old)} -> {limit_text(args.kind, new)}")
            elif args.quota_action == "reset":
                removed = await quotas.reset_user_limits(user_id, CLI_ACTOR, args.kind)
                what = ", ".join(sorted(removed)) or "nothing was overridden"
                print(f"user {user_id}: back to the [quotas.user] defaults ({what})")
        except InvalidSetting as exc:
            print(f"gatecord: not changed: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        print(f"user {user_id}, own budget today (UTC):")
        for line in own_budget_lines(await quotas.own_limits(user_id)):
            print(f"  {line.removeprefix('• ')}")
        return 0
    finally:
        await store.close()


def _new_key() -> int:
    from bot.gateways.secrets import SecretBox

    print(SecretBox.new_key())
    print("gatecord: set it as GATECORD_SECRETS__KEY (or key under [secrets]) and restart; to replace a key in "
          "use, put the new one first and keep the old after a comma, run `gatecord rotate-secrets`, then drop "
          "the old one", file=sys.stderr)
    return 0


async def _rotate_secrets(settings: Settings) -> int:
    """Re-encrypt every stored gateway key with the first ``[secrets] key`` (the others only decrypt).
    Exit 1 without a key, or when a stored key opens with none of them (those guilds are named)."""
    from bot.gateways.errors import SecretsNotConfigured
    from bot.gateways.secrets import SecretBox
    from bot.gateways.store import GuildGatewayStore
    from bot.storage.store import Store

    box = SecretBox.from_setting(settings.secrets.key.get_secret_value())
    if box is None:
        print(f"gatecord: {SecretsNotConfigured()}", file=sys.stderr)
        return EXIT_FAILURE
    store = Store.from_settings(settings.storage)
    try:
        await store.open()
    except StorageError as exc:
        print(f"gatecord: {exc}", file=sys.stderr)
        return storage_exit_code(exc)
    try:
        report = await GuildGatewayStore(store, box).rotate()
    finally:
        await store.close()
    kept = report.rows - report.rotated - len(report.unreadable)
    print(f"{store.describe()}: {report.rows} stored gateway key(s): {report.rotated} re-encrypted with the first "
          f"[secrets] key, {kept} already were")
    if report.unreadable:
        guilds = ", ".join(str(g) for g in report.unreadable)
        print(f"gatecord: {len(report.unreadable)} stored key(s) cannot be decrypted with any configured [secrets] "
              f"key and were left as they are (servers {guilds}): add the key they were encrypted with after the "
              "first one and run this again, or their managers must `/gateway set` again", file=sys.stderr)
        return EXIT_FAILURE
    if box.key_count > 1:
        print("every stored key now opens with the first [secrets] key: the others can be removed")
    return 0


async def _check(settings: Settings, *, calls: bool = True) -> int:
    from bot.app.check_models import check_models
    from bot.app.factory import build_gateway_client
    from gateway_client import GatewayError, ModelInfo

    try:
        database, database_ok = await _database_line(settings)
    except DatabaseTooNew as exc:  # as for an SQLite file (ensure_usable): this code must not start on it
        print(f"gatecord: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    problems = 0 if database_ok else 1
    token = settings.discord.token.get_secret_value().strip()
    print(f"discord: token {'set' if token else 'not set'}; API {settings.discord.api_base_url}")
    if not token:  # a note, not a problem: the sandbox needs no token
        print("  note: the token is needed for `gatecord run` only (set GATECORD_DISCORD__TOKEN); "
              "`make run` and `gatecord sandbox` work without one")
    for line in _install_lines(token):
        print(line)
    print(database)
    for line in _tenancy_lines(settings):
        print(line)
    g = settings.gateway
    print(f"gateway: profile {g.profile} at {g.base_url}; key {'set' if g.api_key.get_secret_value() else 'not set'}")
    client = build_gateway_client(settings)
    healthy = False
    try:
        await client.start()
        try:
            health = await client.health()
            healthy = health.ok
            ready = "" if health.ready is None else f", ready: {'yes' if health.ready else 'no'}"
            probe = f" (probed {health.probe})" if health.probe else ""
            reason = health.detail.get("message") or health.detail.get("error")
            if health.ok:
                print(f"gateway health: ok{ready}{probe}")
            else:
                print(f"gateway health: FAILED{probe}: {reason or 'no healthy answer'}")
            problems += 0 if health.ok else 1
        except GatewayError as exc:
            print(f"gateway health: FAILED ({exc})")
            problems += 1
        models: list[ModelInfo] | None = None
        try:
            models = await client.list_models()
            by_kind: dict[str, list[str]] = {}
            for model in models:
                by_kind.setdefault(str(getattr(model.kind, "value", model.kind)), []).append(model.id)
            print(f"gateway models: {len(models)} found")
            for kind, ids in sorted(by_kind.items()):
                shown = ", ".join(ids[:8]) + (f", … (+{len(ids) - 8})" if len(ids) > 8 else "")
                print(f"  {kind}: {shown}")
            for line in _voice_warnings(settings, client.profile):
                print(f"  warning: {line}")
        except GatewayError as exc:
            print(f"gateway models: FAILED ({exc})")
            problems += 1
        problems += await check_models(settings, client, models, calls=calls, reached=healthy or models is not None)
    finally:
        await client.close()
    print("check: all good" if problems == 0 else f"check: {problems} problem(s) found")
    return 0 if problems == 0 else EXIT_FAILURE


def _tenancy_lines(settings: Settings) -> list[str]:
    """``check``'s lines on what servers may bring or buy: their own gateways and the premium tiers."""
    from bot.gateways.secrets import SecretBox

    lines = []
    section = settings.guild_gateways
    if not section.enabled:
        lines.append("per-server gateways: off ([guild_gateways] enabled = false): every server uses [gateway]")
    else:
        box = SecretBox.from_setting(settings.secrets.key.get_secret_value())
        if box is None:
            lines.append("per-server gateways: on, but no [secrets] key: `/gateway set` tells managers it is not "
                         "enabled (`gatecord secrets new-key`, then set GATECORD_SECRETS__KEY)")
        else:
            where = "any address" if section.allow_private_addresses else "public addresses only"
            lines.append(f"per-server gateways: on; [secrets] key set ({box.key_count} key(s): the first "
                         f"encrypts); their base URLs reach {where}")
    premium = settings.premium
    if not (premium.tiers or premium.free or premium.consumables):
        lines.append("premium: not configured (the admins' own limits alone apply)")
    else:
        tiers = ", ".join(f"{t.name} ({t.scope}, SKU {t.sku_id})" for t in premium.tiers) or "none"
        goods = ", ".join(f"{c.name} (+{c.amount:g} {c.kind}, SKU {c.sku_id})" for c in premium.consumables) or "none"
        free = ", ".join(f"{k} {v:g}" for k, v in sorted(premium.free.items())) or "unlimited"
        button = f"SKU {premium.upgrade_sku_id}" if premium.upgrade_sku_id else "none"
        lines.append(f"premium: tiers {tiers}; consumables {goods}; free tier {free}; premium button {button}; "
                     f"entitlements reconciled every {premium.reconcile_hours:g} h")
    return lines


def _install_lines(token: str) -> list[str]:
    """The two install links: a server's (the bot and its permissions) and a member's own (its commands in
    DMs and any server). The application id is read from the token (its public first part)."""
    from bot.app.installs import application_id_from_token, install_links

    app_id = application_id_from_token(token) if token else None
    guild, user = install_links(app_id if app_id is not None else "APPLICATION_ID")
    lines = [f"discord: add to a server (guild install): {guild}",
             f"discord: add to your own account (user install): {user}"]
    if app_id is None:
        lines.append("  note: put your application's id (Developer Portal → General Information) in place of "
                     "APPLICATION_ID; user installs must be enabled under Installation → Installation Contexts")
    return lines


def _voice_warnings(settings: Settings, profile: Profile) -> list[str]:
    """The [gateway] voice settings the gateway cannot honour (``check`` prints them as warnings)."""
    g = settings.gateway
    found = []
    for label, wanted, capability in (("speech_model", g.speech_model, "speech"), ("voice", g.voice, "speech"),
                                      ("transcription_model", g.transcription_model, "transcriptions")):
        if wanted and not profile.supports(capability):
            found.append(f"gateway.{label} {wanted!r} is set, but the {profile.name} gateway offers no {capability}")
    if g.voice and profile.supports("speech") and profile.voices and g.voice not in profile.voices:
        found.append(f"gateway.voice {g.voice!r} is not one of the gateway's voices ({', '.join(profile.voices)})")
    return found


async def _database_line(settings: Settings) -> tuple[str, bool]:
    """``check``'s database line and whether it is fine. Read-only: nothing is created or migrated.
    A database newer than the code raises ``DatabaseTooNew``."""
    from bot.storage.store import Store

    latest = latest_version()
    store = Store.from_settings(settings.storage)
    where = store.describe()
    reached = ""
    if settings.storage.url:
        try:
            current = await store.open(migrate=False)
        except DatabaseTooNew:
            raise
        except StorageError as exc:  # cannot be reached, or at a revision gatecord does not know
            reason = str(exc).removeprefix(where).strip()
            return f"{where}: FAILED, {reason}", False
        finally:
            await store.close()
        reached = "reachable, "
    else:
        current = await asyncio.to_thread(stored_version, settings.storage.path)
    pending = "" if current == latest else "; `gatecord migrate` (or starting the bot) brings it up to date"
    return f"{where}: {reached}schema version {current} of {latest}{pending}", True


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
