"""``radpilot users``: the local users of the web app and API, and their tokens."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from radpilot.cli.context import current_user, database, reporting_errors
from radpilot.store.models_users import Role

__all__ = ["app"]

app = typer.Typer(help="Users of the web app and API (docs/web.md).", no_args_is_help=True)


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    value: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return value


@app.command("add")
def add(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument(help="2-64 of a-z 0-9 . _ -")],
    role: Annotated[Role, typer.Option(help="What the user may do.")] = Role.RADIOLOGIST,
    display_name: Annotated[str | None, typer.Option(help="Name shown in the app.")] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
) -> None:
    """Add a user (the password is asked for, or read from stdin); audited."""
    password = _password(password_stdin)
    with reporting_errors():
        from radpilot.web.accounts import add_user

        with database(ctx) as db:
            row = add_user(
                db,
                username,
                password,
                role,
                display_name=display_name,
                actor=f"cli:{current_user()}",
            )
    typer.echo(f"added {row.username} ({row.role.value})")


@app.command("list")
def list_(
    ctx: typer.Context,
    format: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
) -> None:
    """Every user with role and state."""
    with reporting_errors():
        from radpilot.web.accounts import list_users

        with database(ctx) as db:
            rows = list_users(db)
    if format == "json":
        typer.echo(
            json.dumps(
                [
                    {
                        "username": r.username,
                        "display_name": r.display_name,
                        "role": r.role.value,
                        "disabled": r.disabled,
                        "created_at": r.created_at.isoformat(),
                        "last_sign_in_at": r.last_sign_in_at.isoformat()
                        if r.last_sign_in_at
                        else None,
                    }
                    for r in rows
                ]
            )
        )
        return
    for r in rows:
        state = "disabled" if r.disabled else "active"
        typer.echo(f"{r.username:<24} {r.role.value:<12} {state:<9} {r.display_name or ''}")


def _set_disabled(ctx: typer.Context, username: str, disabled: bool) -> None:
    with reporting_errors():
        from radpilot.web.accounts import set_disabled

        with database(ctx) as db:
            set_disabled(db, username, disabled, actor=f"cli:{current_user()}")
    typer.echo(f"{username} {'disabled' if disabled else 'enabled'}")


@app.command("disable")
def disable(ctx: typer.Context, username: str) -> None:
    """Disable a user: their sessions end and their tokens stop working; audited."""
    _set_disabled(ctx, username, True)


@app.command("enable")
def enable(ctx: typer.Context, username: str) -> None:
    """Enable a disabled user again; audited."""
    _set_disabled(ctx, username, False)


@app.command("passwd")
def passwd(
    ctx: typer.Context,
    username: str,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
) -> None:
    """Set a user's password (their sessions end); audited."""
    password = _password(password_stdin)
    with reporting_errors():
        from radpilot.web.accounts import set_password

        with database(ctx) as db:
            set_password(db, username, password, actor=f"cli:{current_user()}")
    typer.echo(f"password of {username} changed")


@app.command("token")
def token(
    ctx: typer.Context,
    username: str,
    name: Annotated[str, typer.Option(help="What uses the token, e.g. ris.")],
) -> None:
    """Issue an API token acting as USERNAME; printed once, stored only as its hash."""
    with reporting_errors():
        from radpilot.web.accounts import issue_token

        with database(ctx) as db:
            value = issue_token(db, username, name, actor=f"cli:{current_user()}")
    typer.echo(value)
