"""``radpilot inventory`` on a real index, checked against pydicom reading the same files.

The index is built from pydicom's and pydicom-data's real files (tests/helpers_index.py)
on SQLite and on PostgreSQL. Every expectation below is computed independently from the
files with plain pydicom, following the index's documented rules (the first instance of a
study, series or patient sets its attributes), never from radpilot's own output.
"""

from __future__ import annotations

import bisect
import csv
import datetime as dt
import io
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from radpilot.cli import inventory as inventory_cli
from radpilot.core.logging import ref
from radpilot.data import SCHEMA, build_inventory, render_html
from radpilot.data.inventory_problems import (
    COMMON_TRANSFER_SYNTAXES,
    FUNCTIONAL_GROUP_SOP_CLASSES,
    PROBLEM_KINDS,
    SPACING_MODALITIES,
)
from radpilot.store import Database
from tests.conftest import recorded_statements
from tests.helpers_index import BuiltIndex, build_index, real_dicom_files, run_cli

TOP_LEVEL_KEYS = {
    "schema", "generated_at", "database", "totals", "modalities", "manufacturers", "models",
    "groups", "series_attributes", "institutions", "image_attributes", "transfer_syntaxes",
    "date_range", "age", "sex", "labels", "deidentified", "receipts", "problems",
}  # fmt: skip


@pytest.fixture
def indexed(db: Database) -> tuple[Database, BuiltIndex]:
    return db, build_index(db, real_dicom_files())


# --- what the files say, read with plain pydicom ------------------------------------------


def text(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    if value is None:
        return None
    parts = list(value) if isinstance(value, MultiValue) else [value]
    joined = "\\".join(str(p) for p in parts).replace("\x00", "").strip()
    return joined or None


def age_years(ds: Dataset) -> float | None:
    age = text(ds, "PatientAge")
    match = re.fullmatch(r"(\d+)([DWMYdwmy])", age or "")
    if match:
        scale = {"D": 1 / 365.25, "W": 7 / 365.25, "M": 1 / 12, "Y": 1.0}
        return int(match[1]) * scale[match[2].upper()]
    birth, study = text(ds, "PatientBirthDate"), text(ds, "StudyDate")
    if birth and study and re.fullmatch(r"\d{8}", birth) and re.fullmatch(r"\d{8}", study):
        years = int(study[:4]) - int(birth[:4]) - (study[4:] < birth[4:])
        return float(years) if 0 <= years < 150 else None
    return None


def calendar_date(value: str) -> bool:
    try:
        dt.datetime.strptime(value, "%Y%m%d")
    except ValueError:
        return False
    return len(value) == 8


def band(years: float | None) -> str:
    if years is None:
        return "unknown"
    edges = [1, 5, 12, 18, 40, 65, 80]
    labels = ["0-<1", "1-<5", "5-<12", "12-<18", "18-<40", "40-<65", "65-<80", "80+"]
    return labels[bisect.bisect_right(edges, years)]


def sex(value: str | None) -> str:
    return value.upper() if value and value.upper() in ("F", "M", "O") else "unknown"


@dataclass
class Expected:
    """The inventory's figures as computed from the files themselves."""

    patients: dict[tuple[str, str], str] = field(default_factory=dict)  # key -> sex
    studies: dict[str, dict[str, Any]] = field(default_factory=dict)
    series: dict[str, dict[str, Any]] = field(default_factory=dict)
    instances: list[dict[str, Any]] = field(default_factory=list)

    def by(self, *keys: str) -> dict[tuple[Any, ...], tuple[int, int, int]]:
        """(studies, series, instances) per combination of series-level ``keys``."""
        studies: dict[tuple[Any, ...], set[str]] = defaultdict(set)
        series: Counter[tuple[Any, ...]] = Counter()
        instances: Counter[tuple[Any, ...]] = Counter()
        for s in self.series.values():
            key = tuple(s[k] for k in keys)
            studies[key].add(s["study"])
            series[key] += 1
            instances[key] += s["instances"]
        return {k: (len(studies[k]), series[k], instances[k]) for k in series}


def expected(built: BuiltIndex) -> Expected:
    exp = Expected()
    for (path, data), ds in zip(built.accepted.values(), built.datasets(), strict=True):
        study_uid, series_uid = str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)
        if study_uid not in exp.studies:
            key = (text(ds, "PatientID") or "", text(ds, "IssuerOfPatientID") or "")
            exp.patients.setdefault(key, sex(text(ds, "PatientSex")))
            exp.studies[study_uid] = {"patient": key, "age": None, "date": text(ds, "StudyDate")}
        if exp.studies[study_uid]["age"] is None:  # later instances fill a missing age
            exp.studies[study_uid]["age"] = age_years(ds)
        if series_uid not in exp.series:
            exp.series[series_uid] = {
                "study": study_uid, "modality": text(ds, "Modality"),
                "manufacturer": text(ds, "Manufacturer"),
                "model": text(ds, "ManufacturerModelName"),
                "protocol": text(ds, "ProtocolName") or text(ds, "SeriesDescription"),
                "instances": 0,
            }  # fmt: skip
        exp.series[series_uid]["instances"] += 1
        tsyntax = str(ds.file_meta.get("TransferSyntaxUID", "1.2.840.10008.1.2"))
        exp.instances.append({
            "sop": str(ds.SOPInstanceUID), "sop_class": str(ds.SOPClassUID), "bytes": len(data),
            "tsyntax": tsyntax, "series": series_uid, "path": path,
            "image": ds.get("Rows") is not None and ds.get("Columns") is not None,
            "spacing": text(ds, "PixelSpacing") or text(ds, "ImagerPixelSpacing"),
        })  # fmt: skip
    return exp


