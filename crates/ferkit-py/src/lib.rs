//! `ferkit._native`: the Python front's native half (PyO3, numpy). It calls the library's one
//! prediction pipeline and its data and training functions, with the GIL released while they
//! compute; `python/ferkit/__init__.py` gives it `fer`'s API. Errors become Python exceptions by
//! their kind (see [`to_py_err`]); a Rust panic becomes a `RuntimeError`, never an abort.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Mutex;

use numpy::{IntoPyArray, PyArray2, PyReadonlyArray3, PyUntypedArrayMethods};
use pyo3::exceptions::{
    PyFileNotFoundError, PyKeyboardInterrupt, PyNotImplementedError, PyOSError, PyRuntimeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};

use ferkit::data::{CLASS_NAMES, DataSource, IMAGE_SIDE, LoadOptions, NUM_CLASSES, SplitName};
use ferkit::detection::DetectOptions;
use ferkit::detection::locate;
use ferkit::detection::mtcnn::MtcnnOptions;
use ferkit::error::{Error, ErrorKind};
use ferkit::evaluation::Tta;
use ferkit::events::Events;
use ferkit::prediction::{CascadeDetector, EmotionClassifier, FaceDetector, Frame, MtcnnDetector};
use ferkit::run::RunDir;
use ferkit::run::history::{EpochRecord, read_csv};
use ferkit::trained::ModelSource;
use ferkit::training::{Monitor, Recipe};
use ferkit::util::choice::Choice;
use ferkit::video::{Sampling, VideoOptions, analyze_video};

/// A library error as the Python exception a user expects: a missing file as
/// `FileNotFoundError`, other I/O as `OSError`, bad input, weights, models and settings as
/// `ValueError`, what this build does not do as `NotImplementedError`, the rest as
/// `RuntimeError`; the message is the CLI's (the whole chain).
fn to_py_err(e: Error) -> PyErr {
    let message = format!("{e:#}");
    match e.kind() {
        ErrorKind::Io
            if e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound) =>
        {
            PyFileNotFoundError::new_err(message)
        }
        ErrorKind::Io => PyOSError::new_err(message),
        ErrorKind::BadInput | ErrorKind::Weights | ErrorKind::Model | ErrorKind::Config => {
            PyValueError::new_err(message)
        }
        ErrorKind::Unsupported => PyNotImplementedError::new_err(message),
        ErrorKind::Interrupted => PyKeyboardInterrupt::new_err(message),
        _ => PyRuntimeError::new_err(message),
    }
}

/// Runs `work` without the GIL, turning a library error into its exception and a panic into a
/// `RuntimeError`.
fn compute<T: Send>(py: Python<'_>, work: impl FnOnce() -> ferkit::Result<T> + Send) -> PyResult<T> {
    py.detach(|| catch_unwind(AssertUnwindSafe(work)))
        .map_err(|panic| {
            let what = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("a panic");
            PyRuntimeError::new_err(format!("ferkit failed inside ({what}); please report it"))
        })?
        .map_err(to_py_err)
}

/// The trained net: `None` for the model shipped inside ferkit, else a run directory or a
/// `NAME.bpk` model file.
fn model_source(model: Option<PathBuf>) -> ferkit::Result<ModelSource> {
    ModelSource::from_arg(model.as_deref())
}

/// `tta=` as Python gives it; `None` (not given): the model's own default (its file's `tta`).
fn tta(name: Option<&str>) -> PyResult<Option<Tta>> {
    match name {
        None => Ok(None),
        Some(n) => Tta::from_name(n).map(Some).ok_or_else(|| {
            let known: Vec<&str> = Tta::CHOICES.iter().map(|(n, ..)| *n).collect();
            PyValueError::new_err(format!("tta={n:?}: not one of {}", known.join(", ")))
        }),
    }
}

/// One image as Python gives it: a path (str or os.PathLike), encoded bytes, or an RGB `uint8`
/// array of shape (H, W, 3).
enum ImageInput {
    Path(PathBuf),
    Encoded(Vec<u8>),
    Rgb { width: u32, height: u32, pixels: Vec<u8> },
}

