"""The Python front against the CLI and against `fer`'s output format. Run by .ci/run after
the wheel is built and installed in a virtual environment (`pytest python/tests`)."""

import json
import os
import pathlib
import subprocess
import tempfile

import numpy as np
import pytest

import ferkit

ROOT = pathlib.Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
PHOTO = SHARED / "data" / "photos" / "astronaut.png"
CASCADE = SHARED / "models" / "haarcascade_frontalface_default.xml"
CLI = ROOT / "target" / "release" / "ferkit"


def need(path: pathlib.Path, what: str) -> None:
    if not path.exists():
        message = f"SKIPPED: {path} is absent ({what})"
        if os.environ.get("FERKIT_REQUIRE_REFERENCES") == "1":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def fer() -> ferkit.FER:
    need(CASCADE, "the Haar cascade in ../shared/models")
    return ferkit.FER(cascade=str(CASCADE))


def test_the_same_face_and_emotion_as_the_cli(fer):
    need(PHOTO, "the shared photos")
    need(CLI, "build the CLI first: cargo build --release")
    with tempfile.TemporaryDirectory() as out:
        subprocess.run(
            [str(CLI), "predict", str(PHOTO), "--cascade", str(CASCADE), "--out", out],
            check=True,
            capture_output=True,
        )
        cli_faces = json.loads(pathlib.Path(out, "predictions.json").read_text())["photos"][0]["faces"]
    faces = fer.detect_emotions(str(PHOTO))
    full = fer.detect_faces([str(PHOTO)])[0]
    assert len(faces) == len(full) == len(cli_faces) >= 1
    for mine, exact, theirs in zip(faces, full, cli_faces):
        b = theirs["box"]
        assert mine["box"] == [b["x"], b["y"], b["width"], b["height"]] and exact["box"] == b
        assert exact["emotion"] == theirs["emotion"] == max(mine["emotions"], key=mine["emotions"].get)
        for name, p in theirs["probabilities"].items():
            assert exact["probabilities"][name] == pytest.approx(p, abs=1e-6)
            assert mine["emotions"][name] == round(exact["probabilities"][name], 2)


def test_fers_output_format(fer):
    need(PHOTO, "the shared photos")
    faces = fer.detect_emotions(str(PHOTO))
    assert isinstance(faces, list) and faces
    for face in faces:
        assert set(face) == {"box", "emotions"}
        assert isinstance(face["box"], list) and len(face["box"]) == 4
        assert all(type(v) is int for v in face["box"])
        assert list(face["emotions"]) == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
        assert all(type(v) is float for v in face["emotions"].values())
        assert sum(face["emotions"].values()) == pytest.approx(1.0, abs=0.04)  # rounded as fer rounds
    label, score = fer.top_emotion(str(PHOTO))
    assert label == max(faces[0]["emotions"], key=faces[0]["emotions"].get) and score == max(faces[0]["emotions"].values())


def test_paths_bytes_and_grey_bgr_rgb_arrays_agree(fer):
    need(PHOTO, "the shared photos")
    by_path = fer.detect_emotions(str(PHOTO))
    rgb = ferkit.read_image(PHOTO)
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    assert fer.detect_emotions(rgb, rgb=True) == by_path
    assert fer.detect_emotions(np.ascontiguousarray(rgb[:, :, ::-1])) == by_path  # BGR, as OpenCV
    assert fer.detect_emotions(PHOTO.read_bytes()) == by_path
    assert fer.detect_emotions(PHOTO) == by_path  # os.PathLike
    grey = ferkit.read_image(PHOTO, grey=True)
    assert grey.shape == rgb.shape[:2]
    # The net reads grey faces, so a grey array gives the colour photo's result.
    assert fer.detect_emotions(grey) == by_path


def test_a_batch_equals_one_by_one(fer):
    need(PHOTO, "the shared photos")
    photos = sorted((SHARED / "data" / "photos").glob("*.png"))[:4]
    batch = fer.detect_emotions_batch([str(p) for p in photos])
    assert batch == [fer.detect_emotions(str(p)) for p in photos]


