"""indexes for the read side: filtered lists in keyset order, the product summary, children

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

LIVE = sa.text('deleted_at IS NULL')


def upgrade() -> None:
    with op.batch_alter_table('work_item', schema=None) as batch_op:
        # filter + keyset order (id) in one range scan; also the summary's counts, index-only
        batch_op.create_index('ix_work_item_live_product_status', ['product_key', 'status_category', 'id'],
                              unique=False, postgresql_where=LIVE, sqlite_where=LIVE)
        batch_op.create_index('ix_work_item_live_product_kind', ['product_key', 'kind', 'id'],
                              unique=False, postgresql_where=LIVE, sqlite_where=LIVE)
        # the summary's work done in the last weeks
        batch_op.create_index('ix_work_item_live_product_completed', ['product_key', 'status_category', 'completed_at'],
                              unique=False, postgresql_where=LIVE, sqlite_where=LIVE)
        batch_op.create_index('ix_work_item_source_updated_at', ['source_updated_at'], unique=False)
        # a work item's children (parent links), read on every work item page
        batch_op.create_index('ix_work_item_parent', ['connection_id', 'parent_external_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('work_item', schema=None) as batch_op:
        batch_op.drop_index('ix_work_item_parent')
        batch_op.drop_index('ix_work_item_source_updated_at')
        batch_op.drop_index('ix_work_item_live_product_completed')
        batch_op.drop_index('ix_work_item_live_product_kind')
        batch_op.drop_index('ix_work_item_live_product_status')
