"""The hash-chained, append-only audit log and `radpilot audit verify`."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from radpilot.governance.audit import AuditLog
from radpilot.store import Database


def fill(log: AuditLog, n: int = 5) -> None:
    for i in range(n):
        log.append("result.stored", "radpilot", f"1.2.3.{i}", {"score": i / 10, "ok": True})


def drop_guard(db: Database) -> None:
    """What someone with database admin rights could do: remove the append-only triggers."""
    with db.engine.begin() as connection:
        if db.is_sqlite:
            connection.execute(text("DROP TRIGGER audit_log_no_update"))
            connection.execute(text("DROP TRIGGER audit_log_no_delete"))
        else:
            connection.execute(text("DROP TRIGGER audit_log_no_change ON audit_log"))


def test_fresh_log_verifies_and_database_refuses_changes(db: Database) -> None:
    log = AuditLog(db)
    assert log.verify().ok and log.verify().entries == 0
    fill(log)
    result = log.verify()
    assert result.ok and result.entries == 5
    for statement in ("UPDATE audit_log SET actor = 'x' WHERE seq = 2", "DELETE FROM audit_log"):
        with pytest.raises(DBAPIError, match="append-only"), db.engine.begin() as connection:
            connection.execute(text(statement))


@pytest.mark.parametrize(
    ("statement", "broken", "reason"),
    [
        (
            'UPDATE audit_log SET payload = \'{"score": 0.9, "ok": true}\' WHERE seq = 3',
            3,
            "altered",
        ),
        ("UPDATE audit_log SET actor = 'mallory' WHERE seq = 4", 4, "altered"),
        ("DELETE FROM audit_log WHERE seq = 2", 3, "expected entry 2"),
    ],
)
def test_verify_names_the_first_broken_entry(
    db: Database, statement: str, broken: int, reason: str
) -> None:
    log = AuditLog(db)
    fill(log)
    drop_guard(db)
    with db.engine.begin() as connection:
        connection.execute(text(statement))
    result = log.verify()
    assert not result.ok and result.first_broken_seq == broken
    assert reason in (result.reason or "")


def test_rehashing_an_altered_entry_still_breaks_the_next_link(db: Database) -> None:
    from radpilot.governance.audit import entry_hash
    from radpilot.store.models_pipeline import AuditEntry

    log = AuditLog(db)
    fill(log)
    drop_guard(db)
    with db.session() as session:
        entry = session.query(AuditEntry).filter_by(seq=2).one()
        entry.payload = {"score": 0.99, "ok": True}
        entry.entry_hash = entry_hash(
            entry.seq,
            entry.at,
            entry.kind,
            entry.actor,
            entry.subject,
            entry.payload,
            entry.prev_hash,
        )
    result = log.verify()
    assert not result.ok and result.first_broken_seq == 3 and "link" in (result.reason or "")


def test_concurrent_appends_keep_one_chain(db: Database) -> None:
    log = AuditLog(db)
    failures: list[BaseException] = []

    def writer() -> None:
        try:
            fill(log, 25)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []  # no append gave up
    result = log.verify()
    assert result.ok and result.entries == 200


def test_cli_verify_passes_then_fails_with_the_entry(tmp_path: Path) -> None:
    from radpilot.cli.main import _register, app

    _register()
    data = tmp_path / "rp"
    db = Database(f"sqlite:///{(data / 'radpilot.db').resolve()}")
    db.migrate()
    fill(AuditLog(db))
    runner = CliRunner()
    ok = runner.invoke(app, ["--data-dir", str(data), "audit", "verify", "--format", "json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout) == {
        "ok": True,
        "entries": 5,
        "first_broken_seq": None,
        "reason": None,
    }
    drop_guard(db)
    with db.engine.begin() as connection:
        connection.execute(text("UPDATE audit_log SET subject = '9.9.9' WHERE seq = 4"))
    db.dispose()
    bad = runner.invoke(app, ["--data-dir", str(data), "audit", "verify"])
    assert bad.exit_code == 1
    assert "entry 4" in bad.stderr
