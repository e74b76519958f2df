#!/usr/bin/env python3
"""The machine's practical float32 peak: GFLOP/s of PyTorch's (MKL/oneDNN) matrix product on
large square matrices, on the given number of threads. A yardstick for what any framework can
reach here; README's "cost of the full reproduction" divides by it.

    python3 bench/sgemm_peak.py [--threads 2]
"""
import argparse
import time

import torch


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, float32 matrix product (best of {args.repeats})")
    for n in (1024, 2048, 4096):
        a, b = torch.randn(n, n), torch.randn(n, n)
        torch.mm(a, b)  # warm-up
        best = float("inf")
        for _ in range(args.repeats):
            start = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - start)
        print(f"{n:>5} x {n:<5} {2 * n**3 / best / 1e9:8.1f} GFLOP/s")


if __name__ == "__main__":
    main()
