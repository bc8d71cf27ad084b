"""governance: model state transitions and their approvals

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 16:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TZ = sa.DateTime(timezone=True)
_STATES = ("registered", "shadow", "pilot", "active", "suspended", "retired")


def _state(name: str) -> sa.Column[str]:
    return sa.Column(
        name, sa.Enum(*_STATES, name="modelstate", native_enum=False, length=16), nullable=False
    )


def upgrade() -> None:
    """Create model_transitions and model_transition_approvals."""
    op.create_table(
        "model_transitions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_version_pk", sa.Integer(), nullable=False),
        _state("from_state"),
        _state("to_state"),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("requested_by", sa.String(length=128), nullable=False),
        sa.Column("requested_at", _TZ, nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "applied",
                "rejected",
                name="transitionstatus",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("decided_at", _TZ, nullable=True),
        sa.Column("comparison", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["model_version_pk"], ["model_versions.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_model_transitions_model_version_pk", "model_transitions", ["model_version_pk"]
    )
    op.create_table(
        "model_transition_approvals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("transition_pk", sa.Integer(), nullable=False),
        sa.Column("approver", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("approved", sa.Boolean(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("at", _TZ, nullable=False),
        sa.ForeignKeyConstraint(["transition_pk"], ["model_transitions.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("transition_pk", "approver"),
    )
    op.create_index(
        "ix_model_transition_approvals_transition_pk",
        "model_transition_approvals",
        ["transition_pk"],
    )


def downgrade() -> None:
    """Drop them."""
    op.drop_index(
        "ix_model_transition_approvals_transition_pk", table_name="model_transition_approvals"
    )
    op.drop_table("model_transition_approvals")
    op.drop_index("ix_model_transitions_model_version_pk", table_name="model_transitions")
    op.drop_table("model_transitions")
