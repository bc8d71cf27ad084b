"""STOW-RS delivery (DICOMweb, PS3.18 section 10.5) with dicomweb-client."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pydicom
import requests
from dicomweb_client import DICOMwebClient

from radpilot.core.errors import ConfigurationError
from radpilot.core.settings import Destination
from radpilot.results.outcome import SendOutcome, Verdict, classify_status, load

__all__ = ["StowSender"]


class StowSender:
    """STOW-RS files to a DICOMweb service (``destination.url``), in batches.

    Parameters
    ----------
    destination
        A destination of kind ``stowrs`` whose ``url`` is the DICOMweb base URL.
    timeout
        Seconds for connecting and for each response.
    batch_bytes
        The most bytes of files posted in one request.

    Raises
    ------
    ConfigurationError
        If the destination has no ``url`` or it is not a valid http(s) URL.
    """

    def __init__(
        self, destination: Destination, *, timeout: float = 30.0, batch_bytes: int = 64 << 20
    ) -> None:
        if not destination.url:
            raise ConfigurationError(
                f"destination {destination.name!r} is STOW-RS but has no url; set it to the "
                "DICOMweb base URL, e.g. http://pacs:8042/dicom-web"
            )
        self.destination = destination
        self.batch_bytes = batch_bytes
        try:
            self.client = DICOMwebClient(destination.url, timeout=timeout)
        except ValueError as exc:
            raise ConfigurationError(
                f"destination {destination.name!r}: {exc}; write e.g. http://pacs:8042/dicom-web"
            ) from exc
        self.client.set_http_retry_params(retry=False)  # the outbox retries, with backoff

    def send(self, paths: Sequence[Path], *, deadline: float | None = None) -> list[SendOutcome]:
        """POST ``paths``; batches not started by ``deadline`` (monotonic) are NOT_SENT."""
        results: dict[Path, SendOutcome] = {}
        batch: list[tuple[Path, pydicom.Dataset]] = []
        size = 0
        for path in paths:
            read = load(path)
            if isinstance(read, SendOutcome):
                results[path] = read
                continue
            length = path.stat().st_size
            if batch and size + length > self.batch_bytes:
                results.update(self._post_unless_late(batch, deadline))
                batch, size = [], 0
            batch.append((path, read))
            size += length
        if batch:
            results.update(self._post_unless_late(batch, deadline))
        return [results[path] for path in paths]

    def _post_unless_late(
        self, batch: list[tuple[Path, pydicom.Dataset]], deadline: float | None
    ) -> dict[Path, SendOutcome]:
        if deadline is not None and time.monotonic() > deadline:
            return {p: SendOutcome(p, Verdict.NOT_SENT, "deadline reached") for p, _ in batch}
        return self._post(batch)

    def _post(self, batch: list[tuple[Path, pydicom.Dataset]]) -> dict[Path, SendOutcome]:
        http_status = 200
        try:
            answer = self.client.store_instances([dataset for _, dataset in batch])
        except requests.HTTPError as exc:
            http_status = exc.response.status_code if exc.response is not None else 0
            answer = _answer_of(exc.response)
        except requests.RequestException as exc:
            reason = f"{self.destination.name} not reachable ({type(exc).__name__})"
            return {p: SendOutcome(p, Verdict.RETRY, reason) for p, _ in batch}
        done = _per_instance(answer)
        out: dict[Path, SendOutcome] = {}
        for path, dataset in batch:
            known = done.get(str(dataset.SOPInstanceUID))
            if known is not None:
                verdict, reason, status = known
                out[path] = SendOutcome(path, verdict, reason, status)
            elif 200 <= http_status < 300:
                out[path] = SendOutcome(path, Verdict.DELIVERED)
            elif http_status in (400, 409, 413, 415, 422) and len(batch) > 1:
                out.update(self._post([(path, dataset)]))  # find which one is refused
            elif http_status in (400, 409, 413, 415, 422):
                out[path] = SendOutcome(path, Verdict.REFUSED, f"HTTP {http_status}")
            else:
                out[path] = SendOutcome(path, Verdict.RETRY, f"HTTP {http_status}")
        return out


def _answer_of(response: requests.Response | None) -> pydicom.Dataset:
    """The STOW-RS response data set in an error response, when there is one."""
    if response is None:
        return pydicom.Dataset()
    try:
        return pydicom.Dataset.from_json(response.json())
    except (ValueError, TypeError, KeyError):
        return pydicom.Dataset()


def _per_instance(answer: pydicom.Dataset) -> dict[str, tuple[Verdict, str, int | None]]:
    """SOP Instance UID -> outcome, from a STOW-RS response (PS3.18 Table 10.5.3-1)."""
    done: dict[str, tuple[Verdict, str, int | None]] = {}
    for item in answer.get("ReferencedSOPSequence", []):
        value: Any = item.get("WarningReason")
        warning = int(value) if value is not None else None
        reason = f"warning 0x{warning:04X}" if warning is not None else ""
        done[str(item.ReferencedSOPInstanceUID)] = (Verdict.DELIVERED, reason, warning)
    for item in answer.get("FailedSOPSequence", []):
        status = int(item.get("FailureReason", 0x0110))
        verdict, meaning = classify_status(status)
        if verdict is Verdict.DELIVERED:  # a failure entry is never a success
            verdict = Verdict.RETRY
        done[str(item.ReferencedSOPInstanceUID)] = (verdict, meaning, status)
    return done
