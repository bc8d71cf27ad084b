"""A model package: a folder (or archive of one) with a manifest and the weights it names.

::

    my-model/
      radpilot-model.yaml     the manifest (radpilot.models.manifest)
      model.pt                TorchScript, or model.onnx, or for a MONAI bundle:
      configs/metadata.json   ┐
      configs/inference.json  ├ the bundle layout, manifest at the bundle root
      models/model.pt         ┘

An archive (.zip, .tar.gz, .tgz, .tar) holds that folder's content at its top level or
inside one top-level folder; it is unpacked safely (:mod:`radpilot.models.archive`).
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path

from radpilot.core.errors import ManifestError, ModelError
from radpilot.models.archive import extract, is_archive
from radpilot.models.manifest import MANIFEST_NAME, Manifest, Runtime, parse_manifest
from radpilot.models.postprocess import check_supported

__all__ = ["BUNDLE_CONFIG_NAMES", "ModelPackage", "inference_config", "sha256_of"]

#: Where a MONAI bundle defines its network, in the order looked for.
BUNDLE_CONFIG_NAMES = ("inference.json", "inference.yaml", "inference.yml")


def inference_config(root: Path) -> Path | None:
    """A MONAI bundle's inference config file under ``root/configs``, or None."""
    folder = root / "configs"
    return next((folder / n for n in BUNDLE_CONFIG_NAMES if (folder / n).is_file()), None)


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _find_root(folder: Path, shown: str) -> Path:
    if (folder / MANIFEST_NAME).is_file():
        return folder
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    if len(entries) == 1 and (entries[0] / MANIFEST_NAME).is_file():
        return entries[0]
    raise ModelError(
        f"{shown}: no {MANIFEST_NAME} at the top of the package (nor in its single "
        "top-level folder); a package is a folder holding the manifest and its weights"
    )


@dataclass(frozen=True)
class ModelPackage:
    """An opened, checked package.

    Attributes
    ----------
    root
        The folder holding the manifest (a temporary folder for an archive opened
        without ``extract_to``; removed when this object is garbage collected).
    manifest
        The validated manifest.
    weights_path
        The weights file the manifest names, inside ``root``.
    weights_sha256
        SHA-256 of that file: what the registry records and results carry.
    """

    root: Path
    manifest: Manifest
    weights_path: Path
    weights_sha256: str

    @classmethod
    def open(cls, path: Path, *, extract_to: Path | None = None) -> ModelPackage:
        """Open a package folder or archive and check it.

        Parameters
        ----------
        path
            A folder, or a .zip / .tar.gz / .tgz / .tar archive.
        extract_to
            Where to unpack an archive (an empty or absent folder); by default a
            temporary folder that lives as long as the returned object.

        Raises
        ------
        ManifestError
            If the manifest is malformed (the message names file, line and field) or
            asks for something radpilot cannot run.
        ModelError
            If the path is not a package, an archive member is unsafe, or the weights
            file (or a MONAI bundle's configs) is missing.
        """
        path = Path(path)
        cleanup: Path | None = None
        if is_archive(path):
            if extract_to is None:
                extract_to = cleanup = Path(tempfile.mkdtemp(prefix="radpilot-package-"))
            extract_to.mkdir(parents=True, exist_ok=True)
            try:
                extract(path, extract_to)
                root = _find_root(extract_to, path.name)
            except BaseException:
                if cleanup is not None:
                    shutil.rmtree(cleanup, ignore_errors=True)
                raise
            shown = f"{path.name}/{root.relative_to(extract_to) / MANIFEST_NAME}".replace(
                "/./", "/"
            )
        elif path.is_dir():
            root = _find_root(path, str(path))
            shown = str(root / MANIFEST_NAME)
        else:
            raise ModelError(
                f"{path}: not a package; give a folder holding {MANIFEST_NAME} or a "
                ".zip / .tar.gz archive of one"
            )
        try:
            package = cls._check(root, shown)
        except BaseException:
            if cleanup is not None:
                shutil.rmtree(cleanup, ignore_errors=True)
            raise
        if cleanup is not None:
            weakref.finalize(package, shutil.rmtree, cleanup, ignore_errors=True)
        return package

    @classmethod
    def _check(cls, root: Path, shown: str) -> ModelPackage:
        try:
            text = (root / MANIFEST_NAME).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ManifestError(f"{shown}: cannot read ({exc})") from exc
        manifest = parse_manifest(text, shown)
        check_supported(manifest, shown)
        weights = root / manifest.weights
        if not weights.is_file():
            raise ModelError(
                f"{shown}: weights: {manifest.weights!r} is not in the package; add the "
                "file or correct the path (relative to the manifest's folder)"
            )
        if not weights.resolve().is_relative_to(root.resolve()):
            raise ModelError(f"{shown}: weights: {manifest.weights!r} links outside the package")
        bundle_files = (
            inference_config(root) is not None and (root / "configs/metadata.json").is_file()
        )
        if manifest.runtime is Runtime.MONAI_BUNDLE and not bundle_files:
            raise ModelError(
                f"{shown}: runtime monai_bundle needs configs/metadata.json and "
                "configs/inference.json next to the manifest"
            )
        return cls(root, manifest, weights, sha256_of(weights))