def as_map(rows: list[dict[str, Any]], *keys: str) -> dict[tuple[Any, ...], tuple[int, ...]]:
    return {tuple(r[k] for k in keys): (r["studies"], r["series"], r["instances"]) for r in rows}


# --- the tests -----------------------------------------------------------------------------


def test_counts_match_the_files(indexed: tuple[Database, BuiltIndex]) -> None:
    db, built = indexed
    exp = expected(built)
    assert len(exp.series) >= 20, "the test data should span many series"
    with db.session() as session:
        inv = build_inventory(session)
    assert set(inv) == TOP_LEVEL_KEYS
    assert inv["schema"] == SCHEMA
    assert inv["totals"] == {
        "patients": len(exp.patients), "studies": len(exp.studies), "series": len(exp.series),
        "instances": len(exp.instances), "bytes": sum(i["bytes"] for i in exp.instances),
        "frames": inv["totals"]["frames"],
    }  # fmt: skip
    assert inv["totals"]["frames"] >= inv["totals"]["instances"]
    assert as_map(inv["modalities"], "modality") == exp.by("modality")
    assert as_map(inv["manufacturers"], "manufacturer") == exp.by("manufacturer")
    assert as_map(inv["models"], "manufacturer", "model") == exp.by("manufacturer", "model")
    keys = ("modality", "manufacturer", "model", "protocol")
    assert as_map(inv["groups"], *keys) == exp.by(*keys)
    assert {"CT", "MR", "US", "CR", "NM", "SEG", "SR"} <= {m["modality"] for m in inv["modalities"]}
    tsyntaxes = Counter(i["tsyntax"] for i in exp.instances)
    assert {t["uid"]: t["instances"] for t in inv["transfer_syntaxes"]} == tsyntaxes
    assert all(t["common"] == (t["uid"] in COMMON_TRANSFER_SYNTAXES)
               for t in inv["transfer_syntaxes"])  # fmt: skip
    sop_classes = Counter(i["sop_class"] for i in exp.instances)
    assert {c["uid"]: c["instances"] for c in inv["image_attributes"]["sop_classes"]} == sop_classes
    counts = [row["instances"] for row in inv["groups"]]
    assert counts == sorted(counts, reverse=True)


