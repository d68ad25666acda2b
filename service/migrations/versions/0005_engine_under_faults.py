"""the engine under faults: inbox lanes, claims and body hashes; pull leases; record origins
and containers; raw payload versions

Revision ID: 0005
Revises: 0004
"""
import hashlib

from alembic import op
import sqlalchemy as sa

from opsync.service.models import UTCDateTime

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def _hash_stored_bodies() -> None:
    """Deliveries stored before this migration get their body's hash, so that a replay of one
    of them under a new delivery id is a duplicate too."""
    bind = op.get_bind()
    inbox = sa.table('inbox_event', sa.column('id', sa.Integer), sa.column('body', sa.String),
                     sa.column('body_hash', sa.String))
    last = 0
    while True:
        rows = bind.execute(sa.select(inbox.c.id, inbox.c.body).where(inbox.c.id > last)
                            .order_by(inbox.c.id).limit(1000)).all()
        if not rows:
            return
        bind.execute(sa.update(inbox).where(inbox.c.id == sa.bindparam('_id')).values(body_hash=sa.bindparam('h')),
                     [{'_id': row.id, 'h': hashlib.sha256(row.body.encode()).hexdigest()} for row in rows])
        last = rows[-1].id


def upgrade() -> None:
    with op.batch_alter_table('inbox_event', schema=None) as batch_op:
        batch_op.add_column(sa.Column('body_hash', sa.String(), nullable=True))
        batch_op.add_column(sa.Column('lane', sa.String(), nullable=False, server_default='apply'))
        batch_op.add_column(sa.Column('claim', sa.String(), nullable=True))
        batch_op.drop_index('ix_inbox_pending')
    _hash_stored_bodies()
    with op.batch_alter_table('inbox_event', schema=None) as batch_op:
        # a duplicate body by its hash, whatever its delivery id; the done and the pending alike
        batch_op.create_unique_constraint('uq_inbox_event_body', ['connection_id', 'body_hash'])
        batch_op.create_index('ix_inbox_pending', ['status', 'lane', 'available_at'], unique=False)
        batch_op.create_index('ix_inbox_processed', ['status', 'processed_at'], unique=False)

    op.create_table('pull_lease',
    sa.Column('connection_id', sa.String(), nullable=False),
    sa.Column('holder', sa.String(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=True),
    sa.Column('expires_at', UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('connection_id')
    )
    with op.batch_alter_table('connection', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pruned_through', UTCDateTime(timezone=True), nullable=True))
    for table in ('work_item', 'code_change'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('origin', sa.String(), nullable=True))
            batch_op.add_column(sa.Column('container', sa.String(), nullable=True))
    with op.batch_alter_table('raw_record', schema=None) as batch_op:
        batch_op.add_column(sa.Column('version', UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('origin', sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('raw_record', schema=None) as batch_op:
        batch_op.drop_column('origin')
        batch_op.drop_column('version')
    for table in ('work_item', 'code_change'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('container')
            batch_op.drop_column('origin')
    with op.batch_alter_table('connection', schema=None) as batch_op:
        batch_op.drop_column('pruned_through')
    op.drop_table('pull_lease')
    with op.batch_alter_table('inbox_event', schema=None) as batch_op:
        batch_op.drop_index('ix_inbox_processed')
        batch_op.drop_index('ix_inbox_pending')
        batch_op.drop_constraint('uq_inbox_event_body', type_='unique')
        batch_op.create_index('ix_inbox_pending', ['status', 'available_at'], unique=False)
        batch_op.drop_column('claim')
        batch_op.drop_column('lane')
        batch_op.drop_column('body_hash')
