-- Budgets (per guild / per member, per UTC day), the usage ledger, guild/channel configuration
-- and the audit trail of admin changes.

-- One row per (scope, guild, user, day, kind). scope 'guild' uses user_id 0; a DM uses guild_id 0.
-- used = settled usage; reserved = granted to calls still in flight.
CREATE TABLE quota_counters (
    scope     TEXT    NOT NULL CHECK (scope IN ('guild', 'member')),
    guild_id  INTEGER NOT NULL,
    user_id   INTEGER NOT NULL,
    day       TEXT    NOT NULL,            -- YYYY-MM-DD, UTC
    kind      TEXT    NOT NULL,            -- chat_requests | tokens | vision_requests | images | credits
    used      REAL    NOT NULL DEFAULT 0,
    reserved  REAL    NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, guild_id, user_id, day, kind)
) WITHOUT ROWID;

-- A grant made by reserve(); closed by settle/release, or returned when it expires.
CREATE TABLE quota_reservations (
    id              TEXT    PRIMARY KEY,
    guild_id        INTEGER NOT NULL,
    channel_id      INTEGER,
    user_id         INTEGER NOT NULL,
    day             TEXT    NOT NULL,
    feature         TEXT    NOT NULL,
    model           TEXT,
    amounts         TEXT    NOT NULL,       -- JSON {kind: amount} held in `reserved`
    check_guild     INTEGER NOT NULL,       -- 1 when the guild scope was charged
    created_at      REAL    NOT NULL,
    expires_at      REAL    NOT NULL,
    state           TEXT    NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'settled', 'released', 'expired')),
    closed_at       REAL
);
CREATE INDEX quota_reservations_open ON quota_reservations(state, expires_at);

-- Limits set by admins. scope 'guild' = the server's total, 'member' = default per member.
-- value -1 = unlimited. Missing row = the config default.
CREATE TABLE quota_limits (
    guild_id    INTEGER NOT NULL,
    scope       TEXT    NOT NULL CHECK (scope IN ('guild', 'member')),
    kind        TEXT    NOT NULL,
    value       REAL    NOT NULL,
    updated_at  REAL    NOT NULL,
    updated_by  INTEGER NOT NULL,
    PRIMARY KEY (guild_id, scope, kind)
) WITHOUT ROWID;

-- Per-role member limit (most generous of a member's roles wins; -1 = unlimited).
CREATE TABLE quota_role_limits (
    guild_id    INTEGER NOT NULL,
    role_id     INTEGER NOT NULL,
    kind        TEXT    NOT NULL,
    value       REAL    NOT NULL,
    updated_at  REAL    NOT NULL,
    updated_by  INTEGER NOT NULL,
    PRIMARY KEY (guild_id, role_id, kind)
) WITHOUT ROWID;

-- One row per gateway call (and per reservation that expired without an answer).
CREATE TABLE usage_ledger (
    id               INTEGER PRIMARY KEY,
    ts               REAL    NOT NULL,
    day              TEXT    NOT NULL,
    guild_id         INTEGER NOT NULL,
    channel_id       INTEGER,
    user_id          INTEGER NOT NULL,
    feature          TEXT    NOT NULL,
    model_requested  TEXT,
    model_used       TEXT,
    tokens           INTEGER NOT NULL DEFAULT 0,
    images           INTEGER NOT NULL DEFAULT 0,
    credits          REAL,
    latency_ms       REAL,
    request_id       TEXT,
    outcome          TEXT    NOT NULL,           -- ok | error | cancelled | expired | interrupted | …
    charged          INTEGER NOT NULL DEFAULT 0,  -- 1 when the counters' `used` includes this row
    error_code       TEXT,
    reservation_id   TEXT
);
CREATE INDEX usage_ledger_guild_day ON usage_ledger(guild_id, day);
CREATE INDEX usage_ledger_user_day ON usage_ledger(guild_id, user_id, day);

-- Configuration overrides: channel_id 0 = guild level. value is JSON.
CREATE TABLE config_values (
    guild_id    INTEGER NOT NULL,
    channel_id  INTEGER NOT NULL,
    field       TEXT    NOT NULL,
    value       TEXT    NOT NULL,
    updated_at  REAL    NOT NULL,
    updated_by  INTEGER NOT NULL,
    PRIMARY KEY (guild_id, channel_id, field)
) WITHOUT ROWID;

-- Who changed what, when, old -> new (JSON text; NULL = default / none).
CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY,
    ts         REAL    NOT NULL,
    guild_id   INTEGER NOT NULL,
    actor_id   INTEGER NOT NULL,
    target     TEXT    NOT NULL,    -- e.g. 'guild', 'channel:123', 'quota:guild', 'quota:member', 'role:456', 'user:789'
    field      TEXT    NOT NULL,
    old_value  TEXT,
    new_value  TEXT
);
CREATE INDEX audit_log_guild ON audit_log(guild_id, ts);
