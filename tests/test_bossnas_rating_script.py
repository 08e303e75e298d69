"""scripts/bench_bossnas_rating.py: the split halves behind the noise ceiling and the row that reports them (no
network is trained)."""
from __future__ import annotations

import math

import pytest
from conftest import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("bench_bossnas_rating")


def is_partition(split, seeds) -> bool:
    first, second = split
    return len(first) == len(second) and sorted(first + second) == sorted(seeds) and first[0] == seeds[0]


def test_every_split_up_to_the_cap(bench):
    seeds = list(range(14))
    splits = bench.split_halves(seeds)
    assert len(splits) == math.comb(13, 6) == 1716 <= bench.MOST_SPLITS
    assert len(set(splits)) == len(splits) and all(is_partition(s, seeds) for s in splits)
    assert bench.split_halves(seeds[:5]) == [] and bench.split_halves(seeds[:1]) == []


def test_past_the_cap_a_fixed_random_sample_of_distinct_splits(bench):
    seeds = list(range(18))
    every = bench.split_halves(seeds, most=10 ** 6)
    sample = bench.split_halves(seeds)
    assert len(every) == 24310 and len(sample) == bench.MOST_SPLITS
    assert len(set(sample)) == len(sample) and set(sample) <= set(every)
    assert sample == bench.split_halves(seeds)  # the same sample every time: the report is reproducible
    assert sample != every[:len(sample)]  # drawn, not the first ones in order
    position = {split: i for i, split in enumerate(every)}
    assert sample == sorted(sample, key=position.__getitem__)  # kept in the enumeration's order


def test_the_row_says_how_many_splits_it_averages(bench):
    seeds = list(range(6))
    truth = [float(i) for i in range(12)]
    records = [[{"accuracy": value + 0.1 * ((s * 7 + i) % 5)} for i, value in enumerate(truth)] for s in seeds]
    noise = bench.noise_rows(seeds, records)
    row = bench.split_half_row(noise, len(seeds))
    assert "mean over the 10 splits |" in row
    tau = float(row.split("|")[2].split()[0])
    assert 0.8 < tau <= 1.0  # the halves share the strong trend
    row = bench.split_half_row(noise[:4], len(seeds))
    assert "mean over 4 of the 10 splits, drawn at random |" in row
