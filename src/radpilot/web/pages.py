"""Server-rendered pages: Jinja2 templates, the static files beside them, and the rules
they share (where ``next`` may point, which navigation a role sees).

Every script and style is served from ``radpilot/web/static``; no page fetches anything
from the internet (a hospital network often cannot), and the Content-Security-Policy set
by :mod:`radpilot.web.app` forbids it.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from radpilot import __version__

__all__ = ["STATIC_DIR", "render", "safe_next", "templates"]

_HERE = Path(str(resources.files("radpilot.web")))
STATIC_DIR = _HERE / "static"
templates = Jinja2Templates(directory=str(_HERE / "templates"))


def safe_next(target: str | None) -> str:
    """A local path to go to after sign-in; anything else (another site) becomes the
    worklist."""
    if (
        not target
        or not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or target.startswith("/signin")
    ):
        return "/worklist"
    return target


def render(
    request: Request,
    name: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """A page from ``templates/``; ``actor`` in ``context`` fills the header bar."""
    values = {"version": __version__, "actor": None, **(context or {})}
    return templates.TemplateResponse(
        request, name, values, status_code=status_code, headers=headers
    )
