"""Knowledge budgets: the ledger records the embedding tokens a call was charged.

``embedding_tokens`` (/knowledge add: the document's chunks embedded; a search: its query) joins the
other amounts of a ledger row; the daily counters need no change (a kind is a row of ``quota_counters``,
``quota_limits`` and ``quota_role_limits``).

Revision ID: 0023
Revises: 0022
"""

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # ADD COLUMN … NOT NULL DEFAULT 0 works in place on both backends (existing rows read 0)
    op.add_column("usage_ledger", sa.Column("embedding_tokens", sa.BigInteger(), server_default=sa.text("0"),
                                            nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("usage_ledger") as batch:
        batch.drop_column("embedding_tokens")
