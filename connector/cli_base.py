"""The command line's shared parts: the one error boundary (`ConnectorGroup`), the state every
command reads its config through (`CliState`), the shared options, and the modules imported on
first use."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import click

from connector.config import Settings, load_settings
from connector.engine import build_redactor
from connector.errors import ConnectorError
from connector.logs import setup_logging
from connector.redact import Redactor


class OnFirstUse:
    """A module imported when a command first uses it: `sync` reaches its first call without rich
    (the tables come after the pass) or the on-call logic."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(importlib.import_module(self._name), attribute)


if TYPE_CHECKING:
    from connector import oncall, views
else:
    oncall = OnFirstUse("connector.oncall")
    views = OnFirstUse("connector.views")


class ConnectorGroup(click.Group):
    """The one error boundary: the connector's errors become one line and the exit code their class
    carries (`connector.errors`)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConnectorError as exc:
            click.echo(f"error: {_redact(ctx, str(exc))}", err=True)
            ctx.exit(exc.exit_code)


def _redact(ctx: click.Context, text: str) -> str:
    state = ctx.find_object(CliState)
    return state.redactor.text(text) if state is not None else text


@dataclass
class CliState:
    config_path: str | None
    log_format: str | None
    verbose: int
    _settings: Settings | None = None
    redactor: Redactor = field(default_factory=Redactor)

    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_path)
            self.redactor = build_redactor(self._settings)
            obs = self._settings.observability
            level = "DEBUG" if self.verbose else obs.log_level
            setup_logging(self.log_format or obs.log_format, level, self.redactor)
        return self._settings


pass_state = click.make_pass_decorator(CliState)
DEFAULT_LOCK_WAIT = 120.0


def json_option(func: Any) -> Any:
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")(func)


def wait_option(func: Any) -> Any:
    return click.option(
        "--wait",
        "wait",
        default=DEFAULT_LOCK_WAIT,
        show_default=True,
        type=click.FloatRange(0),
        help="Seconds to wait for a pass in progress (a running service's) to finish.",
    )(func)


def tell_waiting(wait: float) -> Any:
    def tell(holder: str) -> None:
        click.echo(f"waiting up to {wait:g} s for the pass in progress (connector process {holder}) to finish...", err=True)

    return tell
