"""Model packages: folders and archives, hashes, unsafe archives, malformed manifests."""

from __future__ import annotations

import gc
import hashlib
import io
import stat
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from radpilot.core.errors import ManifestError, ModelError
from radpilot.models.manifest import MANIFEST_NAME
from radpilot.models.package import ModelPackage
from tests import model_factory as mf


def _manifest(**extra: Any) -> dict[str, Any]:
    base = {"task": "classification", "runtime": "torchscript", "weights": "model.pt"}
    return mf.manifest_dict(
        "tiny-classifier",
        labels=["normal", "pneumonia"],
        size=[32, 32],
        **{**base, **extra},
    )


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pkg") / "tiny-classifier"
    return mf.package(root, mf.IntensityMap(), _manifest())


def test_folder_zip_and_tar_open_with_the_weights_hash(folder: Path, tmp_path: Path) -> None:
    expected = hashlib.sha256((folder / "model.pt").read_bytes()).hexdigest()
    opened = ModelPackage.open(folder)
    assert opened.root == folder
    assert opened.weights_path == folder / "model.pt"
    assert opened.weights_sha256 == expected
    assert opened.manifest.label == "tiny-classifier:1.0.0"
    for name in ("pkg.zip", "pkg.tar.gz", "pkg.tgz"):
        packed = mf.archive(folder, tmp_path / name)
        from_archive = ModelPackage.open(packed)
        assert from_archive.weights_sha256 == expected
        assert from_archive.manifest == opened.manifest
        unpacked = from_archive.root
        assert unpacked.is_dir() and unpacked != folder
        del from_archive
        gc.collect()
        assert not unpacked.exists(), "the temporary unpacked copy must go with the object"


def test_archive_unpacks_where_asked(folder: Path, tmp_path: Path) -> None:
    packed = mf.archive(folder, tmp_path / "pkg.zip")
    opened = ModelPackage.open(packed, extract_to=tmp_path / "here")
    assert opened.root == tmp_path / "here" / "tiny-classifier"
    assert (opened.root / MANIFEST_NAME).is_file()


