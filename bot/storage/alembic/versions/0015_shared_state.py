"""What many processes share: rate buckets, the channel directory, image bytes in the database.

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_buckets",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "discord_channels",
        sa.Column("channel_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("guild_id", sa.BigInteger(), nullable=False),
        sa.Column("parent_id", sa.BigInteger(), nullable=True),
        sa.Column("messageable", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("channel_id"),
    )
    op.create_index("discord_channels_guild", "discord_channels", ["guild_id"], unique=False)
    with op.batch_alter_table("imagine_images") as batch:
        batch.add_column(sa.Column("data", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("imagine_images") as batch:
        batch.drop_column("data")
    op.drop_index("discord_channels_guild", table_name="discord_channels")
    op.drop_table("discord_channels")
    op.drop_table("rate_buckets")
