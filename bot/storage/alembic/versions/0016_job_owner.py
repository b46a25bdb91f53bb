"""Image jobs name the process working on them: ``owner`` and its lease (``lease_until``, unix seconds).

A process renews the lease of its pending/running/generated jobs while it lives and gives it up when it
stops; another process recovers a job (running → unknown, pending → failed, generated → delivered) only
once its lease has run out, so a process starting never touches a job a live process is working on.

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("imagine_jobs") as batch:
        batch.add_column(sa.Column("owner", sa.Text(), nullable=True))
        batch.add_column(sa.Column("lease_until", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("imagine_jobs") as batch:
        batch.drop_column("lease_until")
        batch.drop_column("owner")
