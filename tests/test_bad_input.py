"""Bad input a user gave (issue 18's cases that raised a traceback or silently did the wrong thing): each is a
one-line error naming the bad value, with exit status 2, before any training and without leaving a run folder."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from nas.cli import main

NB201_ARCH = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|"
SEARCH = ["search", "--space", "nb201", "--strategy", "random", "--budget", "1", "--epochs", "1", "--no-progress",
          "--no-export", "--run-dir", "RUN"]
MBCONV_SMALL = ('{"resolution":32,"width_mult":1.0,"s1_depth":%s,"s2_depth":1,"s3_depth":1,"s4_depth":1,'
                '"s1_l0_k":3,"s1_l0_e":3,"s2_l0_k":3,"s2_l0_e":3,"s3_l0_k":3,"s3_l0_e":3,"s4_l0_k":3,"s4_l0_e":3}')

CASES = {
    "negative lr": (SEARCH + ["--lr", "-5"], "lr -5.0 must be a positive finite number"),
    "NaN lr": (SEARCH + ["--lr", "nan"], "lr nan must be a positive finite number"),
    "infinite weight decay": (SEARCH + ["--weight-decay", "inf"], "weight decay inf must be in [0, inf)"),
    "unknown device": (SEARCH + ["--device", "tpu"], "device 'tpu' is not one of"),
    "data path for a built-in dataset": (SEARCH + ["--data-path", "/somewhere"],
                                         "dataset 'digits' is built in and reads no files"),
    "train subset 0": (SEARCH + ["--train-subset", "0"], "train subset 0 must be"),
    "negative train subset": (SEARCH + ["--train-subset", "-5"], "train subset -5 must be"),
    "strategy option out of range": (SEARCH[:4] + ["evolution"] + SEARCH[5:] + ["--option", "sample_size=0"],
                                     "sample_size 0 must be between 1"),
    "storage that is no URL": (SEARCH[:4] + ["optuna"] + SEARCH[5:] + ["--storage", "notaurl://x"],
                               "storage 'notaurl://x' is not a database URL"),
    "storage a strategy ignores": (SEARCH[:4] + ["spos"] + SEARCH[5:] + ["--storage", "sqlite:///x.db"],
                                   "strategy 'spos' does not share work through --storage"),
    "run folder that is a file": (SEARCH[:-1] + ["A_FILE"], "is a file, not a folder"),
    "binary benchmark table": (SEARCH + ["--benchmark", "GARBAGE_CSV", "--dataset", "cifar10"],
                               "is not a CSV text file"),
    "NaN accuracy in a benchmark table": (SEARCH + ["--benchmark", "NAN_CSV", "--dataset", "cifar10"],
                                          "not a finite accuracy"),
    "negative latency limit": (SEARCH + ["--latency-max", "-1"],
                               "constraint latency<=-1.0: the limit must be positive"),
    "list as a choice value": (["inspect", "--space", "mbconv", "--arch", '{"resolution": [32]}'],
                               "value [32] of choice 'resolution' is not a single value"),
    "true as a depth": (["inspect", "--space", "mbconv", "--arch", MBCONV_SMALL % "true"],
                        "value True for choice 's1_depth' is not accepted"),
    "huge value": (["inspect", "--space", "mbconv", "--arch", '{"resolution": "%s"}' % ("x" * 120_000)],
                   "for choice 'resolution' is not accepted"),
    "negative resolution": (["inspect", "--space", "mbconv", "--arch", "mobilenet_v2", "--resolution", "-8"],
                            "--resolution -8 must be at least 1"),
    "resolution too small": (["inspect", "--space", "wavemix", "--arch", "wavemix_cifar10_94_58", "--resolution", "3"],
                             "needs a map divisible by 2, got 3x3"),
    "zero classes": (["inspect", "--space", "mbconv", "--arch", "mobilenet_v2", "--classes", "0"],
                     "--classes 0 must be at least 1"),
    "negative classes": (["inspect", "--space", "mbconv", "--arch", "mobilenet_v2", "--classes", "-3"],
                         "--classes -3 must be at least 1"),
    "export into a file": (["export", "--space", "nb201", "--arch", NB201_ARCH, "--out", "A_FILE"],
                           "export folder 'A_FILE' is a file"),
    "no export formats": (["export", "--space", "nb201", "--arch", NB201_ARCH, "--out", "OUT", "--formats", ""],
                          "export format '' is not one of"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_a_one_line_error(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    Path("A_FILE").write_text("x")
    Path("GARBAGE_CSV").write_bytes(os.urandom(4096))
    Path("NAN_CSV").write_text(f"arch,cifar10\n{NB201_ARCH},nan\n")
    argv, expected = CASES[case]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and expected in err and len(err) < 400, err
    assert not Path("RUN").exists() and not Path("OUT").exists()


def test_json_floats_equal_to_a_declared_value_are_that_value() -> None:
    from search_spaces.mbconv import MBConvSpace

    arch = MBConvSpace().resolve(MBCONV_SMALL % "1.0")
    assert arch["s1_depth"] == 1 and type(arch["s1_depth"]) is int


def test_resuming_a_config_without_settings_is_a_one_line_error(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "config.json").write_text('{"space": "nb201", "strategy": "random"}')
    assert main(["search", "--resume", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "config.json has no search settings" in err
