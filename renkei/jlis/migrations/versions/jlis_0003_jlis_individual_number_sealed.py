"""jlis individual numbers sealed at rest

The individual number of every citizen row is encrypted with the node's field cipher
(AES-256-GCM, AAD ``citizens``/``individual_number``/resident code) and found by its HMAC
blind index; the plaintext column is dropped. Existing rows are encrypted here, so the
migration needs the node's cipher (``context.config.attributes["field_cipher"]``, given
by the J-LIS app and `renkei.federation.setup`); without it, a database holding rows
is left untouched with a clear error.

Revision ID: jlis_0003
Revises: jlis_0002
Create Date: 2026-12-06 10:00:00
"""
import sqlalchemy as sa
from alembic import context, op

revision = 'jlis_0003'
down_revision = 'jlis_0002'
branch_labels = None
depends_on = None

_AAD = ("citizens", "individual_number")
_citizens = sa.table(
    "citizens",
    sa.column("resident_code", sa.String),
    sa.column("individual_number", sa.String),
    sa.column("individual_number_enc", sa.LargeBinary),
    sa.column("individual_number_index", sa.String),
)


def _cipher(rows: int):  # type: ignore[no-untyped-def]
    cipher = context.config.attributes.get("field_cipher")
    if cipher is None and rows:
        raise RuntimeError(
            "J-LIS の個人番号を暗号化して保存する移行（jlis_0003）には、ノードの暗号鍵が必要です。"
            "`renkei serve jlis --config …` で起動すると鍵を読み込んで移行します"
            f"（既存 {rows} 件、何も変更していません）。"
        )
    return cipher


def upgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.select(_citizens.c.resident_code, _citizens.c.individual_number)).all()
    cipher = _cipher(len(rows))
    with op.batch_alter_table('citizens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('individual_number_enc', sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column('individual_number_index', sa.String(length=64), nullable=True))
    for code, number in rows:
        bind.execute(
            _citizens.update()
            .where(_citizens.c.resident_code == code)
            .values(
                individual_number_enc=cipher.encrypt(number, (*_AAD, code)),
                individual_number_index=cipher.blind_index(number),
            )
        )
    with op.batch_alter_table('citizens', schema=None) as batch_op:
        batch_op.drop_constraint('uq_citizens_individual_number', type_='unique')
        batch_op.drop_column('individual_number')
        batch_op.alter_column('individual_number_enc', existing_type=sa.LargeBinary(), nullable=False)
        batch_op.alter_column('individual_number_index', existing_type=sa.String(length=64), nullable=False)
        batch_op.create_unique_constraint('uq_citizens_individual_number_index', ['individual_number_index'])


def downgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.select(_citizens.c.resident_code, _citizens.c.individual_number_enc)).all()
    cipher = _cipher(len(rows))
    with op.batch_alter_table('citizens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('individual_number', sa.String(length=12), nullable=True))
    for code, blob in rows:
        bind.execute(
            _citizens.update()
            .where(_citizens.c.resident_code == code)
            .values(individual_number=cipher.decrypt(blob, (*_AAD, code)))
        )
    with op.batch_alter_table('citizens', schema=None) as batch_op:
        batch_op.drop_constraint('uq_citizens_individual_number_index', type_='unique')
        batch_op.drop_column('individual_number_index')
        batch_op.drop_column('individual_number_enc')
        batch_op.alter_column('individual_number', existing_type=sa.String(length=12), nullable=False)
        batch_op.create_unique_constraint('uq_citizens_individual_number', ['individual_number'])
