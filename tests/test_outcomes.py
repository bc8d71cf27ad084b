"""Outcomes (issue 7): the report-text rules against hand labels, the CSV import, and the
HL7 v2 MLLP listener answering ORU^R01 messages sent by python-hl7's client — each stored
outcome and each refusal audited, no report text in the audit log."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import json
from pathlib import Path
from typing import Any

import hl7
import pytest
from hl7.mllp import open_hl7_connection
from sqlalchemy import select

from radpilot.governance.audit import AuditLog
from radpilot.monitoring.hl7_listener import OutcomeListener, outcome_of
from radpilot.monitoring.outcomes import import_csv
from radpilot.monitoring.report_text import finding_in_report
from radpilot.store import Database
from radpilot.store.models import Read
from radpilot.store.models_pipeline import AuditEntry
from tests.helpers_worklist import T0, Rows

DATA = Path(__file__).parent / "data"
#: Three samples of 200 chest radiograph reports, each written and labelled by a separate
#: author who never saw the rules (docs/monitoring.md): the rules were revised on the
#: first two; the third was measured once, after the last revision.
SAMPLES = {
    "report_sample_independent.csv": 199,  # development (the rules before revision: 132)
    "report_sample_heldout.csv": 198,  # development, measured first at 184 (before: 130)
    "report_sample_test.csv": 191,  # held out (the rules before revision: 130)
}


def _labelled(name: str) -> list[tuple[str, int | None]]:
    with (DATA / name).open(newline="", encoding="utf-8") as handle:
        return [
            (r["text"], int(r["label"]) if r["label"] else None) for r in csv.DictReader(handle)
        ]


@pytest.mark.parametrize(("name", "floor"), SAMPLES.items())
def test_rules_against_independently_labelled_samples(name: str, floor: int) -> None:
    rows = _labelled(name)
    assert len(rows) == 200 and {label for _, label in rows} == {0, 1, None}
    got = [finding_in_report(text) for text, _ in rows]
    agree = sum(g == label for g, (_, label) in zip(got, rows, strict=True))
    assert agree >= floor, f"{name}: {agree}/200 agree, the documented figure is {floor}"
    stored = [(g, label) for g, (_, label) in zip(got, rows, strict=True) if g is not None]
    assert sum(g == label for g, label in stored) / len(stored) >= 0.95  # labels kept


def test_rules_on_cases_that_once_went_wrong() -> None:
    assert finding_in_report("No pneumothorax. Pneumonia in the right base.") == 1
    assert finding_in_report("Nothing about the lungs.") is None
    assert finding_in_report("History: ?pneumonia. Findings: Lungs clear.") == 0  # request
    assert finding_in_report("No change in the right lower lobe consolidation.") == 1
    assert finding_in_report("Incomplete resolution of the left lower lobe pneumonia.") == 1
    assert finding_in_report("Resolved right middle lobe pneumonia.") == 0
    assert finding_in_report("Pneumonia cannot be entirely excluded.") is None
    assert finding_in_report("Atelectasis or early pneumonia at the left base.") is None
    assert finding_in_report("RUL pneumonia with bulging fissure ?Klebsiella.") == 1
    assert finding_in_report("No focal airspace opacity.") == 0  # negated, unspecific
    assert finding_in_report("Bilateral airspace opacities.") is None  # affirmed, unspecific
    assert finding_in_report("If concern for pneumonia persists, CT is recommended.") is None


@pytest.fixture
def studies(db: Database, tmp_path: Path) -> dict[str, Any]:
    with db.session() as session:
        rows = Rows(session, tmp_path)
        a = rows.study(T0, T0, accession="ACC-1")
        b = rows.study(T0, T0, accession="ACC-2")
        session.commit()
        return {"a": a.id, "a_uid": a.study_instance_uid, "b": b.id}


def reads(db: Database) -> list[tuple[int, int, str]]:
    with db.session() as session:
        return [
            (r.study_pk, r.value, r.reader) for r in session.scalars(select(Read).order_by(Read.id))
        ]


def test_csv_import(db: Database, studies: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "outcomes.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["study_instance_uid", "accession_number", "label", "report_text", "source"]
        )
        writer.writerow([studies["a_uid"], "", "1", "", "pathology"])
        writer.writerow(["", "ACC-2", "", "Lungs clear. No consolidation.", "report"])
        writer.writerow(["", "ACC-404", "1", "", "report"])
        writer.writerow(["", "ACC-1", "", "Possible consolidation.", "report"])
        writer.writerow(["", "ACC-1", "maybe", "", "report"])
    summary = import_csv(db, path, actor="test")
    assert summary.stored == 2
    assert summary.refused == {
        "no study with this UID or accession number": 1,
        "the report neither affirms nor negates the finding": 1,
        "label 'maybe' is not 0 or 1": 1,
    }
    assert reads(db) == [
        (studies["a"], 1, "outcome:pathology"),
        (studies["b"], 0, "outcome:report"),
    ]
    bad = tmp_path / "bad.csv"
    bad.write_text("patient,label\nx,1\n")
    with pytest.raises(ValueError, match="study_instance_uid or accession_number"):
        import_csv(db, bad, actor="test")


def oru(control: str, accession: str, *texts: str) -> str:
    segments = [
        f"MSH|^~\\&|RIS|HOSP|RADPILOT|HOSP|20241201120000||ORU^R01|{control}|P|2.5",
        "PID|1||PAT-SECRET-9||DOE^JANE",
        f"OBR|1||{accession}|CXR^Chest radiograph",
        *(f"OBX|{i}|TX|REPORT||{t}||||||F" for i, t in enumerate(texts, start=1)),
    ]
    return "\r".join(segments)


async def exchange(port: int, messages: list[str]) -> list[Any]:
    reader, writer = await open_hl7_connection("127.0.0.1", port)
    answers = []
    for text in messages:
        writer.writemessage(hl7.parse(text))
        await writer.drain()
        answers.append(await asyncio.wait_for(reader.readmessage(), 10))
    writer.close()
    await writer.wait_closed()
    return answers


def test_hl7_listener(db: Database, studies: dict[str, Any]) -> None:
    listener = OutcomeListener(db, "127.0.0.1", 0)
    listener.start()
    try:
        adt = oru("M4", "ACC-1", "x").replace("ORU^R01", "ADT^A01")
        no_text = oru("M5", "ACC-1", "x").replace("OBX|1|TX|REPORT||x||||||F", "OBX|1|TX")
        answers = asyncio.run(
            exchange(
                listener.port,
                [
                    oru(
                        "M1",
                        "ACC-1",
                        "FINDINGS: Right lower lobe consolidation.",
                        "IMPRESSION: Pneumonia.",
                    ),
                    oru("M2", "ACC-404", "Pneumonia."),
                    oru("M3", "ACC-2", "Heart normal."),
                    adt,
                    no_text,
                ],
            )
        )
    finally:
        listener.stop()
    codes = [str(a.segment("MSA")(1)) for a in answers]
    assert codes == ["AA", "AE", "AE", "AR", "AR"]
    assert [str(a.segment("MSA")(2)) for a in answers] == ["M1", "M2", "M3", "M4", "M5"]
    assert "no study" in str(answers[1].segment("MSA")(3))
    assert "neither affirms nor negates" in str(answers[2].segment("MSA")(3))
    assert reads(db) == [(studies["a"], 1, "outcome:hl7")]
    assert AuditLog(db).verify().ok
    with db.session() as session:
        entries = [e for e in session.scalars(select(AuditEntry)) if e.kind.startswith("outcome.")]
    assert [e.kind for e in entries] == ["outcome.stored", "outcome.refused", "outcome.refused"]
    text = json.dumps([e.payload for e in entries])
    assert "Pneumonia" not in text and "PAT-SECRET-9" not in text


def _with_times(observed: str = "", reported: str = "") -> Any:
    fields = ["OBR", "1", "", "ACC-1", "CXR^Chest radiograph"] + [""] * 20
    fields[7], fields[22] = observed, reported
    text = oru("M9", "ACC-1", "Pneumonia.").replace(
        "OBR|1||ACC-1|CXR^Chest radiograph", "|".join(fields)
    )
    return hl7.parse(text)


def test_the_report_time_is_obr_22_else_obr_7() -> None:
    both = outcome_of(_with_times("20261201080000", "20261201101500+0100"))
    assert both.at == dt.datetime(2026, 12, 1, 9, 15, tzinfo=dt.UTC)  # OBR-22, to UTC
    observed = outcome_of(_with_times(observed="20261201080000+0000"))
    assert observed.at == dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)
    local = outcome_of(_with_times(reported="202612011015"))  # no offset: server local
    assert local.at == dt.datetime(2026, 12, 1, 10, 15).astimezone(dt.UTC)
    assert outcome_of(_with_times()).at is None
    with pytest.raises(ValueError, match="OBR-22 is not an HL7 time"):
        outcome_of(_with_times(reported="yesterday"))
