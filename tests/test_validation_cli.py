"""``radpilot validate`` end to end on real data: the official PneumoniaMNIST test split as
DICOM studies (``radpilot synth``, varied headers), ingested, labelled by the synth label
file plus a few rows that cannot be used, the committed reference model registered and
run by ``validate``; the report's numbers checked against scikit-learn on its own case
rows."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from pypdf import PdfReader
from sklearn.metrics import recall_score, roc_auc_score
from typer.testing import CliRunner

from radpilot.cli.main import _register, app
from radpilot.governance.audit import AuditLog
from radpilot.store import Database
from tests.reference_helpers import NPZ, PACKAGE

ROOT = Path(__file__).resolve().parent.parent
USE_CASE = ROOT / "models" / "reference" / "usecase.yaml"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not NPZ.exists(), reason=f"PneumoniaMNIST not found at {NPZ}"),
]


def run(*args: str) -> str:
    _register()
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def validated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, object]]:
    root = tmp_path_factory.mktemp("validate")
    data, studies, out = root / "rp", root / "studies", root / "report"
    run("--data-dir", str(data), "synth", str(studies), "--count", "624", "--split", "test",
        "--vary-headers", "--size", "128")  # fmt: skip
    run("--data-dir", str(data), "ingest", str(studies))
    run("--data-dir", str(data), "models", "add", str(PACKAGE))
    labels = studies / "labels.csv"
    with labels.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    first, second = rows[0]["study_instance_uid"], rows[1]["study_instance_uid"]
    rows += [
        {"study_instance_uid": "1.2.3.4.5", "label": "1", "reader": "reference"},  # no study
        {"study_instance_uid": first, "label": "0", "reader": "second"},  # 1 vs 0: a tie
        {"study_instance_uid": second, "label": "0", "reader": "second"},  # agrees
        {"study_instance_uid": "", "label": "1", "reader": "reference"},  # no identifier
    ]
    extended = root / "labels.csv"
    with extended.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    run("--data-dir", str(data), "validate", "--model", "chest-pneumonia:1.0.0",
        "--labels", str(extended), "--output", str(out), "--use-case", str(USE_CASE),
        "--bootstrap", "500", "--stress", "monochrome1,noise", "--stress-cases", "60")  # fmt: skip
    return data, out, json.loads((out / "report.json").read_text())


def test_numbers_equal_scikit_learn_on_the_report_cases(
    validated: tuple[Path, Path, dict[str, object]],
) -> None:
    _, _, report = validated
    kept = [c for c in report["cases"] if c["excluded"] is None]  # type: ignore[union-attr]
    scores = np.asarray([c["score"] for c in kept])
    labels = np.asarray([c["label"] for c in kept])
    binary = report["binary"]
    assert binary["n"] == len(kept) == 623  # type: ignore[index]
    assert binary["auc"]["value"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)  # type: ignore[index]
    point = binary["operating_points"]["youden"]  # type: ignore[index]
    called = scores >= point["threshold"]
    assert point["sensitivity"]["value"] == pytest.approx(recall_score(labels, called))
    assert point["specificity"]["value"] == pytest.approx(recall_score(labels, called, pos_label=0))
    assert binary["auc"]["value"] >= 0.962  # type: ignore[index]
    assert point["at_prevalence"]["prevalence"] == 0.05


def test_every_left_out_row_is_counted_with_its_reason(
    validated: tuple[Path, Path, dict[str, object]],
) -> None:
    _, _, report = validated
    excluded = report["binary"]["excluded"]  # type: ignore[index]
    assert excluded["tie between readers"] == 1
    assert sum(v for k, v in excluded.items() if k.startswith("unmatched")) == 1
    assert sum(v for k, v in excluded.items() if k.startswith("label row refused")) == 1
    assert sum(excluded.values()) == 3
    reasons = [c["excluded"] for c in report["cases"] if c["excluded"]]  # type: ignore[union-attr]
    assert len(reasons) == 3


def test_writes_html_pdf_json_keeps_a_copy_and_audits(
    validated: tuple[Path, Path, dict[str, object]],
) -> None:
    data, out, report = validated
    html = (out / "report.html").read_text()
    assert "<svg" in html and "Verdict against the use case" in html
    assert all(line.replace("'", "&#39;") in html for line in report["summary"])  # type: ignore[union-attr]
    pages = PdfReader(out / "report.pdf").pages
    text = " ".join(" ".join(page.extract_text() for page in pages).split())
    # The PDF is the page itself: its headings, the subgroup tables and the checklist
    for heading in ("Verdict against the use case", "Operating points", "Stress tests",
                    "Reporting checklist"):  # fmt: skip
        assert heading in text, heading
    assert len(pages) >= 3
    kept = list((data / "validation" / "chest-pneumonia" / "1.0.0").iterdir())
    assert len(kept) == 1
    assert (kept[0] / "report.json").read_bytes() == (out / "report.json").read_bytes()
    db = Database(f"sqlite:///{data / 'radpilot.db'}")
    try:
        entries = [e for e in AuditLog(db).entries() if e.kind == "validation.report"]
        assert len(entries) == 1 and entries[0].payload["cases"] == 623
        assert AuditLog(db).verify().ok
    finally:
        db.dispose()
    verdict = report["verdict"]  # type: ignore[index]
    outcomes = {r["criterion"]: r["outcome"] for r in verdict["criteria"]}
    assert outcomes["latency_p95_seconds <= 1"] == "not evaluated here"
    assert outcomes["auc >= 0.95"] == "met"
    # pass only if every evaluated criterion is met
    evaluated = [o for o in outcomes.values() if o != "not evaluated here"]
    assert verdict["verdict"] == ("pass" if all(o == "met" for o in evaluated) else "fail")
    # a second reader read two studies, one of them a tie (left out): one case in common,
    # too few for a kappa; each reader is compared with the other on that case
    readers = report["readers"]  # type: ignore[index]
    assert readers["readers"] == ["reference", "second"]
    assert readers["cohen"] == {} and readers["fleiss"] is None
    assert readers["model_vs_readers"]["second"]["cases"] == 1
    assert readers["model_vs_readers"]["reference"]["cases"] == 1
    assert "Readers" in html
    stress = {c["perturbation"]: c for c in report["stress"]}  # type: ignore[union-attr]
    assert set(stress) == {"monochrome1", "noise"}
    assert stress["monochrome1"]["breaks_at"]["auc"] is None  # read correctly: no change
    assert len(stress["noise"]["points"]) == 5
    assert "Stress tests" in html
    subgroups = report["subgroups"]["attributes"]  # type: ignore[index]
    assert {"manufacturer", "site", "sex", "age band"} <= set(subgroups)


def test_external_set_side_by_side_from_results_files(tmp_path: Path) -> None:
    """--results and --external-results: the official validation split (internal) and
    test split (external) as results files of the reference model's real scores."""
    from tests.reference_helpers import reference_scores

    data = tmp_path / "rp"
    run("--data-dir", str(data), "models", "add", str(PACKAGE))
    files = {}
    for split in ("val", "test"):
        scores, labels = reference_scores(split)
        files[split] = tmp_path / f"{split}.csv"
        with files[split].open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["case_id", "score", "label"])
            pairs = zip(scores, labels, strict=True)
            writer.writerows([f"{split}-{i}", s, y] for i, (s, y) in enumerate(pairs))
    out = tmp_path / "report"
    run("--data-dir", str(data), "validate", "--model", "chest-pneumonia",
        "--results", str(files["val"]), "--external-results", str(files["test"]),
        "--names", "validation split,test split", "--use-case", str(USE_CASE),
        "--output", str(out), "--bootstrap", "200")  # fmt: skip
    report = json.loads((out / "report.json").read_text())
    external = report["external"]
    assert external["names"] == ["validation split", "test split"]
    assert external["reports"]["test split"]["n"] == 624
    assert external["reports"]["validation split"]["n"] == report["binary"]["n"] == 524
    assert external["difference"]["youden"]["specificity"]["differs"]
    assert report["verdict"]["on"] == "test split"
    html = (out / "report.html").read_text()
    assert "External validation: test split against validation split" in html
