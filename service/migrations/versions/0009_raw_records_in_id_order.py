"""a connection's raw records read in id order (re-mapping reads them a batch at a time)
without sorting what remains of them for every batch

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_raw_record_connection_id', 'raw_record', ['connection_id', 'id'])


def downgrade() -> None:
    op.drop_index('ix_raw_record_connection_id', table_name='raw_record')