impl ImageInput {
    fn extract(item: &Bound<'_, PyAny>, index: usize) -> PyResult<Self> {
        if let Ok(bytes) = item.cast::<PyBytes>() {
            return Ok(ImageInput::Encoded(bytes.as_bytes().to_vec()));
        }
        if item.is_instance_of::<PyString>() || item.hasattr("__fspath__")? {
            return Ok(ImageInput::Path(item.extract()?));
        }
        if let Ok(array) = item.extract::<PyReadonlyArray3<u8>>() {
            let shape = array.shape();
            if shape[2] != 3 {
                return Err(PyValueError::new_err(format!(
                    "image {index}: an array of shape {shape:?}; expected (H, W, 3) RGB or (H, W) grey uint8"
                )));
            }
            let pixels =
                array.as_slice().map(<[u8]>::to_vec).unwrap_or_else(|_| array.as_array().iter().copied().collect());
            return Ok(ImageInput::Rgb { width: shape[1] as u32, height: shape[0] as u32, pixels });
        }
        let type_name = item.get_type().name()?.to_string();
        Err(PyValueError::new_err(format!(
            "image {index}: a {type_name}; expected a path, bytes, or a uint8 numpy array (H, W) or (H, W, 3)"
        )))
    }

    fn frame(self, index: usize) -> ferkit::Result<Frame> {
        match self {
            ImageInput::Path(path) => Frame::open(&path),
            ImageInput::Encoded(bytes) => Frame::decode(&bytes, &format!("image {index} (bytes)")),
            ImageInput::Rgb { width, height, pixels } => Frame::from_rgb(width, height, pixels),
        }
    }
}

/// The prediction pipeline with a detector: what `ferkit.FER` wraps.
#[pyclass(frozen)]
struct Pipeline {
    inner: Mutex<(EmotionClassifier, Box<dyn FaceDetector>)>,
    #[pyo3(get)]
    model_name: String,
}

