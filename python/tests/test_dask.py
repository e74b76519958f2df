"""Batch inference on Dask (issue 21): `ferkit.dask.predict_table` on a local
`dask.distributed` cluster of two worker processes gives the rows `ferkit predict` writes for the
same photos, and each worker process loads the model once."""

import csv
import os
import pathlib
import subprocess
import tempfile

import pytest

from test_ferkit import CASCADE, CLI, SHARED, need

PHOTOS = [SHARED / "data" / "photos", SHARED / "cases" / "08-photo-folder" / "export"]


def need_module(name: str) -> None:
    try:
        __import__(name)
    except ImportError:
        message = f"SKIPPED: Python module {name} is absent (pip install 'dask[distributed]' pandas)"
        if os.environ.get("FERKIT_REQUIRE_REFERENCES") == "1":
            pytest.fail(message)
        pytest.skip(message)


def test_a_two_process_dask_cluster_gives_the_rows_of_ferkit_predict():
    for name in ("dask", "distributed", "pandas"):
        need_module(name)
    for path in PHOTOS:
        need(path, "the shared photos and cases")
    need(CASCADE, "the Haar cascade in ../shared/models")
    need(CLI, "build the CLI first: cargo build --release")
    from dask.distributed import Client, LocalCluster

    import ferkit.dask

    with tempfile.TemporaryDirectory() as out:
        subprocess.run(
            [str(CLI), "predict", *map(str, PHOTOS), "--cascade", str(CASCADE), "--out", out],
            check=True,
            capture_output=True,
        )
        with open(pathlib.Path(out, "predictions.csv"), newline="") as f:
            expected = list(csv.DictReader(f))
    assert len(expected) >= 2, expected

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            bag, _ = ferkit.dask.predict_bag(PHOTOS, cascade=CASCADE, partition_size=1)
            assert bag.npartitions >= 4
            table = ferkit.dask.predict_table(PHOTOS, cascade=CASCADE, partition_size=1)
            loaded = client.run(ferkit.dask.pipelines_loaded)
    assert sorted(loaded.values()) == [1, 1], f"one pipeline per worker process: {loaded}"
    assert list(table.columns) == list(ferkit.dask.COLUMNS)
    assert len(table) == len(expected), (table, expected)
    for row, want in zip(table.to_dict("records"), expected):
        assert row["photo"] == want["photo"]
        for key in ("face", "x", "y", "width", "height"):
            assert row[key] == int(want[key]), (key, row, want)
        assert row["emotion"] == want["emotion"]
        for name in ferkit.CLASS_NAMES:
            assert row[name] == pytest.approx(float(want[name]), abs=1e-6)
    assert table.attrs["failed"] == []
    assert len(table.attrs["not_images"]) >= 1  # the export's sidecar, notes and Thumbs.db
