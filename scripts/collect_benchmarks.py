"""Assemble BENCHMARKS.md from the tables the benchmark scripts wrote in benchmarks/*.md.

    python scripts/collect_benchmarks.py
"""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORDER = ["flagship.md", "supernet_step.md", "latency.md", "int8_speedup.md", "hw_search.md", "spaceevo.md", "qfa.md",
         "strategies.md", "bananas.md",
         "predictors.md", "bossnas_rating.md", "bossnas_rating_hytra16.md", "bossnas_rating_mbconv16.md",
         "bossnas_rating_32px_quick.md", "bossnas_rating_32px.md", "spos_rating_32px.md",
         "spos_rating_32px_seed1.md", "spos_rating_32px_seed2.md"]
HEADER = """# Benchmarks

Every figure here was measured by a script in `scripts/`, on the machine and with the command written beside
its table; the per-benchmark files (and their PNG plots) are in `benchmarks/`. This file is assembled by
`python scripts/collect_benchmarks.py`. Machine unless stated otherwise: x86_64, 2 CPU cores, no GPU, shared
with other jobs while these ran (timings are upper bounds).

"""


def main() -> None:
    parts = [HEADER]
    folder = ROOT / "benchmarks"
    names = [n for n in ORDER if (folder / n).exists()]
    names += sorted(p.name for p in folder.glob("*.md") if p.name not in ORDER and not p.name.startswith("README"))
    for name in names:
        text = (folder / name).read_text()
        if text.startswith("# "):  # each file's headings one level under this file's title
            text = re.sub(r"^(#+) ", r"#\1 ", text, flags=re.M)
        text = re.sub(r"\]\((?!https?:|benchmarks/)([^)]+\.png)\)", r"](benchmarks/\1)", text)
        text = re.sub(r"`((?:regret|predictors|bossnas|diffusionnag|n2n)[\w.-]*\.png)`", r"`benchmarks/\1`", text)
        parts.append(text.rstrip() + "\n\n")
    (ROOT / "BENCHMARKS.md").write_text("".join(parts))
    print(f"BENCHMARKS.md from {', '.join(names)}")


if __name__ == "__main__":
    main()
