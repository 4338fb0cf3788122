"""atena person search keys

The search keys of each version of 基本4情報 (renkei.atena.search): kana, name, birth
date, address (with and without 市区町村), residence and whether the version is the
person's current one. The key columns compare code points on PostgreSQL too (collation
"C"), so that a prefix is one index range. Existing persons get their keys here, computed
by the same functions the application uses, 5,000 persons at a time.

Revision ID: atena_0010
Revises: atena_0011
Create Date: 2026-12-06 16:00:00.000000
"""
import sqlalchemy as sa
from alembic import op

revision = 'atena_0010'
down_revision = 'atena_0011'
branch_labels = None
depends_on = None


def _key(length: int) -> sa.String:
    return sa.String(length=length).with_variant(sa.String(length=length, collation='C'), 'postgresql')


def upgrade() -> None:
    op.create_table('person_search_keys',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('atena_no', sa.String(length=15), nullable=False),
    sa.Column('version_id', sa.BigInteger(), nullable=False),
    sa.Column('kana_key', _key(200), nullable=False),
    sa.Column('name_key', _key(200), nullable=False),
    sa.Column('birth_date', sa.Date(), nullable=False),
    sa.Column('place_key', _key(300), nullable=False),
    sa.Column('town_key', _key(300), nullable=False),
    sa.Column('residence', sa.String(length=12), nullable=False),
    sa.Column('current', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['atena_no'], ['persons.atena_no'], name=op.f('fk_person_search_keys_atena_no_persons')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_person_search_keys'))
    )
    with op.batch_alter_table('person_search_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_person_search_keys_atena_no'), ['atena_no'], unique=False)
        batch_op.create_index('ix_person_search_keys_kana', ['kana_key', 'id'], unique=False)
        batch_op.create_index('ix_person_search_keys_name', ['name_key', 'id'], unique=False)
        batch_op.create_index('ix_person_search_keys_birth', ['birth_date', 'kana_key', 'id'], unique=False)
        batch_op.create_index('ix_person_search_keys_place', ['place_key', 'id'], unique=False)
        batch_op.create_index('ix_person_search_keys_town', ['town_key', 'id'], unique=False)
    _backfill()


def _backfill() -> None:
    from sqlalchemy.orm import Session

    from renkei.atena.search import refresh_all

    session = Session(bind=op.get_bind())
    refresh_all(session)
    session.flush()


def downgrade() -> None:
    with op.batch_alter_table('person_search_keys', schema=None) as batch_op:
        batch_op.drop_index('ix_person_search_keys_town')
        batch_op.drop_index('ix_person_search_keys_place')
        batch_op.drop_index('ix_person_search_keys_birth')
        batch_op.drop_index('ix_person_search_keys_name')
        batch_op.drop_index('ix_person_search_keys_kana')
        batch_op.drop_index(batch_op.f('ix_person_search_keys_atena_no'))

    op.drop_table('person_search_keys')
