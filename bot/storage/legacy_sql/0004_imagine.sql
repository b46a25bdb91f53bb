-- /imagine jobs: recorded before the paid gateway call, so buttons (custom_id carries the job id)
-- keep working after a restart and an interrupted paid call is never resubmitted blindly.
-- status: pending (recorded/queued, not sent) -> running (paid call in flight) -> generated (images
-- stored) -> done (result posted); or failed / unknown (was running when the bot stopped) / deleted.
CREATE TABLE imagine_jobs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    parent_id       INTEGER REFERENCES imagine_jobs(id) ON DELETE SET NULL,
    origin          TEXT    NOT NULL DEFAULT 'command'
                    CHECK (origin IN ('command', 'variation', 'reroll', 'retry')),
    source_index    INTEGER,
    guild_id        INTEGER,
    channel_id      INTEGER,
    user_id         INTEGER NOT NULL,
    profile         TEXT    NOT NULL,
    prompt          TEXT    NOT NULL,
    negative_prompt TEXT,
    model           TEXT,
    count           INTEGER NOT NULL CHECK (count BETWEEN 1 AND 10),
    width           INTEGER,
    height          INTEGER,
    size            TEXT,
    steps           INTEGER,
    seed            INTEGER,
    status          TEXT    NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'running', 'generated', 'done', 'failed', 'unknown', 'deleted')),
    error           TEXT,
    model_used      TEXT,
    request_id      TEXT,
    message_id      INTEGER,
    created_at      REAL    NOT NULL,
    started_at      REAL,
    finished_at     REAL
);
CREATE INDEX imagine_jobs_user_status ON imagine_jobs(user_id, status);
CREATE INDEX imagine_jobs_status ON imagine_jobs(status);

-- One row per generated image; the bytes live in a file under the data directory (path is relative
-- to the images directory) so U-buttons can post them at full size after a restart.
CREATE TABLE imagine_images (
    job_id     INTEGER NOT NULL REFERENCES imagine_jobs(id) ON DELETE CASCADE,
    idx        INTEGER NOT NULL CHECK (idx >= 1),
    path       TEXT    NOT NULL,
    mime       TEXT    NOT NULL,
    width      INTEGER,
    height     INTEGER,
    seed       INTEGER,
    size_bytes INTEGER NOT NULL,
    PRIMARY KEY (job_id, idx)
);
