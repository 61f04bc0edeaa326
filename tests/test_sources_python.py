"""The `python` source: `callable = "package.module:function"` is called with the source config and the
cursor; what it raises fails the fetch with one line naming the plugin (the traceback only at -v)."""

from __future__ import annotations

import os
import textwrap

import pytest
from conftest import Harness, item, run_cli

from connector.config import load_settings
from connector.errors import ConfigError, SourceError
from connector.sources import open_source

JOBYLON = {"app_id": "demo-app", "app_key": "demo-key-0123456789"}

PLUGIN = '''
import json, pathlib

CALLS = []


def interviews(config, cursor):
    """The partner's own code: reads a JSON file named in its options; honours the cursor."""
    CALLS.append((dict(config.options), cursor))
    items = json.loads(pathlib.Path(config.options["path"]).read_text())
    return [i for i in items if cursor is None or i["updated_at"] >= cursor]


def generated(config, cursor):
    for n in range(config.options["count"]):
        yield {"id": f"G{n}"}


def broken(config, cursor):
    raise ValueError("the partner's API said no\\nsecond line")


def broken_later(config, cursor):
    yield {"id": "ok"}
    raise KeyError("missing")


def nothing(config, cursor):
    return None


def a_dict(config, cursor):
    return {"id": "A"}


def leaky(config, cursor):
    """A plugin whose error and items quote its credentials, as careless code does."""
    yield {"id": "L1", "title": "key " + config.options["auth"]["api_token"]}
    raise RuntimeError(f"login refused for {config.options['client_secret']} (sort key {config.options['sort_key']})")


NOT_CALLABLE = 3
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    folder = tmp_path / "plugins"
    folder.mkdir()
    name = f"partner_plugin_{os.getpid()}_{tmp_path.name[-6:]}".replace("-", "_")
    (folder / f"{name}.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.syspath_prepend(str(folder))
    return name, folder


def python_source(name: str, function: str, **keys):
    settings = load_settings(data={"jobylon": JOBYLON, "source": {"kind": "python", "callable": f"{name}:{function}", **keys}})
    return open_source(settings.source, settings.retry)


def test_the_function_gets_the_config_and_the_cursor_and_says_complete_or_incremental(plugin, tmp_path):
    name, _ = plugin
    data = tmp_path / "items.json"
    data.write_text('[{"id": "A", "updated_at": "2026-01-01"}, {"id": "B", "updated_at": "2026-02-01"}]')
    source = python_source(name, "interviews", options={"path": str(data)})
    complete = source.fetch(since=None)
    assert complete.complete and [i["id"] for i in complete.items] == ["A", "B"]
    incremental = source.fetch(since="2026-01-15")
    assert not incremental.complete and [i["id"] for i in incremental.items] == ["B"]
    module = __import__(name)
    assert module.CALLS == [({"path": str(data)}, None), ({"path": str(data)}, "2026-01-15")]
    # incremental = false: always called with None, every fetch complete
    always = python_source(name, "interviews", options={"path": str(data)}, incremental=False).fetch(since="2026-01-15")
    assert always.complete and len(always.items) == 2


def test_any_iterable_of_dicts_will_do(plugin):
    name, _ = plugin
    assert [i["id"] for i in python_source(name, "generated", options={"count": 3}).fetch().items] == ["G0", "G1", "G2"]


@pytest.mark.parametrize(
    ("function", "expected"),
    [
        ("broken", "source plugin {name}:broken: ValueError: the partner's API said no"),
        ("broken_later", "source plugin {name}:broken_later: KeyError: 'missing'"),
        ("nothing", "source plugin {name}:nothing: returned None, not an iterable of dicts (a list or a generator)"),
        ("a_dict", "source plugin {name}:a_dict: returned dict, not an iterable of dicts"),
        ("absent", "source plugin {name}:absent: {name} has no absent"),
        ("NOT_CALLABLE", "source plugin {name}:NOT_CALLABLE: NOT_CALLABLE is a int, not a function"),
    ],
)
def test_whatever_goes_wrong_is_one_line_naming_the_plugin(plugin, function, expected):
    name, _ = plugin
    with pytest.raises(SourceError) as caught:
        python_source(name, function).fetch()
    message = str(caught.value)
    assert message.startswith(expected.format(name=name)) and "\n" not in message and "second line" not in message


def test_a_module_that_cannot_be_imported_is_named(plugin):
    with pytest.raises(
        SourceError, match=r"source plugin no_such_partner_module:fetch: the module no_such_partner_module cannot be imported \(ModuleNotFoundError"
    ):
        python_source("no_such_partner_module", "fetch").fetch()


def test_the_callable_must_be_module_colon_function():
    with pytest.raises(ConfigError, match=r"source.callable: expected 'package.module:function'"):
        load_settings(data={"jobylon": JOBYLON, "source": {"kind": "python", "callable": "partner.fetch"}})


def test_sync_over_a_plugin_gets_the_cursor_minus_the_overlap(plugin, tmp_path, sandbox):
    name, _ = plugin
    data = tmp_path / "items.json"
    data.write_text(__import__("json").dumps([item("A", updated_at="2026-03-01T10:00:00+00:00"), item("B", updated_at="2026-03-01T09:00:00+00:00")]))
    h = Harness(tmp_path, sandbox, sync={"full_every": 10})
    h.data["source"] = {"kind": "python", "callable": f"{name}:interviews", "options": {"path": str(data)}, "since_overlap_seconds": 60}
    try:
        assert h.sync(full=None).counts["created"] == 2
        second = h.sync(full=None)
        assert not second.complete and second.fetched == 1
        assert __import__(name).CALLS[-1][1] == "2026-03-01T09:59:00.000+00:00"
    finally:
        h.close()


def test_an_exception_in_the_plugin_is_one_line_in_normal_output_and_a_traceback_at_v(plugin, tmp_path, sandbox):
    name, folder = plugin
    h = Harness(tmp_path, sandbox)
    h.data["source"] = {"kind": "python", "callable": f"{name}:broken"}
    try:
        config = h.config_file()
        env = {"PYTHONPATH": str(folder)}
        plain = run_cli("--config", str(config), "sync", env=env)
        assert plain.returncode == 1
        output = plain.stdout + plain.stderr
        assert f"source plugin {name}:broken: ValueError: the partner's API said no" in output
        assert "Traceback" not in output and "second line" not in output
        verbose = run_cli("--config", str(config), "-v", "sync", env=env)
        assert verbose.returncode == 1
        assert "Traceback (most recent call last)" in verbose.stderr and 'raise ValueError("the partner' in verbose.stderr
    finally:
        h.close()


PLUGIN_TOKEN, PLUGIN_SECRET = "plugin-token-SECRET-41c9", "client-secret-SECRET-9d2e"


def test_credentials_in_the_plugins_options_are_masked_like_any_secret(plugin, tmp_path, sandbox):
    name, folder = plugin
    h = Harness(tmp_path, sandbox)
    options = {"auth": {"api_token": PLUGIN_TOKEN}, "client_secret": PLUGIN_SECRET, "sort_key": "updated_at"}
    h.data["source"] = {"kind": "python", "callable": f"{name}:leaky", "options": options}
    try:
        config = h.config_file()
        env = {"PYTHONPATH": str(folder)}
        outputs = []
        for args in (["-v", "sync"], ["--log-format", "json", "-v", "sync"], ["failures", "list", "--all", "--json"], ["status"]):
            result = run_cli("--config", str(config), *args, env=env)
            outputs += [result.stdout, result.stderr]
        text = "\n".join(outputs)
        assert "login refused for **********" in text  # the error is shown, its secret masked
        assert "sort key updated_at" in text  # sort_key is no credential: its value is kept
        for secret in (PLUGIN_TOKEN, PLUGIN_SECRET):
            assert secret not in text, secret
            for path in h.settings.state.path.parent.iterdir():
                assert secret.encode() not in path.read_bytes(), (path, secret)
        os.chmod(config, 0o644)
        warned = run_cli("--config", str(config), "sync", env=env).stderr
        assert "source.options.auth.api_token" in warned and "source.options.client_secret" in warned
        assert "sort_key" not in warned
    finally:
        h.close()