#[pymethods]
impl Pipeline {
    #[new]
    #[pyo3(signature = (model=None, detector="haar", min_face_size=48, scale_factor=1.1, min_neighbors=5, cascade=None, mtcnn_dir=None, tta=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        model: Option<PathBuf>,
        detector: &str,
        min_face_size: usize,
        scale_factor: f64,
        min_neighbors: usize,
        cascade: Option<PathBuf>,
        mtcnn_dir: Option<PathBuf>,
        tta: Option<&str>,
    ) -> PyResult<Self> {
        let tta = self::tta(tta)?;
        if !(1.01..=4.0).contains(&scale_factor) {
            return Err(PyValueError::new_err(format!("scale_factor={scale_factor}: must be in [1.01, 4]")));
        }
        let detector = detector.to_string();
        let (classifier, detector) = compute(py, move || {
            let mut classifier = EmotionClassifier::load(&model_source(model)?)?;
            classifier.tta = tta.unwrap_or(classifier.tta);
            let detector: Box<dyn FaceDetector> = match detector.as_str() {
                "haar" => {
                    let options =
                        DetectOptions { scale_factor, min_neighbors, min_size: min_face_size, max_size: None };
                    let path = match cascade {
                        Some(p) => p,
                        None => locate::find_cascade()?,
                    };
                    Box::new(CascadeDetector::load(&path, options)?)
                }
                "mtcnn" => {
                    let path = match mtcnn_dir {
                        Some(p) => p,
                        None => locate::find_mtcnn()?,
                    };
                    let options = MtcnnOptions { min_size: min_face_size as f64, ..MtcnnOptions::default() };
                    Box::new(MtcnnDetector::load(&path, options)?)
                }
                other => ferkit::bail!(Config @ "detector", "detector={other:?}: not \"haar\" or \"mtcnn\""),
            };
            Ok((classifier, detector))
        })?;
        let model_name = classifier.model_name.clone();
        Ok(Self { inner: Mutex::new((classifier, detector)), model_name })
    }

    /// Faces and their class probabilities for each image, as JSON text per image (the library's
    /// one face schema: box, emotion, probabilities by class, detector score and landmarks from
    /// MTCNN). All the images' faces go through the net together, in batches.
    fn detect(&self, py: Python<'_>, images: Vec<Bound<'_, PyAny>>) -> PyResult<Vec<String>> {
        let inputs =
            images.iter().enumerate().map(|(i, item)| ImageInput::extract(item, i)).collect::<PyResult<Vec<_>>>()?;
        let inner = &self.inner;
        compute(py, move || {
            let frames =
                inputs.into_iter().enumerate().map(|(i, input)| input.frame(i)).collect::<ferkit::Result<Vec<_>>>()?;
            let guard = inner.lock().map_err(|_| ferkit::err!(Internal, "an earlier call failed inside"))?;
            let (classifier, detector) = &*guard;
            let refs: Vec<&Frame> = frames.iter().collect();
            let results = classifier.predict_batch(detector.as_ref(), &refs);
            results
                .iter()
                .map(|faces| serde_json::to_string(faces).map_err(|e| ferkit::err!(Internal, "faces as JSON: {e}")))
                .collect()
        })
    }

    /// Analyses a video file through the library's video loop (`ferkit::video::analyze_video`:
    /// ffmpeg, tracking, the same pipeline as `detect`), writing its files into `out`; returns the
    /// report (size, rate, frame counts, per-track summaries, damage) as JSON text. A damaged
    /// file's report says where decoding stopped (the caller raises).
    #[pyo3(signature = (path, out, every=None, fps=None, start=0.0, end=None, detect_every=1, smooth=1, annotate=false))]
    #[allow(clippy::too_many_arguments)]
    fn analyze_video(
        &self,
        py: Python<'_>,
        path: PathBuf,
        out: PathBuf,
        every: Option<usize>,
        fps: Option<f64>,
        start: f64,
        end: Option<f64>,
        detect_every: usize,
        smooth: usize,
        annotate: bool,
    ) -> PyResult<String> {
        let sampling = match (every, fps) {
            (Some(_), Some(_)) => return Err(PyValueError::new_err("give every= or fps=, not both")),
            (_, Some(f)) => Sampling::Fps(f),
            (Some(n), None) => Sampling::Every(n),
            (None, None) => Sampling::Every(1),
        };
        let options = VideoOptions { sampling, start, end, detect_every, smooth, annotate, ..VideoOptions::default() };
        let inner = &self.inner;
        compute(py, move || {
            let guard = inner.lock().map_err(|_| ferkit::err!(Internal, "an earlier call failed inside"))?;
            let (classifier, detector) = &*guard;
            let report = analyze_video(&path, classifier, detector.as_ref(), &options, &out, &mut ())?;
            serde_json::to_string(&report).map_err(|e| ferkit::err!(Internal, "the report as JSON: {e}"))
        })
    }
}

/// A trained net for 48x48 faces: what `ferkit.Model` wraps.
#[pyclass(frozen)]
struct Model {
    inner: Mutex<EmotionClassifier>,
    #[pyo3(get)]
    name: String,
}

#[pymethods]
impl Model {
    #[new]
    #[pyo3(signature = (path=None, tta=None))]
    fn new(py: Python<'_>, path: Option<PathBuf>, tta: Option<&str>) -> PyResult<Self> {
        let tta = self::tta(tta)?;
        let classifier = compute(py, move || {
            let mut c = EmotionClassifier::load(&model_source(path)?)?;
            c.tta = tta.unwrap_or(c.tta);
            Ok(c)
        })?;
        let name = classifier.model_name.clone();
        Ok(Self { inner: Mutex::new(classifier), name })
    }

