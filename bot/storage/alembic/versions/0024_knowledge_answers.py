"""Auto-answers in help channels: one row per answer the bot gave to a new post, and its outcome.

``outcome`` is NULL until the poster (or a moderator) presses **Solved** or **Not helpful**; a later press
changes it (``decided_at`` is the last press). ``/usage`` counts a guild's rows by ``created_at``.

Revision ID: 0024
Revises: 0023
"""

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "knowledge_answers",
        sa.Column("id", RowId, autoincrement=True, nullable=False),
        sa.Column("guild_id", sa.BigInteger(), nullable=False),
        sa.Column("channel_id", sa.BigInteger(), nullable=False),
        sa.Column("thread_id", sa.BigInteger(), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=True),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("decided_at", sa.Float(), nullable=True),
        sa.CheckConstraint("outcome IN ('solved', 'not_helpful')", name="knowledge_answers_outcome"),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_index("knowledge_answers_guild_created", "knowledge_answers", ["guild_id", "created_at"], unique=False)


def downgrade() -> None:
    op.drop_index("knowledge_answers_guild_created", table_name="knowledge_answers")
    op.drop_table("knowledge_answers")
