"""PS3.15 Annex E Table E.1-1 and how radpilot resolves it into one action per attribute.

The table (``annex_e.json``, edition and provenance inside; see ``tablegen.py`` and
``docs/deid.md``) lists every attribute with its Basic Profile action and the action of
each option column. :func:`compile_profile` turns it, for one set of options, into a plain
``tag -> Action`` mapping that the engine looks up once per element.

Resolution rules (documented in ``docs/deid.md``):

- an enabled option's column overrides the Basic Profile action;
- where two enabled options disagree (a Retain option says K, another says C), C wins:
  cleaning is the more protective of the two;
- compound codes, for which the standard lets the implementation choose by the
  attribute's type in the IOD, are resolved without IOD tables to the choice that is
  valid for every type: ``X/Z`` -> Z, ``X/D``, ``Z/D`` and ``X/Z/D`` -> D, and ``X/Z/U*``
  -> keep the sequence and replace the UIDs inside it (they are U in the table).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

from radpilot.core.settings import DeidOptions

__all__ = [
    "METHOD_CODES",
    "Action",
    "CompiledProfile",
    "MethodCode",
    "Rule",
    "Table",
    "compile_profile",
    "load_table",
    "method_codes",
    "resolve",
]


class Action(enum.StrEnum):
    """The single-letter actions of PS3.15 Table E.1-1a."""

    DUMMY = "D"
    ZERO = "Z"
    REMOVE = "X"
    KEEP = "K"
    CLEAN = "C"
    UID = "U"


_COMPOUND = {
    "X/Z": Action.ZERO,
    "X/D": Action.DUMMY,
    "Z/D": Action.DUMMY,
    "X/Z/D": Action.DUMMY,
    "X/Z/U*": Action.KEEP,  # the UIDs inside are U rules of their own
}

# DeidOptions field -> the Table E.1-1 option column it enables
OPTION_COLUMNS: Mapping[str, str] = {
    "retain_dates": "retain_longitudinal_modified_dates",
    "retain_patient_characteristics": "retain_patient_characteristics",
    "retain_device_identity": "retain_device_identity",
    "clean_descriptors": "clean_descriptors",
}


@dataclass(frozen=True, slots=True)
class MethodCode:
    """One code of PS3.16 CID 7050 "De-identification Method" (scheme DCM)."""

    value: str
    meaning: str


METHOD_CODES: Mapping[str, MethodCode] = {
    "basic": MethodCode("113100", "Basic Application Confidentiality Profile"),
    "clean_descriptors": MethodCode("113105", "Clean Descriptors Option"),
    "retain_dates": MethodCode(
        "113107", "Retain Longitudinal Temporal Information Modified Dates Option"
    ),
    "retain_patient_characteristics": MethodCode("113108", "Retain Patient Characteristics Option"),
    "retain_device_identity": MethodCode("113109", "Retain Device Identity Option"),
    "retain_safe_private": MethodCode("113111", "Retain Safe Private Option"),
}


def method_codes(options: DeidOptions, *, safe_private: bool = False) -> list[MethodCode]:
    """The CID 7050 codes describing a run with ``options``, Basic Profile first."""
    codes = [METHOD_CODES["basic"]]
    for name in (
        "retain_dates",
        "retain_patient_characteristics",
        "retain_device_identity",
        "clean_descriptors",
    ):
        if getattr(options, name):
            codes.append(METHOD_CODES[name])
    if safe_private:
        codes.append(METHOD_CODES["retain_safe_private"])
    return codes


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of Table E.1-1.

    Attributes
    ----------
    key
        ``"GGGGEEEE"`` in hex, ``"50XXXXXX"`` (curves), ``"60XXEEEE"`` (overlays) or
        ``"PRIVATE"``.
    name
        The attribute name as the standard spells it.
    basic
        The Basic Profile action code, possibly compound (``"X/Z/D"``).
    options
        Option column key -> action code, for the columns that have one.
    """

    key: str
    name: str
    basic: str
    options: Mapping[str, str] = field(default_factory=dict)

    @property
    def tag(self) -> int | None:
        """The tag as an integer, or ``None`` for a repeating-group or private row."""
        return None if "X" in self.key or self.key == "PRIVATE" else int(self.key, 16)


@dataclass(frozen=True, slots=True)
class Table:
    """Table E.1-1 as shipped with radpilot."""

    edition: str
    rules: tuple[Rule, ...]
    provenance: Mapping[str, Any]

    def by_key(self) -> dict[str, Rule]:
        """Rules by their ``key``."""
        return {rule.key: rule for rule in self.rules}


@lru_cache(maxsize=1)
def load_table() -> Table:
    """The bundled table (read once per process).

    Raises
    ------
    ValueError
        If the bundled JSON is not the expected shape (a packaging error).
    """
    text = resources.files("radpilot.dicom.deid").joinpath("annex_e.json").read_text("utf-8")
    data = json.loads(text)
    rules = tuple(
        Rule(key, name, basic, dict(options)) for key, name, basic, options in data["rules"]
    )
    if len(rules) < 600:
        raise ValueError("annex_e.json holds fewer rules than Table E.1-1 has; reinstall")
    provenance = {key: value for key, value in data.items() if key != "rules"}
    return Table(edition=data["edition"], rules=rules, provenance=provenance)


def resolve(rule: Rule, options: DeidOptions) -> Action:
    """The one action radpilot applies to ``rule`` under ``options`` (see module doc)."""
    chosen = {
        rule.options[column]
        for name, column in OPTION_COLUMNS.items()
        if getattr(options, name) and column in rule.options
    }
    code = ("C" if "C" in chosen else chosen.pop()) if chosen else rule.basic
    return _COMPOUND.get(code) or Action(code)


@dataclass(frozen=True, slots=True)
class CompiledProfile:
    """Table E.1-1 resolved for one set of options: what the engine looks up.

    Attributes
    ----------
    actions
        Tag -> action for every row with a plain tag.
    names
        Tag -> attribute name (for the PHI-free record).
    curve_action, overlay_actions
        The actions of the repeating-group rows: curves ``(50xx,xxxx)`` and overlays
        ``(60xx,eeee)`` by element.
    """

    options: DeidOptions
    actions: Mapping[int, Action]
    names: Mapping[int, str]
    curve_action: Action
    overlay_actions: Mapping[int, Action]
    edition: str


def compile_profile(options: DeidOptions, table: Table | None = None) -> CompiledProfile:
    """Resolve ``table`` (default: the bundled one) for ``options``."""
    table = table or load_table()
    actions: dict[int, Action] = {}
    names: dict[int, str] = {}
    overlay: dict[int, Action] = {}
    curve = Action.REMOVE
    for rule in table.rules:
        tag = rule.tag
        if tag is not None:
            actions[tag] = resolve(rule, options)
            names[tag] = rule.name
        elif rule.key.startswith("50"):
            curve = resolve(rule, options)
        elif rule.key.startswith("60"):
            overlay[int(rule.key[4:], 16)] = resolve(rule, options)
    return CompiledProfile(options, actions, names, curve, overlay, table.edition)