    /// Class probabilities (N, 7) float32 of faces (N, 48, 48) uint8, raw grey levels.
    fn predict_proba<'py>(
        &self,
        py: Python<'py>,
        faces: PyReadonlyArray3<'py, u8>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let shape = faces.shape().to_vec();
        if shape[1] != IMAGE_SIDE || shape[2] != IMAGE_SIDE {
            return Err(PyValueError::new_err(format!(
                "faces of shape {shape:?}; expected (N, {IMAGE_SIDE}, {IMAGE_SIDE}) uint8 grey levels"
            )));
        }
        let pixels: Vec<u8> = faces.as_array().iter().copied().collect();
        let inner = &self.inner;
        let probabilities = compute(py, move || {
            let faces: Vec<Vec<u8>> = pixels.chunks_exact(IMAGE_SIDE * IMAGE_SIDE).map(<[u8]>::to_vec).collect();
            let guard = inner.lock().map_err(|_| ferkit::err!(Internal, "an earlier call failed inside"))?;
            Ok(guard.classify(&faces))
        })?;
        let n = probabilities.len();
        let flat: Vec<f32> = probabilities.into_iter().flatten().collect();
        let array = numpy::ndarray::Array2::from_shape_vec((n, NUM_CLASSES), flat)
            .map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
        Ok(array.into_pyarray(py))
    }
}

/// FER2013-shaped data (a CSV with a Usage column, or an image folder) as
/// `{split: (pixels bytes, labels list, rows)}` for `train`, `val`, `test`; the Python side
/// makes numpy arrays of them.
#[pyfunction]
#[pyo3(signature = (path, skip_bad_rows=false))]
fn load_fer2013<'py>(py: Python<'py>, path: PathBuf, skip_bad_rows: bool) -> PyResult<Bound<'py, PyDict>> {
    let (dataset, _report) = compute(py, move || DataSource::from_path(path).load(LoadOptions { skip_bad_rows }))?;
    let out = PyDict::new(py);
    for name in SplitName::ALL {
        let split = dataset.split(name);
        let mut pixels = Vec::with_capacity(split.len() * IMAGE_SIDE * IMAGE_SIDE);
        let mut labels = Vec::with_capacity(split.len());
        for i in 0..split.len() {
            pixels.extend_from_slice(split.image(i));
            labels.push(split.label(i) as i64);
        }
        out.set_item(name.as_str(), (PyBytes::new(py, &pixels), labels, split.len()))?;
    }
    Ok(out)
}

/// Training progress for a notebook: plain lines through Python's `print`, and Ctrl-C (a
/// pending `KeyboardInterrupt`) stops the run between two steps.
#[derive(Default)]
struct NotebookEvents {
    /// A KeyboardInterrupt that arrived while Python code ran (our `print`), kept for
    /// [`Events::should_stop`] instead of being lost with the print's error.
    interrupted: std::sync::atomic::AtomicBool,
}

impl NotebookEvents {
    fn print(&self, line: &str) {
        Python::attach(|py| {
            if let Err(e) = py.import("builtins").and_then(|b| b.call_method1("print", (line,)))
                && e.is_instance_of::<PyKeyboardInterrupt>(py)
            {
                self.interrupted.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        });
    }
}

impl Events for NotebookEvents {
    fn epoch_finished(&self, r: &EpochRecord, kept: bool, eta_seconds: f64) {
        self.print(&format!(
            "epoch {:>3}  loss {:.4}  acc {:.4}  val_loss {:.4}  val_acc {:.4}  {:.1} s  ETA {:.0} s{}",
            r.epoch,
            r.train_loss,
            r.train_accuracy,
            r.val_loss,
            r.val_accuracy,
            r.seconds,
            eta_seconds,
            if kept { "  (kept)" } else { "" }
        ));
    }

    fn note(&self, message: &str) {
        self.print(message);
    }

    fn should_stop(&self) -> bool {
        self.interrupted.load(std::sync::atomic::Ordering::Relaxed) || Python::attach(|py| py.check_signals().is_err())
    }
}

/// The run's history.csv as a list of dicts (epoch, train_loss, train_accuracy, val_loss,
/// val_accuracy, seconds).
fn history<'py>(py: Python<'py>, run_dir: &RunDir) -> PyResult<Vec<Bound<'py, PyDict>>> {
    let records = read_csv(&run_dir.history()).map_err(to_py_err)?;
    records
        .iter()
        .map(|r| {
            let d = PyDict::new(py);
            d.set_item("epoch", r.epoch)?;
            d.set_item("train_loss", r.train_loss)?;
            d.set_item("train_accuracy", r.train_accuracy)?;
            d.set_item("val_loss", r.val_loss)?;
            d.set_item("val_accuracy", r.val_accuracy)?;
            d.set_item("seconds", r.seconds)?;
            Ok(d)
        })
        .collect()
}

