"""Voice budgets: the ledger records the speech characters and transcription seconds a call was charged.

``speech_chars`` (text read aloud) and ``transcription_seconds`` (audio heard, whole seconds rounded up)
join images and tokens as amounts of a ledger row; the daily counters need no change (a kind is a row
of ``quota_counters``, ``quota_limits`` and ``quota_role_limits``).

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # ADD COLUMN … NOT NULL DEFAULT 0 works in place on both backends (existing rows read 0)
    op.add_column("usage_ledger", sa.Column("speech_chars", sa.BigInteger(), server_default=sa.text("0"),
                                            nullable=False))
    op.add_column("usage_ledger", sa.Column("transcription_seconds", sa.BigInteger(), server_default=sa.text("0"),
                                            nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("usage_ledger") as batch:
        batch.drop_column("transcription_seconds")
        batch.drop_column("speech_chars")
