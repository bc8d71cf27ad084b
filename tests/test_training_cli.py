"""``radpilot train`` from the command line, and the cohort source on a real installation.

The installation is built the way a site builds it: radiographs (real PneumoniaMNIST
pixels as 64 px DX studies) go through ``radpilot ingest``, several readers' reads
through ``radpilot labels import``; ``radpilot train`` then trains from the index.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import typer
from typer.testing import CliRunner, Result

from radpilot.cli import ingest as ingest_cli
from radpilot.cli import labels as labels_cli
from radpilot.cli.train import train
from radpilot.core.settings import Settings
from radpilot.data.synth import RadiographOptions, pneumoniamnist_cases, radiograph_study
from radpilot.models.package import ModelPackage
from tests.conftest import shared_data
from tests.training_helpers import classification_config, write_config


def cli() -> typer.Typer:
    """The commands under test, as ``radpilot.cli.main`` registers them."""
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """radpilot (test harness)."""

    app.command("ingest")(ingest_cli.ingest)
    app.add_typer(labels_cli.app, name="labels")
    app.command("train")(train)
    return app


def run(settings: Settings, *args: str) -> Result:
    return CliRunner().invoke(cli(), list(args), obj=settings)


def test_a_bad_config_exits_1_naming_the_key(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    path = write_config(tmp_path, classification_config(training={"epochs": 2, "batchsize": 8}))
    result = run(settings, "train", str(path))
    assert result.exit_code == 1
    assert (
        f"{path}:" in result.stderr
        and "training.batchsize: Extra inputs are not permitted" in result.stderr
    )
    assert not (tmp_path / "data" / "training").exists()  # refused before anything was written


def test_train_from_the_index_with_adjudicated_reads(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", fsync=False)
    folder = tmp_path / "studies"
    folder.mkdir()
    npz = shared_data("pneumoniamnist", "pneumoniamnist.npz")
    rows = []
    for index, case in enumerate(pneumoniamnist_cases(npz, "val", count=40)):
        study = radiograph_study(case, options=RadiographOptions(size=64))
        ds = study.datasets[0]
        ds.save_as(folder / f"{index}.dcm", enforce_file_format=True)
        uid, truth = ds.StudyInstanceUID, case.label
        if index < 3:  # a tie: excluded
            rows += [(uid, 1, "dr_a", "2024-01-01"), (uid, 0, "dr_b", "2024-01-01")]
        elif index < 6:  # dr_a changed their mind; the latest read counts: truth wins
            rows += [(uid, 1 - truth, "dr_a", "2024-01-01"), (uid, truth, "dr_a", "2024-02-01")]
            rows += [(uid, truth, "dr_b", "2024-01-02")]
        else:
            rows += [(uid, truth, "dr_a", "2024-01-01"), (uid, truth, "dr_b", "2024-01-01")]
    with (tmp_path / "reads.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["study_instance_uid", "label", "reader", "read_at"])
        writer.writerows(rows)
    ingested = run(settings, "ingest", str(folder), "--format", "json", "--no-progress")
    assert ingested.exit_code == 0, ingested.output
    imported = run(
        settings, "labels", "import", str(tmp_path / "reads.csv"), "--finding", "pneumonia"
    )
    assert imported.exit_code == 0, imported.output

    config = classification_config(
        data={"npz": None, "cohort": {"finding": "pneumonia", "modalities": ["DX"]}, "limit": {}},
        split={"val_fraction": 0.3},
        input={"size": [32, 32]},
        training={"epochs": 2, "batch_size": 8},
        evaluation={"test": False},
    )
    path = write_config(tmp_path, config)
    result = run(settings, "train", str(path), "--format", "json", "--no-progress")
    assert result.exit_code == 0, result.output + result.stderr
    summary = json.loads(result.stdout)
    package = Path(summary["package"])
    assert package == tmp_path / "data" / "training" / "pneumonia-test" / "0.1.0" / "package"
    assert ModelPackage.open(package).weights_sha256 == summary["weights_sha256"]
    card = json.loads((package / "model-card.json").read_text())
    data = card["data"]
    assert data["excluded"] == {"tie between readers": 3}
    assert sum(s["images"] for s in data["splits"].values()) == 37
    train_split = data["splits"]["train"]
    assert (
        set(train_split["sex"]) <= {"F", "M"}
        and train_split["age_years"]["known"] == train_split["images"]
    )
    assert not any("sex and age are unknown" in item for item in card["limitations"])
    again = run(settings, "train", str(path), "--no-progress")
    assert again.exit_code == 1 and "is not empty" in again.stderr  # never overwritten silently
