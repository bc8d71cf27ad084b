"""Run a packaged model on DICOM studies: preprocess, forward, postprocess, explain.

The job runner loads a model once per process (:func:`load_model`) and calls
:meth:`LoadedModel.predict` per study, or :meth:`LoadedModel.predict_batch` when several
studies wait for the same 2D model, so that they share one batched forward pass. Anything
the network does wrong (raises, returns NaN, returns the wrong shape) becomes a
:class:`ModelError` with the reason, which fails the job; timeouts are the runner's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset

from radpilot.core.errors import ModelError
from radpilot.models.embedding import Embedder, make_embedder
from radpilot.models.explain import Explainer
from radpilot.models.manifest import Manifest, Task
from radpilot.models.package import ModelPackage
from radpilot.models.postprocess import postprocess
from radpilot.models.prediction import Prediction
from radpilot.models.preprocess import Sample, prepare
from radpilot.models.runtimes import Network, load_network

__all__ = ["LoadedModel", "input_stats", "load_model"]

log = logging.getLogger(__name__)

#: Samples per forward call: 2D images, 3D volumes.
CHUNK_2D = 64
CHUNK_3D = 4


def _reason(exc: BaseException) -> str:
    """A one-line reason from an exception raised inside a network."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    if last.startswith("builtins."):  # TorchScript: "builtins.RuntimeError: message"
        return last.removeprefix("builtins.")[:300]
    return f"{type(exc).__name__}: {last}"[:300] if last else type(exc).__name__


def input_stats(samples: Sequence[Sample]) -> dict[str, float]:
    """Mean, standard deviation and 5th/50th/95th percentiles of the network inputs of one
    study (all samples and channels together), and the mean of the modality values the
    preprocessing mapped to 0 and 1 (``low``, ``high``: the source's intensity range, which
    a per-image normalisation hides from the other statistics), rounded to 6 digits."""
    values = np.concatenate([s.array.ravel() for s in samples]) if samples else np.zeros(1)
    p05, p50, p95 = np.percentile(values, [5, 50, 95])
    ranges = [(i.low, i.high) for s in samples for i in s.intensities] or [(0.0, 0.0)]
    stats = {
        "mean": values.mean(), "std": values.std(), "p05": p05, "p50": p50, "p95": p95,
        "low": np.mean([r[0] for r in ranges]), "high": np.mean([r[1] for r in ranges]),
    }  # fmt: skip
    return {name: round(float(v), 6) for name, v in stats.items()}


