"""Media jobs: /imagine's tables become one job table for every kind (image, edit, video, music).

``imagine_jobs`` → ``media_jobs`` and ``imagine_images`` → ``media_files``: the new tables are created,
every row is copied with its id (a Discord button names a job by id), and the old tables are dropped.
The id counter continues past every id the old table ever handed out (PostgreSQL: its sequence;
SQLite: ``sqlite_sequence``, AUTOINCREMENT), so a new job never takes the id of a deleted one.

New on a job: ``kind``, ``duration`` (seconds asked for), the gateway's ``gateway_job_id`` of an
asynchronous job, its ``progress``, the budget ``reservation_id`` held for it, and a ``result_url`` with
its expiry. Status ``submitted`` (the gateway accepted it and gave its id; polling resumes after a
restart) and ``cancelled`` are new. A file has a ``role``: ``result``, or an edit's ``source``/``mask``.

The downgrade keeps what ``imagine_*`` can hold: image jobs (``submitted`` → ``unknown``, ``cancelled``
→ ``failed``) and their results; jobs of the other kinds and the edits' sources are dropped.

Revision ID: 0019
Revises: 0018
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

#: the columns imagine_jobs and media_jobs share (0014's and 0016's)
JOB_NAMES = (
    "id", "parent_id", "origin", "source_index", "guild_id", "channel_id", "user_id", "profile", "prompt",
    "negative_prompt", "model", "count", "width", "height", "size", "steps", "seed", "status", "error", "model_used",
    "request_id", "message_id", "created_at", "started_at", "finished_at", "owner", "lease_until",
)
JOB_COLUMNS = ", ".join(JOB_NAMES)
FILE_COLUMNS = "job_id, idx, path, mime, width, height, seed, size_bytes, data"
#: what an image job of media_jobs becomes in imagine_jobs (the downgrade)
AS_IMAGINE = {
    "parent_id": "CASE WHEN parent_id IN (SELECT id FROM media_jobs WHERE kind = 'image') THEN parent_id END",
    "status": "CASE status WHEN 'submitted' THEN 'unknown' WHEN 'cancelled' THEN 'failed' ELSE status END",
}


def _job_columns() -> list[sa.Column]:
    """imagine_jobs' columns as at 0018, in their order."""
    return [
        sa.Column("id", RowId, autoincrement=True, nullable=False),
        sa.Column("parent_id", RowId, nullable=True),
        sa.Column("origin", sa.Text(), server_default=sa.text("'command'"), nullable=False),
        sa.Column("source_index", sa.Integer(), nullable=True),
        sa.Column("guild_id", sa.BigInteger(), nullable=True),
        sa.Column("channel_id", sa.BigInteger(), nullable=True),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("profile", sa.Text(), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("negative_prompt", sa.Text(), nullable=True),
        sa.Column("model", sa.Text(), nullable=True),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("size", sa.Text(), nullable=True),
        sa.Column("steps", sa.Integer(), nullable=True),
        sa.Column("seed", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.Text(), server_default=sa.text("'pending'"), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("model_used", sa.Text(), nullable=True),
        sa.Column("request_id", sa.Text(), nullable=True),
        sa.Column("message_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("owner", sa.Text(), nullable=True),
        sa.Column("lease_until", sa.Float(), nullable=True),
    ]


def _file_columns() -> list[sa.Column]:
    """imagine_images' columns as at 0018 (without the key's job_id)."""
    return [
        sa.Column("idx", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("mime", sa.Text(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("seed", sa.BigInteger(), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=True),
    ]


def upgrade() -> None:
    op.create_table(
        "media_jobs",
        *_job_columns(),
        sa.Column("kind", sa.Text(), server_default=sa.text("'image'"), nullable=False),
        sa.Column("duration", sa.Integer(), nullable=True),
        sa.Column("gateway_job_id", sa.Text(), nullable=True),
        sa.Column("progress", sa.Float(), nullable=True),
        sa.Column("reservation_id", sa.Text(), nullable=True),
        sa.Column("result_url", sa.Text(), nullable=True),
        sa.Column("result_expires_at", sa.Float(), nullable=True),
        sa.CheckConstraint("origin IN ('command', 'variation', 'reroll', 'retry')", name="media_jobs_origin"),
        sa.CheckConstraint("count BETWEEN 1 AND 10", name="media_jobs_count"),
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'submitted', 'generated', 'done', 'failed', 'cancelled', 'unknown',"
            " 'deleted')",
            name="media_jobs_status",
        ),
        sa.CheckConstraint("kind IN ('image', 'edit', 'video', 'music')", name="media_jobs_kind"),
        sa.ForeignKeyConstraint(["parent_id"], ["media_jobs.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_index("media_jobs_status", "media_jobs", ["status"], unique=False)
    op.create_index("media_jobs_user_status", "media_jobs", ["user_id", "status"], unique=False)
    op.create_table(
        "media_files",
        sa.Column("job_id", RowId, autoincrement=False, nullable=False),
        sa.Column("role", sa.Text(), server_default=sa.text("'result'"), nullable=False),
        *_file_columns(),
        sa.Column("duration", sa.Float(), nullable=True),
        sa.CheckConstraint("idx >= 1", name="media_files_idx"),
        sa.CheckConstraint("role IN ('result', 'source', 'mask')", name="media_files_role"),
        sa.ForeignKeyConstraint(["job_id"], ["media_jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "role", "idx"),
    )
    # one statement each: a parent named by a row is in the same statement (checked at its end)
    op.execute(f"INSERT INTO media_jobs ({JOB_COLUMNS}, kind) SELECT {JOB_COLUMNS}, 'image' FROM imagine_jobs")
    op.execute(f"INSERT INTO media_files ({FILE_COLUMNS}, role) SELECT {FILE_COLUMNS}, 'result' FROM imagine_images")
    _carry_counter("imagine_jobs", "media_jobs")
    op.drop_table("imagine_images")
    op.drop_index("imagine_jobs_user_status", table_name="imagine_jobs")
    op.drop_index("imagine_jobs_status", table_name="imagine_jobs")
    op.drop_table("imagine_jobs")


def downgrade() -> None:
    op.create_table(
        "imagine_jobs",
        *_job_columns(),
        sa.CheckConstraint("origin IN ('command', 'variation', 'reroll', 'retry')", name="imagine_jobs_origin"),
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'generated', 'done', 'failed', 'unknown', 'deleted')",
            name="imagine_jobs_status",
        ),
        sa.CheckConstraint("count BETWEEN 1 AND 10", name="imagine_jobs_count"),
        sa.ForeignKeyConstraint(["parent_id"], ["imagine_jobs.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_index("imagine_jobs_status", "imagine_jobs", ["status"], unique=False)
    op.create_index("imagine_jobs_user_status", "imagine_jobs", ["user_id", "status"], unique=False)
    op.create_table(
        "imagine_images",
        sa.Column("job_id", RowId, autoincrement=False, nullable=False),
        *_file_columns(),
        sa.CheckConstraint("idx >= 1", name="imagine_images_idx"),
        sa.ForeignKeyConstraint(["job_id"], ["imagine_jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "idx"),
    )
    kept = ", ".join(AS_IMAGINE.get(name, name) for name in JOB_NAMES)
    op.execute(f"INSERT INTO imagine_jobs ({JOB_COLUMNS}) SELECT {kept} FROM media_jobs WHERE kind = 'image'")
    op.execute(
        f"INSERT INTO imagine_images ({FILE_COLUMNS}) SELECT {FILE_COLUMNS} FROM media_files"
        " WHERE role = 'result' AND job_id IN (SELECT id FROM media_jobs WHERE kind = 'image')"
    )
    _carry_counter("media_jobs", "imagine_jobs")  # the other kinds' ids stay used up too
    op.drop_table("media_files")
    op.drop_index("media_jobs_user_status", table_name="media_jobs")
    op.drop_index("media_jobs_status", table_name="media_jobs")
    op.drop_table("media_jobs")


def _carry_counter(old: str, new: str) -> None:
    """``new``'s next id is above every id ``old`` holds or ever handed out (a deleted job's too)."""
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        mark = bind.execute(sa.text(
            f"SELECT GREATEST((SELECT COALESCE(MAX(id), 0) FROM {old}),"
            " COALESCE(pg_sequence_last_value(CAST(pg_get_serial_sequence(:old, 'id') AS regclass)), 0))"
        ), {"old": old}).scalar_one()
        if mark > 0:
            bind.execute(sa.text("SELECT setval(pg_get_serial_sequence(:new, 'id'), :mark, true)"),
                         {"new": new, "mark": int(mark)})
        return
    mark = bind.execute(sa.text(
        f"SELECT MAX((SELECT COALESCE(MAX(id), 0) FROM {old}),"
        " COALESCE((SELECT seq FROM sqlite_sequence WHERE name = :old), 0))"
    ), {"old": old}).scalar_one()
    if mark <= 0:
        return
    # the copy's inserts made (or raised) new's row to its largest id; an unused id above it is kept out too
    if bind.execute(sa.text("UPDATE sqlite_sequence SET seq = :mark WHERE name = :new AND seq < :mark"),
                    {"mark": int(mark), "new": new}).rowcount == 0 and bind.execute(
            sa.text("SELECT 1 FROM sqlite_sequence WHERE name = :new"), {"new": new}).first() is None:
        bind.execute(sa.text("INSERT INTO sqlite_sequence(name, seq) VALUES (:new, :mark)"),
                     {"new": new, "mark": int(mark)})
