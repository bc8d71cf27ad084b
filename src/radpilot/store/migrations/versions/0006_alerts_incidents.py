"""alerts and incidents

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 16:05:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TZ = sa.DateTime(timezone=True)


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, length=16)


def upgrade() -> None:
    """Create alerts and incidents."""
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("cause", sa.String(length=128), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column(
            "status", _enum("alertstatus", "open", "acknowledged", "resolved"), nullable=False
        ),
        sa.Column("opened_at", _TZ, nullable=False),
        sa.Column("last_seen_at", _TZ, nullable=False),
        sa.Column("seen", sa.Integer(), nullable=False),
        sa.Column("acknowledged_by", sa.String(length=128), nullable=True),
        sa.Column("acknowledged_at", _TZ, nullable=True),
        sa.Column("resolved_by", sa.String(length=128), nullable=True),
        sa.Column("resolved_at", _TZ, nullable=True),
        sa.Column("notified", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_alerts_model_cause", "alerts", ["model", "cause"])
    op.create_table(
        "incidents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_pk", sa.Integer(), nullable=False),
        sa.Column("result_pk", sa.Integer(), nullable=True),
        sa.Column("model", sa.String(length=200), nullable=True),
        sa.Column(
            "kind",
            _enum("incidentkind", "wrong_result", "missed_finding", "system_failure", "other"),
            nullable=False,
        ),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("reported_by", sa.String(length=128), nullable=False),
        sa.Column("reported_at", _TZ, nullable=False),
        sa.Column(
            "severity", _enum("severity", "low", "moderate", "high", "critical"), nullable=True
        ),
        sa.Column("classified_by", sa.String(length=128), nullable=True),
        sa.Column(
            "status", _enum("incidentstatus", "reported", "reviewed", "closed"), nullable=False
        ),
        sa.Column("actions", sa.JSON(), nullable=False),
        sa.Column("closed_by", sa.String(length=128), nullable=True),
        sa.Column("closed_at", _TZ, nullable=True),
        sa.ForeignKeyConstraint(["result_pk"], ["results.id"]),
        sa.ForeignKeyConstraint(["study_pk"], ["studies.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_incidents_study_pk", "incidents", ["study_pk"])


def downgrade() -> None:
    """Drop them."""
    op.drop_index("ix_incidents_study_pk", table_name="incidents")
    op.drop_table("incidents")
    op.drop_index("ix_alerts_model_cause", table_name="alerts")
    op.drop_table("alerts")
