"""The schema, once, for both backends (SQLAlchemy Core metadata).

Alembic's migrations (``bot/storage/alembic/versions``) create exactly this; ``tests/test_storage_schema.py``
compares a migrated database with it on SQLite and PostgreSQL. Discord ids are 64-bit (``BigInteger``);
times are unix seconds (``Float`` = double precision in PostgreSQL); JSON is kept as text; flags are 0/1
integers, as the code has always written them.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import REAL

metadata = MetaData()

#: an auto-numbered primary key: SQLite's rowid alias (INTEGER PRIMARY KEY), PostgreSQL's BIGSERIAL
RowId = BigInteger().with_variant(Integer(), "sqlite")


guilds = Table(
    "guilds", metadata,
    Column("guild_id", BigInteger, primary_key=True, autoincrement=False),
    Column("name", Text, nullable=False),
    Column("joined_at", BigInteger, nullable=False),
    Column("left_at", BigInteger),
)

quota_counters = Table(
    "quota_counters", metadata,
    Column("scope", Text, primary_key=True),
    Column("guild_id", BigInteger, primary_key=True, autoincrement=False),
    Column("user_id", BigInteger, primary_key=True, autoincrement=False),
    Column("day", Text, primary_key=True),
    Column("kind", Text, primary_key=True),
    Column("used", Float, nullable=False, server_default=text("0")),
    Column("reserved", Float, nullable=False, server_default=text("0")),
    CheckConstraint("scope IN ('guild', 'member')", name="quota_counters_scope"),
    sqlite_with_rowid=False,
)

quota_reservations = Table(
    "quota_reservations", metadata,
    Column("id", Text, primary_key=True),
    Column("guild_id", BigInteger, nullable=False),
    Column("channel_id", BigInteger),
    Column("user_id", BigInteger, nullable=False),
    Column("day", Text, nullable=False),
    Column("feature", Text, nullable=False),
    Column("model", Text),
    Column("amounts", Text, nullable=False),
    Column("check_guild", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("state", Text, nullable=False, server_default=text("'open'")),
    Column("closed_at", Float),
    CheckConstraint("state IN ('open', 'settled', 'released', 'expired')", name="quota_reservations_state"),
    Index("quota_reservations_open", "state", "expires_at"),
)

quota_limits = Table(
    "quota_limits", metadata,
    Column("guild_id", BigInteger, primary_key=True, autoincrement=False),
    Column("scope", Text, primary_key=True),
    Column("kind", Text, primary_key=True),
    Column("value", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("updated_by", BigInteger, nullable=False),
    CheckConstraint("scope IN ('guild', 'member')", name="quota_limits_scope"),
    sqlite_with_rowid=False,
)

quota_role_limits = Table(
    "quota_role_limits", metadata,
    Column("guild_id", BigInteger, primary_key=True, autoincrement=False),
    Column("role_id", BigInteger, primary_key=True, autoincrement=False),
    Column("kind", Text, primary_key=True),
    Column("value", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("updated_by", BigInteger, nullable=False),
    sqlite_with_rowid=False,
)

#: the bot owner's per-user overrides of ``[quotas.user]`` (a member's own budget: DMs, user installs)
quota_user_limits = Table(
    "quota_user_limits", metadata,
    Column("user_id", BigInteger, primary_key=True, autoincrement=False),
    Column("kind", Text, primary_key=True),
    Column("value", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("updated_by", BigInteger, nullable=False),
    sqlite_with_rowid=False,
)

usage_ledger = Table(
    "usage_ledger", metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("ts", Float, nullable=False),
    Column("day", Text, nullable=False),
    Column("guild_id", BigInteger, nullable=False),
    Column("channel_id", BigInteger),
    Column("user_id", BigInteger, nullable=False),
    Column("feature", Text, nullable=False),
    Column("model_requested", Text),
    Column("model_used", Text),
    Column("tokens", BigInteger, nullable=False, server_default=text("0")),
    Column("images", Integer, nullable=False, server_default=text("0")),
    Column("credits", Float),
    Column("latency_ms", Float),
    Column("request_id", Text),
    Column("outcome", Text, nullable=False),
    Column("charged", Integer, nullable=False, server_default=text("0")),
    Column("error_code", Text),
    Column("reservation_id", Text),
    # 0018: voice budgets (appended, as a migration adds them)
    Column("speech_chars", BigInteger, nullable=False, server_default=text("0")),
    Column("transcription_seconds", BigInteger, nullable=False, server_default=text("0")),
    # 0020: media budgets
    Column("video_seconds", BigInteger, nullable=False, server_default=text("0")),
    Column("music_seconds", BigInteger, nullable=False, server_default=text("0")),
    # 0023: the knowledge base's embedding tokens
    Column("embedding_tokens", BigInteger, nullable=False, server_default=text("0")),
    # 0025: the label of the gateway that served the call (NULL: none did)
    Column("gateway", Text),
    Index("usage_ledger_guild_day", "guild_id", "day"),
    Index("usage_ledger_user_day", "guild_id", "user_id", "day"),
)

config_values = Table(
    "config_values", metadata,
    Column("guild_id", BigInteger, primary_key=True, autoincrement=False),
    Column("channel_id", BigInteger, primary_key=True, autoincrement=False),
    Column("field", Text, primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("updated_by", BigInteger, nullable=False),
    sqlite_with_rowid=False,
)

audit_log = Table(
    "audit_log", metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("ts", Float, nullable=False),
    Column("guild_id", BigInteger, nullable=False),
    Column("actor_id", BigInteger, nullable=False),
    Column("target", Text, nullable=False),
    Column("field", Text, nullable=False),
    Column("old_value", Text),
    Column("new_value", Text),
    Index("audit_log_guild", "guild_id", "ts"),
)

relay_keys = Table(
    "relay_keys", metadata,
    Column("key_id", Text, primary_key=True),
    Column("guild_id", BigInteger, nullable=False),
    Column("name", Text, nullable=False),
    Column("key_hash", Text, nullable=False),
    Column("channel_ids", Text, nullable=False, server_default=text("'[]'")),
    Column("allow_mentions", Integer, nullable=False, server_default=text("0")),
    Column("created_by", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("last_used_at", BigInteger),
    Column("revoked_at", BigInteger),
    Column("revoked_by", BigInteger),
    Column("avatar_url", Text),
    Column("custom_identity", Integer, nullable=False, server_default=text("0")),
    Column("channels_from_creator", Integer, nullable=False, server_default=text("0")),
    Column("expires_at", BigInteger),
    CheckConstraint("allow_mentions IN (0, 1)", name="relay_keys_allow_mentions"),
    CheckConstraint("custom_identity IN (0, 1)", name="relay_keys_custom_identity"),
    CheckConstraint("channels_from_creator IN (0, 1)", name="relay_keys_channels_from_creator"),
    Index("relay_keys_active_name", "guild_id", "name", unique=True,
          sqlite_where=text("revoked_at IS NULL"), postgresql_where=text("revoked_at IS NULL")),
    Index("relay_keys_guild", "guild_id"),
)

relay_outbox = Table(
    "relay_outbox", metadata,
    Column("seq", RowId, primary_key=True, autoincrement=True),
    Column("id", Text, nullable=False, unique=True),
    Column("key_id", Text, ForeignKey("relay_keys.key_id"), nullable=False),
    Column("guild_id", BigInteger, nullable=False),
    Column("channel_id", BigInteger, nullable=False),
    Column("body", Text, nullable=False),
    Column("via", Text, nullable=False),
    Column("idempotency_key", Text),
    Column("fingerprint", Text),
    Column("status", Text, nullable=False, server_default=text("'queued'")),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at", Float, nullable=False),
    Column("in_doubt_since", Float),
    Column("created_at", Float, nullable=False),
    Column("delivered_at", Float),
    Column("message_id", BigInteger),
    Column("error_code", Text),
    Column("error_message", Text),
    Column("note", Text),
    Column("claimed_at", Float),  # 0017: when a process claimed it for an attempt (renewed while sending)
    CheckConstraint("via IN ('bot', 'webhook')", name="relay_outbox_via"),
    CheckConstraint("status IN ('queued', 'sending', 'delivered', 'failed')", name="relay_outbox_status"),
    Index("relay_outbox_idempotency", "key_id", "idempotency_key", unique=True,
          sqlite_where=text("idempotency_key IS NOT NULL"), postgresql_where=text("idempotency_key IS NOT NULL")),
    Index("relay_outbox_pending", "status", "seq",
          sqlite_where=text("status IN ('queued', 'sending')"),
          postgresql_where=text("status IN ('queued', 'sending')")),
    Index("relay_outbox_channel_message", "channel_id", "message_id",
          sqlite_where=text("message_id IS NOT NULL"), postgresql_where=text("message_id IS NOT NULL")),
    Index("relay_outbox_finished_created", "created_at",
          sqlite_where=text("status IN ('delivered', 'failed')"),
          postgresql_where=text("status IN ('delivered', 'failed')")),
    Index("relay_outbox_idempotency_created", "created_at",
          sqlite_where=text("idempotency_key IS NOT NULL"), postgresql_where=text("idempotency_key IS NOT NULL")),
    Index("relay_outbox_channel_pending", "channel_id", "seq",  # 0017: the head of each channel's queue
          sqlite_where=text("status NOT IN ('delivered', 'failed')"),
          postgresql_where=text("status NOT IN ('delivered', 'failed')")),
    sqlite_autoincrement=True,
)

relay_webhooks = Table(
    "relay_webhooks", metadata,
    Column("channel_id", BigInteger, primary_key=True, autoincrement=False),
    Column("webhook_id", BigInteger, nullable=False),
    Column("token", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

media_jobs = Table(  # 0019: was imagine_jobs (the ids kept)
    "media_jobs", metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("parent_id", RowId, ForeignKey("media_jobs.id", ondelete="SET NULL")),
    Column("origin", Text, nullable=False, server_default=text("'command'")),
    Column("source_index", Integer),
    Column("guild_id", BigInteger),
    Column("channel_id", BigInteger),
    Column("user_id", BigInteger, nullable=False),
    Column("profile", Text, nullable=False),
    Column("prompt", Text, nullable=False),
    Column("negative_prompt", Text),
    Column("model", Text),
    Column("count", Integer, nullable=False),
    Column("width", Integer),
    Column("height", Integer),
    Column("size", Text),
    Column("steps", Integer),
    Column("seed", BigInteger),
    Column("status", Text, nullable=False, server_default=text("'pending'")),
    Column("error", Text),
    Column("model_used", Text),
    Column("request_id", Text),
    Column("message_id", BigInteger),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("finished_at", Float),
    Column("owner", Text),  # 0016: the process working on the job (bot/media/jobs.py)
    Column("lease_until", Float),  # 0016: until when that process's claim holds (renewed while it lives)
    Column("kind", Text, nullable=False, server_default=text("'image'")),  # 0019 and the rest below
    Column("duration", Integer),  # seconds asked for (video, music)
    Column("gateway_job_id", Text),  # the gateway's id of an asynchronous job (status 'submitted' on)
    Column("progress", Float),  # 0-100, as the gateway last reported it
    Column("reservation_id", Text),  # the budget hold taken for the job (quota_reservations.id)
    Column("result_url", Text),  # where the gateway offers the result (ephemeral) …
    Column("result_expires_at", Float),  # … until then (unix seconds)
    CheckConstraint("origin IN ('command', 'variation', 'reroll', 'retry')", name="media_jobs_origin"),
    CheckConstraint("count BETWEEN 1 AND 10", name="media_jobs_count"),
    CheckConstraint(
        "status IN ('pending', 'running', 'submitted', 'generated', 'done', 'failed', 'cancelled', 'unknown',"
        " 'deleted')",
        name="media_jobs_status",
    ),
    CheckConstraint("kind IN ('image', 'edit', 'video', 'music')", name="media_jobs_kind"),
    Index("media_jobs_user_status", "user_id", "status"),
    Index("media_jobs_status", "status"),
    sqlite_autoincrement=True,
)

media_files = Table(  # 0019: was imagine_images
    "media_files", metadata,
    Column("job_id", RowId, ForeignKey("media_jobs.id", ondelete="CASCADE"), primary_key=True,
           autoincrement=False),
    Column("role", Text, primary_key=True, server_default=text("'result'")),  # or an edit's 'source'/'mask'
    Column("idx", Integer, primary_key=True, autoincrement=False),
    Column("path", Text, nullable=False),
    Column("mime", Text, nullable=False),
    Column("width", Integer),
    Column("height", Integer),
    Column("seed", BigInteger),
    Column("size_bytes", BigInteger, nullable=False),
    Column("data", LargeBinary),  # 0015: the bytes, when kept in the database rather than a shared directory
    Column("duration", Float),  # 0019: seconds of a video or audio file
    CheckConstraint("idx >= 1", name="media_files_idx"),
    CheckConstraint("role IN ('result', 'source', 'mask')", name="media_files_role"),
)

chat_turns = Table(
    "chat_turns", metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("conversation_id", Text, nullable=False),
    Column("parent_id", RowId, ForeignKey("chat_turns.id", ondelete="SET NULL")),
    Column("guild_id", BigInteger),
    Column("channel_id", BigInteger),
    Column("user_id", BigInteger, nullable=False),
    Column("role", Text, nullable=False),
    Column("content", Text, nullable=False),
    Column("model", Text),
    Column("complete", Integer, nullable=False, server_default=text("1")),
    Column("created_at", Float, nullable=False),
    CheckConstraint("role IN ('user', 'assistant')", name="chat_turns_role"),
    Index("chat_turns_conversation", "conversation_id", "id"),
    Index("chat_turns_parent", "parent_id"),
    sqlite_autoincrement=True,
)

chat_messages = Table(
    "chat_messages", metadata,
    Column("message_id", BigInteger, primary_key=True, autoincrement=False),
    Column("turn_id", RowId, ForeignKey("chat_turns.id", ondelete="CASCADE"), nullable=False),
    Index("chat_messages_turn", "turn_id"),
)

chat_threads = Table(
    "chat_threads", metadata,
    Column("thread_id", BigInteger, primary_key=True, autoincrement=False),
    Column("guild_id", BigInteger),
    Column("parent_channel_id", BigInteger, nullable=False),
    Column("owner_id", BigInteger, nullable=False),
    Column("created_at", Float, nullable=False),
)

# -- 0015: what many processes share ----------------------------------------------------------------

#: token buckets shared by every process: relay keys' post rates ("relay-key:<id>"), the bot token's
#: Discord request pacing ("discord"), IDENTIFY per max_concurrency bucket ("identify:<n>")
rate_buckets = Table(
    "rate_buckets", metadata,
    Column("name", Text, primary_key=True),
    Column("tokens", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

#: the channels the gateway processes see, for the web tier (which holds no Discord connection)
discord_channels = Table(
    "discord_channels", metadata,
    Column("channel_id", BigInteger, primary_key=True, autoincrement=False),
    Column("guild_id", BigInteger, nullable=False),
    Column("parent_id", BigInteger),
    Column("messageable", Integer, nullable=False, server_default=text("1")),
    Column("updated_at", Float, nullable=False),
    Index("discord_channels_guild", "guild_id"),
)

# -- 0022: the knowledge base (bot/knowledge/store.py) -------------------------------------------------

#: a float32 vector: little-endian bytes in SQLite (what sqlite-vec reads), ``real[]`` in PostgreSQL (what
#: pgvector casts to ``vector``; a column of pgvector's own type would need the extension on every server)
Embedding = LargeBinary().with_variant(postgresql.ARRAY(REAL()), "postgresql")

knowledge_documents = Table(
    "knowledge_documents", metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("guild_id", BigInteger, nullable=False),
    Column("source", Text, nullable=False),  # a file name or a message link
    Column("title", Text, nullable=False),
    Column("content_hash", Text, nullable=False),
    Column("chunk_count", Integer, nullable=False),
    Column("tokens", BigInteger, nullable=False, server_default=text("0")),
    Column("added_by", BigInteger, nullable=False),
    Column("added_at", Float, nullable=False),
    UniqueConstraint("guild_id", "source", name="knowledge_documents_guild_source"),
)

knowledge_chunks = Table(
    "knowledge_chunks", metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("document_id", RowId, ForeignKey("knowledge_documents.id", ondelete="CASCADE"), nullable=False),
    Column("guild_id", BigInteger, nullable=False),
    Column("idx", Integer, nullable=False),
    Column("heading", Text),
    Column("text", Text, nullable=False),
    Column("embedding", Embedding, nullable=False),
    Column("dims", Integer, nullable=False),
    CheckConstraint("dims > 0", name="knowledge_chunks_dims"),
    Index("knowledge_chunks_guild", "guild_id", "dims"),
    Index("knowledge_chunks_document", "document_id", "idx"),
)

# -- 0024: auto-answers in help channels --------------------------------------------------------------

#: an answer the bot gave to a new post in an ``auto_answer`` channel; ``outcome`` NULL until Solved / Not
#: helpful is pressed (a later press changes it)
knowledge_answers = Table(
    "knowledge_answers", metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("guild_id", BigInteger, nullable=False),
    Column("channel_id", BigInteger, nullable=False),  # the forum or text channel
    Column("thread_id", BigInteger, nullable=False),  # the post's thread (where the answer is)
    Column("message_id", BigInteger),  # the answer's first message
    Column("user_id", BigInteger, nullable=False),  # the poster
    Column("outcome", Text),
    Column("created_at", Float, nullable=False),
    Column("decided_at", Float),
    CheckConstraint("outcome IN ('solved', 'not_helpful')", name="knowledge_answers_outcome"),
    Index("knowledge_answers_guild_created", "guild_id", "created_at"),
    sqlite_autoincrement=True,
)

# -- 0025: per-server gateways -------------------------------------------------------------------------

#: a guild's own AI gateway (``/gateway set``); the key only as a Fernet token (``[secrets] key``)
guild_gateways = Table(
    "guild_gateways", metadata,
    Column("guild_id", BigInteger, primary_key=True, autoincrement=False),
    Column("profile", Text, nullable=False),
    Column("base_url", Text, nullable=False),
    Column("api_key_encrypted", Text, nullable=False),
    Column("key_last4", Text, nullable=False),
    Column("chat_model", Text, nullable=False, server_default=text("''")),
    Column("vision_model", Text, nullable=False, server_default=text("''")),
    Column("image_model", Text, nullable=False, server_default=text("''")),
    Column("allow_operator_fallback", Integer, nullable=False, server_default=text("0")),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("updated_by", BigInteger, nullable=False),
)

# -- 0026: premium tiers (Discord entitlements) and consumable bonus pools ----------------------------

#: Discord entitlements as last seen (events and the reconciliation's listing); times are unix seconds
premium_entitlements = Table(
    "premium_entitlements", metadata,
    Column("entitlement_id", BigInteger, primary_key=True, autoincrement=False),
    Column("sku_id", BigInteger, nullable=False),
    Column("guild_id", BigInteger),
    Column("user_id", BigInteger),
    Column("type", Integer, nullable=False),
    Column("starts_at", Float),
    Column("ends_at", Float),
    Column("deleted", Integer, nullable=False, server_default=text("0")),
    Column("consumed", Integer, nullable=False, server_default=text("0")),
    Column("updated_at", Float, nullable=False),
    Index("premium_entitlements_guild", "guild_id"),
    Index("premium_entitlements_user", "user_id"),
)

#: a consumable's grant: one row per entitlement (granted once), consumed on Discord afterwards
premium_grants = Table(
    "premium_grants", metadata,
    Column("entitlement_id", BigInteger, primary_key=True, autoincrement=False),
    Column("sku_id", BigInteger, nullable=False),
    Column("guild_id", BigInteger, nullable=False),
    Column("kind", Text, nullable=False),
    Column("amount", Float, nullable=False),
    Column("granted_at", Float, nullable=False),
    Column("consume_claimed_at", Float),
    Column("consumed_at", Float),
)

#: a guild's bonus pool per budget kind: what consumables added beyond its tier's ceiling, left to use
premium_pools = Table(
    "premium_pools", metadata,
    Column("guild_id", BigInteger, primary_key=True, autoincrement=False),
    Column("kind", Text, primary_key=True),
    Column("balance", Float, nullable=False),
    Column("granted", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)
