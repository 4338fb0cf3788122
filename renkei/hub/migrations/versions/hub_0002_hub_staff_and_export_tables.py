"""hub staff and export tables

Staff accounts (operators) with argon2id passwords and TOTP, their database sessions and
personal API tokens (renkei.staff.auth), and the export requests with their approvals
(renkei.staff.exports). Only new tables: existing rows are untouched.

Revision ID: hub_0002
Revises: hub_0001
Create Date: 2026-11-26 10:28:49.031552
"""
import sqlalchemy as sa
from alembic import op

import renkei.core.db

revision = 'hub_0002'
down_revision = 'hub_0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('auth_staff',
    sa.Column('staff_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('totp_secret', sa.LargeBinary(), nullable=True),
    sa.Column('totp_last_step', sa.BigInteger(), nullable=True),
    sa.Column('failed_count', sa.Integer(), nullable=False),
    sa.Column('locked_until', renkei.core.db.UtcDateTime(timezone=True), nullable=True),
    sa.Column('roles', sa.JSON(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', renkei.core.db.UtcDateTime(timezone=True), nullable=False),
    sa.Column('password_changed_at', renkei.core.db.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('staff_id', name=op.f('pk_auth_staff'))
    )
    op.create_table('export_requests',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('requested_by', sa.String(length=64), nullable=False),
    sa.Column('requested_at', renkei.core.db.UtcDateTime(timezone=True), nullable=False),
    sa.Column('estimated_rows', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('decided_by', sa.String(length=64), nullable=True),
    sa.Column('decided_at', renkei.core.db.UtcDateTime(timezone=True), nullable=True),
    sa.Column('rows_written', sa.Integer(), nullable=True),
    sa.Column('finished_at', renkei.core.db.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_export_requests'))
    )
    op.create_table('auth_api_tokens',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('staff_id', sa.String(length=64), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('scopes', sa.JSON(), nullable=False),
    sa.Column('created_at', renkei.core.db.UtcDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', renkei.core.db.UtcDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', renkei.core.db.UtcDateTime(timezone=True), nullable=True),
    sa.Column('last_used_at', renkei.core.db.UtcDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['staff_id'], ['auth_staff.staff_id'], name=op.f('fk_auth_api_tokens_staff_id_auth_staff')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_auth_api_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_auth_api_tokens_token_hash'))
    )
    with op.batch_alter_table('auth_api_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_auth_api_tokens_staff_id'), ['staff_id'], unique=False)

    op.create_table('auth_sessions',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('staff_id', sa.String(length=64), nullable=False),
    sa.Column('created_at', renkei.core.db.UtcDateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', renkei.core.db.UtcDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', renkei.core.db.UtcDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', renkei.core.db.UtcDateTime(timezone=True), nullable=True),
    sa.Column('terminal', sa.String(length=255), nullable=True),
    sa.Column('csrf_token_hash', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['staff_id'], ['auth_staff.staff_id'], name=op.f('fk_auth_sessions_staff_id_auth_staff')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_auth_sessions'))
    )
    with op.batch_alter_table('auth_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_auth_sessions_staff_id'), ['staff_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('auth_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_auth_sessions_staff_id'))

    op.drop_table('auth_sessions')
    with op.batch_alter_table('auth_api_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_auth_api_tokens_staff_id'))

    op.drop_table('auth_api_tokens')
    op.drop_table('export_requests')
    op.drop_table('auth_staff')
