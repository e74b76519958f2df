#!/usr/bin/env python3
"""The machine's practical float32 peak: GFLOP/s of PyTorch's (MKL/oneDNN) matrix product on
large square matrices, on the given number of threads. A yardstick for what any framework can
reach here; README's "cost of the full reproduction" divides by it.

    python3 bench/sgemm_peak.py [--threads 2] [--json F]

With --json, F gets {"threads", "torch", "gflops": {size: GFLOP/s}, "peak_gflops": the best};
`bench/run.sh` passes it to `bench/compare.py`, which sets each net's images/s against it.
"""
import argparse
import json
import time

import torch


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, float32 matrix product (best of {args.repeats})")
    gflops = {}
    for n in (1024, 2048, 4096):
        a, b = torch.randn(n, n), torch.randn(n, n)
        torch.mm(a, b)  # warm-up
        best = float("inf")
        for _ in range(args.repeats):
            start = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - start)
        gflops[n] = 2 * n**3 / best / 1e9
        print(f"{n:>5} x {n:<5} {gflops[n]:8.1f} GFLOP/s")
    if args.json:
        doc = {"threads": args.threads, "torch": torch.__version__, "gflops": gflops, "peak_gflops": max(gflops.values())}
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)


if __name__ == "__main__":
    main()