/// Trains `model` (a preset name or a net TOML file) on `data` into the run directory `out`
/// with the recipe's options (see `ferkit.train`); returns the history and the run directory.
#[pyfunction]
#[pyo3(signature = (model, data, out, overwrite=false, **options))]
fn train<'py>(
    py: Python<'py>,
    model: String,
    data: PathBuf,
    out: PathBuf,
    overwrite: bool,
    options: Option<&Bound<'py, PyDict>>,
) -> PyResult<(Vec<Bound<'py, PyDict>>, String)> {
    // A training preset (`fast`) starts from its own recipe; the options change it one by one.
    let preset = ferkit::training::training_preset(&model);
    let mut recipe = preset.map_or_else(Recipe::default, |p| p.recipe());
    let mut val_split = None;
    let mut weights: Option<PathBuf> = None;
    if let Some(options) = options {
        // The optimizer and the schedule first: changing one drops the preset's settings of the
        // old one (Recipe::set_optimizer), which the options given then set.
        for key in ["optimizer", "schedule"] {
            if let Some(value) = options.get_item(key)? {
                let name: String = value.extract().map_err(|e: PyErr| PyValueError::new_err(format!("{key}: {e}")))?;
                match key {
                    "optimizer" => recipe.set_optimizer(&name),
                    _ => recipe.set_schedule(&name),
                }
            }
        }
        for (key, value) in options.iter() {
            let key: String = key.extract()?;
            let bad = |e: PyErr| PyValueError::new_err(format!("{key}: {e}"));
            match key.as_str() {
                "epochs" => recipe.epochs = value.extract().map_err(bad)?,
                "batch_size" => recipe.batch_size = value.extract().map_err(bad)?,
                "lr" | "learning_rate" => recipe.learning_rate = value.extract().map_err(bad)?,
                "optimizer" | "schedule" => {} // set above
                "momentum" => recipe.momentum = value.extract().map_err(bad)?,
                "weight_decay" => recipe.weight_decay = value.extract().map_err(bad)?,
                "warmup_epochs" => recipe.warmup_epochs = value.extract().map_err(bad)?,
                "plateau_factor" => recipe.plateau_factor = value.extract().map_err(bad)?,
                "plateau_patience" => recipe.plateau_patience = value.extract().map_err(bad)?,
                "label_smoothing" => recipe.label_smoothing = value.extract().map_err(bad)?,
                "ema" => recipe.ema = value.extract().map_err(bad)?,
                "mixup" => recipe.mixup = value.extract().map_err(bad)?,
                "cutmix" => recipe.cutmix = value.extract().map_err(bad)?,
                "teacher" => recipe.teacher = value.extract().map_err(bad)?,
                "distill_weight" => recipe.distill_weight = value.extract().map_err(bad)?,
                "distill_temperature" => recipe.distill_temperature = value.extract().map_err(bad)?,
                "time_budget" => recipe.time_budget_minutes = value.extract().map_err(bad)?,
                "augment" => recipe.augment = value.extract().map_err(bad)?,
                "tta" => recipe.tta = tta(Some(&value.extract::<String>().map_err(bad)?))?.unwrap_or_default(),
                "seed" => recipe.seed = value.extract().map_err(bad)?,
                "subset" => recipe.subset = value.extract().map_err(bad)?,
                "skip_bad_rows" => recipe.skip_bad_rows = value.extract().map_err(bad)?,
                "init_from" => recipe.init_from = value.extract().map_err(bad)?,
                "val_split" => val_split = value.extract().map_err(bad)?,
                "weights" => weights = value.extract().map_err(bad)?,
                "monitor" => {
                    let name: String = value.extract().map_err(bad)?;
                    recipe.monitor = Monitor::from_name(&name).ok_or_else(|| {
                        PyValueError::new_err(format!("monitor={name:?}: not val_loss or val_accuracy"))
                    })?;
                }
                other => {
                    return Err(PyValueError::new_err(format!(
                        "train() got an unknown option {other:?} (known: epochs, batch_size, lr, optimizer, momentum,                          weight_decay, schedule, warmup_epochs, plateau_factor, plateau_patience, label_smoothing, ema,                          mixup, cutmix, teacher, distill_weight, distill_temperature, time_budget, tta, augment, seed, monitor, subset, skip_bad_rows, init_from, val_split, weights)"
                    )));
                }
            }
        }
    }
    let (_, run_dir) = compute(py, move || {
        let spec = match (preset, ferkit::models::resolve(&model)) {
            (Some(preset), _) => preset.model(weights)?,
            (None, Ok(ferkit::models::ModelSpec::Transfer(mut t))) => {
                t.weights = weights.or(t.weights);
                ferkit::models::ModelSpec::Transfer(t)
            }
            (None, Ok(_)) if weights.is_some() => {
                ferkit::bail!(Config @ "weights", "weights= is for transfer nets and training presets, not `{model}`")
            }
            (None, spec) => spec?,
        };
        let mut source = DataSource::from_path(data);
        source.val_split = val_split;
        let config = recipe.config(spec, source)?;
        ferkit::training::start(&config, &out, overwrite, &NotebookEvents::default())
    })?;
    Ok((history(py, &run_dir)?, run_dir.path.display().to_string()))
}

