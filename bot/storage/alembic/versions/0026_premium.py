"""Premium tiers: Discord entitlements as last seen, consumables granted once, guilds' bonus pools.

``premium_entitlements`` mirrors the entitlements the bot heard of (events and the periodic listing);
``premium_grants`` has one row per consumable entitlement (its primary key makes the grant happen once),
with when it was consumed on Discord; ``premium_pools`` is what consumables added to a guild's budget
beyond its tier's ceiling, per kind, drawn down as it is used.

Revision ID: 0026
Revises: 0025
"""

import sqlalchemy as sa
from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "premium_entitlements",
        sa.Column("entitlement_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("sku_id", sa.BigInteger(), nullable=False),
        sa.Column("guild_id", sa.BigInteger(), nullable=True),
        sa.Column("user_id", sa.BigInteger(), nullable=True),
        sa.Column("type", sa.Integer(), nullable=False),
        sa.Column("starts_at", sa.Float(), nullable=True),
        sa.Column("ends_at", sa.Float(), nullable=True),
        sa.Column("deleted", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("consumed", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("entitlement_id"),
    )
    op.create_index("premium_entitlements_guild", "premium_entitlements", ["guild_id"])
    op.create_index("premium_entitlements_user", "premium_entitlements", ["user_id"])
    op.create_table(
        "premium_grants",
        sa.Column("entitlement_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("sku_id", sa.BigInteger(), nullable=False),
        sa.Column("guild_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("amount", sa.Float(), nullable=False),
        sa.Column("granted_at", sa.Float(), nullable=False),
        sa.Column("consume_claimed_at", sa.Float(), nullable=True),
        sa.Column("consumed_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("entitlement_id"),
    )
    op.create_table(
        "premium_pools",
        sa.Column("guild_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("balance", sa.Float(), nullable=False),
        sa.Column("granted", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("guild_id", "kind"),
    )


def downgrade() -> None:
    op.drop_table("premium_pools")
    op.drop_table("premium_grants")
    op.drop_index("premium_entitlements_user", table_name="premium_entitlements")
    op.drop_index("premium_entitlements_guild", table_name="premium_entitlements")
    op.drop_table("premium_entitlements")
