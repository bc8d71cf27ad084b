"""``radpilot synth``: synthetic studies with known truth (radiographs, CT phantoms)."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from radpilot.cli.context import fail, reporting_errors
from radpilot.data.synth_common import SynthKind
from radpilot.data.synth_headers import Drift, SynthModality

if TYPE_CHECKING:
    from radpilot.data.synth import SynthCase

__all__ = ["synth"]

DEFAULT_NPZ = Path("../shared/data/pneumoniamnist/pneumoniamnist.npz")


class XrayModality(StrEnum):
    """Modalities a radiograph study can be written as."""

    CR = "CR"
    DX = "DX"


def _chosen(npz: Path, split: str, count: int, positive_rate: float | None) -> list[SynthCase]:
    from radpilot.data.synth import choose_cases

    try:
        return choose_cases(npz, split, count, positive_rate)
    except ValueError as exc:
        fail(str(exc))


def synth(
    output: Annotated[Path, typer.Argument(help="Folder to write the studies into.")],
    count: Annotated[int, typer.Option(min=1, help="Number of studies.")] = 20,
    split: Annotated[str, typer.Option(help="train, val or test (radiographs).")] = "test",
    size: Annotated[
        int, typer.Option(min=16, max=4096, help="Rows and columns (CT: at most 512).")
    ] = 512,
    positive_rate: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Fraction of positive studies: pneumonia cases, or CT studies with lesions "
            "[default: the split's own mix; every CT study has lesions].",
        ),
    ] = None,
    npz: Annotated[
        Path, typer.Option(help="The PneumoniaMNIST archive.", envvar="RADPILOT_PNEUMONIAMNIST")
    ] = DEFAULT_NPZ,
    seed: Annotated[str, typer.Option(help="UIDs and random draws derive from this.")] = (
        "radpilot"
    ),
    kind: Annotated[SynthKind, typer.Option(help="What to make.")] = SynthKind.RADIOGRAPH,
    modality: Annotated[XrayModality, typer.Option(help="Radiographs as CR or DX.")] = (
        XrayModality.DX
    ),
    vary_headers: Annotated[
        bool,
        typer.Option(help="Draw sites, devices, protocols, patients (ages 0-95) and dates."),
    ] = False,
    drift: Annotated[
        Drift | None, typer.Option(help="Shift the header distribution: a new scanner or protocol.")
    ] = None,
    drift_fraction: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Fraction of studies that drift.")
    ] = 1.0,
    perturb: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NAME[=VALUE]",
            help="Repeatable, applied in order: noise, blur, low-dose, contrast, "
            "window-shift, rotation, crop, resolution, monochrome1, burned-in-text, "
            "metal-streaks "
            "(see docs/synth.md).",
        ),
    ] = None,
    perturb_fraction: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Fraction of studies perturbed.")
    ] = 1.0,
    slices: Annotated[int, typer.Option(min=4, max=2000, help="CT slices.")] = 64,
    slice_thickness: Annotated[
        float, typer.Option(min=0.1, max=20.0, help="CT slice thickness and spacing, mm.")
    ] = 2.5,
    fov: Annotated[float, typer.Option(min=50, max=700, help="CT field of view, mm.")] = 400.0,
    lesions: Annotated[int, typer.Option(min=1, max=20, help="Most lesions per CT study.")] = 3,
) -> None:
    """Write COUNT synthetic studies, labels.csv and manifest.csv.

    Radiographs wrap real PneumoniaMNIST images (label: pneumonia); CT studies are
    phantoms with 1 to --lesions lesions whose masks go to truth/. labels.csv
    (study_instance_uid, label, reader=reference, source) is what `radpilot labels
    import` reads; manifest.csv records each study's truth, perturbations and header.
    """
    from radpilot.data.synth_common import Variation, random_stream
    from radpilot.data.synth_output import manifest_row, write_labels, write_manifest, write_study
    from radpilot.data.synth_perturb import PerturbationSpec

    try:
        specs = tuple(PerturbationSpec.parse(text) for text in perturb or ())
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--perturb") from exc
    if kind is SynthKind.CT and size > 512:
        raise typer.BadParameter("CT images are at most 512 x 512", param_hint="--size")
    if kind is SynthKind.RADIOGRAPH and not npz.is_file():
        fail(f"{npz} not found; pass --npz or set RADPILOT_PNEUMONIAMNIST")

    def variation(source: str) -> Variation:
        drifts = random_stream(seed, source, "drift-pick").random() < drift_fraction
        perturbed = random_stream(seed, source, "perturb-pick").random() < perturb_fraction
        return Variation(vary_headers, drift if drifts else None, specs if perturbed else ())

    rows: list[dict[str, str]] = []
    with reporting_errors():
        output.mkdir(parents=True, exist_ok=True)
        try:
            if kind is SynthKind.RADIOGRAPH:
                from radpilot.data.synth import RadiographOptions, radiograph_study

                options = RadiographOptions(size=size, modality=SynthModality(modality.value))
                for case in _chosen(npz, split, count, positive_rate):
                    study = radiograph_study(
                        case, options=options, variation=variation(case.source), seed=seed
                    )
                    path, mask = write_study(study, output, case.source.replace("/", "-"))
                    rows.append(manifest_row(study, path, mask))
            else:
                from radpilot.data.synth_ct import CtOptions
                from radpilot.data.synth_ct_series import ct_study

                ct = CtOptions(size, slices, slice_thickness, fov)
                wanted = count if positive_rate is None else round(count * positive_rate)
                order = random_stream(seed, "ct-positives").permutation(count)
                positive = {int(i) for i in order[:wanted]}
                for index in range(count):
                    source = f"phantom/ct/{index}"
                    many = int(random_stream(seed, source, "count").integers(1, lesions + 1))
                    study = ct_study(
                        source,
                        many if index in positive else 0,
                        options=ct,
                        variation=variation(source),
                        seed=seed,
                    )
                    path, mask = write_study(study, output, f"ct-{index:04d}")
                    rows.append(manifest_row(study, path, mask))
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from exc
        write_labels(output / "labels.csv", rows)
        write_manifest(output / "manifest.csv", rows)
    summary = {
        "studies": len(rows),
        "positives": sum(int(r["label"]) for r in rows),
        "folder": str(output),
        "kind": kind.value,
        "manifest": str(output / "manifest.csv"),
    }
    typer.echo(json.dumps(summary))
