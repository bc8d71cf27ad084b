"""`radpilot demo` (what `make demo` runs): the reference model active, demo studies and
the intake examples sent through the network, AI results in, a sign-in that works."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from radpilot.store import Database
from radpilot.store.models import Instance, Study
from radpilot.store.models_pipeline import ModelState, ModelVersion, Result
from radpilot.web import accounts
from tests.conftest import SHARED_DATA, free_port, missing, pydicom_data_files

pytestmark = [pytest.mark.slow]

RADPILOT = str(Path(sys.executable).parent / "radpilot")
REPO = Path(__file__).resolve().parents[1]


def test_demo_runs_the_loop_through_the_network(tmp_path: Path) -> None:
    if not (SHARED_DATA / "pneumoniamnist" / "pneumoniamnist.npz").is_file():
        missing(f"PneumoniaMNIST not found under {SHARED_DATA}")
    examples = pydicom_data_files()
    data_dir = tmp_path / "demo"
    result = subprocess.run(
        [
            RADPILOT, "--data-dir", str(data_dir), "demo", "--no-keep-running",
            "--studies", "10", "--positive-rate", "0.4", "--examples",
            "--dicom-port", str(free_port()), "--http-port", str(free_port()),
            "--shared-data", str(SHARED_DATA), "--model", str(REPO / "models/reference/package"),
        ],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"ready in \d+ s: 10 AI results", result.stdout), result.stdout
    login = re.search(r"radiologist\s+(?:user\s+)?(\S+)\s+password\s+(\S+)", result.stdout)
    assert login is not None and login.group(1) == "demo"
    assert "stopped" in result.stderr

    db = Database(f"sqlite:///{data_dir / 'radpilot.db'}")
    user = accounts.authenticate_password(db, "demo", login.group(2))
    assert user is not None and user.role.value == "radiologist"
    with db.session() as session:
        (model,) = session.scalars(select(ModelVersion)).all()
        assert (model.name, model.state) == ("chest-pneumonia", ModelState.ACTIVE)
        demo_studies = session.scalar(
            select(func.count(func.distinct(Result.study_pk))).where(Result.visible)
        )
        assert demo_studies is not None and demo_studies >= 10  # examples may be chest films
        sources = dict(
            session.execute(select(Instance.source, func.count()).group_by(Instance.source)).all()
        )
        studies = session.scalar(select(func.count(Study.id)))
    db.dispose()
    assert set(sources) == {"dicom"}  # everything arrived by C-STORE
    assert studies is not None and studies > 10  # the demo studies and the examples
    inventory = subprocess.run(
        [RADPILOT, "--data-dir", str(data_dir), "inventory", "--format", "json"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    report = json.loads(inventory.stdout)
    assert report["totals"]["instances"] == sources["dicom"]
    assert report["totals"]["instances"] >= 10 + len(examples) // 2
