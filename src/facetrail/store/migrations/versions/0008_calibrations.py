"""Calibrations kept in the store (from labelled photographs, a gallery's own subjects, or per group), and with
each search the calibrations in force and the gallery's subjects when it ran.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 12:30:00.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0008'
down_revision: Union[str, Sequence[str], None] = '0007'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        'calibrations',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('model_name', sa.String(length=100), nullable=False),
        sa.Column('scope', sa.String(length=20), nullable=False),
        sa.Column('gallery_id', sa.Integer(), nullable=True),
        sa.Column('gallery_name', sa.String(length=100), nullable=False),
        sa.Column('group_name', sa.String(length=100), nullable=False),
        sa.Column('impostor_pairs', sa.BigInteger(), nullable=False),
        sa.Column('subjects', sa.BigInteger(), nullable=True),
        sa.Column('excluded_pairs', sa.BigInteger(), nullable=False),
        sa.Column('source', sa.Text(), nullable=False),
        sa.Column('table_sha256', sa.String(length=64), nullable=False),
        sa.Column('table', sa.JSON(), nullable=False),
        sa.Column('created_by', sa.String(length=100), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['gallery_id'], ['galleries.id'], ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('calibrations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_calibrations_gallery_id'), ['gallery_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_calibrations_model_name'), ['model_name'], unique=False)
    with op.batch_alter_table('searches', schema=None) as batch_op:
        batch_op.add_column(sa.Column('calibration_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('group_calibration_ids', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('gallery_subjects', sa.Integer(), nullable=True))
        batch_op.create_foreign_key('fk_searches_calibration_id', 'calibrations', ['calibration_id'], ['id'])


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('searches', schema=None) as batch_op:
        batch_op.drop_constraint('fk_searches_calibration_id', type_='foreignkey')
        batch_op.drop_column('gallery_subjects')
        batch_op.drop_column('group_calibration_ids')
        batch_op.drop_column('calibration_id')
    with op.batch_alter_table('calibrations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_calibrations_model_name'))
        batch_op.drop_index(batch_op.f('ix_calibrations_gallery_id'))
    op.drop_table('calibrations')
