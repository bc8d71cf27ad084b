"""The model manifest (``radpilot-model.yaml``): what a model is, takes and says.

A package is a folder (or a zip/tar archive of one) holding this manifest and the weights
it names. Our own training writes the same format a vendor model arrives in.
"""

from __future__ import annotations

import enum
import math
import re
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from radpilot.core.yamlfile import load_yaml_model, parse_yaml_model

__all__ = [
    "MANIFEST_NAME",
    "SCHEMA",
    "Activation",
    "AppliesTo",
    "ChangeControl",
    "EmbeddingSpec",
    "ExplainSpec",
    "InputSpec",
    "Manifest",
    "MeasurementSpec",
    "ModelName",
    "ModelVersionText",
    "OperatingPoint",
    "OutputSpec",
    "Runtime",
    "Task",
    "Window",
    "check_model_name",
    "check_model_version",
    "load_manifest",
    "parse_manifest",
]

SCHEMA = "radpilot.model/1"
MANIFEST_NAME = "radpilot-model.yaml"
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def check_model_name(value: str) -> str:
    """``value`` if it is a valid model name (manifest and training config).

    Raises
    ------
    ValueError
        If it is not lower case letters, digits, '.', '_' or '-' (at most 128).
    """
    if not _NAME.match(value):
        raise ValueError("a model name is lower case letters, digits, '.', '_' or '-'")
    return value


def check_model_version(value: str) -> str:
    """``value`` if it is a valid model version.

    Raises
    ------
    ValueError
        If it is not letters, digits, '.', '_', '+' or '-', starting with a letter or digit.
    """
    if not _VERSION.match(value):
        raise ValueError("a version is letters, digits, '.', '_', '+' or '-'")
    return value


#: A model name / version string, checked wherever one is declared.
ModelName = Annotated[str, AfterValidator(check_model_name)]
ModelVersionText = Annotated[str, AfterValidator(check_model_version)]


class Task(enum.StrEnum):
    """What a model does."""

    CLASSIFICATION = "classification"
    DETECTION = "detection"
    SEGMENTATION = "segmentation"
    MEASUREMENT = "measurement"
    ENHANCEMENT = "enhancement"  # image in, image out (e.g. denoising)


class Runtime(enum.StrEnum):
    """How the weights are executed."""

    TORCHSCRIPT = "torchscript"
    ONNX = "onnx"
    MONAI_BUNDLE = "monai_bundle"


class Activation(enum.StrEnum):
    """What turns the network's raw outputs into scores."""

    SIGMOID = "sigmoid"
    SOFTMAX = "softmax"
    NONE = "none"  # the network already outputs probabilities (or values)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Window(_Strict):
    """An intensity window in modality units (after rescale slope/intercept)."""

    center: float
    width: float = Field(gt=0)


class AppliesTo(_Strict):
    """Which studies the model is meant for (documentation; routing rules decide)."""

    modalities: list[str] = Field(default_factory=list)
    body_parts: list[str] = Field(default_factory=list)
    views: list[str] = Field(default_factory=list)
    min_age_years: float | None = None


class InputSpec(_Strict):
    """What the network takes, and how a DICOM image is brought to it."""

    dimensions: Literal[2, 3] = 2
    size: list[int] = Field(min_length=2, max_length=3)  # [rows, cols] or [slices, rows, cols]
    channels: int = Field(1, ge=1, le=4)  # a grey image is repeated into each channel
    window: Window | None = None  # None: each image scaled by its own min and max
    spacing_mm: list[float] | None = None  # resample to this spacing first (3D)
    normalize_mean: float = 0.0  # after scaling to [0, 1]
    normalize_std: float = Field(1.0, gt=0)
    keep_aspect: bool = False  # letterbox instead of stretching

    @model_validator(mode="after")
    def _size_fits_dimensions(self) -> Self:
        if len(self.size) != self.dimensions:
            raise ValueError(f"size has {len(self.size)} values for {self.dimensions}D input")
        if any(v < 1 for v in self.size):
            raise ValueError("every size must be at least 1")
        return self


class OperatingPoint(_Strict):
    """A threshold on one label's score, with what it achieved in validation."""

    name: str
    label: str
    threshold: float = Field(ge=0.0, le=1.0)
    sensitivity: float | None = Field(None, ge=0.0, le=1.0)
    specificity: float | None = Field(None, ge=0.0, le=1.0)


class MeasurementSpec(_Strict):
    """One value a measurement model reports, with its UCUM unit."""

    name: str
    unit: str = "mm"


