"""documents and metric points: two more kinds of record

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

from opsync.service.models import UTCDateTime

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')
LIVE = sa.text('deleted_at IS NULL')


def _synced_columns() -> list[sa.Column]:
    """The columns of SyncedRecord, which every kind of record's table has."""
    text = sqlmodel.sql.sqltypes.AutoString
    return [
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('connection_id', text(), nullable=False),
        sa.Column('external_id', text(), nullable=False),
        sa.Column('product_key', text(), nullable=True),
        sa.Column('key', text(), nullable=True),
        sa.Column('url', text(), nullable=True),
        sa.Column('title', text(), nullable=True),
        sa.Column('source_updated_at', UTCDateTime(timezone=True), nullable=True),
        sa.Column('deleted_at', UTCDateTime(timezone=True), nullable=True),
        sa.Column('content_hash', text(), nullable=True),
        sa.Column('mapping_version_id', sa.Integer(), nullable=True),
        sa.Column('updated_at', UTCDateTime(timezone=True), nullable=True),
        sa.Column('origin', text(), nullable=True),
        sa.Column('container', text(), nullable=True),
    ]


def _synced_indexes(table: str) -> None:
    for column in ('connection_id', 'key', 'product_key', 'updated_at'):
        op.create_index(f'ix_{table}_{column}', table, [column], unique=False)


def upgrade() -> None:
    text = sqlmodel.sql.sqltypes.AutoString
    op.create_table(
        'document',
        *_synced_columns(),
        sa.Column('space', text(), nullable=True),
        sa.Column('status', text(), nullable=True),
        sa.Column('labels', JSON, nullable=True),
        sa.Column('version_number', sa.Integer(), nullable=True),
        sa.Column('author_id', sa.Integer(), nullable=True),
        sa.Column('parent_external_id', text(), nullable=True),
        sa.Column('body_text', text(), nullable=True),
        sa.Column('created_at', UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('connection_id', 'external_id'),
    )
    _synced_indexes('document')
    op.create_index('ix_document_space', 'document', ['space'], unique=False)
    op.create_index('ix_document_author_id', 'document', ['author_id'], unique=False)
    op.create_index('ix_document_live_product_space', 'document', ['product_key', 'space', 'id'],
                    postgresql_where=LIVE, sqlite_where=LIVE)
    op.create_index('ix_document_source_updated_at', 'document', ['source_updated_at'])
    op.create_index('ix_document_parent', 'document', ['connection_id', 'parent_external_id'])

    op.create_table(
        'metric_point',
        *_synced_columns(),
        sa.Column('metric', text(), nullable=True),
        sa.Column('day', sa.Date(), nullable=True),
        sa.Column('value', sa.Float(), nullable=True),
        sa.Column('source', text(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('connection_id', 'external_id'),
    )
    _synced_indexes('metric_point')
    op.create_index('ix_metric_point_live_series', 'metric_point', ['product_key', 'metric', 'day'],
                    postgresql_where=LIVE, sqlite_where=LIVE)


def downgrade() -> None:
    op.drop_table('metric_point')
    op.drop_table('document')
