"""atena inquiry_log.outcome holds any problem code (64 characters, as the audit log)

A refusal relayed from chukan or the hub is logged under its code; codes such as
provider_pseudonym_missing (26) did not fit String(20), and PostgreSQL refused the row.

Revision ID: atena_0004
Revises: atena_0003
Create Date: 2026-12-06 09:45:00.000000
"""
import sqlalchemy as sa
from alembic import op

revision = 'atena_0004'
down_revision = 'atena_0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('inquiry_log', schema=None) as batch_op:
        batch_op.alter_column(
            'outcome', existing_type=sa.String(length=20), type_=sa.String(length=64), existing_nullable=False
        )


def downgrade() -> None:
    with op.batch_alter_table('inquiry_log', schema=None) as batch_op:
        batch_op.alter_column(
            'outcome', existing_type=sa.String(length=64), type_=sa.String(length=20), existing_nullable=False
        )
