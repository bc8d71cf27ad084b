"""result embeddings

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 18:45:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create result_embeddings."""
    op.create_table(
        "result_embeddings",
        sa.Column("result_pk", sa.Integer(), nullable=False),
        sa.Column("dimensions", sa.Integer(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["result_pk"], ["results.id"]),
        sa.PrimaryKeyConstraint("result_pk"),
    )


def downgrade() -> None:
    """Drop it."""
    op.drop_table("result_embeddings")
