//! The command line end to end on tiny synthetic data: every subcommand, the run directory,
//! reproducibility and the data sources.

mod common;
use common::*;

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn summary_prints_the_notebooks_parameter_counts() {
    for (name, total) in [
        ("fnn1", "305,607"),
        ("fnn2", "606,983"),
        ("fnn3", "1,213,447"),
        ("cnn1", "19,798,723"),
        ("cnn2", "2,000,399"),
        ("cnn3", "615,159"),
    ] {
        let out = ferkit(&["summary", name]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stdout(&out).contains(&format!("Total params: {total}")), "{name}: {}", stdout(&out));
    }
    let out = ferkit(&["summary", "nonsense"]);
    assert!(!out.status.success());
}

#[test]
fn stats_and_grid_on_all_three_source_kinds() {
    let dir = tempfile::tempdir().unwrap();
    let text = synthetic_csv(14);
    let plain = write(&dir.path().join("fer.csv"), &text);
    let gz = write_gz(&dir.path().join("fer.csv.gz"), &text);
    for path in [&plain, &gz] {
        let out = ferkit(&["data", "stats", "--data", path.to_str().unwrap(), "--json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(json["train"]["total"], 14);
        assert_eq!(json["val"]["angry"], 2);
        assert_eq!(json["test"]["neutral"], 2);
    }

    // One file per split, as the notebook had (no Usage column).
    let per_split = |rows: usize, seed: usize| {
        let mut s = String::from("emotion,pixels\n");
        for i in 0..rows {
            s += &format!("{},{}\n", i % 7, pixels_text(&synthetic_face(i % 7, seed + i)));
        }
        s
    };
    let train = write(&dir.path().join("train.csv"), per_split(21, 0));
    let val = write(&dir.path().join("val.csv"), per_split(7, 100));
    let out = ferkit(&["data", "stats", "--train", train.to_str().unwrap(), "--val", val.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    assert!(table.lines().any(|l| l.starts_with("train") && l.trim_end().ends_with("21")), "{table}");
    assert!(table.lines().any(|l| l.starts_with("test") && l.trim_end().ends_with(" 0")), "{table}");

    // Image folders, any size, converted to 48x48 grey.
    let root = dir.path().join("faces");
    for (split, class, size) in
        [("train", "happy", 48), ("train", "sad", 96), ("val", "fear", 30), ("test", "angry", 64)]
    {
        let folder = root.join(split).join(class);
        std::fs::create_dir_all(&folder).unwrap();
        image::RgbImage::from_pixel(size, size, image::Rgb([200, 100, 50])).save(folder.join("a.png")).unwrap();
    }
    let out = ferkit(&["data", "stats", "--data", root.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!((json["train"]["happy"].as_u64(), json["train"]["sad"].as_u64()), (Some(1), Some(1)));
    assert_eq!(json["val"]["fear"], 1);

    let grid = dir.path().join("grid.png");
    let out =
        ferkit(&["data", "grid", "--data", gz.to_str().unwrap(), "--out", grid.to_str().unwrap(), "--per-class", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let img = image::open(&grid).unwrap();
    assert_eq!((img.width(), img.height()), (7 * (144 + 10) + 10, 2 * (144 + 10 + 26) + 10));
    // Row 0, column c: the first training face of class c (row c of the file), each pixel drawn
    // 3x3 below a 26-pixel label; the centre of each drawn pixel holds the face's grey level.
    let rgb = img.to_rgb8();
    for class in [0usize, 3, 6] {
        let face = synthetic_face(class, class);
        let (x0, y0) = (10 + class * (144 + 10), 5 + 26);
        for (p, &grey) in face.iter().enumerate() {
            let (x, y) = (x0 + (p % 48) * 3 + 1, y0 + (p / 48) * 3 + 1);
            assert_eq!(rgb.get_pixel(x as u32, y as u32).0, [grey; 3], "class {class}, pixel {p}");
        }
    }
}

#[test]
fn train_eval_and_reproducibility() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_gz(&dir.path().join("fer.csv.gz"), &synthetic_csv(70));
    let data = data.to_str().unwrap();
    let run = |name: &str, seed: &str| {
        let out_dir = dir.path().join(name);
        let out = ferkit(&[
            "train",
            "cnn3",
            "--data",
            data,
            "--epochs",
            "2",
            "--batch",
            "16",
            "--seed",
            seed,
            "--out",
            out_dir.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        out_dir
    };
    let a = run("a", "7");
    // The run directory's files are whole and readable, not just present.
    let run_dir = ferkit::run::RunDir::open(&a).unwrap();
    let config = run_dir.load_config().unwrap();
    run_dir.load_model(&config, &burn::prelude::Device::flex()).unwrap();
    assert_eq!(ferkit::run::history::read_csv(&a.join("history.csv")).unwrap().len(), 2);
    assert_eq!(ferkit::run::RunMetrics::read(&run_dir).unwrap().epochs, 2);
    let curves = image::open(a.join("curves.png")).unwrap();
    assert!(curves.width() >= 400 && curves.height() >= 200, "{}x{}", curves.width(), curves.height());
    assert!(read(&a.join("summary.txt")).contains("Total params"), "{}", read(&a.join("summary.txt")));
    let history = read(&a.join("history.csv"));
    assert_eq!(history.lines().count(), 3, "{history}");
    let metrics: serde_json::Value = serde_json::from_str(&read(&a.join("metrics.json"))).unwrap();
    assert_eq!(metrics["trainable_params"], 615_159);
    assert!(metrics["test"]["accuracy"].is_number());
    assert!(read(&a.join("summary.txt")).contains("Total params: 615,159"));

    // Same seed, same data: the same history, figure for figure (timings aside).
    let b = run("b", "7");
    let strip = |h: String| h.lines().map(|l| l.rsplit_once(',').unwrap().0.to_string()).collect::<Vec<_>>();
    assert_eq!(strip(history.clone()), strip(read(&b.join("history.csv"))));
    // Another seed: another history.
    let c = run("c", "8");
    assert_ne!(strip(history), strip(read(&c.join("history.csv"))));

    // A finished run is not overwritten by accident.
    let out = ferkit(&["train", "cnn3", "--data", data, "--epochs", "1", "--out", a.to_str().unwrap()]);
    assert!(!out.status.success() && stderr(&out).contains("already holds a run"), "{}", stderr(&out));

    // Evaluation of the kept checkpoint agrees with what training reported.
    let out = ferkit(&["eval", a.to_str().unwrap(), "--split", "val"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let eval: serde_json::Value = serde_json::from_str(&read(&a.join("eval_val.json"))).unwrap();
    assert_eq!(eval["accuracy"], metrics["val"]["accuracy"]);
    assert_eq!(eval["rows"], 70);
    assert!(image::open(a.join("confusion_val.png")).unwrap().width() >= 200);
    // With the mirror image averaged in: its own files, the plain ones left as they were.
    let out = ferkit(&["eval", a.to_str().unwrap(), "--split", "val", "--tta", "hflip"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let tta: serde_json::Value = serde_json::from_str(&read(&a.join("eval_val_tta-hflip.json"))).unwrap();
    assert_eq!((tta["tta"].as_str(), tta["split"].as_str(), &tta["rows"]), (Some("hflip"), Some("val"), &eval["rows"]));
    assert!(image::open(a.join("confusion_val_tta-hflip.png")).unwrap().width() >= 200);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&read(&a.join("eval_val.json"))).unwrap(), eval);
    // A model file exported with `--tta hflip` is read with the mirror unless told otherwise.
    let file = dir.path().join("mirrored.bpk");
    let out = ferkit(&["export", a.to_str().unwrap(), "--tta", "hflip", "--out", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(read(&file.with_extension("toml")).contains("tta = \"hflip\""));
    for (flag, name, expected) in [(None, "eval_val_tta-hflip.json", &tta), (Some("none"), "eval_val.json", &eval)] {
        let evals = dir.path().join(format!("file-eval-{}", flag.unwrap_or("default")));
        let mut args = vec!["eval", "--model", file.to_str().unwrap(), "--data", data, "--split", "val"];
        args.extend(["--out", evals.to_str().unwrap()]);
        args.extend(flag.map(|f| ["--tta", f]).iter().flatten());
        let out = ferkit(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        let got: serde_json::Value = serde_json::from_str(&read(&evals.join(name))).unwrap();
        assert_eq!((&got["accuracy"], &got["tta"]), (&expected["accuracy"], &expected["tta"]), "{name}");
    }
    let out = ferkit(&["eval", dir.path().to_str().unwrap()]);
    assert!(!out.status.success() && stderr(&out).contains("not a ferkit run directory"));
}

#[test]
fn a_net_from_a_toml_file_trains() {
    let dir = tempfile::tempdir().unwrap();
    let net = write(
        &dir.path().join("tiny.toml"),
        "name = \"tiny\"\ninput = [48, 48, 1]\nlearning_rate = 0.01\n\
         [[layers]]\nkind = \"conv2d\"\nfilters = 4\nkernel = 3\nstride = 2\npadding = \"valid\"\nactivation = \"tanh\"\n\
         [[layers]]\nkind = \"batchnorm\"\n\
         [[layers]]\nkind = \"maxpool\"\npool = 3\nstride = 2\n\
         [[layers]]\nkind = \"flatten\"\n\
         [[layers]]\nkind = \"dense\"\nunits = 7\nl2 = 0.001\n",
    );
    let out = ferkit(&["summary", net.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    // conv 3*3*1*4+4 = 40; BN 16 (8 non-trainable); 23x23 -> pool 3/2 valid -> 11x11x4 = 484 -> 7: 3395.
    assert!(stdout(&out).contains("Total params: 3,451"), "{}", stdout(&out));
    assert!(stdout(&out).contains("Non-trainable params: 8"), "{}", stdout(&out));
    let data = write(&dir.path().join("fer.csv"), synthetic_csv(35));
    let run_dir = dir.path().join("run");
    let out = ferkit(&[
        "train",
        net.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--epochs",
        "3",
        "--batch",
        "8",
        "--out",
        run_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn augmentation_is_seeded_and_init_from_continues_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = write(&dir.path().join("fer.csv"), synthetic_csv(35));
    let data = data.to_str().unwrap();
    let train = |name: &str, extra: &[&str]| {
        let out_dir = dir.path().join(name);
        let mut args =
            vec!["train", "cnn3", "--data", data, "--epochs", "2", "--batch", "8", "--out", out_dir.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = ferkit(&args);
        (out.status.success(), stderr(&out), out_dir)
    };
    let recipe = ["--augment", "rotation=20,shear=20,zoom=0.1,hflip,fill=nearest"];
    let (ok, err, a) = train("aug_a", &recipe);
    assert!(ok, "{err}");
    let (ok, err, b) = train("aug_b", &recipe);
    assert!(ok, "{err}");
    let (ok, err, plain) = train("plain", &[]);
    assert!(ok, "{err}");
    let strip = |p: &std::path::Path| -> Vec<String> {
        read(&p.join("history.csv")).lines().map(|l| l.rsplit_once(',').unwrap().0.to_string()).collect()
    };
    assert_eq!(strip(&a), strip(&b), "same seed and recipe, same history");
    assert_ne!(strip(&a), strip(&plain), "augmentation changes training");
    assert!(read(&a.join("config.toml")).contains("[augment]"), "the recipe is recorded");

    let (ok, err, _) = train("bad_recipe", &["--augment", "rotate=20"]);
    assert!(!ok && err.contains("unknown `rotate`"), "{err}");

    // A cosine learning-rate schedule: recorded, and it changes training.
    let (ok, err, cosine) = train("cosine", &["--schedule", "cosine", "--warmup-epochs", "1"]);
    assert!(ok, "{err}");
    assert!(read(&cosine.join("config.toml")).contains("kind = \"cosine\"\nwarmup_epochs = 1"));
    assert_ne!(strip(&cosine), strip(&plain), "the schedule changes training");
    let (ok, err, _) = train("bad_schedule", &["--schedule", "step"]);
    assert!(!ok && err.contains("unknown schedule `step`") && err.contains("hint: set with --schedule"), "{err}");

    // Continue the plain run: it starts from trained weights. The wrong net is refused.
    let (ok, err, _) = train("continued", &["--init-from", plain.to_str().unwrap()]);
    assert!(ok, "{err}");
    let out = ferkit(&[
        "train",
        "fnn1",
        "--data",
        data,
        "--epochs",
        "1",
        "--init-from",
        plain.to_str().unwrap(),
        "--out",
        dir.path().join("wrong").to_str().unwrap(),
    ]);
    assert!(!out.status.success() && stderr(&out).contains("do not fit this net"), "{}", stderr(&out));

    let png = dir.path().join("aug.png");
    let out = ferkit(&["data", "augment-grid", "--data", data, "--out", png.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let img = image::open(&png).unwrap();
    assert_eq!(img.width(), 5 * (144 + 10) + 10);
}

/// Issue 22: training learns (on faces built to be separable, without ../shared), the kept
/// checkpoint is the best epoch's and not the last one's, and `--init-from` starts from the
/// run's weights rather than afresh.
#[test]
fn training_learns_keeps_the_best_epoch_and_init_from_continues() {
    let dir = tempfile::tempdir().unwrap();
    let data = write(&dir.path().join("fer.csv"), synthetic_csv(70));
    let data = data.to_str().unwrap();
    let train = |name: &str, extra: &[&str]| -> std::path::PathBuf {
        let out_dir = dir.path().join(name);
        let mut args =
            vec!["train", "cnn3", "--data", data, "--batch", "16", "--seed", "7", "--out", out_dir.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = ferkit(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        out_dir
    };
    let state = |run: &std::path::Path| -> serde_json::Value {
        serde_json::from_str(&read(&run.join("checkpoint/state.json"))).unwrap()
    };
    let metrics = |run: &std::path::Path| -> serde_json::Value {
        serde_json::from_str(&read(&run.join("metrics.json"))).unwrap()
    };
    // Measured (seed 7): validation accuracy 0.81, 1.00, 1.00; training loss 2.10, 1.49, 0.83.
    let run = train("run", &["--epochs", "3", "--monitor", "val_accuracy"]);
    let history = state(&run)["history"].as_array().unwrap().clone();
    let field = |e: usize, key: &str| history[e][key].as_f64().unwrap();
    assert!(field(2, "val_accuracy") >= 0.95, "the net did not learn: {history:?}");
    assert!(
        field(1, "train_loss") < field(0, "train_loss") && field(2, "train_loss") < field(1, "train_loss"),
        "{history:?}"
    );
    // Epochs 2 and 3 tie on accuracy; the first of the best is kept, and the kept weights are
    // that epoch's: their validation loss is history's at epoch 2, not at epoch 3.
    let m = metrics(&run);
    assert_eq!(m["best_epoch"], 2);
    let kept_loss = m["val"]["loss"].as_f64().unwrap();
    assert!((kept_loss - field(1, "val_loss")).abs() < 1e-5, "kept {kept_loss}, history {history:?}");
    assert!((kept_loss - field(2, "val_loss")).abs() > 1e-3, "the last epoch's weights were kept: {history:?}");

    // --config: the saved config.toml trains the same run again, figure for figure.
    let again = dir.path().join("again");
    let out =
        ferkit(&["train", "--config", run.join("config.toml").to_str().unwrap(), "--out", again.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        state(&again)["history"].as_array().unwrap().iter().map(|r| r["val_loss"].clone()).collect::<Vec<_>>(),
        history.iter().map(|r| r["val_loss"].clone()).collect::<Vec<_>>()
    );
    let mixed = ferkit(&["train", "--config", run.join("config.toml").to_str().unwrap(), "--epochs", "9"]);
    assert!(!mixed.status.success() && stderr(&mixed).contains("cannot be used with"), "{}", stderr(&mixed));

    // --init-from: the first epoch starts where the run ended, far below a fresh first epoch.
    let continued = train("continued", &["--epochs", "1", "--init-from", run.to_str().unwrap()]);
    let fresh_first = field(0, "val_loss");
    let continued_first = state(&continued)["history"][0]["val_loss"].as_f64().unwrap();
    assert!(continued_first < fresh_first / 2.0, "continued {continued_first}, fresh {fresh_first}");
    // ... and near the kept checkpoint it starts from (one more epoch from there, not a restart).
    assert!(continued_first < 1.5 * kept_loss, "continued {continued_first}, kept {kept_loss}");
}

/// A seed fixes a run whatever the thread count (the kernels sum in a fixed order per channel
/// and per sample): two epochs on one thread and on three give the same kept weights, bit for
/// bit, and the same figures.
#[test]
fn a_seed_gives_the_same_run_on_one_thread_and_on_three() {
    let dir = tempfile::tempdir().unwrap();
    let data = write(&dir.path().join("fer.csv"), synthetic_csv(30));
    let run = |threads: &str| -> (Vec<f32>, serde_json::Value) {
        let out = dir.path().join(format!("threads{threads}"));
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_ferkit"))
            .current_dir(repo_root())
            .env("RAYON_NUM_THREADS", threads)
            .args(["train", "cnn3", "--data", data.to_str().unwrap(), "--epochs", "2", "--batch", "16", "--seed", "5"])
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let mut metrics: serde_json::Value = serde_json::from_str(&read(&out.join("metrics.json"))).unwrap();
        metrics["train_seconds"] = serde_json::Value::Null;
        (kept_weights(&out), metrics)
    };
    let (one, three) = (run("1"), run("3"));
    assert!(one.0.len() > 100_000, "{} weights read", one.0.len());
    assert!(one.0 == three.0, "the kept weights differ between 1 and 3 threads");
    assert_eq!(one.1, three.1);
}

/// Every float of a run's kept net, in the module tree's order (model.bpk's bytes also hold
/// parameter ids, which are drawn anew in each process).
fn kept_weights(run: &std::path::Path) -> Vec<f32> {
    use burn::module::{Module, ModuleVisitor, Param};
    use burn::prelude::*;
    struct Values(Vec<f32>);
    impl ModuleVisitor for Values {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.extend(param.val().into_data().convert::<f32>().try_to_vec::<f32>().unwrap());
        }
    }
    let run = ferkit::run::RunDir::open(run).unwrap();
    let config = run.load_config().unwrap();
    let model = run.load_model(&config, &Device::flex()).unwrap();
    let mut values = Values(Vec::new());
    model.visit(&mut values);
    values.0
}

/// Issue 13's `fast` training preset: `ferkit train fast` trains the preset's net with the
/// preset's recipe (saved in config.toml), a flag changes one option of it, and without the
/// ImageNet weights it fails before making a run directory, saying which file to give.
#[test]
fn the_fast_training_preset_trains_its_net_with_its_recipe_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_gz(&dir.path().join("fer.csv.gz"), &synthetic_csv(20));
    let data = data.to_str().unwrap();
    let missing = dir.path().join("no-weights");
    let out = ferkit(&["train", "fast", "--data", data, "--out", missing.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--weights") && stderr(&out).contains("efficientnet-lite0"), "{}", stderr(&out));
    assert!(!missing.exists(), "a failed start made {}", missing.display());
    let Some(weights) = shared("models/efficientnet-lite0-57934424.pth") else {
        common::skip("../shared/models/efficientnet-lite0-57934424.pth is absent");
        return;
    };
    let run = dir.path().join("fast");
    let out = ferkit(&[
        "train",
        "fast",
        "--data",
        data,
        "--weights",
        weights.to_str().unwrap(),
        "--epochs",
        "1",
        "--batch",
        "16",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let config = ferkit::run::RunDir::open(&run).unwrap().load_config().unwrap();
    // The flags given replaced their options ...
    assert_eq!((config.epochs, config.batch_size), (1, 16));
    // ... and the rest is the preset's recipe and net.
    let preset = ferkit::training::training_preset("fast").unwrap().recipe();
    assert_eq!(config.learning_rate, 1e-3, "the preset's rate, not the net's own (0.005)");
    assert_eq!(config.schedule, ferkit::training::LrSchedule::Cosine { warmup_epochs: 1 });
    assert_eq!(config.ema_decay, preset.ema);
    assert_eq!(config.label_smoothing, preset.label_smoothing);
    assert_eq!(config.monitor, preset.monitor);
    assert_eq!(config.optimizer, ferkit::training::OptimizerKind::parse("adamw", None, preset.weight_decay).unwrap());
    assert_eq!(
        config.augment,
        Some(ferkit::data::augment::AugmentConfig::parse(preset.augment.as_deref().unwrap()).unwrap())
    );
    let ferkit::models::ModelSpec::Transfer(spec) = &config.model else { panic!("{:?}", config.model) };
    assert_eq!((spec.frozen_blocks, spec.input_size), (0, 64));
    assert!(run.join("metrics.json").exists());
}

/// `--tta hflip`: the run's final evaluation of validation and test averages each face with its
/// mirror (metrics.json says so per split, and equals `ferkit eval --tta hflip` on the kept
/// checkpoint), the training split stays plain, and config.toml keeps the choice for a reader
/// and `--resume`.
#[test]
fn a_run_evaluates_validation_and_test_with_its_test_time_augmentation() {
    let dir = tempfile::tempdir().unwrap();
    let data = write(&dir.path().join("fer.csv"), synthetic_csv(35));
    let run = dir.path().join("run");
    let out = ferkit(&[
        "train",
        "cnn3",
        "--data",
        data.to_str().unwrap(),
        "--epochs",
        "1",
        "--batch",
        "8",
        "--tta",
        "hflip",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("(val and test with mirror TTA)"), "{}", stdout(&out));
    assert!(std::fs::read_to_string(run.join("config.toml")).unwrap().contains("tta = \"hflip\"\n"));
    let read = |path: std::path::PathBuf| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let metrics = read(run.join("metrics.json"));
    assert_eq!((&metrics["val"]["tta"], &metrics["test"]["tta"]), (&"hflip".into(), &"hflip".into()));
    assert!(metrics["train"].get("tta").is_none(), "the training split is evaluated plainly: {}", metrics["train"]);
    for (tta, file) in [("hflip", "eval_val_tta-hflip.json"), ("none", "eval_val.json")] {
        let evals = dir.path().join(format!("eval-{tta}"));
        let out =
            ferkit(&["eval", run.to_str().unwrap(), "--split", "val", "--tta", tta, "--out", evals.to_str().unwrap()]);
        assert!(out.status.success(), "{}", stderr(&out));
        let eval = read(evals.join(file));
        let same = (eval["loss"].as_f64().unwrap() - metrics["val"]["loss"].as_f64().unwrap()).abs() < 1e-6;
        // The mirrored evaluation is the run's; the plain one is another figure.
        assert_eq!(same, tta == "hflip", "{tta}: {} against the run's {}", eval["loss"], metrics["val"]["loss"]);
    }
}

/// `--teacher`: a student learns from a trained run's probabilities as well as its labels
/// (knowledge distillation): the run's config.toml records the teacher, the teacher term moves the
/// training loss against the same run without it, and bad settings are refused before any run
/// directory is made, naming the flag.
#[test]
fn a_student_trains_from_a_teachers_probabilities() {
    let dir = tempfile::tempdir().unwrap();
    let data = write(&dir.path().join("fer.csv"), synthetic_csv(35));
    let train = |out: &std::path::Path, extra: &[&str]| {
        let args = [
            &["train", "cnn3", "--data", data.to_str().unwrap(), "--epochs", "1", "--batch", "8", "--seed", "3"][..],
            extra,
            &["--out", out.to_str().unwrap()],
        ]
        .concat();
        ferkit(&args)
    };
    let teacher = dir.path().join("teacher");
    let out = train(&teacher, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let student = dir.path().join("student");
    let out = train(
        &student,
        &["--teacher", teacher.to_str().unwrap(), "--distill-weight", "0.7", "--distill-temperature", "2"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(said.contains("distillation: teacher") && said.contains("training faces"), "{said}");
    let config = read(&student.join("config.toml"));
    assert!(config.contains("[distill]") && config.contains("weight = 0.7") && config.contains("temperature = 2.0"), "{config}");
    // The same run without the teacher: same seed and data, so only the teacher term differs.
    let alone = dir.path().join("alone");
    assert!(train(&alone, &[]).status.success());
    let loss = |run: &std::path::Path| read(&run.join("history.csv")).lines().nth(1).unwrap().split(',').nth(1).unwrap().to_string();
    assert_ne!(loss(&student), loss(&alone), "the teacher term must change the training loss");
    assert_eq!(loss(&alone), loss(&teacher), "the runs without a teacher are the same run");
    for (extra, flag) in [
        (vec!["--teacher", teacher.to_str().unwrap(), "--distill-weight", "1.5"], "--distill-weight"),
        (vec!["--distill-weight", "0.5"], "--teacher"),
        (vec!["--teacher", "no/such/run"], "no/such/run"),
    ] {
        let refused = dir.path().join("refused");
        let out = train(&refused, &extra);
        assert!(!out.status.success(), "{extra:?} was accepted");
        assert!(stderr(&out).contains(flag), "{extra:?}: {}", stderr(&out));
        assert!(!refused.exists(), "{extra:?}: a refused run must not leave a run directory");
    }
}

/// `--time-budget`: a budget that one epoch already uses up cuts the run to that epoch, says so,
/// and records it where a reader and `--resume` look (config.toml, metrics.json, history.csv);
/// the run still ends with its kept checkpoint evaluated. A budget out of range is refused.
#[test]
fn a_time_budget_cuts_the_epochs_to_what_fits() {
    let dir = tempfile::tempdir().unwrap();
    let data = write(&dir.path().join("fer.csv"), synthetic_csv(35));
    let run = dir.path().join("run");
    let args = ["train", "cnn3", "--data", data.to_str().unwrap(), "--epochs", "5", "--batch", "8"];
    let out = ferkit(&[&args[..], &["--time-budget", "0.001", "--out", run.to_str().unwrap()]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("time budget: 1 of the 5 epochs fit"), "{}", stderr(&out));
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(config.contains("epochs = 1\n") && config.contains("time_budget_minutes = 0.001"), "{config}");
    let history = std::fs::read_to_string(run.join("history.csv")).unwrap();
    assert_eq!(history.lines().count(), 2, "{history}");
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["epochs"], 1);

    let out = ferkit(&[&args[..], &["--time-budget", "0", "--out", dir.path().join("bad").to_str().unwrap()]].concat());
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("time_budget_minutes must be a positive number")
            && stderr(&out).contains("--time-budget"),
        "{}",
        stderr(&out)
    );
}

/// `bench --infer-batches` times inference as prediction runs it, with the test-time
/// augmentation asked for, and says which in its JSON.
#[test]
fn bench_times_inference_with_test_time_augmentation() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let args = ["bench", "--models", "cnn3:4", "--steps", "1", "--repeats", "1", "--infer-batches", "3"];
    let out = ferkit(&[&args[..], &["--tta", "hflip", "--json", json.to_str().unwrap()]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("(mirror TTA)"), "{}", stdout(&out));
    let report: serde_json::Value = serde_json::from_str(&read(&json)).unwrap();
    let timing = &report["models"][0]["infer_batches"][0];
    assert_eq!((timing["batch"].as_u64(), timing["tta"].as_str()), (Some(3), Some("hflip")), "{report}");
    assert!(timing["infer_images_per_s"].as_f64().is_some_and(|rate| rate > 0.0), "{report}");
    let out = ferkit(&[&args[..], &["--tta", "sideways"]].concat());
    assert!(!out.status.success() && stderr(&out).contains("sideways"), "{}", stderr(&out));
    // Without inference timings there is nothing for the views to change: said, not ignored.
    let out = ferkit(&["bench", "--models", "cnn3:4", "--tta", "hflip"]);
    assert!(!out.status.success() && stderr(&out).contains("--infer-batches"), "{}", stderr(&out));
}
