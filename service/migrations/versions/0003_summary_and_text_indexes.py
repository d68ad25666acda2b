"""indexes for the product summary, code changes by product and state, and text search

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

LIVE = sa.text('deleted_at IS NULL')


def upgrade() -> None:
    with op.batch_alter_table('work_item', schema=None) as batch_op:
        # The summary reads a product's counts by status and kind, and its recent done work
        # with their dates, from this index alone (no table reads).
        batch_op.drop_index('ix_work_item_live_product_completed')
        batch_op.create_index('ix_work_item_live_product_summary',
                              ['product_key', 'status_category', 'completed_at', 'kind', 'created_at', 'started_at'],
                              unique=False, postgresql_where=LIVE, sqlite_where=LIVE)
    with op.batch_alter_table('code_change', schema=None) as batch_op:
        # filter + keyset order (id) in one range scan; also the summary's counts, index-only
        batch_op.create_index('ix_code_change_live_product_state', ['product_key', 'state', 'id'],
                              unique=False, postgresql_where=LIVE, sqlite_where=LIVE)
    if op.get_context().dialect.name == 'postgresql':
        # ?q= is a substring match: trigram indexes find the few rows a rare text is in
        # instead of reading every title. pg_trgm ships with PostgreSQL and is a trusted
        # extension: the database's owner may create it. It lives in one schema per database,
        # public unless it was there already, so its operator class is named with its schema.
        op.execute('CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public')
        schema = op.get_bind().exec_driver_sql(
            "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'pg_trgm'").scalar()
        for column in ('title', 'key'):
            op.execute(f'CREATE INDEX ix_work_item_{column}_trgm ON work_item USING gin (lower({column}) {schema}.gin_trgm_ops)')


def downgrade() -> None:
    if op.get_context().dialect.name == 'postgresql':
        op.execute('DROP INDEX ix_work_item_key_trgm')
        op.execute('DROP INDEX ix_work_item_title_trgm')
    with op.batch_alter_table('code_change', schema=None) as batch_op:
        batch_op.drop_index('ix_code_change_live_product_state')
    with op.batch_alter_table('work_item', schema=None) as batch_op:
        batch_op.drop_index('ix_work_item_live_product_summary')
        batch_op.create_index('ix_work_item_live_product_completed', ['product_key', 'status_category', 'completed_at'],
                              unique=False, postgresql_where=LIVE, sqlite_where=LIVE)
