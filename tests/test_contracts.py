"""The contract suite (`nas.testing`) over every registered plug-in, and a third-party plug-in that gets it by
registering through an entry point."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from conftest import REPO

from nas import registry
from nas.strategy import SupernetStrategy
from nas.testing import (
    SPACE_CHECKS,
    STRATEGY_CHECKS,
    SUPERNET_CHECKS,
    SUPERNET_STRATEGY_CHECKS,
    ToyBlockSpace,
    checks_for_strategy,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def space(name: str):  # noqa: ANN201
    return ToyBlockSpace() if name == "toy_blocks" else registry.make_space(name)


SPACES = [*registry.names("spaces"), "toy_blocks"]
ASK_TELL = [n for n in registry.names("strategies") if not issubclass(registry.get("strategies", n), SupernetStrategy)]
SUPERNET = [n for n in registry.names("strategies") if issubclass(registry.get("strategies", n), SupernetStrategy)]


@pytest.mark.parametrize("check", list(SPACE_CHECKS))
@pytest.mark.parametrize("name", SPACES)
def test_space_contract(name: str, check: str) -> None:
    SPACE_CHECKS[check](space(name))


@pytest.mark.parametrize("check", list(SUPERNET_CHECKS))
@pytest.mark.parametrize("name", SPACES)
def test_supernet_contract(name: str, check: str) -> None:
    SUPERNET_CHECKS[check](space(name))


@pytest.mark.parametrize("check", list(STRATEGY_CHECKS))
@pytest.mark.parametrize("name", ASK_TELL)
def test_strategy_contract(name: str, check: str) -> None:
    STRATEGY_CHECKS[check](name)


#: strategies whose contract runs take minutes (SpaceEvo distils 36 ImageNet-wide students per run): slow job
SLOW_SUPERNET = {"spaceevo"}


@pytest.mark.parametrize("check", list(SUPERNET_STRATEGY_CHECKS))
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_SUPERNET else n
                                  for n in SUPERNET])
def test_supernet_strategy_contract(name: str, check: str) -> None:
    SUPERNET_STRATEGY_CHECKS[check](name)


def test_every_registered_plugin_gets_its_checks() -> None:
    assert {"hytra", "mbconv", "nb201", "nats_sss"} <= set(SPACES)
    assert {"random", "evolution", "genetic", "local_search", "optuna", "bananas"} <= set(ASK_TELL)
    assert {"spos", "bossnas", "spaceevo"} <= set(SUPERNET)
    assert checks_for_strategy("spos") is SUPERNET_STRATEGY_CHECKS and checks_for_strategy("random") is STRATEGY_CHECKS


THIRD_PARTY = '''
    """A space from another package: a plain CNN of two or three conv layers."""
    from nas.graph import GraphBuilder
    from nas.layers import conv_bn_act
    from nas.ops import Flatten, GlobalAvgPool, Linear
    from nas.space import Choice, SearchSpace


    class TinyCNN(SearchSpace):
        """Two or three conv layers, each with its own width and kernel."""

        name = "tiny_cnn"
        default_input = (1, 8, 8)
        default_classes = 10

        def choices(self):
            out = [Choice("depth", (2, 3), "ordinal")]
            for i in range(3):
                exists = None if i < 2 else (lambda arch: arch["depth"] == 3)
                out += [Choice(f"width{i}", (8, 16), "ordinal", exists, slot=f"layer{i}"),
                        Choice(f"kernel{i}", (3, 5), "ordinal", exists, slot=f"layer{i}")]
            return out

        def graph(self, arch, input_shape=None, num_classes=None):
            g = GraphBuilder(input_shape or self.default_input)
            x = g.input
            for i in range(arch["depth"]):
                with g.candidate(f"layer{i}", f"w{arch[f'width{i}']}k{arch[f'kernel{i}']}"):
                    x = conv_bn_act(g, f"layer{i}", x, arch[f"width{i}"], arch[f"kernel{i}"])
            x = g.add("flatten", Flatten(), g.add("pool", GlobalAvgPool(), x))
            return g.finish(g.add("fc", Linear(g.shape(x)[0], num_classes or self.default_classes), x))
'''


def test_a_third_party_space_registered_by_entry_point_gets_the_contract_checks(tmp_path) -> None:
    (tmp_path / "tiny_cnn_plugin.py").write_text(textwrap.dedent(THIRD_PARTY))
    info = tmp_path / "tiny_cnn_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tiny-cnn-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[nas.spaces]\ntiny_cnn = tiny_cnn_plugin:TinyCNN\n")
    env = dict(os.environ, PYTHONPATH=f"{REPO}:{tmp_path}")
    out = subprocess.run([sys.executable, "-m", "nas.testing", "--space", "tiny_cnn"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=600, check=False)
    checks = len(SPACE_CHECKS) + len(SUPERNET_CHECKS)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("ok      tiny_cnn: ") == checks and f"{checks} checks passed, 0 failed" in out.stdout
