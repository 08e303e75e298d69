"""Count parameters and multiply-adds of SpaceEvo models as the official code builds them, for our tests.

Imports the official implementation from a checkout the user gives (microsoft/Moonlit, folder SpaceEvo; it is
not part of this project and nothing is downloaded) and writes, for the ten released SEQnet models and for
random subnets (the official `sample_active_subnet`) of every block type of both superspaces, the subnet
encoding with the parameter count (LSQ+ quantizer scales excluded) and multiply-adds (torch's FLOP counter / 2)
of the official static subnet. `tests/test_spaceevo.py` checks that our graphs of the same encodings count the
same. Written at Moonlit@348a402:

    python scripts/spaceevo_official_counts.py --official /path/to/Moonlit/SpaceEvo \
        --out tests/data/spaceevo_official_counts.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

QUANTIZER_PARAMS = ("sw", "sa", "beta")  # LSQ+ scales and offsets: not weights of the FP32 model
SUBNETS_PER_POINT = 2


def count(supernet: object, encoding: str) -> dict[str, object]:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    supernet.set_active_subnet(encoding)  # type: ignore[attr-defined]
    model = supernet.get_active_subnet().eval()  # type: ignore[attr-defined]
    resolution = int(encoding.rsplit("_r", 1)[1])
    params = sum(p.numel() for n, p in model.named_parameters() if n.rsplit(".", 1)[-1] not in QUANTIZER_PARAMS)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, resolution, resolution))
    return {"subnet": encoding, "params": params, "madds": counter.get_total_flops() // 2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", required=True, help="the official SpaceEvo folder (Moonlit/SpaceEvo)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(args.official).resolve()))
    import numpy as np
    import yaml
    from modules.modeling.supernet import Supernet  # the official code

    results = yaml.safe_load((Path(args.official) / "data" / "search_result.yaml").read_text())
    spaces, subnets = results["specific_supernet_encoding_dict"], results["specific_subnet_encoding_dict"]
    rows = []
    for name, (space, encoding) in subnets.items():
        rows.append({"name": name, "space": spaces[space], **count(Supernet.build_from_str(spaces[space]), encoding)})
    np.random.seed(0)
    for superspace, blocks, windows in (("onnxw", 6, "023231"), ("mobilew", 7, "155400")):
        for block in range(blocks):
            point = f"{superspace}-{str(block) * 6}-{windows}"
            supernet = Supernet.build_from_str(point)
            for _ in range(SUBNETS_PER_POINT):
                rows.append({"space": point, **count(supernet, str(supernet.sample_active_subnet()))})
                print(rows[-1], flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"source": "microsoft/Moonlit@348a402 SpaceEvo", "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
