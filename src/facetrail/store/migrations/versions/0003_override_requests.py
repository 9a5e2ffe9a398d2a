"""Quality-override requests: an investigator asks a supervisor of their unit to approve a search with a
poor-quality probe.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 18:25:27.878834

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0003'
down_revision: Union[str, Sequence[str], None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('override_requests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('unit', sa.String(length=100), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('gallery_name', sa.String(length=100), nullable=False),
    sa.Column('policy_version', sa.Integer(), nullable=False),
    sa.Column('case_number', sa.String(length=100), nullable=False),
    sa.Column('purpose', sa.String(length=100), nullable=False),
    sa.Column('offence', sa.String(length=100), nullable=False),
    sa.Column('authorization_ref', sa.String(length=200), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('probe_id', sa.Integer(), nullable=False),
    sa.Column('requested_box', sa.JSON(), nullable=True),
    sa.Column('face_number', sa.Integer(), nullable=True),
    sa.Column('face_box', sa.JSON(), nullable=False),
    sa.Column('quality', sa.JSON(), nullable=False),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('decided_by', sa.Integer(), nullable=True),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('decision_notes', sa.Text(), nullable=False),
    sa.Column('search_id', sa.Integer(), nullable=True),
    sa.Column('refusal_reason', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['decided_by'], ['users.id'], ),
    sa.ForeignKeyConstraint(['probe_id'], ['probes.id'], ),
    sa.ForeignKeyConstraint(['search_id'], ['searches.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('override_requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_override_requests_requested_at'), ['requested_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_override_requests_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_override_requests_unit'), ['unit'], unique=False)
        batch_op.create_index(batch_op.f('ix_override_requests_user_id'), ['user_id'], unique=False)



def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('override_requests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_override_requests_user_id'))
        batch_op.drop_index(batch_op.f('ix_override_requests_unit'))
        batch_op.drop_index(batch_op.f('ix_override_requests_status'))
        batch_op.drop_index(batch_op.f('ix_override_requests_requested_at'))

    op.drop_table('override_requests')
