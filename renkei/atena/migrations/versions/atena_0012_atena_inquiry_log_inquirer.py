"""atena inquiry_log: who asked inside the organization (部署コード, ユーザーID)

The 一括照会 record names the inquirer's department and user; an online inquiry may too.
Kept beside the staff member or business system that ran the inquiry (``staff_id``);
both optional, so existing rows stay as they are (NULL).

Revision ID: atena_0012
Revises: atena_0011
Create Date: 2026-12-06 16:10:00.000000
"""
import sqlalchemy as sa
from alembic import op

revision = 'atena_0012'
down_revision = 'atena_0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('inquiry_log', schema=None) as batch_op:
        batch_op.add_column(sa.Column('department', sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column('user_id', sa.String(length=20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('inquiry_log', schema=None) as batch_op:
        batch_op.drop_column('user_id')
        batch_op.drop_column('department')
