"""Winograd minimal filtering F(m x m, r x r): Toom-Cook matrices for a set of points, and their
float32 rounding error, as used to pick the points of src/kernels/winograd/f4x3.rs (session 40).

For each point set: Aᵀ (m x n), G (n x r) and Bᵀ (n x n), with n = m + r - 1 and the points the
n - 1 finite ones given plus infinity (Lavin and Gray, CVPR 2016, section 4; Bᵀ solved from
Aᵀ[(G g) ⊙ (Bᵀ d)] = correlation(d, g) in exact rationals), checked exact in 1-D; then the
largest error of the 2-D algorithm in float32 (transforms, the sum over channels, the output
transform) against float64 direct sums over random n x n tiles, relative to the largest output.

    python bench/winograd_points.py            # F(4x4, 3x3) for four point sets, F(2x2, 3x3), F(2x2, 5x5)
Needs numpy and sympy (pip install numpy sympy).
"""

import sys

import numpy as np
import sympy as sp


def matrices(points, m, r):
    """Aᵀ, G, Bᵀ (sympy matrices) of F(m, r) for the n - 1 finite `points` (strings) and infinity."""
    n = m + r - 1
    a = [sp.Rational(p) for p in points]
    assert len(a) == n - 1, f"F({m}, {r}) needs {n - 1} finite points"
    at = sp.zeros(m, n)
    for k in range(m):
        for i in range(n - 1):
            at[k, i] = a[i] ** k
    at[m - 1, n - 1] = 1
    g = sp.zeros(n, r)
    for i in range(n - 1):
        f = sp.prod([a[i] - a[k] for k in range(n - 1) if k != i])
        for j in range(r):
            g[i, j] = a[i] ** j / f
    g[n - 1, r - 1] = 1
    bt = sp.Matrix(n, n, lambda i, l: sp.Symbol(f"b{i}_{l}"))
    equations = [
        sum(at[k, i] * g[i, j] * bt[i, l] for i in range(n)) - (1 if l == k + j else 0)
        for k in range(m)
        for j in range(r)
        for l in range(n)
    ]
    solution = sp.solve(equations, list(bt), dict=True)[0]
    bt = bt.subs(solution).subs({s: 0 for s in bt.free_symbols})
    # Exact in 1-D: Aᵀ[(G g) ⊙ (Bᵀ d)] is the correlation of d with g.
    d, w = sp.symbols(f"d0:{n}"), sp.symbols(f"g0:{r}")
    y = at * (g * sp.Matrix(w)).multiply_elementwise(bt * sp.Matrix(d))
    assert all(sp.expand(y[k] - sum(d[k + j] * w[j] for j in range(r))) == 0 for k in range(m))
    return at, g, bt


def float32_error(points, m, r, channels=64, tiles=200, seed=0):
    """Mean and largest error of the 2-D algorithm in float32, relative to each tile's largest output."""
    at, g, bt = (np.array(x.tolist(), dtype=np.float64) for x in matrices(points, m, r))
    n = m + r - 1
    f = np.float32
    rng = np.random.default_rng(seed)
    errors = []
    for _ in range(tiles):
        d = rng.standard_normal((channels, n, n))
        w = rng.standard_normal((channels, r, r))
        exact = np.array([[(d[:, y : y + r, x : x + r] * w).sum() for x in range(m)] for y in range(m)])
        u = np.einsum("ij,cjk,lk->cil", g.astype(f), w.astype(f), g.astype(f)).astype(f)
        v = np.einsum("ij,cjk,lk->cil", bt.astype(f), d.astype(f), bt.astype(f)).astype(f)
        products = np.zeros((n, n), f)
        for c in range(channels):
            products = (products + u[c] * v[c]).astype(f)
        out = (at.astype(f) @ products @ at.T.astype(f)).astype(f)
        errors.append(np.abs(out - exact).max() / np.abs(exact).max())
    return float(np.mean(errors)), float(np.max(errors))


def main():
    cases = [
        ("F(4x4, 3x3)", 4, 3, ["0", "1", "-1", "2", "-2"]),
        ("F(4x4, 3x3)", 4, 3, ["0", "1", "-1", "1/2", "-1/2"]),
        ("F(4x4, 3x3)", 4, 3, ["0", "1", "-1", "1/2", "-2"]),
        ("F(4x4, 3x3)", 4, 3, ["0", "1", "-1", "2", "-1/2"]),
        ("F(2x2, 3x3)", 2, 3, ["0", "1", "-1"]),
        ("F(2x2, 5x5)", 2, 5, ["0", "1", "-1", "1/2", "-1/2"]),
    ]
    print("algorithm    points (and infinity)      mean error  largest error  (float32, 64 channels, 200 tiles)")
    for name, m, r, points in cases:
        mean, largest = float32_error(points, m, r)
        print(f"{name}  {', '.join(points):<26} {mean:.2e}    {largest:.2e}")
    if "--matrices" in sys.argv:
        for name, m, r, points in cases:
            at, g, bt = matrices(points, m, r)
            print(f"\n{name} at {', '.join(points)}, infinity:\nAᵀ = {at.tolist()}\nG = {g.tolist()}\nBᵀ = {bt.tolist()}")


if __name__ == "__main__":
    main()
