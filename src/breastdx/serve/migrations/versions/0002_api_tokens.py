"""API tokens (``api_tokens``: name, SHA-256 of the token, created, revoked) and the token behind each
recorded prediction (``predictions.token_name``; null for a prediction made with ``--no-auth`` or before).
On PostgreSQL the ids become 64-bit (BIGINT), as the API accepts ids up to 2**63 - 1.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ID_TYPE = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", ID_TYPE, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("token_name", sa.String(64), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("predictions", "id", type_=sa.BigInteger())
        op.execute("ALTER SEQUENCE IF EXISTS predictions_id_seq AS BIGINT")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER SEQUENCE IF EXISTS predictions_id_seq AS INTEGER")
        op.alter_column("predictions", "id", type_=sa.Integer())
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("token_name")
    op.drop_table("api_tokens")
