"""atena import ledger

The ledger of bulk imports from files (renkei.core.imports): one row per import of a
file, with its digest, the records read and applied, the batches committed and whether
it finished, so that an interrupted import resumes where its last batch committed.
Only a new table: existing rows are untouched.

Revision ID: atena_0007
Revises: atena_0006
Create Date: 2026-12-06 12:55:00.000000
"""
import sqlalchemy as sa
from alembic import op

import renkei.core.db

revision = 'atena_0007'
down_revision = 'atena_0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('imports',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('source', sa.String(length=255), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('rows_read', sa.BigInteger(), nullable=False),
    sa.Column('rows_applied', sa.BigInteger(), nullable=False),
    sa.Column('batches', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('started_at', renkei.core.db.UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', renkei.core.db.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_imports'))
    )
    with op.batch_alter_table('imports', schema=None) as batch_op:
        batch_op.create_index('ix_imports_kind_digest', ['kind', 'digest'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('imports', schema=None) as batch_op:
        batch_op.drop_index('ix_imports_kind_digest')

    op.drop_table('imports')
