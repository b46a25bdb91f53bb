"""Media budgets: the ledger records the video and music seconds a job was charged.

``video_seconds`` (/video: the seconds generated, or what the gateway billed for a cancelled job) and
``music_seconds`` (/music) join the other amounts of a ledger row; the daily counters need no change
(a kind is a row of ``quota_counters``, ``quota_limits`` and ``quota_role_limits``). A reservation's
own time to live is already its row's ``expires_at``.

Revision ID: 0020
Revises: 0019
"""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # ADD COLUMN … NOT NULL DEFAULT 0 works in place on both backends (existing rows read 0)
    op.add_column("usage_ledger", sa.Column("video_seconds", sa.BigInteger(), server_default=sa.text("0"),
                                            nullable=False))
    op.add_column("usage_ledger", sa.Column("music_seconds", sa.BigInteger(), server_default=sa.text("0"),
                                            nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("usage_ledger") as batch:
        batch.drop_column("music_seconds")
        batch.drop_column("video_seconds")
