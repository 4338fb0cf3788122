"""atena history, households and the register feed

基本4情報 versions gain their residence status (resident, former after 転出・死亡,
non_resident) and their source; the first registration's reason is now 新規 (was 登録);
an index serves "the version in force on a day" (atena_no, effective_on, id).
Households (世帯) and the membership history, and the register feed's applied events
(idempotent per event id), are new tables. Existing rows keep their facts.

Revision ID: atena_0008
Revises: atena_0007
Create Date: 2026-12-06 16:05:00.000000
"""
import sqlalchemy as sa
from alembic import op

import renkei.core.db

revision = 'atena_0008'
down_revision = 'atena_0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('basic_four', schema=None) as batch_op:
        batch_op.add_column(sa.Column('status', sa.String(length=12), server_default='resident', nullable=False))
        batch_op.add_column(sa.Column('source', sa.String(length=200), server_default='', nullable=False))
        batch_op.create_index('ix_basic_four_atena_no_effective', ['atena_no', 'effective_on', 'id'], unique=False)
    op.execute("UPDATE basic_four SET change_kind = '新規' WHERE change_kind = '登録'")
    op.execute(
        "UPDATE basic_four SET status = 'non_resident' WHERE atena_no IN "
        "(SELECT atena_no FROM persons WHERE residence = 'non_resident')"
    )

    op.create_table('households',
    sa.Column('household_no', sa.String(length=15), nullable=False),
    sa.Column('lg_code', sa.String(length=6), nullable=False),
    sa.Column('created_at', renkei.core.db.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('household_no', name=op.f('pk_households'))
    )
    op.create_table('household_members',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('atena_no', sa.String(length=15), nullable=False),
    sa.Column('household_no', sa.String(length=15), nullable=True),
    sa.Column('relationship', sa.String(length=20), server_default='', nullable=False),
    sa.Column('change_kind', sa.String(length=10), nullable=False),
    sa.Column('effective_on', sa.Date(), nullable=False),
    sa.Column('source', sa.String(length=200), server_default='', nullable=False),
    sa.Column('recorded_at', renkei.core.db.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['atena_no'], ['persons.atena_no'], name=op.f('fk_household_members_atena_no_persons')),
    sa.ForeignKeyConstraint(['household_no'], ['households.household_no'], name=op.f('fk_household_members_household_no_households')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_household_members'))
    )
    with op.batch_alter_table('household_members', schema=None) as batch_op:
        batch_op.create_index('ix_household_members_atena_no_effective', ['atena_no', 'effective_on', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_household_members_household_no'), ['household_no'], unique=False)

    op.create_table('register_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('system', sa.String(length=40), nullable=False),
    sa.Column('event_id', sa.String(length=40), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('effective_on', sa.Date(), nullable=False),
    sa.Column('notified_on', sa.Date(), nullable=True),
    sa.Column('atena_no', sa.String(length=15), nullable=False),
    sa.Column('other_lg_code', sa.String(length=6), nullable=True),
    sa.Column('other_address', sa.String(length=300), nullable=True),
    sa.Column('outcome', sa.String(length=12), nullable=False),
    sa.Column('source', sa.String(length=200), nullable=False),
    sa.Column('received_at', renkei.core.db.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['atena_no'], ['persons.atena_no'], name=op.f('fk_register_events_atena_no_persons')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_register_events')),
    sa.UniqueConstraint('system', 'event_id', name=op.f('uq_register_events_system'))
    )
    with op.batch_alter_table('register_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_register_events_atena_no'), ['atena_no'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('register_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_register_events_atena_no'))
    op.drop_table('register_events')
    with op.batch_alter_table('household_members', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_household_members_household_no'))
        batch_op.drop_index('ix_household_members_atena_no_effective')
    op.drop_table('household_members')
    op.drop_table('households')
    op.execute("UPDATE basic_four SET change_kind = '登録' WHERE change_kind = '新規'")
    with op.batch_alter_table('basic_four', schema=None) as batch_op:
        batch_op.drop_index('ix_basic_four_atena_no_effective')
        batch_op.drop_column('source')
        batch_op.drop_column('status')
