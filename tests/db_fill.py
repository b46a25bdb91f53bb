"""A database with realistic rows in EVERY table of bot/storage/schema.py (for copy-db and the like).

``fill(store)`` writes through the store's portable SQL, so it fills SQLite and PostgreSQL alike:
64-bit Discord ids up to 2**63 - 1, NULLs, unicode (accents, CJK, emoji, new lines), binary image
bytes with every byte value, fractional times, JSON kept as text, every auto-numbered table with ids
the database handed out, a self-reference that points FORWARD (a row whose parent has a larger id),
and a deleted last row in the tables whose ids are never reused (the copy must not hand that id out
again). ``dump(store)`` reads every table back in key order, for comparisons.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bot.storage.schema import metadata
from bot.storage.store import Store
from bot.storage.tx import SyncTx

MAX_ID = 2**63 - 1  # the largest id PostgreSQL's BIGINT (and SQLite's INTEGER) can hold
GUILD = 987_654_321_098_765_432
GUILD_2 = MAX_ID
USER = 123_456_789_012_345_678
USER_2 = 2**62 + 7
CHANNEL = 1_111_111_111_111_111_111
THREAD = 2_222_222_222_222_222_222
ROLE = 3_333_333_333_333_333_333
T0 = 1_764_921_600.125  # a fractional unix time
DAY = "2025-12-05"
BLOB = bytes(range(256)) * 3  # every byte value, NULs included
LEDGER_ROWS = 2_500  # more than one batch of the copy

#: the tables whose auto-numbered ids are never reused (SQLite AUTOINCREMENT / a PostgreSQL sequence)
NEVER_REUSED = ("relay_outbox", "media_jobs", "chat_turns")


def _insert(tx: SyncTx, table: str, row: dict[str, Any], returning: str | None = None) -> Any:
    columns = ", ".join(row)
    values = ", ".join(f":{name}" for name in row)
    sql = f"INSERT INTO {table} ({columns}) VALUES ({values})"
    if returning:
        return tx.fetchval(f"{sql} RETURNING {returning}", row)
    tx.execute(sql, row)
    return None


def embedding_value(vector: list[float], dialect: str) -> Any:
    """A chunk's vector as each backend keeps it (float32 bytes in SQLite, real[] in PostgreSQL)."""
    packed = np.asarray(vector, dtype="<f4")
    return packed.tobytes() if dialect == "sqlite" else packed.tolist()


def _comparable(table: str, row: dict[str, Any]) -> dict[str, Any]:
    if table == "knowledge_chunks":
        value = row["embedding"]
        floats = np.frombuffer(bytes(value), dtype="<f4") if isinstance(value, bytes | memoryview) else value
        row["embedding"] = [float(x) for x in floats]
    return row


