"""Each template records the arithmetic of the network that computed it (float32, or int8 for enrolment).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 23:20:00.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0009'
down_revision: Union[str, Sequence[str], None] = '0008'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema: templates enrolled before this revision were computed in float32."""
    with op.batch_alter_table('templates') as batch:
        batch.add_column(sa.Column('precision', sa.String(length=10), server_default='float32', nullable=False))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('templates') as batch:
        batch.drop_column('precision')
