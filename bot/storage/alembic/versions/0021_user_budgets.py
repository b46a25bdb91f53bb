"""Per-user budgets: the bot owner's overrides of ``[quotas.user]``.

A request from a user install (a server where Gatecord is not a member) or a DM is charged to the
member's own budget, not a server's: its counters are the ``member`` rows of guild 0 in
``quota_counters`` (as DMs always were). Its daily limits are ``[quotas.user]`` from the config, or
the value the owner set for that user here (``gatecord quota user set``, ``/owner quota-user``).
``quota_limits`` can't hold them (a server's rows, scope ``guild``/``member``), hence a table of its own.

Revision ID: 0021
Revises: 0020
"""

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "quota_user_limits",
        sa.Column("user_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("updated_by", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "kind"),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("quota_user_limits")