/// Goes on with the stopped run in `out` (interrupted, or its process gone); returns its
/// history and directory (a finished run's as it is).
#[pyfunction]
fn resume<'py>(py: Python<'py>, out: PathBuf) -> PyResult<(Vec<Bound<'py, PyDict>>, String)> {
    let dir = out.clone();
    compute(py, move || ferkit::training::resume_dir(&dir, &NotebookEvents::default()))?;
    let run_dir = RunDir::open(&out).map_err(to_py_err)?;
    Ok((history(py, &run_dir)?, run_dir.path.display().to_string()))
}

/// An image file decoded as ferkit reads photos (format from the content, EXIF orientation
/// applied): RGB uint8 (H, W, 3), or with `grey` its grey levels (H, W) (OpenCV's conversion).
#[pyfunction]
#[pyo3(signature = (path, grey=false))]
fn read_image<'py>(py: Python<'py>, path: PathBuf, grey: bool) -> PyResult<Bound<'py, PyAny>> {
    let frame = compute(py, move || Frame::open(&path))?;
    let (w, h) = (frame.width(), frame.height());
    let err = |e: numpy::ndarray::ShapeError| PyRuntimeError::new_err(e.to_string());
    Ok(if grey {
        numpy::ndarray::Array2::from_shape_vec((h, w), frame.grey.pixels).map_err(err)?.into_pyarray(py).into_any()
    } else {
        numpy::ndarray::Array3::from_shape_vec((h, w, 3), frame.rgb.into_raw())
            .map_err(err)?
            .into_pyarray(py)
            .into_any()
    })
}

/// The photos that `paths` name, as `ferkit predict` takes them: files as given, folders walked
/// recursively in name order; returns `(photos, others)`, others being the files inside folders
/// that are not images (sidecars, notes), for the caller to count.
#[pyfunction]
fn photo_paths(py: Python<'_>, paths: Vec<PathBuf>) -> PyResult<(Vec<PathBuf>, Vec<PathBuf>)> {
    compute(py, move || ferkit::prediction::output::expand_photo_paths(&paths))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Pipeline>()?;
    m.add_class::<Model>()?;
    m.add_function(wrap_pyfunction!(load_fer2013, m)?)?;
    m.add_function(wrap_pyfunction!(read_image, m)?)?;
    m.add_function(wrap_pyfunction!(photo_paths, m)?)?;
    m.add_function(wrap_pyfunction!(train, m)?)?;
    m.add_function(wrap_pyfunction!(resume, m)?)?;
    m.add("CLASS_NAMES", CLASS_NAMES.to_vec())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
