"""Whether a final report says a finding is present: rules with negation, in the manner of
NegEx (Chapman et al. 2001), for English radiology reports.

The report is split into sentences. A sentence that names the finding (a term or a
synonym) is **negated** when a negation cue precedes the term within the sentence ("no",
"without", "negative for", "free of", "no evidence of", "resolved") or a post-negation cue
follows it ("is not seen", "has resolved", "ruled out"); **uncertain** when a hedge is
there ("possible", "cannot exclude", "may represent", "questionable"); else **affirmed**.
The report counts as present when any sentence affirms the finding, absent when it is
mentioned only negated, and undetermined (None) when it is not mentioned or only hedged —
an undetermined report is not used as an outcome label. A "but"/"however" ends a cue's
scope. The terms for pneumonia are :data:`PNEUMONIA`.

medspaCy's ConText does the same with a larger rule set; it is not used because it pulls
spaCy and its models, which cannot be downloaded here. The agreement of these rules with
hand labels is measured in ``tests/test_outcomes.py`` on the sample in
``tests/data/report_sample.csv`` — written for this purpose, not clinical reports.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["PNEUMONIA", "finding_in_report"]

PNEUMONIA: tuple[str, ...] = (
    "pneumonia",
    "pneumonic",
    "consolidation",
    "consolidative",
    "airspace disease",
    "airspace opacity",
    "airspace opacities",
    "infiltrate",
    "infiltrates",
    "bronchopneumonia",
)
_PRE = (
    "no",
    "not",
    "without",
    "negative for",
    "free of",
    "no evidence of",
    "no signs of",
    "absence of",
    "resolution of",
    "resolved",
    "clear of",
    "rather than",
)
_POST = (
    "is not seen",
    "are not seen",
    "not identified",
    "is absent",
    "are absent",
    "has resolved",
    "have resolved",
    "ruled out",
    "is excluded",
    "not present",
)
_HEDGE = (
    "possible",
    "possibly",
    "cannot exclude",
    "cannot be excluded",
    "may represent",
    "questionable",
    "suspicious for",
    "concerning for",
    "could represent",
    "likely",
    "probable",
    "versus",
    "vs",
)
_BREAK = re.compile(r"\b(but|however|although|though)\b")
_SENTENCE = re.compile(r"(?<=[.!?;])\s+|\n+")


def _has(text: str, phrases: Sequence[str]) -> bool:
    return any(re.search(rf"\b{re.escape(p)}\b", text) for p in phrases)


def _judge(sentence: str, terms: Sequence[str]) -> str | None:
    for clause in _BREAK.split(sentence):
        for term in terms:
            found = re.search(rf"\b{re.escape(term)}\b", clause)
            if found is None:
                continue
            before, after = clause[: found.start()], clause[found.end() :]
            if _has(before, _PRE) or _has(after, _POST):
                return "negated"
            if _has(before, _HEDGE) or _has(after, _HEDGE):
                return "uncertain"
            return "affirmed"
    return None


def finding_in_report(text: str, terms: Sequence[str] = PNEUMONIA) -> int | None:
    """1 the report affirms the finding, 0 it mentions it only negated, None otherwise."""
    seen = [_judge(s, terms) for s in _SENTENCE.split(text.lower()) if s.strip()]
    if "affirmed" in seen:
        return 1
    if "negated" in seen and "uncertain" not in seen:
        return 0
    return None
