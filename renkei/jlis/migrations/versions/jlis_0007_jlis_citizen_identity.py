"""jlis citizens' 基本4情報 (sealed) and its blind index

Two nullable columns on ``citizens``: ``identity_enc`` (the 基本4情報 as AES-GCM sealed
JSON) and ``identity_index`` (HMAC of name, birth date and sex), for the identity search
on 基本4情報. Existing rows keep both empty until a pairs file with the 基本4情報 columns
is loaded again.

Revision ID: jlis_0007
Revises: jlis_0006
Create Date: 2026-12-06 16:10:00.000000
"""
import sqlalchemy as sa
from alembic import op

revision = 'jlis_0007'
down_revision = 'jlis_0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('citizens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('identity_enc', sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column('identity_index', sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f('ix_citizens_identity_index'), ['identity_index'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('citizens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_citizens_identity_index'))
        batch_op.drop_column('identity_index')
        batch_op.drop_column('identity_enc')
