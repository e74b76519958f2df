"""The one timing rule of the Python references (bench/pytorch_reference.py,
bench/onnxruntime_reference.py), the same as `ferkit bench`'s: one warm-up call, then `repeats`
timings of `steps` calls; the median rate in items (images) per second."""
import statistics
import time


def median_rate(step, items_per_step, steps, repeats):
    step()  # warm-up
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        rates.append(steps * items_per_step / (time.perf_counter() - start))
    return statistics.median(rates)
