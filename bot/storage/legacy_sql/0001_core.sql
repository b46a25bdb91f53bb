-- Core: the guilds the bot has seen. Feature tables come in later migrations
-- (0002 budgets/config/ledger, 0003 relay outbox, 0004 imagine jobs, 0005 chat).
CREATE TABLE guilds (
    guild_id   INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL,
    joined_at  INTEGER NOT NULL,
    left_at    INTEGER
);