def _fill(tx: SyncTx) -> None:
    _insert(tx, "guilds", {"guild_id": GUILD, "name": "Café ☕ Guild", "joined_at": 1_700_000_000, "left_at": None})
    _insert(tx, "guilds", {"guild_id": GUILD_2, "name": "全角ギルド 🎌", "joined_at": 1_700_000_001,
                           "left_at": 1_700_500_000})
    for scope, user, kind, used in (("guild", 0, "tokens", 1234.5), ("member", USER, "tokens", 0.0),
                                    ("member", USER_2, "images", 3.0)):
        _insert(tx, "quota_counters", {"scope": scope, "guild_id": GUILD, "user_id": user, "day": DAY,
                                       "kind": kind, "used": used, "reserved": 250.0 if user else 0.0})
    _insert(tx, "quota_reservations", {
        "id": "res-open-1", "guild_id": GUILD, "channel_id": None, "user_id": USER, "day": DAY, "feature": "chat",
        "model": None, "amounts": '{"tokens": 500}', "check_guild": 1, "created_at": T0, "expires_at": T0 + 300,
        "state": "open", "closed_at": None,
    })
    _insert(tx, "quota_reservations", {
        "id": "res-settled-2", "guild_id": GUILD, "channel_id": CHANNEL, "user_id": USER_2, "day": DAY,
        "feature": "imagine", "model": "flux-schnell", "amounts": '{"images": 4}', "check_guild": 0,
        "created_at": T0 + 1.5, "expires_at": T0 + 301.5, "state": "settled", "closed_at": T0 + 9.75,
    })
    _insert(tx, "quota_limits", {"guild_id": GUILD, "scope": "guild", "kind": "tokens", "value": 100_000.0,
                                 "updated_at": T0, "updated_by": USER})
    _insert(tx, "quota_limits", {"guild_id": GUILD, "scope": "member", "kind": "images", "value": 0.5,
                                 "updated_at": T0 + 1, "updated_by": MAX_ID})
    _insert(tx, "quota_role_limits", {"guild_id": GUILD, "role_id": ROLE, "kind": "images", "value": 5.0,
                                      "updated_at": T0, "updated_by": USER})
    _insert(tx, "quota_user_limits", {"user_id": MAX_ID, "kind": "chat_requests", "value": 50.0,
                                      "updated_at": T0, "updated_by": USER})
    ledger = [
        {"ts": T0 + i / 8, "day": DAY, "guild_id": GUILD, "channel_id": None if i % 3 else CHANNEL,
         "user_id": USER if i % 2 else USER_2, "feature": "chat" if i % 5 else "vision",
         "model_requested": None if i % 7 else "gpt-4o", "model_used": "gpt-4o-mini", "tokens": i * 1_000_003,
         "images": i % 4, "credits": None if i % 2 else i / 3, "latency_ms": 812.5 + i, "request_id": f"req-{i}",
         "outcome": "ok" if i % 11 else "error", "charged": i % 2, "error_code": None if i % 11 else "E_GATEWAY",
         "reservation_id": f"res-{i}" if i % 13 == 0 else None}
        for i in range(LEDGER_ROWS)
    ]
    columns = list(ledger[0])
    tx.executemany(f"INSERT INTO usage_ledger ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)})",
                   ledger)
    _insert(tx, "config_values", {"guild_id": GUILD, "channel_id": 0, "field": "chat_model", "value": '"gpt-4o"',
                                  "updated_at": T0, "updated_by": USER})
    _insert(tx, "config_values", {"guild_id": GUILD, "channel_id": CHANNEL, "field": "system_prompt",
                                  "value": '"Réponds en français, s’il te plaît 🤖\\nLigne 2"', "updated_at": T0 + 2,
                                  "updated_by": USER_2})
    for i, (old, new) in enumerate(((None, '"gpt-4o"'), ('"gpt-4o"', None))):
        _insert(tx, "audit_log", {"ts": T0 + i, "guild_id": GUILD, "actor_id": USER, "target": f"channel:{CHANNEL}",
                                  "field": "chat_model", "old_value": old, "new_value": new})
    for key_id, name, revoked in (("rk_live_1", "CI ✓ builds", None), ("rk_old_2", "Ancien clé", 1_700_100_000)):
        _insert(tx, "relay_keys", {
            "key_id": key_id, "guild_id": GUILD, "name": name, "key_hash": f"sha256$salt${key_id}",
            "channel_ids": f"[{CHANNEL}]", "allow_mentions": int(revoked is None), "created_by": USER,
            "created_at": 1_700_000_000, "last_used_at": None if revoked else 1_700_000_050,
            "revoked_at": revoked, "revoked_by": USER_2 if revoked else None,
            "avatar_url": "https://cdn.example/ci.png" if revoked is None else None,
            "custom_identity": 1, "channels_from_creator": 0, "expires_at": None if revoked else 1_800_000_000,
        })
    for i in range(4):
        _insert(tx, "relay_outbox", {
            "id": f"post-{i}", "key_id": "rk_live_1", "guild_id": GUILD, "channel_id": CHANNEL,
            "body": '{"content": "Build #%d ✅ passed — 日本語"}' % i, "via": "bot" if i % 2 else "webhook",
            "idempotency_key": f"idem-{i}" if i != 2 else None, "fingerprint": f"fp{i:04d}",
            "status": ("delivered", "queued", "failed", "sending")[i], "attempts": i,
            "next_attempt_at": T0 + i, "in_doubt_since": T0 if i == 3 else None, "created_at": T0 + i / 2,
            "delivered_at": T0 + 1 if i == 0 else None, "message_id": MAX_ID - i if i == 0 else None,
            "error_code": "50013" if i == 2 else None, "error_message": "Missing Permissions" if i == 2 else None,
            "note": None,
        })
    _insert(tx, "relay_webhooks", {"channel_id": CHANNEL, "webhook_id": MAX_ID - 9, "token": "whtok-Zz_09",
                                   "created_at": 1_700_000_010})
    # the other kinds (0019): a video the gateway is working on, an edit with its source and mask
    video = _insert(tx, "media_jobs", {
        "kind": "video", "guild_id": GUILD, "channel_id": CHANNEL, "user_id": USER_2, "profile": "openai",
        "prompt": "a paper boat on a river 🚣", "model": "sora-mini", "count": 1, "size": "1280x720", "duration": 8,
        "status": "submitted", "created_at": T0 + 0.25, "started_at": T0 + 0.5, "gateway_job_id": "vid_abc123",
        "progress": 62.5, "reservation_id": "res-open-1", "result_url": "https://media.example/v/1.mp4?sig=x",
        "result_expires_at": T0 + 3600.5, "owner": "host:42:cafe0001", "lease_until": T0 + 30,
    }, returning="id")
    edit = _insert(tx, "media_jobs", {
        "kind": "edit", "user_id": USER, "profile": "openai", "prompt": "make the sky violet", "count": 2,
        "size": "512x512", "status": "cancelled", "error": "cancelled by the requester", "created_at": T0 + 0.75,
        "finished_at": T0 + 2,
    }, returning="id")
    for job, role, mime, data, seconds in ((video, "result", "video/mp4", BLOB[:100], 8.04),
                                           (edit, "source", "image/png", BLOB, None),
                                           (edit, "mask", "image/png", None, None)):
        _insert(tx, "media_files", {"job_id": job, "role": role, "idx": 1, "path": f"{job}/{role}-1.bin",
                                    "mime": mime, "size_bytes": len(data or b"x"), "data": data,
                                    "duration": seconds})
    jobs = []
    for i in range(4):
        jobs.append(_insert(tx, "media_jobs", {
            "parent_id": jobs[0] if i == 1 else None, "origin": "variation" if i == 1 else "command",
            "source_index": 2 if i == 1 else None, "guild_id": GUILD if i < 3 else None,
            "channel_id": CHANNEL if i < 3 else None, "user_id": USER, "profile": "flux",
            "prompt": f"a lighthouse at dusk, 灯台 {i} ☀\nwide", "negative_prompt": None if i else "blurry",
            "model": "flux-schnell", "count": 1 + i, "width": 1024, "height": 768, "size": None if i else "1024x768",
            "steps": 4, "seed": MAX_ID - i, "status": ("done", "done", "failed", "pending")[i],
            "error": "gateway timed out" if i == 2 else None, "model_used": "flux-schnell" if i < 2 else None,
            "request_id": f"img-req-{i}", "message_id": MAX_ID - 100 - i if i < 2 else None,
            "created_at": T0 + i, "started_at": T0 + i + 0.5 if i < 3 else None,
            "finished_at": T0 + i + 7.25 if i < 3 else None,
        }, returning="id"))
    # a parent with a LARGER id than its child: the copy must not insert the child before it exists
    tx.execute("UPDATE media_jobs SET parent_id = :parent WHERE id = :id", {"parent": jobs[2], "id": jobs[0]})
    for job, idx, data in ((jobs[0], 1, BLOB), (jobs[0], 2, b""), (jobs[1], 1, None)):
        _insert(tx, "media_files", {"job_id": job, "idx": idx, "path": f"images/{job}/{idx}.png",
                                    "mime": "image/png", "width": 1024 if data else None, "height": 768,
                                    "seed": MAX_ID - idx, "size_bytes": len(data or b"x" * 5_000_000),
                                    "data": data})
    turns: list[int] = []
    for i in range(5):
        turns.append(_insert(tx, "chat_turns", {
            "conversation_id": "conv-ü-1", "parent_id": turns[-1] if turns else None,
            "guild_id": GUILD if i < 4 else None, "channel_id": CHANNEL if i < 4 else None,
            "user_id": USER, "role": "user" if i % 2 == 0 else "assistant",
            "content": f"Message {i}: «bonjour» 你好 👋\n```py\nprint({i})\n```",
            "model": None if i % 2 == 0 else "gpt-4o", "complete": 0 if i == 3 else 1, "created_at": T0 + i * 0.1,
        }, returning="id"))
    for n, turn in enumerate(turns):
        _insert(tx, "chat_messages", {"message_id": MAX_ID - 1000 - n, "turn_id": turn})
    _insert(tx, "chat_threads", {"thread_id": THREAD, "guild_id": GUILD, "parent_channel_id": CHANNEL,
                                 "owner_id": USER, "created_at": T0})
    _insert(tx, "chat_threads", {"thread_id": THREAD + 1, "guild_id": None, "parent_channel_id": CHANNEL,
                                 "owner_id": USER_2, "created_at": T0 + 3})
    _insert(tx, "rate_buckets", {"name": "relay-key:rk_live_1", "tokens": 3.5, "updated_at": T0})
    _insert(tx, "rate_buckets", {"name": "discord", "tokens": 49.0, "updated_at": T0 + 0.001})
    _insert(tx, "discord_channels", {"channel_id": CHANNEL, "guild_id": GUILD, "parent_id": None, "messageable": 1,
                                     "updated_at": T0})
    _insert(tx, "discord_channels", {"channel_id": THREAD, "guild_id": GUILD, "parent_id": CHANNEL,
                                     "messageable": 0, "updated_at": T0 + 1})
    for guild, source in ((GUILD, "rules.md"), (GUILD_2, "https://discord.com/channels/1/2/3")):
        document = _insert(tx, "knowledge_documents", {
            "guild_id": guild, "source": source, "title": "Règles 📜", "content_hash": "sha256:ab",
            "chunk_count": 2, "tokens": 12, "added_by": USER, "added_at": T0 + 0.25,
        }, returning="id")
        for idx, vector in enumerate(([0.5, -0.25, 1e-7], [3.0, 0.0, -1.5])):
            _insert(tx, "knowledge_chunks", {
                "document_id": document, "guild_id": guild, "idx": idx, "heading": None if idx else "# Title",
                "text": f"chunk {idx} ü", "embedding": embedding_value(vector, tx.dialect), "dims": 3,
            })
    _insert(tx, "knowledge_answers", {"guild_id": GUILD, "channel_id": CHANNEL, "thread_id": THREAD,
                                      "message_id": MAX_ID - 7, "user_id": USER, "outcome": "solved",
                                      "created_at": T0, "decided_at": T0 + 60.5})
    _insert(tx, "knowledge_answers", {"guild_id": GUILD, "channel_id": CHANNEL, "thread_id": THREAD + 1,
                                      "message_id": None, "user_id": USER_2, "outcome": None,
                                      "created_at": T0 + 1, "decided_at": None})
    # 0025: a guild's own gateway, its key as a Fernet token (a copy moves the token as it is)
    for guild, profile, fallback in ((GUILD, "digicord", 0), (GUILD_2, "openai", 1)):
        _insert(tx, "guild_gateways", {
            "guild_id": guild, "profile": profile, "base_url": "https://gw.example/ü", "key_last4": "9xYz",
            "api_key_encrypted": "gAAAAABpM3Jm" + "Q" * 120 + "==", "chat_model": "model/ç", "vision_model": "",
            "image_model": "", "allow_operator_fallback": fallback, "created_at": T0, "updated_at": T0 + 0.5,
            "updated_by": USER,
        })
    # 0026: premium entitlements, a consumable's grant, a guild's bonus pool
    _insert(tx, "premium_entitlements", {"entitlement_id": MAX_ID - 11, "sku_id": MAX_ID - 12, "guild_id": GUILD,
                                         "user_id": USER, "type": 8, "starts_at": T0, "ends_at": None,
                                         "deleted": 0, "consumed": 0, "updated_at": T0 + 0.5})
    _insert(tx, "premium_entitlements", {"entitlement_id": MAX_ID - 13, "sku_id": MAX_ID - 14, "guild_id": GUILD,
                                         "user_id": USER_2, "type": 1, "starts_at": None, "ends_at": T0 + 9.75,
                                         "deleted": 1, "consumed": 1, "updated_at": T0 + 1})
    _insert(tx, "premium_grants", {"entitlement_id": MAX_ID - 13, "sku_id": MAX_ID - 14, "guild_id": GUILD,
                                   "kind": "credits", "amount": 1000.5, "granted_at": T0, "consume_claimed_at": T0,
                                   "consumed_at": T0 + 0.125})
    _insert(tx, "premium_pools", {"guild_id": GUILD, "kind": "credits", "balance": 999.25, "granted": 1000.5,
                                  "updated_at": T0 + 2})
    # the last row of each never-reused table is deleted: its id stays used up
    tx.execute("DELETE FROM relay_outbox WHERE seq = (SELECT MAX(seq) FROM relay_outbox)")
    tx.execute("DELETE FROM media_jobs WHERE id = :id", {"id": jobs[-1]})
    tx.execute("DELETE FROM chat_messages WHERE turn_id = :id", {"id": turns[-1]})
    tx.execute("DELETE FROM chat_turns WHERE id = :id", {"id": turns[-1]})


async def fill(store: Store) -> dict[str, int]:
    """Rows in every table; returns each never-reused table's largest id ever handed out."""

    def body(tx: SyncTx) -> dict[str, int]:
        marks = {}
        _fill(tx)
        for table in NEVER_REUSED:
            key = metadata.tables[table].autoincrement_column
            assert key is not None
            # the deleted row's id: one above what is left (each table's last row was deleted)
            marks[table] = int(tx.fetchval(f"SELECT MAX({key.name}) FROM {table}")) + 1
        return marks

    return await store.run(body)


def key_order(table: str) -> str:
    return ", ".join(column.name for column in metadata.tables[table].primary_key.columns)


async def dump(store: Store) -> dict[str, list[dict[str, Any]]]:
    """Every table's rows in key order, as dicts (column order differs between backends)."""
    return {
        table.name: [_comparable(table.name, dict(row)) for row in await store.fetchall(f"SELECT * FROM {table.name} "
                                                                f"ORDER BY {key_order(table.name)}")]
        for table in metadata.sorted_tables
    }
