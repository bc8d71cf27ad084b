"""ResultContext: deterministic, well-formed UIDs and fixed series numbers."""

from __future__ import annotations

import hashlib
import uuid

import pytest
from pydicom.uid import UID

from radpilot.results.context import SERIES_NUMBERS, ResultError, ResultKind
from radpilot.results.uids import uid_from
from tests.results_helpers import make_ctx


def test_uids_are_deterministic_and_distinct_per_key_kind_and_index() -> None:
    a, again = make_ctx("study-1:x"), make_ctx("study-1:x")
    other = make_ctx("study-2:x")
    assert a.uid("sr") == again.uid("sr")
    assert a.uid("sr") != other.uid("sr")
    seen = {a.uid(kind, i) for kind in ("sr", "sr-series", "seg", "derived") for i in range(3)}
    assert len(seen) == 12


def test_uids_are_valid_dicom_and_version_8_uuids() -> None:
    ctx = make_ctx()
    for kind in ("sr", "sc-series", "derived"):
        value = ctx.uid(kind, 7)
        assert UID(value).is_valid
        assert len(value) <= 64
        assert value.startswith("2.25.")
        as_uuid = uuid.UUID(int=int(value.removeprefix("2.25.")))
        assert as_uuid.version == 8
        assert as_uuid.variant == uuid.RFC_4122


def test_uid_is_the_sha256_of_key_kind_and_index() -> None:
    ctx = make_ctx("k")
    digest = hashlib.sha256(b"k|sr|0").digest()
    expected = int.from_bytes(digest[:16], "big")
    got = int(ctx.uid("sr").removeprefix("2.25."))
    # Only the six version/variant bits may differ from the digest's first 128 bits.
    mask = (0xF << 76) | (0x3 << 62)
    assert got & ~mask == expected & ~mask


def test_separator_in_parts_is_refused() -> None:
    with pytest.raises(ValueError, match="contains"):
        uid_from("a|b", "c")
    with pytest.raises(ResultError):
        make_ctx().uid("sr|x")
    with pytest.raises(ResultError):
        make_ctx("key|with-bar")


def test_series_numbers_are_fixed_and_distinct() -> None:
    ctx = make_ctx()
    numbers = [ctx.series_number(kind) for kind in ResultKind]
    assert numbers == [9001, 9002, 9003, 9004]
    assert ctx.series_number("sr-series") == SERIES_NUMBERS[ResultKind.SR]
    with pytest.raises(ResultError, match="unknown result kind"):
        ctx.series_number("pdf")


@pytest.mark.parametrize("bad", ["", "abc", "G" * 64, hashlib.sha256(b"x").hexdigest().upper()])
def test_weight_hash_must_be_a_sha256_hex_digest(bad: str) -> None:
    with pytest.raises(ResultError, match="weights_sha256"):
        make_ctx(weights_sha256=bad)


def test_device_uid_names_the_model_not_the_job() -> None:
    assert make_ctx("a").device_uid == make_ctx("b").device_uid
    assert make_ctx(model_version="1.2.1").device_uid != make_ctx().device_uid
