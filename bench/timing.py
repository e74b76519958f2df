"""The one timing rule of the Python references (bench/pytorch_reference.py,
bench/onnxruntime_reference.py), the same as `ferkit bench`'s: one warm-up call, then `repeats`
timings of `steps` calls; the median rate in items (images) per second.

Inference (`inference_median_rate`, ferkit's `bench::inference_rate`) warms up on and times at
least `MIN_INFERENCE_IMAGES` faces per timing: at batch 1, five calls took about a millisecond,
short enough for one scheduler hiccup to halve a figure."""
import statistics
import time

# Faces that each inference timing (and its warm-up) covers at least; src/bench.rs has the same.
MIN_INFERENCE_IMAGES = 256


def median_rate(step, items_per_step, steps, repeats, warmup_calls=1):
    for _ in range(warmup_calls):
        step()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        rates.append(steps * items_per_step / (time.perf_counter() - start))
    return statistics.median(rates)


def inference_calls(batch, steps):
    """(warm-up calls, calls per timing) for inference at `batch` faces a call."""
    cover = -(-MIN_INFERENCE_IMAGES // batch)
    return cover, max(steps, cover)


def inference_median_rate(step, batch, steps, repeats):
    """`median_rate` for inference: each timing and the warm-up cover at least
    MIN_INFERENCE_IMAGES faces (at least `steps` calls a timing)."""
    warmup, calls = inference_calls(batch, steps)
    return median_rate(step, batch, calls, repeats, warmup_calls=warmup)
