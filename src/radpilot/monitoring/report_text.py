"""Whether a final report says a finding is present: rules with negation, in the manner of
NegEx and ConText (Chapman et al. 2001, Harkema et al. 2009), for English chest
radiograph reports.

The report is split into sentences (``.``, ``!``, ``?`` or ``;`` before a space, or a
line break). Sentences of the request — history, indication, clinical question — are
dropped, and so are recommendations ("recommend", "to ensure resolution"): they name the
finding without reporting it. Section headers ("FINDINGS:", "IMPRESSION:") are cut off.
Each sentence is cut into clauses at "but", "however", "although", "whereas", "apart
from", "except", "which", "there is/are" (where ConText ends a cue's scope). Every
mention of a term (:data:`PNEUMONIA`, with common misspellings) in a clause is then judged,
first rule that applies:

1. **still present** — a pseudo-negation before it ("no change in", "no improvement in",
   "failure of resolution", "incomplete resolution", "partially resolved") or a
   persistence after it ("persists", "remains", "has not resolved"): affirmed;
2. **not excluded** — "cannot (entirely) exclude", "not excluded", "cannot rule out",
   "neither confirmed nor excluded": uncertain;
3. **negated** — a negation cue up to ten words before it ("no", "without", "neither",
   "negative for", "free of", "clear of", "resolved", "resolution of", "clearance of";
   a cue's reach ends at "favoured" or "represents") or after it ("is not seen", "no
   longer seen", "has cleared", "resolved", "absent", ": none"): negated;
4. **hedged** — a hedge before or after it ("possible", "may", "could", "questionable",
   "?" right before or after the term, "X or" right before it, "or X" right after,
   "versus", "differential", "consideration", "if", "equivocal"): uncertain;
5. otherwise affirmed — "likely", "probable", "consistent with", "in keeping with",
   "suspicious for" and "concerning for" commit to the finding and count as affirmed.

A sentence that calls the lungs normal ("lungs are clear", "normal chest radiograph",
"no acute cardiopulmonary process", "NAD", "within normal limits") counts as a negated
mention, and so does a negated mention of an unspecific opacity
(:data:`PNEUMONIA_NEGATED_ONLY`: "no focal airspace opacity"), whose presence alone says
nothing. The report is **present** (1) when any mention is affirmed, **undetermined**
(None) when any is uncertain or none is found, and **absent** (0) when every mention is
negated; an undetermined report is not used as an outcome label.

Agreement with labels written independently of these rules is measured in
``tests/test_outcomes.py`` and ``docs/monitoring.md``: a development sample the rules were
revised on, and a held-out sample they were never changed for.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = [
    "NORMAL_LUNGS",
    "PNEUMONIA",
    "PNEUMONIA_NEGATED_ONLY",
    "finding_in_report",
    "judge_sentence",
]

PNEUMONIA: tuple[str, ...] = (
    "pneumonia",
    "pneumonias",
    "pneumonic",
    "bronchopneumonia",
    "consolidation",
    "consolidations",
    "consolidative",
    "consolidated",
    "infiltrate",
    "infiltrates",
    "infection",
    "infective",
    "infectious",
    "lrti",
    "aspiration",
    # misspellings seen in dictated reports
    "pnuemonia",
    "pneumona",
    "pnemonia",
    "pneumonai",
    "consolidaton",
    "consolidaiton",
    "consolodation",
)
#: Terms whose negation says the finding is absent but whose presence does not say it is
#: there ("no focal airspace opacity" excludes pneumonia; "airspace opacity" alone may be
#: oedema, haemorrhage or atelectasis).
PNEUMONIA_NEGATED_ONLY: tuple[str, ...] = (
    "airspace disease",
    "airspace opacity",
    "airspace opacities",
    "airspace opacification",
    "airspace shadowing",
    "opacity",
    "opacities",
    "opacification",
    "shadowing",
)
#: Statements that the lungs are normal: a negated mention of any lung finding.
NORMAL_LUNGS: tuple[str, ...] = (
    r"\blungs?\b[^.;:]{0,40}?\bclear\b",  # "lungs are well expanded and clear"
    r"\bchest\s+(?:is\s+|appears\s+)?clear\b",
    r"\bclear\s+lungs?\b",
    r"\blungs?\s*:\s*clear\b",
    r"\blung\s+parenchyma\s+(?:is\s+)?clear\b",
    r"\bclear\s+lung\s+fields\b",
    r"\bnormal\s+(?:chest|cxr|study|examination|radiograph|film)\b",
    r"\bno\s+acute\s+(?:cardiopulmonary|cardio-pulmonary|chest|lung|pulmonary|"
    r"intrathoracic|thoracic)\s+"
    r"(?:process|abnormality|abnormalities|disease|findings?|pathology)\b",
    r"\bno\s+acute\s+(?:abnormality|abnormalities|findings?)\b",
    r"\bnad\b",
    r"\bwithin\s+normal\s+limits\b",
    r"\bno\s+active\s+(?:lung|pulmonary|chest)\s+disease\b",
)

_REQUEST = re.compile(
    r"^\s*(?:clinical\s+|reason\s+for\s+(?:exam(?:ination)?|study|request)\s*)?"
    r"(?:history|hx|indications?|information|info|details|question|notes?|request|"
    r"query|reason|clinical)\b"
)
_RECOMMENDATION = re.compile(
    r"\brecommend|\bsuggest(?:ed)?\s+(?:a\s+)?(?:follow|repeat|ct\b)|"
    r"\b(?:ensure|document|confirm|demonstrate)\s+(?:its\s+|complete\s+)?(?:resolution|clearance)"
)
_HEADER = re.compile(
    r"^\s*(?:\d+[.)]\s*)?(?:findings?|impressions?|conclusions?|comparison|technique|"
    r"report|opinion|comment|summary|cxr(?:\s+(?:pa|ap))?|ap\s+portable|pa|ap)\s*:\s*"
)
_SENTENCE = re.compile(r"(?<=[.!?;])\s+|\n+")
_CLAUSE = re.compile(
    r"\b(?:but|however|although|though|whereas|apart\s+from|except|aside\s+from|which|"
    r"there\s+is|there\s+are)\b"
)
_WINDOW = 10  # words a negation cue before a term reaches
_COMMIT = re.compile(  # ends a negation cue's reach; "may represent" stays a hedge
    r"\b(?:favou?red|(?<!may )(?<!could )(?<!might )(?:represents?|representing))\b"
)

_STILL_BEFORE = (
    r"\bno\s+(?:significant\s+|definite\s+|appreciable\s+)?(?:interval\s+)?"
    r"(?:change|improvement|resolution|clearing|clearance)\b",
    r"\bno\s+(?:evidence|sign|signs)\s+of\s+(?:improvement|resolution|clearing|change)\b",
    r"\b(?:failure|lack)\s+of\s+(?:resolution|improvement|clearing|clearance)\b",
    r"\b(?:incomplete|partial)\s+(?:resolution|clearing|clearance)\b",
    r"\b(?:partially|partly|incompletely|not\s+fully|not\s+completely)\s+"
    r"(?:resolved|cleared|resolving)\b",
    r"\bnot\s+(?:only|resolved|cleared|improved)\b",
    r"\bno\s+longer\s+improving\b",
)
_STILL_AFTER = (
    r"^\W*(?:\w+\W+){0,3}?(?:persists?|persisting|persistent|remains?|remaining|"
    r"unchanged|again\s+(?:seen|noted|demonstrated))\b",
    r"\bhas\s+not\s+(?:resolved|cleared|improved)\b",
    r"\b(?:has|have)\s+(?:increased|progressed|worsened|extended)\b",
    r"\b(?:partially|partly|incompletely|not\s+fully|not\s+completely)\s+"
    r"(?:resolved|cleared|resolving)\b",
    r"\bno\s+(?:significant\s+)?(?:improvement|resolution|change)\b",
)
_NOT_EXCLUDED = (
    r"\b(?:cannot|can'?t|could\s+not|not)\s+(?:be\s+)?(?:entirely\s+|completely\s+|"
    r"definitely\s+|confidently\s+|reliably\s+)?(?:excluded?|ruled?\s+out)\b",
    r"\bcannot\s+rule\s+out\b",
    r"\bneither\s+(?:be\s+)?confirmed\s+nor\s+(?:excluded|refuted)\b",
)
_NEGATION_BEFORE = (
    r"\bno\b",
    r"\bnot\b",
    r"\bnil\b",
    r"\bwithout\b",
    r"\bneither\b",
    r"\bnor\b",
    r"\bnegative\s+for\b",
    r"\bfree\s+of\b",
    r"\bclear\s+of\b",
    r"\babsence\s+of\b",
    r"\bresolution\s+of\b",
    r"\bclearance\s+of\b",
    r"\bclearing\s+of\b",
    r"\bresolved\b",
    r"\brather\s+than\b",
    r"\bruled?\s+out\b",
    r"\bexcluded?\b",
)
_NEGATION_AFTER = (
    r"\b(?:is|are|was|were)\s+(?:not|no\s+longer)\s+(?:seen|identified|evident|visible|"
    r"apparent|demonstrated|present|appreciated)\b",
    r"\bno\s+longer\s+(?:seen|identified|evident|visible|apparent|demonstrated|present)\b",
    r"\bnot\s+(?:seen|identified|evident|visible|apparent|demonstrated|present)\b",
    r"\b(?:has|have)\s+(?:now\s+)?(?:completely\s+|fully\s+|largely\s+)?"
    r"(?:resolved|cleared)\b",
    r"\b(?:resolved|cleared)\b",
    r"\b(?:complete\s+)?resolution\b",
    r"\b(?:is|are)\s+(?:absent|excluded)\b",
    r"\b(?:ruled\s+out|excluded)\b",
    r"^\W*(?:is\s+|are\s+)?absent\b",
    r"^\W*:\s*(?:none|nil|no|absent)\b",
    r"^\W*(?:none|nil)\b",
)
_HEDGE_BEFORE = (
    r"\bpossibl[ey]\b",
    r"\bpossibility\b",
    r"\bmay\b",
    r"\bmight\b",
    r"\bcould\b",
    r"\bquestionable\b",
    r"\bquery\b",
    r"\bequivocal\b",
    r"\buncertain\b",
    r"\bindeterminate\b",
    r"\bdifferential\b",
    r"\bif\b",
    r"\bversus\b",
    r"\bvs\.?(?=\s)",
    r"\bor\s+(?:\w+\s+){0,2}$",  # "atelectasis or early pneumonia"
    r"\?\s*(?:\w+\s+)?$",  # "?consolidation", "? early consolidation"
    r"\bconcern\s+for\b",  # "clinical concern for"
)
_HEDGE_AFTER = (
    r"^\W*(?:\w+\W+){0,1}?(?:or|versus|vs)\b",  # "pneumonia or atelectasis"
    r"\bconsideration\b",
    r"\bconsidered\b",
    r"\bpossibility\b",
    r"\bdifferential\b",
    r"\bpossibl[ey]\b",
    r"\bquestionable\b",
    r"\bequivocal\b",
    r"^\s*\?",  # "consolidation?"; a "?" later in the clause is about something else
)


def _any(patterns: Sequence[str], text: str) -> bool:
    return any(re.search(p, text) for p in patterns)


def _normalise(text: str) -> str:
    text = text.lower().replace("air space", "airspace").replace("air-space", "airspace")
    return re.sub(r"[ \t]+", " ", text)


def _window(before: str) -> str:
    """The last :data:`_WINDOW` words of ``before`` (a negation cue's reach)."""
    words = re.findall(r"\S+", before)
    return " ".join(words[-_WINDOW:]) + (" " if before.endswith(" ") else "")


def _mention(before: str, after: str) -> str:
    near = _window(_COMMIT.split(before)[-1])  # "not typical of X, favoured to represent Y"
    if _any(_STILL_BEFORE, near) or _any(_STILL_AFTER, after):
        return "affirmed"
    if _any(_NOT_EXCLUDED, near) or _any(_NOT_EXCLUDED, after):
        return "uncertain"
    if _any(_NEGATION_BEFORE, near) or _any(_NEGATION_AFTER, after):
        return "negated"
    if _any(_HEDGE_BEFORE, near) or _any(_HEDGE_AFTER, after):
        return "uncertain"
    return "affirmed"


def _pattern(terms: Sequence[str]) -> re.Pattern[str] | None:
    if not terms:
        return None
    ordered = sorted(terms, key=len, reverse=True)  # "airspace opacity" before "opacity"
    return re.compile(r"\b(?:" + "|".join(re.escape(t) for t in ordered) + r")\b")


def judge_sentence(
    sentence: str,
    terms: Sequence[str] = PNEUMONIA,
    normal: Sequence[str] = NORMAL_LUNGS,
    negated_only: Sequence[str] = PNEUMONIA_NEGATED_ONLY,
) -> list[str]:
    """The judgement of every mention in one sentence (already lower case): ``affirmed``,
    ``negated`` or ``uncertain``; empty for a request or recommendation sentence. A
    ``negated_only`` term counts only when negated."""
    if _REQUEST.match(sentence) or _RECOMMENDATION.search(sentence):
        return []
    sentence = _HEADER.sub("", sentence)
    found = []
    strong, weak = _pattern(terms), _pattern(negated_only)
    for clause in _CLAUSE.split(sentence):
        taken: list[tuple[int, int]] = []
        for match in strong.finditer(clause) if strong else ():
            taken.append(match.span())
            found.append(_mention(clause[: match.start()], clause[match.end() :]))
        for match in weak.finditer(clause) if weak else ():
            inside = any(a <= match.start() < b for a, b in taken)
            if not inside and _mention(clause[: match.start()], clause[match.end() :]) == (
                "negated"
            ):
                found.append("negated")
    if _any(normal, sentence):
        found.append("negated")
    return found


def finding_in_report(
    text: str,
    terms: Sequence[str] = PNEUMONIA,
    normal: Sequence[str] = NORMAL_LUNGS,
    negated_only: Sequence[str] = PNEUMONIA_NEGATED_ONLY,
) -> int | None:
    """1 the report affirms the finding, 0 it mentions it only negated, None otherwise."""
    seen = [
        judgement
        for sentence in _SENTENCE.split(_normalise(text))
        if sentence.strip()
        for judgement in judge_sentence(sentence, terms, normal, negated_only)
    ]
    if "affirmed" in seen:
        return 1
    if "uncertain" in seen or not seen:
        return None
    return 0
