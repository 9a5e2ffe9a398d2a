"""Failed logins counted per account and client address (instead of per account); role changes that wait for a second administrator.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 10:00:00.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0004'
down_revision: Union[str, Sequence[str], None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('login_throttles',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('username', sa.String(length=100), nullable=False),
    sa.Column('address', sa.String(length=100), nullable=False),
    sa.Column('failed_logins', sa.Integer(), nullable=False),
    sa.Column('locked_until', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('username', 'address')
    )
    with op.batch_alter_table('login_throttles', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_login_throttles_username'), ['username'], unique=False)

    op.create_table('role_changes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('roles', sa.JSON(), nullable=False),
    sa.Column('requested_by', sa.Integer(), nullable=False),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('approved_by', sa.Integer(), nullable=True),
    sa.Column('approved_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['approved_by'], ['users.id'], ),
    sa.ForeignKeyConstraint(['requested_by'], ['users.id'], ),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('role_changes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_role_changes_user_id'), ['user_id'], unique=False)

    with op.batch_alter_table('users', schema=None) as batch_op:  # now counted per address in login_throttles
        batch_op.drop_column('locked_until')
        batch_op.drop_column('failed_logins')


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('failed_logins', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('locked_until', sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table('role_changes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_role_changes_user_id'))
    op.drop_table('role_changes')
    with op.batch_alter_table('login_throttles', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_login_throttles_username'))
    op.drop_table('login_throttles')