def test_bad_inputs_raise_the_right_exception(fer, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.png"):
        fer.detect_emotions(str(tmp_path / "missing.png"))
    note = tmp_path / "note.png"
    note.write_text("not an image")
    with pytest.raises(ValueError, match="note.png"):
        fer.detect_emotions(str(note))
    with pytest.raises(ValueError, match="dtype float32"):
        fer.detect_emotions(np.zeros((60, 60, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="shape"):
        fer.detect_emotions(np.zeros((60, 60, 5), dtype=np.uint8))
    with pytest.raises(ValueError, match="image"):
        fer.detect_emotions(b"\x00\x01 not an image")
    with pytest.raises(ValueError, match="detector"):
        ferkit.FER(detector="dlib")
    with pytest.raises(FileNotFoundError):
        ferkit.FER(cascade=str(tmp_path / "none.xml"))


def test_analyze_video_reads_as_the_cli_and_raises_on_damage(fer, tmp_path):
    need(PHOTO, "the shared photos")
    need(CLI, "build the CLI first: cargo build --release")
    import shutil

    if shutil.which("ffmpeg") is None:
        message = "SKIPPED: ffmpeg is not on PATH (apt-get install ffmpeg)"
        if os.environ.get("FERKIT_REQUIRE_REFERENCES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    clip = tmp_path / "pair.mkv"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-loop", "1", "-i", str(PHOTO), "-t", "2", "-r", "10",
         "-filter_complex", "[0]scale=320:320,split[a][b];[b]hflip[m];[a][m]hstack",
         "-c:v", "libx264", "-g", "5", "-pix_fmt", "yuv420p", str(clip)],
        check=True,
    )
    report = fer.analyze_video(clip, tmp_path / "py", detect_every=2)
    assert (report["frames_read"], report["frames_sampled"], report["detections"]) == (20, 20, 10)
    assert [t["frames"] for t in report["tracks"]] == [20, 20]
    assert report["tracks"][0]["share"]["happy"] > 0.5
    subprocess.run(
        [str(CLI), "predict", str(clip), "--cascade", str(CASCADE), "--detect-every", "2", "--out", str(tmp_path / "cli")],
        check=True,
        capture_output=True,
    )
    assert (tmp_path / "py" / "frames.csv").read_text() == (tmp_path / "cli" / "frames.csv").read_text()
    # Cut in half: the error says where decoding stopped, and the report comes with it.
    cut = tmp_path / "cut.mkv"
    data = clip.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ferkit.VideoDamagedError, match="decoding stopped after") as caught:
        fer.analyze_video(cut, tmp_path / "cut")
    assert 0 < caught.value.report["frames_read"] < 20
    with pytest.raises(FileNotFoundError, match="none.mp4"):
        fer.analyze_video(tmp_path / "none.mp4", tmp_path / "x")
    with pytest.raises(ValueError, match="every"):
        fer.analyze_video(clip, tmp_path / "x", every=0)


def test_model_predict_proba():
    model = ferkit.Model.load()
    assert model.classes == ferkit.CLASS_NAMES and len(model.classes) == 7
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, size=(5, 48, 48), dtype=np.uint8)
    p = model.predict_proba(faces)
    assert p.dtype == np.float32 and p.shape == (5, 7)
    assert np.allclose(p.sum(axis=1), 1.0, atol=1e-5)
    # A batch equals its faces one at a time.
    one_by_one = np.concatenate([model.predict_proba(f) for f in faces])
    assert np.allclose(p, one_by_one, atol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        model.predict_proba(np.zeros((2, 32, 32), dtype=np.uint8))
    with pytest.raises(ValueError, match="dtype"):
        model.predict_proba(np.zeros((2, 48, 48), dtype=np.float64))
    # tta=None reads faces with the model's own views (the shipped model's TOML says "hflip");
    # tta="none" reads them plainly.
    own = ferkit.Model.load(tta="hflip").predict_proba(faces)
    plain = ferkit.Model.load(tta="none").predict_proba(faces)
    assert np.allclose(p, own, atol=1e-6) and not np.allclose(p, plain, atol=1e-4)


def test_load_fer2013_gives_numpy_splits(tmp_path):
    rows = ["emotion,pixels,Usage"]
    for usage, n in [("Training", 3), ("PublicTest", 2), ("PrivateTest", 1)]:
        for i in range(n):
            rows.append(f"{i % 7},{' '.join(str((i * 7 + k) % 256) for k in range(48 * 48))},{usage}")
    path = tmp_path / "tiny.csv"
    path.write_text("\n".join(rows) + "\n")
    data = ferkit.load_fer2013(path)
    assert {k: v[0].shape for k, v in data.items()} == {"train": (3, 48, 48), "val": (2, 48, 48), "test": (1, 48, 48)}
    x, y = data["train"]
    assert x.dtype == np.uint8 and y.dtype == np.int64 and list(y) == [0, 1, 2]
    assert x[1, 0, 1] == 8  # row 1, pixel 1: (1 * 7 + 1) % 256
    path.write_text("emotion,pixels,Usage\n9,1 2 3,Training\n")
    with pytest.raises(ValueError, match=r"tiny.csv line 2"):
        ferkit.load_fer2013(path)


def tiny_fer2013(path: pathlib.Path, per_split: int = 14) -> pathlib.Path:
    """A FER2013-shaped CSV whose classes a net can tell apart (a bright block per class)."""
    rng = np.random.default_rng(1)
    rows = ["emotion,pixels,Usage"]
    for usage in ["Training", "PublicTest", "PrivateTest"]:
        for i in range(per_split):
            label = i % 7
            face = rng.integers(40, 100, size=(48, 48))
            y, x = divmod(label, 3)
            face[y * 16 : y * 16 + 16, x * 16 : x * 16 + 16] += 120
            rows.append(f"{label},{' '.join(map(str, face.ravel()))},{usage}")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_train_writes_a_run_and_resume_finds_it_finished(tmp_path, capsys):
    data = tiny_fer2013(tmp_path / "tiny.csv")
    out = tmp_path / "run"
    history, run_dir = ferkit.train("fnn1", data, out, epochs=2, batch_size=16, seed=3)
    assert [h["epoch"] for h in history] == [1, 2]
    assert set(history[0]) == {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds"}
    assert pathlib.Path(run_dir) == out and (out / "metrics.json").exists()
    printed = capsys.readouterr().out
    assert "epoch   1" in printed and "epoch   2" in printed, printed
    again, _ = ferkit.resume(out)
    assert again == history
    with pytest.raises(ValueError, match="already holds a run"):
        ferkit.train("fnn1", data, out, epochs=1)
    with pytest.raises(ValueError, match="unknown option"):
        ferkit.train("fnn1", data, tmp_path / "other", epochs=1, learning_rat=0.1)
    with pytest.raises(ValueError, match="momentum"):
        ferkit.train("fnn1", data, tmp_path / "other", epochs=1, optimizer="adam", momentum=0.9)
    with pytest.raises(ValueError, match="ten-crop"):
        ferkit.train("fnn1", data, tmp_path / "other", epochs=1, tta="mirror")


def test_the_fast_training_preset_brings_its_recipe(tmp_path):
    data = tiny_fer2013(tmp_path / "tiny.csv")
    with pytest.raises(ValueError, match="--weights"):
        ferkit.train("fast", data, tmp_path / "none", epochs=1)
    with pytest.raises(ValueError, match="transfer nets"):
        ferkit.train("fnn1", data, tmp_path / "none", epochs=1, weights="w.pth")
    weights = SHARED / "models" / "efficientnet-lite0-57934424.pth"
    if not weights.exists():
        pytest.skip(f"{weights} is absent")
    out = tmp_path / "fast"
    history, _ = ferkit.train("fast", data, out, epochs=1, batch_size=16, weights=str(weights))
    assert len(history) == 1
    config = (out / "config.toml").read_text()
    # The preset's recipe, with the one option given changed.
    assert "epochs = 1\n" in config and "ema_decay = 0.998" in config and "label_smoothing = 0.1" in config, config
    assert "input_size = 64" in config and "frozen_blocks = 0" in config, config
    assert "learning_rate = 0.001\n" in config and 'kind = "cosine"' in config, config
    assert 'tta = "hflip"' in config, config
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["val"]["tta"] == "hflip" and "tta" not in metrics["train"], metrics["train"]


def test_ctrl_c_stops_training_between_steps_and_resume_goes_on(tmp_path, monkeypatch):
    import _thread
    import builtins

    data = tiny_fer2013(tmp_path / "tiny.csv", per_split=70)
    out = tmp_path / "run"
    real_print = builtins.print

    def print_then_interrupt(*args, **kwargs):
        real_print(*args, **kwargs)
        if args and str(args[0]).startswith("epoch   1"):
            _thread.interrupt_main()  # as Ctrl-C: a pending KeyboardInterrupt

    # Python's own Ctrl-C handler, whatever an earlier test or the test runner's parent set
    # (a SIGINT ignored at start-up stays ignored, and interrupt_main then does nothing).
    import signal

    monkeypatch.setattr(builtins, "print", print_then_interrupt)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt, match="interrupted at epoch 2"):
            ferkit.train("fnn1", data, out, epochs=3, batch_size=16, seed=5)
    finally:
        signal.signal(signal.SIGINT, previous)
    monkeypatch.setattr(builtins, "print", real_print)
    assert not (out / "metrics.json").exists()
    assert len((out / "history.csv").read_text().splitlines()) == 2  # header + epoch 1
    history, _ = ferkit.resume(out)
    assert [h["epoch"] for h in history] == [1, 2, 3] and (out / "metrics.json").exists()


def test_a_real_sigint_stops_training(tmp_path):
    import signal
    import sys

    data = tiny_fer2013(tmp_path / "tiny.csv", per_split=70)
    out = tmp_path / "run"
    # The child starts with Python's Ctrl-C handler even when this process ignores SIGINT (a
    # child inherits an ignored signal, and Python then leaves it ignored).
    code = (
        "import ferkit, signal, sys\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "try:\n"
        f"    ferkit.train('fnn1', {str(data)!r}, {str(out)!r}, epochs=500, batch_size=16)\n"
        "except KeyboardInterrupt as e:\n"
        "    print('INTERRUPTED', e, flush=True); sys.exit(3)\n"
    )
    child = subprocess.Popen([sys.executable, "-u", "-c", code], stdout=subprocess.PIPE, text=True)
    for line in child.stdout:
        if line.startswith("epoch   2"):
            child.send_signal(signal.SIGINT)
            break
    rest = child.stdout.read()
    assert child.wait(timeout=60) == 3, rest
    assert "INTERRUPTED training interrupted at epoch" in rest
    assert not (out / "metrics.json").exists() and (out / "checkpoint").is_dir()
