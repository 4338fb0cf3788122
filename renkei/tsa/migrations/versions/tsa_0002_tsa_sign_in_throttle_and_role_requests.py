"""tsa sign-in throttle and role requests

The sign-in throttle's counters (renkei.staff.throttle: increasing delays per account,
per source address and per both, instead of a lockout anyone could trigger) and the
role requests that wait for a second administrator's approval
(renkei.staff.role_requests). Only new tables: existing rows are untouched
(``auth_staff.locked_until`` now means an administrator's lock; a lock left by the old
failure counting ends when its time passes).

Revision ID: tsa_0002
Revises: tsa_0001
Create Date: 2026-12-06 09:37:06.637247
"""
import sqlalchemy as sa
from alembic import op

import renkei.core.db

revision = 'tsa_0002'
down_revision = 'tsa_0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('auth_throttle',
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('window_start', renkei.core.db.UtcDateTime(timezone=True), nullable=False),
    sa.Column('blocked_until', renkei.core.db.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_auth_throttle'))
    )
    with op.batch_alter_table('auth_throttle', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_auth_throttle_window_start'), ['window_start'], unique=False)

    op.create_table('auth_role_requests',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('staff_id', sa.String(length=64), nullable=False),
    sa.Column('roles', sa.JSON(), nullable=False),
    sa.Column('previous_roles', sa.JSON(), nullable=False),
    sa.Column('requested_by', sa.String(length=64), nullable=False),
    sa.Column('requested_at', renkei.core.db.UtcDateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('decided_by', sa.String(length=64), nullable=True),
    sa.Column('decided_at', renkei.core.db.UtcDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['staff_id'], ['auth_staff.staff_id'], name=op.f('fk_auth_role_requests_staff_id_auth_staff')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_auth_role_requests'))
    )
    with op.batch_alter_table('auth_role_requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_auth_role_requests_staff_id'), ['staff_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_auth_role_requests_status'), ['status'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('auth_role_requests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_auth_role_requests_status'))
        batch_op.drop_index(batch_op.f('ix_auth_role_requests_staff_id'))

    op.drop_table('auth_role_requests')
    with op.batch_alter_table('auth_throttle', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_auth_throttle_window_start'))

    op.drop_table('auth_throttle')
