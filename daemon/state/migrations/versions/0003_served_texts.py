"""Served texts: table `served`, one row per text `cltool serve` labeled and sampled for the live
monitors (its prediction, the version that made it and the caller's optional `source`).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "served",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("source", sa.String(256), nullable=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("label", sa.String(128), nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("scores", sa.Text, nullable=False),
    )
