"""The knowledge base: a guild's documents and their embedded chunks (bot/knowledge/store.py).

``knowledge_chunks.embedding`` is a float32 vector: little-endian bytes (BLOB) in SQLite, which sqlite-vec's
functions read as they are; ``real[]`` in PostgreSQL, which pgvector casts to its ``vector`` type where the
server has the extension (the column does not depend on it). Every query filters by ``guild_id``.

Revision ID: 0022
Revises: 0021
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Embedding = sa.LargeBinary().with_variant(postgresql.ARRAY(sa.REAL()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "knowledge_documents",
        sa.Column("id", RowId, primary_key=True, autoincrement=True),
        sa.Column("guild_id", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("content_hash", sa.Text(), nullable=False),
        sa.Column("chunk_count", sa.Integer(), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        sa.Column("added_by", sa.BigInteger(), nullable=False),
        sa.Column("added_at", sa.Float(), nullable=False),
        sa.UniqueConstraint("guild_id", "source", name="knowledge_documents_guild_source"),
    )
    op.create_table(
        "knowledge_chunks",
        sa.Column("id", RowId, primary_key=True, autoincrement=True),
        sa.Column("document_id", RowId, sa.ForeignKey("knowledge_documents.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("guild_id", sa.BigInteger(), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("heading", sa.Text()),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("embedding", Embedding, nullable=False),
        sa.Column("dims", sa.Integer(), nullable=False),
        sa.CheckConstraint("dims > 0", name="knowledge_chunks_dims"),
    )
    op.create_index("knowledge_chunks_guild", "knowledge_chunks", ["guild_id", "dims"])
    op.create_index("knowledge_chunks_document", "knowledge_chunks", ["document_id", "idx"])


def downgrade() -> None:
    op.drop_table("knowledge_chunks")
    op.drop_table("knowledge_documents")
