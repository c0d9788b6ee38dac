"""A child process for tests/test_compile_cache.py: one tiny model's compiled query, then torch's counters.

Run as ``python tests/compile_child.py [--hidden N] [--dtype bfloat16] [--seed S]``; prints one JSON
line: the inductor and AOTAutograd cache counters of this process (torch's own hit record), the
cache key's digest and the output's sum. The model is built in this file, not read from anywhere.
"""

from __future__ import annotations

import argparse
import json

import torch
from torch._dynamo.utils import counters

from lte.compile_cache import cache_key
from lte.geometry import make_coord
from lte.models import SRModel, build_model
from lte.models.decoders import LTEDecoder


def build(hidden: int = 16, seed: int = 0) -> SRModel:
    """The child's model: EDSR-tiny and a narrow LTE decoder whose first MLP layer is ``hidden`` wide."""
    torch.manual_seed(seed)
    encoder = build_model("lte", "edsr_tiny").encoder
    decoder = LTEDecoder(encoder.out_channels, hidden_dim=16, mlp_hidden=(hidden, 16))
    return SRModel(encoder, decoder).eval()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--hidden", type=int, default=16)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    net = build(args.hidden, args.seed)
    decoder = net.decoder
    dtype = getattr(torch, args.dtype)
    coord = make_coord((5, 7)).unsqueeze(0)  # (1, 35, 2)
    cell = torch.full((1, 1, 2), 2 / 5)
    with torch.inference_mode():
        out = net.query(
            net.encode(torch.randn(1, 3, 4, 5)), coord, cell, dtype=dtype, kernel="compiled"
        )
    print(
        json.dumps(
            {
                "inductor": dict(counters["inductor"]),
                "aot_autograd": dict(counters["aot_autograd"]),
                "digest": cache_key(decoder, dtype, "cpu").digest,
                "sum": float(out.sum()),
            }
        )
    )


if __name__ == "__main__":
    main()
