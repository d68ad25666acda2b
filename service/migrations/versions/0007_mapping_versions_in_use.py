"""mappings: who applied a version, and which version each connector kind uses

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

from opsync.service.models import UTCDateTime

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('mapping_version', schema=None) as batch_op:
        batch_op.add_column(sa.Column('applied_by', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    op.create_table(
        'applied_mapping',
        sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('version_id', sa.Integer(), nullable=False),
        sa.Column('applied_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('applied_by', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.ForeignKeyConstraint(['version_id'], ['mapping_version.id']),
        sa.PrimaryKeyConstraint('kind'),
    )


def downgrade() -> None:
    op.drop_table('applied_mapping')
    with op.batch_alter_table('mapping_version', schema=None) as batch_op:
        batch_op.drop_column('applied_by')