class LoadedModel:
    """A model ready to predict: its manifest, weights hash and network.

    Safe to call from several threads at once.
    """

    def __init__(
        self,
        manifest: Manifest,
        weights_sha256: str,
        network: Network,
        explainer: Explainer | None = None,
        embedder: Embedder | None = None,
    ) -> None:
        self.manifest = manifest
        self.weights_sha256 = weights_sha256
        self.network = network
        self.explainer = explainer
        self.embedder = embedder

    def _run(
        self, chunk: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32] | None]:
        if self.embedder is None:
            return self.network.forward(chunk), None
        return self.embedder.run(chunk)

    def _forward(
        self, batch: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32] | None]:
        """The network's output for ``batch`` and, where declared, its embedding."""
        label = self.manifest.label
        step = CHUNK_3D if self.manifest.input.dimensions == 3 else CHUNK_2D
        parts, embeddings = [], []
        for start in range(0, len(batch), step):
            chunk = batch[start : start + step]
            try:
                out, embedding = self._run(chunk)
            except ModelError as exc:
                raise ModelError(f"{label}: {exc}") from exc
            except Exception as exc:  # any failure inside the network fails the job
                raise ModelError(f"{label}: the network raised {_reason(exc)}") from exc
            if out.ndim == 0 or out.shape[0] != len(chunk):
                raise ModelError(
                    f"{label}: the network returned shape {tuple(out.shape)} for a batch of "
                    f"{len(chunk)}; its first axis must be the batch"
                )
            parts.append(out)
            if embedding is not None:
                embeddings.append(embedding)
        return np.concatenate(parts), np.concatenate(embeddings) if embeddings else None

    def _prepare(self, studies: Sequence[Sequence[Dataset]]) -> list[list[Sample]]:
        prepared = []
        for number, study in enumerate(studies, start=1):
            try:
                prepared.append(prepare(study, self.manifest.input))
            except ModelError as exc:
                where = f"study {number} of {len(studies)}: " if len(studies) > 1 else ""
                raise ModelError(f"{self.manifest.label}: {where}{exc}") from exc
        return prepared

    def _finish(
        self,
        samples: list[Sample],
        raw: npt.NDArray[np.float32],
        embedding: npt.NDArray[np.float32] | None,
        explain: bool,
    ) -> Prediction:
        label = self.manifest.label
        bad = int(np.count_nonzero(~np.isfinite(raw)))
        if bad:
            raise ModelError(
                f"{label}: the network output {bad} NaN or infinite value(s) of {raw.size}; "
                "no result is reported"
            )
        try:
            prediction = postprocess(self.manifest, samples, raw)
            prediction.input_stats = input_stats(samples)
            if embedding is not None:
                if not np.all(np.isfinite(embedding)):
                    raise ModelError("the network's embedding holds NaN or infinite values")
                prediction.embedding = embedding.mean(axis=0).astype(np.float32)
            if explain:
                prediction.heatmap = self._heatmap(samples, prediction)
            prediction.check()
        except ModelError as exc:
            raise ModelError(f"{label}: {exc}") from exc
        return prediction

    def _heatmap(
        self, samples: list[Sample], prediction: Prediction
    ) -> npt.NDArray[np.float32] | None:
        headline = prediction.headline
        if self.explainer is None or headline is None or prediction.key_image is None:
            return None
        key = next(s for s in samples if s.images[0] == prediction.key_image)
        return self.explainer.heatmap(key, self.manifest.output.labels.index(headline.label))

    def explain(
        self, datasets: Sequence[Dataset], prediction: Prediction
    ) -> npt.NDArray[np.float32] | None:
        """The heatmap of ``prediction``'s headline finding over its key image.

        For callers that deliver the findings first and the picture after
        (``predict(..., explain=False)``). ``None`` when the model has no explainer.

        Raises
        ------
        ModelError
            If the images cannot be prepared or the explainer's network calls fail.
        """
        if self.explainer is None:
            return None
        try:
            heatmap = self._heatmap(prepare(datasets, self.manifest.input), prediction)
        except ModelError as exc:
            raise ModelError(f"{self.manifest.label}: {exc}") from exc
        if heatmap is not None and not np.all(np.isfinite(heatmap)):
            raise ModelError(f"{self.manifest.label}: the heatmap holds non-finite values")
        return heatmap

    def predict(self, datasets: Sequence[Dataset], *, explain: bool = True) -> Prediction:
        """Analyse one study's selected instances (any order, pixel data present).

        ``explain=False`` skips the heatmap (see :meth:`explain`).

        Raises
        ------
        ModelError
            If the images cannot be prepared, or the network raises, returns NaN or
            infinite values, or an output of the wrong shape.
        """
        return self.predict_batch([datasets], explain=explain)[0]

    def predict_batch(
        self, studies: Sequence[Sequence[Dataset]], *, explain: bool = True
    ) -> list[Prediction]:
        """Analyse several studies with one batched forward pass (in chunks of
        :data:`CHUNK_2D` images or :data:`CHUNK_3D` volumes).

        Raises
        ------
        ModelError
            As :meth:`predict`, naming the study (1-based) where one is at fault; the
            caller may then run the others one by one.
        """
        started = time.perf_counter()
        prepared = self._prepare(studies)
        sizes = [len(samples) for samples in prepared]
        batch = np.stack([s.array for samples in prepared for s in samples])
        raw, embedding = self._forward(batch)
        predictions = []
        offset = 0
        for number, (samples, size) in enumerate(zip(prepared, sizes, strict=True), start=1):
            part = None if embedding is None else embedding[offset : offset + size]
            try:
                predictions.append(
                    self._finish(samples, raw[offset : offset + size], part, explain)
                )
            except ModelError as exc:
                if len(studies) == 1:
                    raise
                raise ModelError(f"study {number} of {len(studies)}: {exc}") from exc
            offset += size
        log.debug(
            "%s: %d studies, %d samples in %.3f s",
            self.manifest.label,
            len(studies),
            len(batch),
            time.perf_counter() - started,
        )
        return predictions


def load_model(
    package: ModelPackage, *, explain: bool = True, threads: int | None = None
) -> LoadedModel:
    """Load ``package`` with its runtime.

    Parameters
    ----------
    package
        An opened package (:meth:`ModelPackage.open` or ``Registry.package_of``).
    explain
        Compute heatmaps for 2D classifiers.
    threads
        Intra-op CPU threads (ONNX Runtime per session; torch process-wide).

    Raises
    ------
    ModelError
        If the runtime cannot load the weights, or the manifest's embedding section
        names a layer or output the network does not have (checked on a blank input).
    """
    network = load_network(package, threads)
    manifest = package.manifest
    embedder = make_embedder(network, manifest.embedding)
    if embedder is not None:
        probe = np.zeros((1, manifest.input.channels, *manifest.input.size), dtype=np.float32)
        try:
            embedder.run(probe)
        except ModelError as exc:
            raise ModelError(f"{manifest.label}: {exc}") from exc
        except Exception as exc:  # a wrong split can fail anywhere inside the network
            raise ModelError(
                f"{manifest.label}: the embedding section does not run ({_reason(exc)})"
            ) from exc
        embedder.check_next()  # and on the first real batch, which a blank input is not
    explainer = None
    wanted = manifest.explain.method != "none"
    if (
        explain
        and wanted
        and manifest.task is Task.CLASSIFICATION
        and manifest.input.dimensions == 2
    ):
        explainer = Explainer(network, manifest.output.activation, manifest.explain)
    return LoadedModel(manifest, package.weights_sha256, network, explainer, embedder)
