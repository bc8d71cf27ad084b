"""``radpilot synth``: real PneumoniaMNIST radiographs wrapped as DICOM studies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from radpilot.cli.context import fail, reporting_errors

__all__ = ["synth"]

DEFAULT_NPZ = Path("../shared/data/pneumoniamnist/pneumoniamnist.npz")


def synth(
    output: Annotated[Path, typer.Argument(help="Folder to write the studies into.")],
    count: Annotated[int, typer.Option(min=1, help="Number of studies.")] = 20,
    split: Annotated[str, typer.Option(help="train, val or test.")] = "test",
    size: Annotated[int, typer.Option(min=28, max=4096, help="Rows and columns.")] = 512,
    positive_rate: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Fraction of pneumonia cases to pick [default: the split's own mix].",
        ),
    ] = None,
    npz: Annotated[
        Path, typer.Option(help="The PneumoniaMNIST archive.", envvar="RADPILOT_PNEUMONIAMNIST")
    ] = DEFAULT_NPZ,
    seed: Annotated[str, typer.Option(help="UIDs derive from this and the source index.")] = (
        "radpilot"
    ),
) -> None:
    """Write COUNT one-image chest radiograph studies (DX) from real images, with labels.

    Also writes labels.csv (study_instance_uid, label, reader=reference, source) that
    `radpilot labels import` reads.
    """
    if not npz.is_file():
        fail(f"{npz} not found; pass --npz or set RADPILOT_PNEUMONIAMNIST")
    with reporting_errors():
        from radpilot.data.synth import pneumoniamnist_cases, radiograph

        cases = list(pneumoniamnist_cases(npz, split))
        if positive_rate is not None:
            positives = [c for c in cases if c.label == 1]
            negatives = [c for c in cases if c.label == 0]
            wanted = round(count * positive_rate)
            if wanted > len(positives) or count - wanted > len(negatives):
                fail(f"the {split} split has too few cases for {count} at rate {positive_rate}")
            chosen = positives[:wanted] + negatives[: count - wanted]
            chosen.sort(key=lambda c: int(c.source.rsplit("/", 1)[1]))
        else:
            chosen = cases[:count]
        output.mkdir(parents=True, exist_ok=True)
        rows = ["study_instance_uid,label,reader,source"]
        for case in chosen:
            dataset = radiograph(case, size=size, seed=seed)
            name = case.source.replace("/", "-")
            dataset.save_as(output / f"{name}.dcm", enforce_file_format=True)
            rows.append(f"{dataset.StudyInstanceUID},{case.label},reference,{case.source}")
        (output / "labels.csv").write_text("\n".join(rows) + "\n")
    positives_written = sum(c.label for c in chosen)
    typer.echo(
        json.dumps({"studies": len(chosen), "positives": positives_written, "folder": str(output)})
    )
