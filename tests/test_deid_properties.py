"""Properties of keyed pseudonyms and date shifts that must hold for every input."""

from __future__ import annotations

import datetime as dt
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from radpilot.dicom.deid.pseudonym import (
    MAX_SHIFT_DAYS,
    MIN_SHIFT_DAYS,
    Pseudonymizer,
    shift_date,
    shift_datetime,
)

UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+$")
KEY = b"property-key-0123456789abcdefgh"
keys = st.binary(min_size=16, max_size=64)
uids = st.from_regex(r"[1-9][0-9]{0,3}(\.(0|[1-9][0-9]{0,8})){1,12}", fullmatch=True)
dates = st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2199, 12, 31))


@given(key=keys, value=st.one_of(uids, st.text(max_size=80)))
def test_uid_pseudonyms_are_valid_and_deterministic(key: bytes, value: str) -> None:
    uid = Pseudonymizer(key).uid(value)
    assert len(uid) <= 64 and UID.match(uid) and uid.startswith("2.25.")
    assert Pseudonymizer(key).uid(value) == uid  # another instance: another run
    assert int(uid[5:]) >> 76 & 0xF == 8  # a version-8 UUID, as 2.25 requires a UUID


@given(key=keys, values=st.lists(uids, min_size=2, max_size=200, unique=True))
def test_uid_pseudonyms_are_injective_on_a_sample(key: bytes, values: list[str]) -> None:
    pseudonyms = Pseudonymizer(key)
    assert len({pseudonyms.uid(v) for v in values}) == len(values)


@given(a=keys, b=keys, value=uids)
def test_another_key_gives_another_pseudonym(a: bytes, b: bytes, value: str) -> None:
    # HMAC pads keys with zero bytes, so keys that differ only in trailing NULs are one key
    if a.rstrip(b"\0") != b.rstrip(b"\0"):
        assert Pseudonymizer(a).uid(value) != Pseudonymizer(b).uid(value)
        assert Pseudonymizer(a).patient_id(value) != Pseudonymizer(b).patient_id(value)


@given(patient=st.text(min_size=1, max_size=64), first=dates, second=dates)
def test_date_shift_preserves_intervals_for_one_patient(
    patient: str, first: dt.date, second: dt.date
) -> None:
    days = Pseudonymizer(KEY).day_offset(patient)
    assert -MAX_SHIFT_DAYS <= days <= -MIN_SHIFT_DAYS
    one = shift_date(first.strftime("%Y%m%d"), days)
    two = shift_date(second.strftime("%Y%m%d"), days)
    assert one is not None and two is not None
    parse = lambda text: dt.datetime.strptime(text, "%Y%m%d").date()  # noqa: E731
    assert parse(two) - parse(one) == second - first
    assert parse(one) - first == dt.timedelta(days=days)


@given(
    day=dates,
    time=st.from_regex(r"([01][0-9]|2[0-3])([0-5][0-9]){2}(\.[0-9]{1,6})?", fullmatch=True),
    offset=st.sampled_from(["", "+0100", "-0500"]),
)
@settings(max_examples=50)
def test_datetime_shift_keeps_time_and_offset(day: dt.date, time: str, offset: str) -> None:
    days = Pseudonymizer(KEY).day_offset("patient")
    value = day.strftime("%Y%m%d") + time + offset
    shifted = shift_datetime(value, days)
    assert shifted is not None
    assert shifted[8:] == time + offset
    assert shifted[:8] == shift_date(day.strftime("%Y%m%d"), days)


@given(
    text=st.text(max_size=20).filter(
        lambda t: not re.fullmatch(r"\s*[0-9]{4}([0-9]{2}){0,2}\s*", t)
    )
)
def test_non_dates_are_not_shifted(text: str) -> None:
    assert shift_date(text, -400) is None
