"""Who created each account (so the admin who asks for a photograph-viewing role cannot have it confirmed by an
admin of their own making); existing accounts take their creator from the audit trail's ``user_created`` entries.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 18:00:00.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0005'
down_revision: Union[str, Sequence[str], None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('created_by', sa.Integer(), nullable=True))
        batch_op.create_foreign_key('fk_users_created_by', 'users', ['created_by'], ['id'])
    op.execute(
        "UPDATE users SET created_by = (SELECT creator.id FROM users AS creator WHERE creator.username = ("
        "SELECT entry.actor FROM audit_entries AS entry WHERE entry.action = 'user_created' "
        "AND entry.target = users.username ORDER BY entry.seq LIMIT 1))"
    )


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_constraint('fk_users_created_by', type_='foreignkey')
        batch_op.drop_column('created_by')
