"""The validation report as data (``report.json``): every number the pages show, the
plain-language summary, and one row per case, kept or excluded with the reason."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from radpilot.validation.binary import Options, evaluate_binary
from radpilot.validation.cases import CaseTable
from radpilot.validation.external import compare_sets
from radpilot.validation.subgroups import SubgroupOptions, analyse_subgroups
from radpilot.validation.usecase import UseCase, verdict

__all__ = ["ReportInputs", "build_report", "checklist", "summary_lines"]

SCHEMA = "radpilot.validation/1"


@dataclass
class ReportInputs:
    """What a report is about, besides its cases."""

    model: dict[str, str]  # name, version, weights_sha256
    finding: str
    operating_points: dict[str, float]
    default_point: str
    body: str = "studies"  # "chest radiographs": how the summary names a case
    use_case: UseCase | None = None
    options: Options = field(default_factory=Options)
    subgroups: SubgroupOptions = field(default_factory=SubgroupOptions)
    source: str = ""  # where the cases came from, in words
    external: CaseTable | None = None  # a second, independent set: side by side
    names: tuple[str, str] = ("internal", "external")


def _fmt(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def summary_lines(report: dict[str, Any], inputs: ReportInputs) -> list[str]:
    """The one-screen summary, in plain terms."""
    binary = report["binary"]
    point = binary["operating_points"][inputs.default_point]
    sens, spec = point["sensitivity"], point["specificity"]
    lines = [
        f"{binary['n']} cases ({binary['positives']} with {inputs.finding}, "
        f"{binary['negatives']} without) from {binary['patients']} patients; "
        f"{sum(binary['excluded'].values())} excluded.",
    ]
    if binary["auc"]:
        auc = binary["auc"]
        lines.append(f"ROC AUC {auc['value']:.3f} (95% CI {auc['low']:.3f} to {auc['high']:.3f}).")
    lines.append(
        f"At the {inputs.default_point} threshold ({point['threshold']:.3g}): sensitivity "
        f"{sens['value']:.1%} ({sens['low']:.1%} to {sens['high']:.1%}), specificity "
        f"{spec['value']:.1%} ({spec['low']:.1%} to {spec['high']:.1%})."
    )
    at = point.get("at_prevalence")
    if at:
        missed, alarms = at["missed_per_10000"], at["false_alarms_per_10000"]
        lines.append(
            f"Out of 10,000 {inputs.body} with {at['prevalence']:.0%} {inputs.finding}, about "
            f"{_fmt(missed['value'])} ({_fmt(missed['low'])} to {_fmt(missed['high'])}) cases of "
            f"{inputs.finding} would be missed and {_fmt(alarms['value'])} "
            f"({_fmt(alarms['low'])} to {_fmt(alarms['high'])}) {inputs.body} without it "
            f"flagged; a flagged study has {inputs.finding} with probability "
            f"{at['ppv']['value']:.0%} ({at['ppv']['low']:.0%} to {at['ppv']['high']:.0%})."
        )
    if report.get("verdict"):
        v = report["verdict"]
        lines.append(
            f"Verdict against use case {v['use_case']!r} on {v.get('on', 'these cases')}: "
            f"{v['verdict'].upper()}."
        )
    return lines


def checklist(report: dict[str, Any], inputs: ReportInputs) -> list[dict[str, str]]:
    """Topics of the CLAIM (2024 update) and TRIPOD+AI (2024) checklists that a validation
    report speaks to, each marked as filled from the data, needing human input, or not
    applicable. Item numbers are left to the reviewer: the topics map to one or more
    items of each list."""
    data, human, na = "filled from the data", "needs human input", "not applicable"
    items = [
        ("data sources, sites and dates of the test set", data),
        ("eligibility: inclusion and exclusion criteria", data if inputs.use_case else human),
        ("participant flow: cases excluded and why", data),
        ("demographic and technical characteristics of the test set", data),
        ("reference standard: how labels were obtained, readers, adjudication", human),
        ("handling of missing data", data),
        ("performance measures with 95% confidence intervals", data),
        ("performance at the intended operating point and deployment prevalence", data),
        ("calibration", data),
        ("subgroup and fairness analyses", data if report["subgroups"]["attributes"] else human),
        ("sample size justification", human),
        ("intended use, limitations and generalisability", human),
        ("model development and training details (in the model card)", na),
    ]
    return [{"item": item, "status": status} for item, status in items]


def _inventory(table: CaseTable) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, values in sorted(table.attributes.items()):
        counts = Counter(v or "(unknown)" for v in values)
        if len(counts) > 50:
            out[name] = {"distinct": len(counts)}
            continue
        positives = Counter(
            (v or "(unknown)") for v, y in zip(values, table.labels, strict=True) if y == 1
        )
        out[name] = {k: {"n": n, "positives": positives[k]} for k, n in sorted(counts.items())}
    return out


def build_report(table: CaseTable, inputs: ReportInputs) -> dict[str, Any]:
    """Everything ``report.json`` holds."""
    binary = evaluate_binary(table, inputs.operating_points, inputs.options)
    threshold = inputs.operating_points[inputs.default_point]
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "model": inputs.model,
        "finding": inputs.finding,
        "source": inputs.source,
        "default_operating_point": inputs.default_point,
        "use_case": None if inputs.use_case is None else inputs.use_case.model_dump(by_alias=True),
        "binary": binary,
        "subgroups": analyse_subgroups(table, threshold, inputs.subgroups),
        "inventory": _inventory(table),
    }
    judged = binary
    if inputs.external is not None:
        external = compare_sets(table, inputs.external, inputs.operating_points,
                                inputs.names, inputs.options, first_report=binary)  # fmt: skip
        report["external"] = external
        judged = external["reports"][inputs.names[1]]
    if inputs.use_case is not None:
        report["verdict"] = verdict(inputs.use_case, judged, inputs.default_point)
        report["verdict"]["on"] = inputs.names[1] if inputs.external is not None else "these cases"
    report["summary"] = summary_lines(report, inputs)
    if "external" in report:
        auc = report["external"]["difference"]["auc"]
        if auc is not None:
            a, b = inputs.names
            report["summary"].append(
                f"{b} against {a}: AUC difference {auc['value']:+.3f} (95% CI "
                f"{auc['low']:+.3f} to {auc['high']:+.3f})"
                + ("; the sets differ." if auc["differs"] else ".")
            )
    report["checklist"] = checklist(report, inputs)
    cases = [
        {"case_id": c, "patient": p, "score": float(s), "label": int(y), "excluded": None,
         **{k: v[i] for k, v in table.attributes.items()}}
        for i, (c, p, s, y) in enumerate(zip(table.case_ids, table.patient_ids, table.scores,
                                             table.labels, strict=True))
    ]  # fmt: skip
    cases += [{"case_id": e.case_id, "excluded": e.reason} for e in table.excluded]
    report["cases"] = cases
    return report
