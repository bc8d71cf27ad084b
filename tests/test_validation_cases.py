"""Bad input to validation: every unusable row is reported by id and reason, never dropped."""

from __future__ import annotations

import numpy as np
import pytest

from radpilot.validation.binary import Options, evaluate_binary
from radpilot.validation.cases import ValidationDataError, build_cases


def rows() -> list[dict[str, object]]:
    return [
        {"case_id": "a", "score": 0.9, "label": 1, "patient_id": "p1", "site": "north"},
        {"case_id": "b", "score": "0.2", "label": "0", "patient_id": "p1", "site": "north"},
        {"case_id": "c", "score": 0.7, "label": "pneumonia", "patient_id": "", "site": "south"},
        {"case_id": "d", "score": 0.1, "label": "normal", "site": "south"},
        {"case_id": "a", "score": 0.1, "label": 0, "patient_id": "p9"},  # duplicate
        {"case_id": "e", "score": float("nan"), "label": 1},
        {"case_id": "f", "score": "", "label": 1},
        {"case_id": "g", "score": "high", "label": 0},
        {"case_id": "h", "score": 0.4, "label": ""},
        {"case_id": "i", "score": 0.4, "label": "maybe"},
        {"case_id": "j", "score": float("inf"), "label": 0},
    ]


def test_each_unusable_row_is_excluded_with_its_reason() -> None:
    table = build_cases(rows(), positive_labels=["pneumonia"])
    assert table.case_ids == ["a", "b", "c", "d"]
    assert list(table.labels) == [1, 0, 1, 0]
    assert np.allclose(table.scores, [0.9, 0.2, 0.7, 0.1])
    assert table.patient_ids == ["p1", "p1", "case:c", "case:d"]
    assert table.attributes == {"site": ["north", "north", "south", "south"]}
    reasons = {e.case_id: e.reason for e in table.excluded}
    assert reasons == {
        "a": "duplicate case (first row kept)",
        "e": "score is NaN",
        "f": "missing score",
        "g": "score is not a number ('high')",
        "h": "no reference label",
        "i": "label not understood ('maybe')",
        "j": "score is infinite",
    }
    assert sum(table.exclusion_summary().values()) == 7
    assert table.clustered  # p1 has two cases


def test_the_report_states_the_exclusions_and_resamples_patients() -> None:
    table = build_cases(rows() * 1 + [
        {"case_id": f"x{i}", "score": i / 40, "label": int(i % 3 == 0), "patient_id": f"q{i // 2}"}
        for i in range(40)
    ], positive_labels=["pneumonia"])  # fmt: skip
    report = evaluate_binary(table, {"default": 0.5}, Options(bootstrap=200))
    assert report["n"] == 44 and report["excluded"]["score is NaN"] == 1
    assert sum(report["excluded"].values()) == 7
    point = report["operating_points"]["default"]
    assert point["sensitivity"]["method"].startswith("bootstrap by patient")
    assert report["patients"] == 1 + 2 + 20  # p1, c and d alone, q0-q19


def test_one_class_or_nothing_usable_is_refused_with_the_reason() -> None:
    with pytest.raises(ValidationDataError, match="all 2 usable cases are positive"):
        build_cases([{"case_id": "a", "score": 0.3, "label": 1},
                     {"case_id": "b", "score": 0.9, "label": 1}])  # fmt: skip
    with pytest.raises(ValidationDataError, match=r"no usable case \(2 excluded\)"):
        build_cases([{"case_id": "a", "score": "nan", "label": 1},
                     {"case_id": "b", "score": 0.9, "label": None}])  # fmt: skip
