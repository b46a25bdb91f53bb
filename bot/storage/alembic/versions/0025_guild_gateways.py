"""Per-server gateways: a guild's own AI gateway (its key encrypted), and which gateway served each call.

``guild_gateways`` holds one row per guild that set its own gateway with ``/gateway set``; the API key is
stored only as a Fernet token (``api_key_encrypted``, ``[secrets] key``) and its last four characters for
``/gateway show``. ``usage_ledger.gateway`` is the label of the gateway that answered a call (the
operator's profile name or a fallback's label, ``guild:<profile>`` for a guild's own), NULL when none did.

Revision ID: 0025
Revises: 0024
"""

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "guild_gateways",
        sa.Column("guild_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("profile", sa.Text(), nullable=False),
        sa.Column("base_url", sa.Text(), nullable=False),
        sa.Column("api_key_encrypted", sa.Text(), nullable=False),
        sa.Column("key_last4", sa.Text(), nullable=False),
        sa.Column("chat_model", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column("vision_model", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column("image_model", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column("allow_operator_fallback", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("updated_by", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("guild_id"),
    )
    op.add_column("usage_ledger", sa.Column("gateway", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("usage_ledger") as batch:
        batch.drop_column("gateway")
    op.drop_table("guild_gateways")
