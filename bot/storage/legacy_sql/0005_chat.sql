-- Chat: conversation turns, the Discord messages that show them, and the threads the bot started.
-- A turn follows its parent turn (a reply to an old answer branches from it); conversation_id is
-- 'thread:<id>' for a bot thread (shared by its members) or 'c:<random>' for one member's conversation.
CREATE TABLE chat_turns (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT    NOT NULL,
    parent_id       INTEGER REFERENCES chat_turns(id) ON DELETE SET NULL,
    guild_id        INTEGER,
    channel_id      INTEGER,
    user_id         INTEGER NOT NULL,
    role            TEXT    NOT NULL CHECK (role IN ('user', 'assistant')),
    content         TEXT    NOT NULL,
    model           TEXT,
    complete        INTEGER NOT NULL DEFAULT 1,
    created_at      REAL    NOT NULL
);
CREATE INDEX chat_turns_conversation ON chat_turns(conversation_id, id);
CREATE INDEX chat_turns_parent ON chat_turns(parent_id);

CREATE TABLE chat_messages (
    message_id INTEGER PRIMARY KEY,
    turn_id    INTEGER NOT NULL REFERENCES chat_turns(id) ON DELETE CASCADE
);
CREATE INDEX chat_messages_turn ON chat_messages(turn_id);

CREATE TABLE chat_threads (
    thread_id         INTEGER PRIMARY KEY,
    guild_id          INTEGER,
    parent_channel_id INTEGER NOT NULL,
    owner_id          INTEGER NOT NULL,
    created_at        REAL    NOT NULL
);
