"""Routing rules: matching, series selection, and refusal of malformed files."""

from __future__ import annotations

from pathlib import Path

import pytest

from radpilot.core.errors import ManifestError
from radpilot.pipeline.routing import SeriesView, load_rules, parse_rules, route

RULES = """\
rules:
  - name: chest-radiograph
    match:
      Modality: "CR|DX"
      BodyPartExamined: "chest"
      ViewPosition: "PA|AP|"
    models: [pneumonia]
    series: largest
  - name: ct-chest
    match:
      Modality: CT
      SeriesDescription: ".*lung.*"
    models: [nodules, "emphysema:2"]
  - name: every-chest
    match:
      BodyPartExamined: CHEST
    models: [pneumonia, qa]
"""


def view(uid: str, n: int, number: int | None = None, **attrs: str | None) -> SeriesView:
    return SeriesView(uid, number, n, dict(attrs))


def test_rules_route_each_model_once_with_merged_series() -> None:
    rules = parse_rules(RULES)
    series = [
        view("1", 1, 1, Modality="DX", BodyPartExamined="CHEST", ViewPosition="PA"),
        view("2", 3, 2, Modality="DX", BodyPartExamined="CHEST", ViewPosition=None),
        view("3", 9, 3, Modality="DX", BodyPartExamined="ABDOMEN", ViewPosition="AP"),
    ]
    routes = {r.model: r for r in route(rules, series)}
    # "largest" picks series 2 (3 instances) for chest-radiograph; every-chest adds 1.
    assert set(routes) == {"pneumonia", "qa"}
    assert routes["pneumonia"].series_uids == ("2", "1")
    assert routes["pneumonia"].rules == ("chest-radiograph", "every-chest")
    assert routes["qa"].series_uids == ("1", "2")


def test_patterns_are_full_match_and_case_insensitive() -> None:
    rules = parse_rules(RULES)
    ct = [
        view("a", 100, 2, Modality="CT", SeriesDescription="Thorax LUNG 1mm"),
        view("b", 100, 3, Modality="CT", SeriesDescription="mediastinum"),
        view("c", 100, 4, Modality="CTX", SeriesDescription="lung"),
    ]
    routes = {r.model: r.series_uids for r in route(rules, ct)}
    assert routes == {"nodules": ("a",), "emphysema:2": ("a",)}


def test_no_match_routes_nowhere() -> None:
    rules = parse_rules(RULES)
    assert route(rules, [view("x", 1, Modality="MR", BodyPartExamined="BRAIN")]) == []


def test_first_series_by_number() -> None:
    rules = parse_rules(
        "rules:\n  - name: r\n    match: {Modality: MR}\n    models: [m]\n    series: first\n"
    )
    series = [view("s9", 5, 9, Modality="MR"), view("s2", 1, 2, Modality="MR")]
    assert route(rules, series)[0].series_uids == ("s2",)


@pytest.mark.parametrize(
    ("text", "line", "field"),
    [
        ("rules:\n  - name: r\n    match: {Modality: CT}\n", 2, "rules.0.models"),
        (
            "rules:\n  - name: r\n    match:\n      Modalty: CT\n    models: [m]\n",
            4,
            "rules.0.match",
        ),
        (
            "rules:\n  - name: r\n    match:\n      Modality: '(CT'\n    models: [m]\n",
            4,
            "rules.0.match",
        ),
        ("rules:\n  - name: r\n    models: [m]\n    series: biggest\n", 4, "rules.0.series"),
        ("rules:\n  - name: r\n    models: [m]\n  - name: r\n    models: [n]\n", 2, "rules"),
        ("rules:\n  - name: r\n    models: [m\n", 4, None),
    ],
)
def test_malformed_rules_name_line_and_field(text: str, line: int, field: str | None) -> None:
    with pytest.raises(ManifestError) as caught:
        parse_rules(text, "rules.yaml")
    message = str(caught.value)
    assert message.startswith(f"rules.yaml:{line}")
    if field is not None:
        assert f": {field}:" in message


def test_missing_file_means_no_rules(tmp_path: Path) -> None:
    assert load_rules(tmp_path / "absent.yaml").rules == []
    path = tmp_path / "routing.yaml"
    path.write_text(RULES)
    assert [r.name for r in load_rules(path).rules] == [
        "chest-radiograph",
        "ct-chest",
        "every-chest",
    ]