def test_patients_ages_sexes_and_dates_match_the_files(
    indexed: tuple[Database, BuiltIndex],
) -> None:
    db, built = indexed
    exp = expected(built)
    with db.session() as session:
        inv = build_inventory(session)
    per_band: Counter[tuple[str, str]] = Counter()
    for study in exp.studies.values():
        per_band[(band(study["age"]), exp.patients[study["patient"]])] += 1
    for row in inv["age"]["bands"]:
        for s, n in row["by_sex"].items():
            assert n == per_band[(row["band"], s)], (row["band"], s)
    for s, n in inv["age"]["unknown_age_by_sex"].items():
        assert n == per_band[("unknown", s)]
    ages = [s["age"] for s in exp.studies.values() if s["age"] is not None]
    assert inv["age"]["studies_with_age"] == len(ages) > 5
    assert inv["age"]["mean_years"] == pytest.approx(sum(ages) / len(ages), abs=0.01)
    assert inv["age"]["max_years"] == pytest.approx(max(ages))
    assert inv["age"]["paediatric_studies"] == sum(1 for a in ages if a < 18)
    assert inv["sex"]["patients"] == {s: Counter(exp.patients.values())[s]
                                      for s in ("F", "M", "O", "unknown")}  # fmt: skip
    dates = sorted(d for s in exp.studies.values() if (d := s["date"]) and calendar_date(d))
    assert inv["date_range"]["first"] == f"{dates[0][:4]}-{dates[0][4:6]}-{dates[0][6:]}"
    assert inv["date_range"]["last"] == f"{dates[-1][:4]}-{dates[-1][4:6]}-{dates[-1][6:]}"
    assert inv["date_range"]["studies_with_date"] == len(dates)
    assert sum(y["studies"] for y in inv["date_range"]["by_year"]) == len(dates)
    missing = sum(1 for s in exp.studies.values() if s["date"] is None)
    assert inv["date_range"]["studies_without_date"] == missing
    assert inv["date_range"]["studies_with_invalid_date"] == len(exp.studies) - missing - len(dates)


def test_problems_are_found(indexed: tuple[Database, BuiltIndex]) -> None:
    db, built = indexed
    exp = expected(built)
    with db.session() as session:
        inv = build_inventory(session)
    problems = {p["kind"]: p for p in inv["problems"]}
    assert [p["kind"] for p in inv["problems"]] == [kind for kind, *_ in PROBLEM_KINDS]

    no_spacing = [
        i for i in exp.instances
        if i["image"] and i["spacing"] is None
        and exp.series[i["series"]]["modality"] in SPACING_MODALITIES
        and i["sop_class"] not in FUNCTIONAL_GROUP_SOP_CLASSES
    ]  # fmt: skip
    # a real case: Fuji CR images that carry neither Pixel Spacing nor Imager Pixel Spacing
    assert any(exp.series[i["series"]]["manufacturer"] == "FUJI PHOTO FILM CO. LTD."
               for i in no_spacing)  # fmt: skip
    missing = problems["missing_pixel_spacing"]
    assert missing["count"] == len(no_spacing)
    assert {e["ref"] for e in missing["examples"]} <= {ref(i["sop"]) for i in no_spacing}
    assert len(missing["examples"]) == min(5, len(no_spacing))

    zero = [i for i in exp.instances if i["spacing"] and float(i["spacing"].split("\\")[0]) == 0]
    assert zero and problems["invalid_pixel_spacing"]["count"] == len(zero)

    unusual = [i for i in exp.instances if i["tsyntax"] not in COMMON_TRANSFER_SYNTAXES]
    assert any(i["tsyntax"] == "1.2.840.10008.1.2.4.51" for i in unusual)  # JPEG Extended
    assert problems["unusual_transfer_syntax"]["count"] == len(unusual)
    assert "1.2.840.10008.1.2.4.51" in problems["unusual_transfer_syntax"]["breakdown"][0]["value"]

    rejected = problems["rejected_files"]
    assert rejected["count"] == len(built.rejected) >= 5
    reasons = Counter(reason.split(":")[0].strip() for reason in built.rejected.values())
    assert {b["value"]: b["count"] for b in rejected["breakdown"]} == reasons
    assert "not a DICOM file" in reasons
    assert problems["conflicts"]["count"] == len(built.conflicts)
    assert problems["duplicates"]["count"] == len(built.duplicates)
    assert inv["receipts"]["stored"] == len(exp.instances)
    assert problems["missing_modality"]["count"] == sum(
        1 for s in exp.series.values() if s["modality"] is None
    )


