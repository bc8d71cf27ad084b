"""The model registry: every version of every package, its weights' hash and its state.

A version is immutable: ``name:version`` always means the same weights. Adding the same
package again is a no-op; adding different weights under a registered ``name:version``
is refused (bump the version). Packages are copied into ``models_dir/<name>/<version>/``;
the database row records the SHA-256 of the weights, and :meth:`Registry.package_of`
checks it again before a model is loaded, so what runs is what was registered.

Lifecycle (``ModelState``): registered -> shadow (runs; results kept, never shown or
sent) -> active (runs; results shown and delivered) -> retired (never runs again).
Any state may move to any other except out of retired. Every addition and state change
is appended to the audit log in the same transaction as the row it describes.
"""

from __future__ import annotations

import builtins
import shutil
import uuid
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from radpilot.core.errors import ModelError
from radpilot.governance.audit import AuditLog
from radpilot.models.package import ModelPackage, sha256_of
from radpilot.store import Database
from radpilot.store.models import utcnow
from radpilot.store.models_pipeline import ModelState, ModelVersion

__all__ = ["RUNNABLE", "VISIBLE", "ModelNotFoundError", "Registry", "parse_label"]

#: States whose models run on incoming studies.
#: States whose versions run on live studies, and those whose results are shown and sent.
RUNNABLE = (ModelState.SHADOW, ModelState.PILOT, ModelState.ACTIVE)
VISIBLE = (ModelState.PILOT, ModelState.ACTIVE)
_RETRIES = 5


class ModelNotFoundError(ModelError):
    """No registered model has this name (or name and version)."""


def parse_label(label: str) -> tuple[str, str | None]:
    """``"name[:version]"`` as ``(name, version or None)``."""
    name, _, version = label.partition(":")
    return name.strip(), (version.strip() or None)