def _zip_with(path: Path, folder: Path, name: str, data: bytes, mode: int | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as bundle:
        for item in sorted(folder.iterdir()):
            bundle.write(item, item.name)
        info = zipfile.ZipInfo(name)
        if mode is not None:
            info.external_attr = mode << 16
        bundle.writestr(info, data)
    return path


def _tar_with(path: Path, folder: Path, member: tarfile.TarInfo, data: bytes = b"") -> Path:
    with tarfile.open(path, "w:gz") as bundle:
        for item in sorted(folder.iterdir()):
            bundle.add(item, arcname=item.name)
        member.size = len(data) if member.isfile() else 0
        bundle.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return path


@pytest.mark.parametrize("name", ["../evil.txt", "sub/../../evil.txt", "/tmp/evil-radpilot.txt"])
def test_zip_members_outside_the_folder_are_refused(
    folder: Path, tmp_path: Path, name: str
) -> None:
    packed = _zip_with(tmp_path / "bad.zip", folder, name, b"owned")
    target = tmp_path / "out" / "x"
    with pytest.raises(ModelError, match="outside the package folder"):
        ModelPackage.open(packed, extract_to=target)
    assert not (tmp_path / "out" / "evil.txt").exists()
    assert not (tmp_path / "evil.txt").exists()
    assert not target.exists() or not any(target.iterdir()), "nothing may be extracted"


def test_zip_symlink_member_is_refused(folder: Path, tmp_path: Path) -> None:
    packed = _zip_with(tmp_path / "link.zip", folder, "link", b"/etc/passwd", stat.S_IFLNK | 0o777)
    with pytest.raises(ModelError, match="symbolic link"):
        ModelPackage.open(packed)


@pytest.mark.parametrize(
    ("kind", "name", "target"),
    [
        (tarfile.REGTYPE, "../evil.txt", ""),
        (tarfile.REGTYPE, "/tmp/evil-radpilot.txt", ""),
        (tarfile.SYMTYPE, "escape", "../../etc/passwd"),
        (tarfile.SYMTYPE, "absolute", "/etc/passwd"),
        (tarfile.LNKTYPE, "hard", "../outside"),
        (tarfile.CHRTYPE, "device", ""),
    ],
)
def test_tar_members_outside_the_folder_are_refused(
    folder: Path, tmp_path: Path, kind: bytes, name: str, target: str
) -> None:
    member = tarfile.TarInfo(name)
    member.type = kind
    member.linkname = target
    packed = _tar_with(tmp_path / "bad.tar.gz", folder, member, b"owned")
    with pytest.raises(ModelError, match=r"outside the package|device"):
        ModelPackage.open(packed, extract_to=tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()
    assert not Path("/tmp/evil-radpilot.txt").exists()


def test_tar_symlink_inside_the_folder_is_allowed(tmp_path: Path) -> None:
    source = mf.package(tmp_path / "src", mf.IntensityMap(), _manifest(weights="weights/model.pt"))
    member = tarfile.TarInfo("weights/alias.pt")
    member.type = tarfile.SYMTYPE
    member.linkname = "model.pt"
    packed = _tar_with(tmp_path / "ok.tar.gz", source, member)
    opened = ModelPackage.open(packed)
    assert (opened.root / "weights" / "alias.pt").resolve() == opened.weights_path.resolve()


def test_missing_weights_are_refused_with_the_path(folder: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / MANIFEST_NAME).write_text(yaml.safe_dump(_manifest(weights="nets/model.pt")))
    with pytest.raises(ModelError, match=r"weights: 'nets/model.pt' is not in the package"):
        ModelPackage.open(broken)


def test_not_a_package(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"no radpilot-model\.yaml"):
        ModelPackage.open(tmp_path)
    (tmp_path / "model.pt").write_bytes(b"x")
    with pytest.raises(ModelError, match="not a package"):
        ModelPackage.open(tmp_path / "model.pt")
    (tmp_path / "junk.zip").write_bytes(b"not a zip at all")
    with pytest.raises(ModelError, match="not a readable archive"):
        ModelPackage.open(tmp_path / "junk.zip")


def test_monai_bundle_without_configs_is_refused(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "model.pt").write_bytes(b"weights")
    manifest = _manifest(runtime="monai_bundle", weights="models/model.pt")
    (tmp_path / MANIFEST_NAME).write_text(yaml.safe_dump(manifest))
    with pytest.raises(ModelError, match=r"configs/metadata\.json and configs/inference\.json"):
        ModelPackage.open(tmp_path)


# malformed manifests -------------------------------------------------------------------
def _line_of(text: str, start: str) -> int:
    """1-based number of the first line of ``text`` that starts with ``start``."""
    return next(i for i, line in enumerate(text.splitlines(), 1) if line.startswith(start))


def _at(message: str, problem: str) -> int:
    """The line number the message gives for ``problem`` (``file:LINE: problem``).

    For a key whose value is a block (a list or mapping), the line is that of the key or
    of the block's first line.
    """
    for part in message.split("; "):
        if part.endswith(problem) or problem in part:
            return int(part.split(f"{MANIFEST_NAME}:")[1].split(":")[0])
    raise AssertionError(f"{problem!r} not in {message!r}")


def _refused(tmp_path: Path, text: str) -> str:
    (tmp_path / "model.pt").write_bytes(b"weights")
    (tmp_path / MANIFEST_NAME).write_text(text)
    with pytest.raises(ManifestError) as caught:
        ModelPackage.open(tmp_path)
    return str(caught.value)


def test_missing_field_names_the_field(tmp_path: Path) -> None:
    manifest = _manifest()
    del manifest["intended_use"]
    message = _refused(tmp_path, yaml.safe_dump(manifest, sort_keys=False))
    assert f"{MANIFEST_NAME}:1: intended_use: Field required" in message


def test_missing_nested_field_names_the_block(tmp_path: Path) -> None:
    manifest = _manifest()
    del manifest["input"]["size"]
    text = yaml.safe_dump(manifest, sort_keys=False)
    message = _refused(tmp_path, text)
    line = _line_of(text, "input:")
    assert _at(message, "input.size: Field required") in (line, line + 1)


def test_bad_enum_names_line_and_field(tmp_path: Path) -> None:
    text = yaml.safe_dump(_manifest(), sort_keys=False).replace(
        "task: classification", "task: clasification"
    )
    message = _refused(tmp_path, text)
    assert f":{_line_of(text, 'task:')}: task: Input should be 'classification'" in message
    bad_runtime = yaml.safe_dump(_manifest(runtime="tensorflow"), sort_keys=False)
    message = _refused(tmp_path, bad_runtime)
    assert f":{_line_of(bad_runtime, 'runtime:')}: runtime:" in message


def test_unknown_operating_point_label(tmp_path: Path) -> None:
    points = [{"name": "screen", "label": "pneumothorax", "threshold": 0.3}]
    text = yaml.safe_dump(_manifest(output={"operating_points": points}), sort_keys=False)
    message = _refused(tmp_path, text)
    # the check spans labels and operating points, so it points at the output block
    line = _line_of(text, "output:")
    problem = "output: Value error, operating point 'screen' names unknown label 'pneumothorax'"
    assert _at(message, problem) in (line, line + 1)


def test_threshold_out_of_range_points_at_its_line(tmp_path: Path) -> None:
    points = [{"name": "screen", "label": "pneumonia", "threshold": 1.5}]
    text = yaml.safe_dump(_manifest(output={"operating_points": points}), sort_keys=False)
    message = _refused(tmp_path, text)
    line = _line_of(text, "    threshold:")
    assert f":{line}: output.operating_points.0.threshold:" in message


def test_misspelled_key_is_refused(tmp_path: Path) -> None:
    manifest = _manifest()
    manifest["limitatons"] = manifest.pop("limitations")
    text = yaml.safe_dump(manifest, sort_keys=False)
    message = _refused(tmp_path, text)
    line = _line_of(text, "limitatons:")
    assert _at(message, "limitatons: Extra inputs are not permitted") in (line, line + 1)


def test_bad_yaml_names_the_line(tmp_path: Path) -> None:
    lines = yaml.safe_dump(_manifest(), sort_keys=False).splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("use_case:"))
    lines[at] = "use_case: [unclosed"
    message = _refused(tmp_path, "\n".join(lines) + "\n")
    assert "not valid YAML" in message
    line = int(message.split(f"{MANIFEST_NAME}:")[1].split(":")[0])
    assert at + 1 <= line <= at + 2, message  # the bad line or the one where YAML notices


def test_size_must_fit_dimensions(tmp_path: Path) -> None:
    text = yaml.safe_dump(_manifest(input={"dimensions": 3}), sort_keys=False)
    message = _refused(tmp_path, text)
    line = _line_of(text, "input:")
    assert _at(message, "input: Value error, size has 2 values") in (line, line + 1)


def test_activation_on_a_detector_is_refused(tmp_path: Path) -> None:
    manifest = _manifest(task="detection", output={"activation": "sigmoid"})
    message = _refused(tmp_path, yaml.safe_dump(manifest, sort_keys=False))
    assert "output.activation" in message and "write 'none'" in message
    three_d = _manifest(task="detection", input={"dimensions": 3, "size": [8, 8, 8]})
    assert "detection models are 2D" in _refused(tmp_path, yaml.safe_dump(three_d))


def test_archive_manifest_errors_name_the_archive(folder: Path, tmp_path: Path) -> None:
    source = tmp_path / "src" / "pkg"
    source.mkdir(parents=True)
    manifest = _manifest()
    del manifest["intended_use"]
    (source / MANIFEST_NAME).write_text(yaml.safe_dump(manifest, sort_keys=False))
    (source / "model.pt").write_bytes((folder / "model.pt").read_bytes())
    packed = mf.archive(source, tmp_path / "vendor.zip")
    with pytest.raises(ManifestError, match=r"vendor\.zip/pkg/radpilot-model\.yaml:1: intended"):
        ModelPackage.open(packed)