def test_queries_aggregate_in_the_database(indexed: tuple[Database, BuiltIndex]) -> None:
    """No query reads instance rows one by one: each aggregates, or is LIMITed examples."""
    db, _built = indexed
    with recorded_statements(db.engine) as statements, db.session() as session:
        build_inventory(session)
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) > 20
    for statement in selects:
        assert re.search(r"\b(GROUP BY|count|sum|LIMIT)\b", statement, re.IGNORECASE), statement


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: Counter[str] = Counter()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] += 1
        self.links += [v for k, v in attrs if v and k in ("src", "href", "xlink:href", "action")]


def identifiers(built: BuiltIndex) -> set[str]:
    """Every patient name, ID, accession number, UID and file path of the test data."""
    found: set[str] = set()
    for ds in built.datasets():
        for keyword in ("PatientName", "PatientID", "AccessionNumber", "StudyInstanceUID",
                        "SeriesInstanceUID", "SOPInstanceUID"):  # fmt: skip
            value = text(ds, keyword)
            if value and len(value) >= 5:
                found.add(value)
    paths = [p for p, _ in built.accepted.values()] + list(built.rejected)
    found |= {str(p) for p in paths} | {p.name for p in paths}
    return found


def test_outputs_json_csv_html_table(indexed: tuple[Database, BuiltIndex], tmp_path: Path) -> None:
    db, built = indexed
    with db.session() as session:
        direct = build_inventory(session)

    result = run_cli(db.url, tmp_path, "inventory", "--format", "json")
    assert result.exit_code == 0, result.output
    json_text = result.stdout
    as_json = json.loads(json_text)
    assert {k: v for k, v in as_json.items() if k != "generated_at"} == {
        k: v for k, v in direct.items() if k != "generated_at"
    }

    out = tmp_path / "reports" / "inventory.csv"
    result = run_cli(db.url, tmp_path, "inventory", "--format", "csv", "--output", str(out))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert list(rows[0]) == list(inventory_cli.CSV_COLUMNS)
    assert [{k: r[k] or None for k in ("modality", "manufacturer", "model", "protocol")}
            for r in rows] == [{k: g[k] for k in ("modality", "manufacturer", "model", "protocol")}
                               for g in direct["groups"]]  # fmt: skip
    assert [int(r["instances"]) for r in rows] == [g["instances"] for g in direct["groups"]]

    page = tmp_path / "inventory.html"
    result = run_cli(db.url, tmp_path, "inventory", "--format", "html", "-o", str(page))
    assert result.exit_code == 0, result.output
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>")
    parser = _Tags()
    parser.feed(html)
    assert parser.tags["svg"] == 5  # groups, dates, age and sex, labels, problems
    assert parser.tags["script"] == parser.tags["link"] == parser.tags["img"] == 0
    assert all(link.startswith("#") for link in parser.links), parser.links
    # url(#id) is an SVG clip path inside the page; anything else would be fetched
    assert not re.search(r"url\((?!#)|@import|(src|href)\s*=\s*[\"']?\s*(https?:)?//", html)
    assert "missing pixel spacing" in html and "JPEG Extended" in html

    result = run_cli(db.url, tmp_path, "inventory")
    assert result.exit_code == 0, result.output
    table = result.stdout
    assert "modality x manufacturer x model x protocol" in table
    assert "missing_pixel_spacing" in table and "(unusual)" in table

    for name in identifiers(built):
        for label, output in (("json", json_text), ("html", html), ("table", table),
                              ("csv", out.read_text(encoding="utf-8"))):  # fmt: skip
            assert name not in output, f"an identifier of the test data appears in the {label}"


def test_empty_database(db: Database, tmp_path: Path) -> None:
    with db.session() as session:
        inv = build_inventory(session)
    assert inv["totals"] == dict.fromkeys(
        ("patients", "studies", "series", "instances", "frames", "bytes"), 0
    )
    assert inv["groups"] == [] and inv["date_range"]["first"] is None
    assert all(p["count"] == 0 and p["examples"] == [] for p in inv["problems"])
    html = render_html(inv)
    assert "<svg" not in html and "No series indexed yet." in html
    result = run_cli(db.url, tmp_path, "inventory")
    assert result.exit_code == 0 and "no problems found" in result.stdout


def test_bad_usage_and_unreachable_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    result = run_cli(url, tmp_path, "inventory", "--format", "xml")
    assert result.exit_code == 2
    result = run_cli("postgresql+psycopg://nobody@127.0.0.1:1/none", tmp_path, "inventory")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("radpilot: error: cannot read the database")
