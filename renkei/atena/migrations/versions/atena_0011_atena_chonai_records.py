"""atena chonai records

特定個人情報 that business systems publish to atena for in-house sharing (庁内連携,
renkei.atena.chonai): one row per (provider system, info kind, person, record key), the
items sealed. Only a new table: existing rows are untouched.

Revision ID: atena_0011
Revises: atena_0008
Create Date: 2026-12-06 16:00:00.000000
"""
import sqlalchemy as sa
from alembic import op

import renkei.core.db

revision = 'atena_0011'
down_revision = 'atena_0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('chonai_records',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('provider_system', sa.String(length=40), nullable=False),
    sa.Column('info_kind_code', sa.String(length=16), nullable=False),
    sa.Column('atena_no', sa.String(length=15), nullable=False),
    sa.Column('record_key', sa.String(length=40), nullable=False),
    sa.Column('values_enc', sa.LargeBinary(), nullable=False),
    sa.Column('published_by', sa.String(length=64), nullable=False),
    sa.Column('published_at', renkei.core.db.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['atena_no'], ['persons.atena_no'], name=op.f('fk_chonai_records_atena_no_persons')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_chonai_records')),
    sa.UniqueConstraint('provider_system', 'info_kind_code', 'atena_no', 'record_key', name=op.f('uq_chonai_records_provider_system'))
    )
    with op.batch_alter_table('chonai_records', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_chonai_records_atena_no'), ['atena_no'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('chonai_records', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_chonai_records_atena_no'))

    op.drop_table('chonai_records')