class OutputSpec(_Strict):
    """What the network's outputs mean."""

    labels: list[str] = Field(min_length=1)
    activation: Activation = Activation.SIGMOID
    operating_points: list[OperatingPoint] = Field(default_factory=list)
    default_operating_point: str | None = None
    critical_findings: list[str] = Field(default_factory=list)
    measurements: list[MeasurementSpec] = Field(default_factory=list)
    background_label: str | None = None  # segmentation: channel 0 meaning, if any

    @model_validator(mode="after")
    def _references_exist(self) -> Self:
        labels = set(self.labels)
        for point in self.operating_points:
            if point.label not in labels:
                raise ValueError(
                    f"operating point {point.name!r} names unknown label {point.label!r}"
                )
        names = [p.name for p in self.operating_points]
        if len(set(names)) != len(names):
            raise ValueError("operating point names must be unique")
        if self.default_operating_point is not None and self.default_operating_point not in names:
            raise ValueError(
                f"default_operating_point {self.default_operating_point!r} is not one of {names}"
            )
        unknown = [f for f in self.critical_findings if f not in labels]
        if unknown:
            raise ValueError(f"critical_findings names unknown label(s) {unknown}")
        return self

    def operating_point(self, name: str | None = None) -> OperatingPoint | None:
        """The named operating point, else the default one, else the first one."""
        wanted = name or self.default_operating_point
        for point in self.operating_points:
            if wanted is None or point.name == wanted:
                return point
        return None


class ExplainSpec(_Strict):
    """How heatmaps are made for a 2D classifier (``docs/models.md``).

    ``auto``: Grad-CAM where the runtime allows it (a MONAI bundle; a TorchScript model
    that names ``feature_module`` and ``head_module``), occlusion otherwise.
    """

    method: Literal["auto", "gradcam", "occlusion", "none"] = "auto"
    feature_module: str | None = None  # dotted submodule whose output is the feature map
    head_module: str | None = None  # dotted submodule taking that feature map to the logits
    occlusion_grid: int = Field(8, ge=2, le=32)

    @model_validator(mode="after")
    def _both_or_neither(self) -> Self:
        if (self.feature_module is None) != (self.head_module is None):
            raise ValueError("name both feature_module and head_module, or neither")
        return self


class EmbeddingSpec(_Strict):
    """Where the network's penultimate-layer features come from (embedding drift,
    ``docs/monitoring.md``).

    Torch runtimes (TorchScript, MONAI bundle) name ``modules``, dotted submodules applied
    in order to the input, and ``head``, the submodule taking their result to the output:
    the network then runs as ``head(modules(x))``, checked once against its own forward,
    so the embedding costs no second pass. ONNX graphs name ``output``, the graph output
    (name or 0-based index) that holds the embedding. An embedding with more than two axes
    is averaged over its spatial axes.
    """

    modules: list[str] = Field(default_factory=list)
    head: str | None = None
    output: str | int | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        split = bool(self.modules) or self.head is not None
        if split and (not self.modules or self.head is None):
            raise ValueError("name both modules and head, or neither")
        if split == (self.output is not None):
            raise ValueError("name modules and head (torch runtimes) or output (ONNX), not both")
        return self


class ChangeControl(_Strict):
    """The predetermined change control plan the dossier prints (docs/governance.md)."""

    may_change_without_new_approval: list[str] = Field(default_factory=list)
    needs_new_approval: list[str] = Field(default_factory=list)
    validation_protocol: list[str] = Field(default_factory=list)
    impact_assessment: list[str] = Field(default_factory=list)


class Manifest(_Strict):
    """Everything radpilot needs to know about a model package."""

    schema_: Literal["radpilot.model/1"] = Field("radpilot.model/1", alias="schema")
    name: ModelName
    version: ModelVersionText = Field(min_length=1, max_length=64)
    task: Task
    runtime: Runtime
    weights: str  # path inside the package
    use_case: str | None = None
    description: str = ""
    applies_to: AppliesTo = Field(default_factory=AppliesTo)
    input: InputSpec
    output: OutputSpec
    intended_use: str = Field(min_length=1)
    limitations: list[str] = Field(default_factory=list)
    explain: ExplainSpec = Field(default_factory=ExplainSpec)
    embedding: EmbeddingSpec | None = None
    manufacturer: str = "radpilot"
    timeout_seconds: float | None = Field(None, gt=0)  # overrides the job timeout
    change_control: ChangeControl | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("weights")
    @classmethod
    def _weights_inside(cls, value: str) -> str:
        path = Path(value)
        if path.is_absolute() or ".." in path.parts:
            raise ValueError("weights must be a relative path inside the package")
        return value

    @model_validator(mode="after")
    def _task_fits_outputs(self) -> Self:
        if self.task is Task.MEASUREMENT and not self.output.measurements:
            raise ValueError("a measurement model must list output.measurements")
        for point in self.output.operating_points:
            if not math.isfinite(point.threshold):
                raise ValueError(f"operating point {point.name!r} has no finite threshold")
        embedding = self.embedding
        if embedding is not None and (embedding.output is not None) != (
            self.runtime is Runtime.ONNX
        ):
            raise ValueError(
                "embedding: ONNX graphs name an output; torch runtimes name modules and head"
            )
        return self

    @property
    def label(self) -> str:
        """``name:version``."""
        return f"{self.name}:{self.version}"


def parse_manifest(text: str, source: str = MANIFEST_NAME) -> Manifest:
    """Parse manifest YAML text.

    Raises
    ------
    ManifestError
        With ``source:line: field: problem`` when it is invalid.
    """
    return parse_yaml_model(text, Manifest, source)


def load_manifest(path: Path) -> Manifest:
    """Read a manifest file (or the manifest inside a package folder).

    Raises
    ------
    ManifestError
        If it cannot be read or is invalid.
    """
    if path.is_dir():
        path = path / MANIFEST_NAME
    return load_yaml_model(path, Manifest)
