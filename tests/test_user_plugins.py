"""A user's own module of plug-ins, named with `--plugin MODULE` or `NAS_PLUGINS` (issue 18): the space and
strategy it registers work from the command line (search, inspect, export, show, latency), and a module that
cannot be imported is a one-line error with exit status 2."""
from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from nas import registry
from nas.cli import main

PLUGIN = '''
import random

from nas.graph import GraphBuilder
from nas.layers import conv_bn_act
from nas.ops import Flatten, GlobalAvgPool, Linear
from nas.registry import register_space, register_strategy
from nas.space import Choice, SearchSpace
from strategies.random_search import RandomSearch


@register_space("tiny_user_cnn")
class TinyUserCNN(SearchSpace):
    """Two conv layers of a chosen width."""

    name = "tiny_user_cnn"
    default_input = (1, 8, 8)
    default_classes = 10

    def choices(self):
        return [Choice("width", (4, 8), "ordinal")]

    def graph(self, arch, input_shape=None, num_classes=None):
        g = GraphBuilder(input_shape or self.default_input)
        x = conv_bn_act(g, "layer0", g.input, arch["width"], 3)
        x = g.add("flatten", Flatten(), g.add("pool", GlobalAvgPool(), x))
        return g.finish(g.add("fc", Linear(g.shape(x)[0], num_classes or self.default_classes), x))


@register_strategy("user_random")
class UserRandom(RandomSearch):
    """Random search under another name."""

    name = "user_random"
'''
ARCH = '{"width": 8}'


@pytest.fixture(autouse=True)
def clean_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """What a test's plug-ins register, the modules and the path they add are gone after it."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delenv("NAS_PLUGINS", raising=False)
    modules = set(sys.modules)
    yield
    for table in registry._REGISTRIES.values():
        for name in [n for n, obj in table.items() if "user_plugin" in getattr(obj, "__module__", "")]:
            del table[name]
    for name in set(sys.modules) - modules:
        if "user_plugin" in name:
            del sys.modules[name]


def test_without_the_plugin_the_space_is_unknown_and_the_error_names_the_flag(capsys: pytest.CaptureFixture[str]) \
        -> None:
    assert main(["inspect", "--space", "tiny_user_cnn", "--arch", ARCH]) == 2
    err = capsys.readouterr().err
    assert "unknown space 'tiny_user_cnn'" in err and "--plugin MODULE" in err


def test_a_plugin_file_works_for_search_show_export_and_inspect(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_user_plugin.py").write_text(PLUGIN)
    plugin = ["--plugin", str(tmp_path / "my_user_plugin.py")]
    assert main(["inspect", "--space", "tiny_user_cnn", "--arch", ARCH, "--json", *plugin]) == 0
    assert json.loads(capsys.readouterr().out)["arch"] == {"width": 8}
    assert main(["search", "--space", "tiny_user_cnn", "--strategy", "user_random", "--budget", "2", "--epochs", "1",
                 "--train-subset", "64", "--run-dir", "run", "--no-progress", *plugin]) == 0
    assert "user_random on tiny_user_cnn" in capsys.readouterr().out
    assert (tmp_path / "run/model/net.py").exists()  # the search's own export
    assert main(["show", "run", *plugin]) == 0
    assert "status: finished" in capsys.readouterr().out
    assert main(["export", "run", "--out", "again", "--formats", "source", *plugin]) == 0
    assert (tmp_path / "again/net.py").exists()


def test_a_dotted_module_from_the_current_directory_and_nas_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "user_plugin_pkg").mkdir()
    (tmp_path / "user_plugin_pkg/__init__.py").write_text("")
    (tmp_path / "user_plugin_pkg/spaces.py").write_text(PLUGIN)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.setenv("NAS_PLUGINS", " user_plugin_pkg.spaces , ")
    assert main(["export", "--space", "tiny_user_cnn", "--arch", ARCH, "--out", "out", "--formats", "source"]) == 0
    assert (tmp_path / "out/net.py").exists()
    monkeypatch.delenv("NAS_PLUGINS")
    assert main(["latency", "build", "--space", "tiny_user_cnn", "--patience", "3", "--calibrate", "0", "--out",
                 "table.json", "--no-progress", "--plugin", "user_plugin_pkg.spaces"]) == 0
    assert "latency table" in capsys.readouterr().out and (tmp_path / "table.json").exists()


@pytest.mark.parametrize("module, text, expected", [
    ("no_such_user_plugin", None, "plug-in 'no_such_user_plugin' is not a module importable from the current"),
    ("missing_user_plugin.py", None, "plug-in file 'missing_user_plugin.py' does not exist"),
    ("raising_user_plugin.py", "raise RuntimeError('boom\\nsecond line')",
     "plug-in 'raising_user_plugin.py' failed to import: RuntimeError: boom"),
    ("broken_user_plugin", "def f(:\n", "plug-in 'broken_user_plugin' failed to import: SyntaxError"),
    ("needy_user_plugin", "import no_such_dependency_xyz", "failed to import: ModuleNotFoundError: No module named"),
])
def test_a_bad_plugin_is_a_one_line_error(module: str, text: str | None, expected: str, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    if text is not None:
        (tmp_path / (module if module.endswith(".py") else f"{module}.py")).write_text(text)
    for command in (["spaces"], ["show", "nowhere"], ["latency", "merge", "a", "b", "--out", "c"]):
        assert main([*command, "--plugin", module]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and expected in err, err
