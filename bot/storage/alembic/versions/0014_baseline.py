"""Baseline: the schema of the first wave (what the SQL files 0001…0014 built), for SQLite and PostgreSQL.

Revision ids are the schema version numbers: an SQLite file migrated by those files to version 14
is stamped with this revision without running it (bot/storage/migrations.py).

Revision ID: 0014
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audit_log',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('ts', sa.Float(), nullable=False),
    sa.Column('guild_id', sa.BigInteger(), nullable=False),
    sa.Column('actor_id', sa.BigInteger(), nullable=False),
    sa.Column('target', sa.Text(), nullable=False),
    sa.Column('field', sa.Text(), nullable=False),
    sa.Column('old_value', sa.Text(), nullable=True),
    sa.Column('new_value', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('audit_log_guild', 'audit_log', ['guild_id', 'ts'], unique=False)
    op.create_table('chat_threads',
    sa.Column('thread_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('guild_id', sa.BigInteger(), nullable=True),
    sa.Column('parent_channel_id', sa.BigInteger(), nullable=False),
    sa.Column('owner_id', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('thread_id')
    )
    op.create_table('chat_turns',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('conversation_id', sa.Text(), nullable=False),
    sa.Column('parent_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('guild_id', sa.BigInteger(), nullable=True),
    sa.Column('channel_id', sa.BigInteger(), nullable=True),
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('role', sa.Text(), nullable=False),
    sa.Column('content', sa.Text(), nullable=False),
    sa.Column('model', sa.Text(), nullable=True),
    sa.Column('complete', sa.Integer(), server_default=sa.text('1'), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.CheckConstraint("role IN ('user', 'assistant')", name='chat_turns_role'),
    sa.ForeignKeyConstraint(['parent_id'], ['chat_turns.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id'),
    sqlite_autoincrement=True
    )
    op.create_index('chat_turns_conversation', 'chat_turns', ['conversation_id', 'id'], unique=False)
    op.create_index('chat_turns_parent', 'chat_turns', ['parent_id'], unique=False)
    op.create_table('config_values',
    sa.Column('guild_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('channel_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('field', sa.Text(), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.Column('updated_by', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('guild_id', 'channel_id', 'field'),
    sqlite_with_rowid=False
    )
    op.create_table('guilds',
    sa.Column('guild_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('joined_at', sa.BigInteger(), nullable=False),
    sa.Column('left_at', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('guild_id')
    )
    op.create_table('imagine_jobs',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('parent_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('origin', sa.Text(), server_default=sa.text("'command'"), nullable=False),
    sa.Column('source_index', sa.Integer(), nullable=True),
    sa.Column('guild_id', sa.BigInteger(), nullable=True),
    sa.Column('channel_id', sa.BigInteger(), nullable=True),
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('profile', sa.Text(), nullable=False),
    sa.Column('prompt', sa.Text(), nullable=False),
    sa.Column('negative_prompt', sa.Text(), nullable=True),
    sa.Column('model', sa.Text(), nullable=True),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('width', sa.Integer(), nullable=True),
    sa.Column('height', sa.Integer(), nullable=True),
    sa.Column('size', sa.Text(), nullable=True),
    sa.Column('steps', sa.Integer(), nullable=True),
    sa.Column('seed', sa.BigInteger(), nullable=True),
    sa.Column('status', sa.Text(), server_default=sa.text("'pending'"), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('model_used', sa.Text(), nullable=True),
    sa.Column('request_id', sa.Text(), nullable=True),
    sa.Column('message_id', sa.BigInteger(), nullable=True),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('started_at', sa.Float(), nullable=True),
    sa.Column('finished_at', sa.Float(), nullable=True),
    sa.CheckConstraint("origin IN ('command', 'variation', 'reroll', 'retry')", name='imagine_jobs_origin'),
    sa.CheckConstraint("status IN ('pending', 'running', 'generated', 'done', 'failed', 'unknown', 'deleted')", name='imagine_jobs_status'),
    sa.CheckConstraint('count BETWEEN 1 AND 10', name='imagine_jobs_count'),
    sa.ForeignKeyConstraint(['parent_id'], ['imagine_jobs.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id'),
    sqlite_autoincrement=True
    )
    op.create_index('imagine_jobs_status', 'imagine_jobs', ['status'], unique=False)
    op.create_index('imagine_jobs_user_status', 'imagine_jobs', ['user_id', 'status'], unique=False)
    op.create_table('quota_counters',
    sa.Column('scope', sa.Text(), nullable=False),
    sa.Column('guild_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('user_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('day', sa.Text(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('used', sa.Float(), server_default=sa.text('0'), nullable=False),
    sa.Column('reserved', sa.Float(), server_default=sa.text('0'), nullable=False),
    sa.CheckConstraint("scope IN ('guild', 'member')", name='quota_counters_scope'),
    sa.PrimaryKeyConstraint('scope', 'guild_id', 'user_id', 'day', 'kind'),
    sqlite_with_rowid=False
    )
    op.create_table('quota_limits',
    sa.Column('guild_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('scope', sa.Text(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('value', sa.Float(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.Column('updated_by', sa.BigInteger(), nullable=False),
    sa.CheckConstraint("scope IN ('guild', 'member')", name='quota_limits_scope'),
    sa.PrimaryKeyConstraint('guild_id', 'scope', 'kind'),
    sqlite_with_rowid=False
    )
    op.create_table('quota_reservations',
    sa.Column('id', sa.Text(), nullable=False),
    sa.Column('guild_id', sa.BigInteger(), nullable=False),
    sa.Column('channel_id', sa.BigInteger(), nullable=True),
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('day', sa.Text(), nullable=False),
    sa.Column('feature', sa.Text(), nullable=False),
    sa.Column('model', sa.Text(), nullable=True),
    sa.Column('amounts', sa.Text(), nullable=False),
    sa.Column('check_guild', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('expires_at', sa.Float(), nullable=False),
    sa.Column('state', sa.Text(), server_default=sa.text("'open'"), nullable=False),
    sa.Column('closed_at', sa.Float(), nullable=True),
    sa.CheckConstraint("state IN ('open', 'settled', 'released', 'expired')", name='quota_reservations_state'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('quota_reservations_open', 'quota_reservations', ['state', 'expires_at'], unique=False)
    op.create_table('quota_role_limits',
    sa.Column('guild_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('role_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('value', sa.Float(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.Column('updated_by', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('guild_id', 'role_id', 'kind'),
    sqlite_with_rowid=False
    )
    op.create_table('relay_keys',
    sa.Column('key_id', sa.Text(), nullable=False),
    sa.Column('guild_id', sa.BigInteger(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('key_hash', sa.Text(), nullable=False),
    sa.Column('channel_ids', sa.Text(), server_default=sa.text("'[]'"), nullable=False),
    sa.Column('allow_mentions', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('created_by', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('last_used_at', sa.BigInteger(), nullable=True),
    sa.Column('revoked_at', sa.BigInteger(), nullable=True),
    sa.Column('revoked_by', sa.BigInteger(), nullable=True),
    sa.Column('avatar_url', sa.Text(), nullable=True),
    sa.Column('custom_identity', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('channels_from_creator', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('expires_at', sa.BigInteger(), nullable=True),
    sa.CheckConstraint('allow_mentions IN (0, 1)', name='relay_keys_allow_mentions'),
    sa.CheckConstraint('channels_from_creator IN (0, 1)', name='relay_keys_channels_from_creator'),
    sa.CheckConstraint('custom_identity IN (0, 1)', name='relay_keys_custom_identity'),
    sa.PrimaryKeyConstraint('key_id')
    )
    op.create_index('relay_keys_active_name', 'relay_keys', ['guild_id', 'name'], unique=True, sqlite_where=sa.text('revoked_at IS NULL'), postgresql_where=sa.text('revoked_at IS NULL'))
    op.create_index('relay_keys_guild', 'relay_keys', ['guild_id'], unique=False)
    op.create_table('relay_webhooks',
    sa.Column('channel_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('webhook_id', sa.BigInteger(), nullable=False),
    sa.Column('token', sa.Text(), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('channel_id')
    )
    op.create_table('usage_ledger',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('ts', sa.Float(), nullable=False),
    sa.Column('day', sa.Text(), nullable=False),
    sa.Column('guild_id', sa.BigInteger(), nullable=False),
    sa.Column('channel_id', sa.BigInteger(), nullable=True),
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('feature', sa.Text(), nullable=False),
    sa.Column('model_requested', sa.Text(), nullable=True),
    sa.Column('model_used', sa.Text(), nullable=True),
    sa.Column('tokens', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
    sa.Column('images', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('credits', sa.Float(), nullable=True),
    sa.Column('latency_ms', sa.Float(), nullable=True),
    sa.Column('request_id', sa.Text(), nullable=True),
    sa.Column('outcome', sa.Text(), nullable=False),
    sa.Column('charged', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('error_code', sa.Text(), nullable=True),
    sa.Column('reservation_id', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('usage_ledger_guild_day', 'usage_ledger', ['guild_id', 'day'], unique=False)
    op.create_index('usage_ledger_user_day', 'usage_ledger', ['guild_id', 'user_id', 'day'], unique=False)
    op.create_table('chat_messages',
    sa.Column('message_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('turn_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['turn_id'], ['chat_turns.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('message_id')
    )
    op.create_index('chat_messages_turn', 'chat_messages', ['turn_id'], unique=False)
    op.create_table('imagine_images',
    sa.Column('job_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('idx', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('mime', sa.Text(), nullable=False),
    sa.Column('width', sa.Integer(), nullable=True),
    sa.Column('height', sa.Integer(), nullable=True),
    sa.Column('seed', sa.BigInteger(), nullable=True),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('idx >= 1', name='imagine_images_idx'),
    sa.ForeignKeyConstraint(['job_id'], ['imagine_jobs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('job_id', 'idx')
    )
    op.create_table('relay_outbox',
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('id', sa.Text(), nullable=False),
    sa.Column('key_id', sa.Text(), nullable=False),
    sa.Column('guild_id', sa.BigInteger(), nullable=False),
    sa.Column('channel_id', sa.BigInteger(), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('via', sa.Text(), nullable=False),
    sa.Column('idempotency_key', sa.Text(), nullable=True),
    sa.Column('fingerprint', sa.Text(), nullable=True),
    sa.Column('status', sa.Text(), server_default=sa.text("'queued'"), nullable=False),
    sa.Column('attempts', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('next_attempt_at', sa.Float(), nullable=False),
    sa.Column('in_doubt_since', sa.Float(), nullable=True),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('delivered_at', sa.Float(), nullable=True),
    sa.Column('message_id', sa.BigInteger(), nullable=True),
    sa.Column('error_code', sa.Text(), nullable=True),
    sa.Column('error_message', sa.Text(), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.CheckConstraint("status IN ('queued', 'sending', 'delivered', 'failed')", name='relay_outbox_status'),
    sa.CheckConstraint("via IN ('bot', 'webhook')", name='relay_outbox_via'),
    sa.ForeignKeyConstraint(['key_id'], ['relay_keys.key_id'], ),
    sa.PrimaryKeyConstraint('seq'),
    sa.UniqueConstraint('id'),
    sqlite_autoincrement=True
    )
    op.create_index('relay_outbox_channel_message', 'relay_outbox', ['channel_id', 'message_id'], unique=False, sqlite_where=sa.text('message_id IS NOT NULL'), postgresql_where=sa.text('message_id IS NOT NULL'))
    op.create_index('relay_outbox_finished_created', 'relay_outbox', ['created_at'], unique=False, sqlite_where=sa.text("status IN ('delivered', 'failed')"), postgresql_where=sa.text("status IN ('delivered', 'failed')"))
    op.create_index('relay_outbox_idempotency', 'relay_outbox', ['key_id', 'idempotency_key'], unique=True, sqlite_where=sa.text('idempotency_key IS NOT NULL'), postgresql_where=sa.text('idempotency_key IS NOT NULL'))
    op.create_index('relay_outbox_idempotency_created', 'relay_outbox', ['created_at'], unique=False, sqlite_where=sa.text('idempotency_key IS NOT NULL'), postgresql_where=sa.text('idempotency_key IS NOT NULL'))
    op.create_index('relay_outbox_pending', 'relay_outbox', ['status', 'seq'], unique=False, sqlite_where=sa.text("status IN ('queued', 'sending')"), postgresql_where=sa.text("status IN ('queued', 'sending')"))


def downgrade() -> None:
    op.drop_index('relay_outbox_pending', table_name='relay_outbox', sqlite_where=sa.text("status IN ('queued', 'sending')"), postgresql_where=sa.text("status IN ('queued', 'sending')"))
    op.drop_index('relay_outbox_idempotency_created', table_name='relay_outbox', sqlite_where=sa.text('idempotency_key IS NOT NULL'), postgresql_where=sa.text('idempotency_key IS NOT NULL'))
    op.drop_index('relay_outbox_idempotency', table_name='relay_outbox', sqlite_where=sa.text('idempotency_key IS NOT NULL'), postgresql_where=sa.text('idempotency_key IS NOT NULL'))
    op.drop_index('relay_outbox_finished_created', table_name='relay_outbox', sqlite_where=sa.text("status IN ('delivered', 'failed')"), postgresql_where=sa.text("status IN ('delivered', 'failed')"))
    op.drop_index('relay_outbox_channel_message', table_name='relay_outbox', sqlite_where=sa.text('message_id IS NOT NULL'), postgresql_where=sa.text('message_id IS NOT NULL'))
    op.drop_table('relay_outbox')
    op.drop_table('imagine_images')
    op.drop_index('chat_messages_turn', table_name='chat_messages')
    op.drop_table('chat_messages')
    op.drop_index('usage_ledger_user_day', table_name='usage_ledger')
    op.drop_index('usage_ledger_guild_day', table_name='usage_ledger')
    op.drop_table('usage_ledger')
    op.drop_table('relay_webhooks')
    op.drop_index('relay_keys_guild', table_name='relay_keys')
    op.drop_index('relay_keys_active_name', table_name='relay_keys', sqlite_where=sa.text('revoked_at IS NULL'), postgresql_where=sa.text('revoked_at IS NULL'))
    op.drop_table('relay_keys')
    op.drop_table('quota_role_limits')
    op.drop_index('quota_reservations_open', table_name='quota_reservations')
    op.drop_table('quota_reservations')
    op.drop_table('quota_limits')
    op.drop_table('quota_counters')
    op.drop_index('imagine_jobs_user_status', table_name='imagine_jobs')
    op.drop_index('imagine_jobs_status', table_name='imagine_jobs')
    op.drop_table('imagine_jobs')
    op.drop_table('guilds')
    op.drop_table('config_values')
    op.drop_index('chat_turns_parent', table_name='chat_turns')
    op.drop_index('chat_turns_conversation', table_name='chat_turns')
    op.drop_table('chat_turns')
    op.drop_table('chat_threads')
    op.drop_index('audit_log_guild', table_name='audit_log')
    op.drop_table('audit_log')
