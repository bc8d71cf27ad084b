"""`radpilot demo` (what `make demo` runs): receiver up, examples sent over the network."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import SHARED_DATA, free_port, pydicom_data_files

RADPILOT = str(Path(sys.executable).parent / "radpilot")


def test_demo_loads_examples_through_the_network(tmp_path: Path) -> None:
    examples = pydicom_data_files()
    data_dir = tmp_path / "demo"
    result = subprocess.run(
        [
            RADPILOT,
            "--data-dir",
            str(data_dir),
            "demo",
            "--no-keep-running",
            "--dicom-port",
            str(free_port()),
            "--shared-data",
            str(SHARED_DATA),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sending" in result.stderr and "accepted" in result.stderr
    inventory = subprocess.run(
        [RADPILOT, "--data-dir", str(data_dir), "inventory", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report = json.loads(inventory.stdout)
    # every instance arrived by C-STORE: the receipts say "dicom", not "import"
    assert report["totals"]["instances"] >= len(examples) // 2
    import sqlite3

    with sqlite3.connect(data_dir / "radpilot.db") as conn:
        sources = dict(conn.execute("select source, count(*) from instances group by source"))
    assert set(sources) == {"dicom"}
    assert sources["dicom"] == report["totals"]["instances"]
