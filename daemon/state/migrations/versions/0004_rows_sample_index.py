"""Indexes for reading bounded samples of history: rows by (split, row_hash) and by (split, label, row_hash).

A cycle no longer reads every past row: it reads a replay pool, the past validation rows and the regression
suite as ranges of row-hash order (see `StateStore.history_rows`), which these indexes serve in time that does
not grow with the history.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_rows_split_hash", "rows", ["split", "row_hash"])
    op.create_index("ix_rows_split_label_hash", "rows", ["split", "label", "row_hash"])
