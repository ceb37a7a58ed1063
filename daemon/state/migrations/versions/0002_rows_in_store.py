"""Accepted rows move into the store: table `rows` (one per accepted text, in file order) replaces the
Parquet file per batch and the `row_index` table, so a daemon on another host with the same store URL
has every row it needs. Each batch's Parquet file is copied in (the caller names the folder they are in
as the `rows_dir` attribute); a recorded batch whose file is missing stops the upgrade, which then
changes nothing. The Parquet files are left where they are, no longer read.

Revision ID: 0002
Revises: 0001
"""

from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from alembic import context, op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

COLUMNS = ["row_hash", "split", "text", "label", "id", "published_at", "source"]


def upgrade() -> None:
    rows = op.create_table(
        "rows",
        sa.Column("row_hash", sa.String(64), primary_key=True),
        sa.Column("batch_id", sa.String(64), nullable=False, index=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("split", sa.String(8), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("label", sa.String(128), nullable=False),
        sa.Column("id", sa.Text, nullable=True),
        sa.Column("published_at", sa.Text, nullable=True),
        sa.Column("source", sa.Text, nullable=True),
    )
    bind = op.get_bind()
    recorded = bind.execute(sa.text("SELECT batch_id, rows_path FROM batches ORDER BY seq")).all()
    if recorded:
        rows_dir = Path(context.config.attributes["rows_dir"])
        missing = [path for _, path in recorded if not (rows_dir / path).is_file()]
        if missing:
            raise RuntimeError(f"cannot move the accepted rows into the store: {len(missing)} of {len(recorded)} "
                               f"batch files are missing from {rows_dir} (first: {missing[0]})")
        for batch_id, path in recorded:
            frame = pd.read_parquet(rows_dir / path)
            frame = frame.reindex(columns=COLUMNS).astype(object).where(lambda f: f.notna(), None)
            values = [dict(record, batch_id=batch_id, position=i)
                      for i, record in enumerate(frame.to_dict("records"))]
            if values:
                op.bulk_insert(rows, values)
    op.drop_table("row_index")
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("rows_path")