class Registry:
    """Registered model versions in ``db``, their packages under ``models_dir``."""

    def __init__(self, db: Database, models_dir: Path) -> None:
        self.db = db
        self.models_dir = Path(models_dir)
        self.audit = AuditLog(db)

    # reading ---------------------------------------------------------------------------
    def list(self) -> list[ModelVersion]:
        """Every registered version, by name, then in the order added."""
        with self.db.session() as session:
            return list(
                session.scalars(select(ModelVersion).order_by(ModelVersion.name, ModelVersion.id))
            )

    def get(self, name: str, version: str | None = None) -> ModelVersion:
        """One version; the one added last when ``version`` is None.

        Raises
        ------
        ModelNotFoundError
            If there is no such model or version.
        """
        query = select(ModelVersion).where(ModelVersion.name == name)
        if version is not None:
            query = query.where(ModelVersion.version == version)
        with self.db.session() as session:
            row = session.scalars(query.order_by(ModelVersion.id.desc()).limit(1)).first()
        if row is None:
            what = f"{name}:{version}" if version else name
            raise ModelNotFoundError(
                f"no registered model {what}; see `radpilot models list`, or add it with "
                "`radpilot models add PACKAGE`"
            )
        return row

    def runnable(self) -> builtins.list[ModelVersion]:
        """Versions in shadow or active state: those that run on incoming studies."""
        with self.db.session() as session:
            query = select(ModelVersion).where(ModelVersion.state.in_(RUNNABLE))
            return list(session.scalars(query.order_by(ModelVersion.name, ModelVersion.id)))

    def package_path(self, version: ModelVersion) -> Path:
        """Where ``version``'s package lies (``package_path`` is relative to the data dir)."""
        return self.models_dir.parent / version.package_path

    def package_of(self, version: ModelVersion) -> ModelPackage:
        """Open ``version``'s package and check that its weights are the registered ones.

        Raises
        ------
        ModelError
            If the package is missing or its weights' SHA-256 differs from the registry.
        """
        path = self.package_path(version)
        if not path.is_dir():
            raise ModelError(
                f"{version.label}: its package folder {path} is missing; restore it from "
                "backup or re-add the same package"
            )
        package = ModelPackage.open(path)
        if package.weights_sha256 != version.weights_sha256:
            raise ModelError(
                f"{version.label}: the weights in {path} have SHA-256 "
                f"{package.weights_sha256[:12]}…, the registry recorded "
                f"{version.weights_sha256[:12]}…; the package was altered after it was "
                "registered; restore it, or register the new weights as a new version"
            )
        return package

    # changing --------------------------------------------------------------------------
    def add(self, path: Path, added_by: str) -> ModelVersion:
        """Register the package at ``path`` (folder or archive), copying it in.

        Returns the existing row when the same ``name:version`` with the same weights is
        already registered.

        Raises
        ------
        ManifestError
            If the manifest is malformed.
        ModelError
            If the package is unusable, or ``name:version`` is registered with
            different weights (versions are immutable: bump the version).
        """
        self.models_dir.mkdir(parents=True, exist_ok=True)
        staging = self.models_dir / f".incoming-{uuid.uuid4().hex}"
        try:
            package = ModelPackage.open(Path(path), extract_to=staging / "unpacked")
            manifest = package.manifest
            existing = self._existing(manifest.name, manifest.version, package.weights_sha256)
            if existing is not None:
                return existing
            relative = Path(self.models_dir.name) / manifest.name / manifest.version
            destination = self.models_dir.parent / relative
            copied = staging / "package"
            shutil.copytree(package.root, copied, symlinks=False)
            destination.parent.mkdir(parents=True, exist_ok=True)
            if destination.exists():  # left by an add that failed before its commit
                shutil.rmtree(destination)
            copied.rename(destination)
            if sha256_of(destination / manifest.weights) != package.weights_sha256:
                shutil.rmtree(destination, ignore_errors=True)
                raise ModelError(
                    f"{manifest.label}: the weights changed while the package was copied; "
                    "add it again once nothing writes to it"
                )
            try:
                return self._insert(package, relative.as_posix(), added_by)
            except BaseException:
                shutil.rmtree(destination, ignore_errors=True)
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _existing(self, name: str, version: str, sha256: str) -> ModelVersion | None:
        try:
            row = self.get(name, version)
        except ModelNotFoundError:
            return None
        if row.weights_sha256 != sha256:
            raise ModelError(
                f"{row.label} is already registered with other weights (SHA-256 "
                f"{row.weights_sha256[:12]}…, this package {sha256[:12]}…); versions are "
                "immutable: bump the version in the manifest and add it again"
            )
        return row

    def _insert(self, package: ModelPackage, relative: str, added_by: str) -> ModelVersion:
        manifest = package.manifest
        for attempt in range(_RETRIES):
            try:
                with self.db.session() as session:
                    row = ModelVersion(
                        name=manifest.name,
                        version=manifest.version,
                        task=str(manifest.task),
                        runtime=str(manifest.runtime),
                        use_case=manifest.use_case,
                        manifest=manifest.model_dump(mode="json", by_alias=True),
                        weights_sha256=package.weights_sha256,
                        package_path=relative,
                        added_by=added_by,
                        state=ModelState.REGISTERED,
                        state_changed_by=added_by,
                    )
                    session.add(row)
                    session.flush()
                    self.audit.append(
                        "model.add",
                        added_by,
                        manifest.label,
                        {
                            "weights_sha256": package.weights_sha256,
                            "task": str(manifest.task),
                            "runtime": str(manifest.runtime),
                        },
                        session=session,
                    )
                return row
            except IntegrityError:
                existing = self._existing(manifest.name, manifest.version, package.weights_sha256)
                if existing is not None:  # a concurrent add of the same package won
                    return existing
                if attempt == _RETRIES - 1:  # the audit log's next seq kept being taken
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def set_state(
        self,
        name: str,
        version: str,
        state: ModelState | str,
        actor: str,
        reason: str | None = None,
        approval: str | None = None,
    ) -> ModelVersion:
        """Move ``name:version`` to ``state``; a no-op when it is already there.

        ``approval`` says in the audit entry how the change was authorised (the embedded
        default's direct admin action, or the approved transition request).

        Raises
        ------
        ModelNotFoundError
            If the version is not registered.
        ModelError
            If the state is unknown, or the version is retired (retired is final: add a
            new version instead).
        """
        try:
            target = ModelState(state)
        except ValueError as exc:
            names = ", ".join(s.value for s in ModelState)
            raise ModelError(f"unknown state {state!r}; use one of {names}") from exc
        self.get(name, version)
        for attempt in range(_RETRIES):
            try:
                with self.db.session() as session:
                    row = session.scalars(
                        select(ModelVersion)
                        .where(ModelVersion.name == name, ModelVersion.version == version)
                        .with_for_update()
                    ).one()
                    current = row.state
                    if current is target:
                        return row
                    if current is ModelState.RETIRED:
                        raise ModelError(
                            f"{row.label} is retired, and retired is final; register a new "
                            "version to run this model again"
                        )
                    row.state = target
                    row.state_changed_at = utcnow()
                    row.state_changed_by = actor
                    self.audit.append(
                        "model.state",
                        actor,
                        row.label,
                        {
                            "from": current.value,
                            "to": target.value,
                            "reason": reason,
                            "weights_sha256": row.weights_sha256,
                            **({"approval": approval} if approval else {}),
                        },
                        session=session,
                    )
                return row
            except IntegrityError:
                if attempt == _RETRIES - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover
