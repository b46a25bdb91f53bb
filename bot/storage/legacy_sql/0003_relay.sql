-- Relay (/send-data): API keys, the durable outbox, and the channel webhooks the bot owns.

-- A key is "gcr_<key_id>_<secret>"; only the sha256 of the whole key is stored.
CREATE TABLE relay_keys (
    key_id          TEXT    PRIMARY KEY,
    guild_id        INTEGER NOT NULL,
    name            TEXT    NOT NULL,
    key_hash        TEXT    NOT NULL,
    channel_ids     TEXT    NOT NULL DEFAULT '[]',   -- JSON array of ids; empty = any channel of the guild
    allow_mentions  INTEGER NOT NULL DEFAULT 0 CHECK (allow_mentions IN (0, 1)),
    created_by      INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    last_used_at    INTEGER,
    revoked_at      INTEGER,
    revoked_by      INTEGER
);
CREATE UNIQUE INDEX relay_keys_active_name ON relay_keys(guild_id, name) WHERE revoked_at IS NULL;
CREATE INDEX relay_keys_guild ON relay_keys(guild_id);

-- One row per accepted post, written (and committed) before the 202 answer.
-- status: queued -> sending -> delivered | failed.  "sending" with in_doubt_since set means an
-- attempt whose outcome is unknown (crash, timeout, 5xx): it is re-sent with the same nonce
-- (bot path) or reconciled against the channel's history first (webhook path).
CREATE TABLE relay_outbox (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT    NOT NULL UNIQUE,            -- public id; also the Discord nonce (<= 25 chars)
    key_id           TEXT    NOT NULL REFERENCES relay_keys(key_id),
    guild_id         INTEGER NOT NULL,
    channel_id       INTEGER NOT NULL,
    body             TEXT    NOT NULL,                   -- the JSON sent to Discord (mentions already resolved)
    via              TEXT    NOT NULL CHECK (via IN ('bot', 'webhook')),
    idempotency_key  TEXT,
    fingerprint      TEXT,                               -- hash of the post, kept with an Idempotency-Key
    status           TEXT    NOT NULL DEFAULT 'queued'
                             CHECK (status IN ('queued', 'sending', 'delivered', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  REAL    NOT NULL,
    in_doubt_since   REAL,
    created_at       REAL    NOT NULL,
    delivered_at     REAL,
    message_id       INTEGER,
    error_code       TEXT,
    error_message    TEXT,
    note             TEXT
);
CREATE UNIQUE INDEX relay_outbox_idempotency ON relay_outbox(key_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX relay_outbox_pending ON relay_outbox(status, seq) WHERE status IN ('queued', 'sending');
CREATE INDEX relay_outbox_channel_message ON relay_outbox(channel_id, message_id) WHERE message_id IS NOT NULL;

-- The webhook the bot created in a channel (for posts with username/avatar_url).
CREATE TABLE relay_webhooks (
    channel_id  INTEGER PRIMARY KEY,                     -- the channel the webhook lives in (a thread's parent)
    webhook_id  INTEGER NOT NULL,
    token       TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);
