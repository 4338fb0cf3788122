"""chukan provision_records: who asked inside the inquiring organization

照会者部署コード and 照会者ユーザーID of the 一括照会 record (and of any inquiry that names
them), kept with our inquiries' records; both optional, so existing rows stay as they are (NULL).

Revision ID: chukan_0007
Revises: chukan_0005
Create Date: 2026-12-06 16:10:00.000000
"""
import sqlalchemy as sa
from alembic import op

revision = 'chukan_0007'
down_revision = 'chukan_0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('provision_records', schema=None) as batch_op:
        batch_op.add_column(sa.Column('inquirer_department', sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column('inquirer_user', sa.String(length=20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('provision_records', schema=None) as batch_op:
        batch_op.drop_column('inquirer_user')
        batch_op.drop_column('inquirer_department')
