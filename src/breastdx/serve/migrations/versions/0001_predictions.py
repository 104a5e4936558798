"""The prediction record as it was before migrations (``create_all`` of breastdx 0.1): table ``predictions``.

A database made by that version has this table and no ``alembic_version``; :func:`breastdx.serve.db.migrate`
stamps it with this revision instead of creating the table again.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "predictions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("task", sa.String(32), nullable=False),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("model_version", sa.String(200), nullable=False),
        sa.Column("input_sha256", sa.String(64), nullable=False),
        sa.Column("input_name", sa.String(255), nullable=True),
        sa.Column("label", sa.String(64), nullable=True),
        sa.Column("elapsed_ms", sa.Float(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
    )
    for column in ("created_at", "task", "input_sha256"):
        op.create_index(f"ix_predictions_{column}", "predictions", [column])


def downgrade() -> None:
    op.drop_table("predictions")
