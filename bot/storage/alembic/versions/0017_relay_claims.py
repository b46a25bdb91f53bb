"""Relay delivery from many processes: a post being sent carries its claim (``claimed_at``), and the
unfinished posts of a channel are found in order by an index of their own.

A process claims a post (``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL) by stamping ``claimed_at``
and renews it while the attempt runs; a claim older than ``relay.claim_timeout`` belongs to a process
that stopped, and another one retries the post with the same nonce. ``relay_outbox_channel_pending``
finds the oldest pending post of each channel without reading the others.

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

# Not the same words as relay_outbox_pending's "status IN ('queued', 'sending')" (the same rows, given the
# status CHECK): SQLite would take that index, by status, for the channel lookups this one is for.
UNFINISHED = "status NOT IN ('delivered', 'failed')"


def upgrade() -> None:
    op.add_column("relay_outbox", sa.Column("claimed_at", sa.Float(), nullable=True))
    op.create_index(
        "relay_outbox_channel_pending", "relay_outbox", ["channel_id", "seq"], unique=False,
        sqlite_where=sa.text(UNFINISHED), postgresql_where=sa.text(UNFINISHED),
    )


def downgrade() -> None:
    op.drop_index("relay_outbox_channel_pending", table_name="relay_outbox")
    with op.batch_alter_table("relay_outbox") as batch:
        batch.drop_column("claimed_at")
