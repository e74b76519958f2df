//! Knowledge distillation (Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural
//! Network", arXiv:1503.02531): a student net learns from a teacher's class probabilities as well
//! as from the labels. The teacher (a run, a model file, or the shipped model: an ensemble is the
//! usual teacher) reads every training face once, when the run starts and before its run
//! directory is made, through the one prediction pipeline ([`EmotionClassifier`], with the views
//! its model file names); its probabilities are kept in the run directory
//! ([`PROBABILITIES_FILE`]), so that a resumed run learns from the same ones. The loss of each
//! step becomes
//!
//! `(1 - weight) * CE(labels) + weight * T^2 * KL(teacher_T || softmax(student / T))`
//!
//! where `teacher_T` is the teacher's probabilities sharpened or softened by the temperature `T`
//! (`p^(1/T)`, renormalised: the softmax of its log-probabilities divided by `T`) and `T^2` keeps the
//! gradients' scale as `T` changes (the paper's section 2). The KL divergence is the paper's
//! cross-entropy with soft targets less the teacher's entropy, a constant: the same gradients,
//! and a reported loss that reaches 0 when the student agrees with the teacher. The teaching
//! pass is not part of a run's time budget nor of its training seconds (it prints its own
//! time). The teacher reads the faces as they
//! are stored (not augmented): the student's augmented view of a face keeps that face's soft label,
//! as in offline distillation with fixed soft labels. Mixup and CutMix blend the soft labels with
//! the same weights as the hard ones.

use std::path::PathBuf;

use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use serde::{Deserialize, Serialize};

use crate::data::{NUM_CLASSES, Split};
use crate::error::{Context, Result};
use crate::events::Events;
use crate::prediction::EmotionClassifier;
use crate::run::RunDir;
use crate::trained::ModelSource;
use crate::util::atomic::write_atomic;

/// Which teacher and how much the student listens to it (`[distill]` in a run's config.toml).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DistillConfig {
    /// A run directory, a model file (`NAME.bpk`), or `shipped` (the model compiled into ferkit;
    /// a folder of that name is not a teacher).
    pub teacher: PathBuf,
    /// The teacher term's share of the loss, in (0, 1]; the labels' term gets `1 - weight`.
    #[serde(default = "half")]
    pub weight: f64,
    /// The softmax temperature `T` > 0 of both distributions in the teacher term (1: as they are).
    #[serde(default = "one")]
    pub temperature: f64,
}

fn one() -> f64 {
    1.0
}

fn half() -> f64 {
    0.5
}

/// The teacher's probabilities in a run directory: `[rows][7]` float32, little-endian, row-major.
pub const PROBABILITIES_FILE: &str = "teacher_probabilities.f32";

impl DistillConfig {
    /// Range checks; errors name the key.
    pub fn check(&self) -> Result<()> {
        crate::ensure!(Config @ "distill_weight",
            self.weight > 0.0 && self.weight <= 1.0,
            "the distillation weight must be in (0, 1] (got {})",
            self.weight
        );
        crate::ensure!(Config @ "distill_temperature",
            (0.05..=100.0).contains(&self.temperature),
            "the distillation temperature must be in [0.05, 100] (got {})",
            self.temperature
        );
        Ok(())
    }

    /// The teacher as the prediction pipeline loads it (`shipped`: the compiled-in model).
    pub fn teacher_source(&self) -> Result<ModelSource> {
        if self.teacher.as_os_str() == "shipped" {
            return Ok(ModelSource::Shipped);
        }
        ModelSource::from_arg(Some(self.teacher.as_path())).context("the distillation teacher")
    }
}

/// The teacher's class probabilities for every face of `split`, in row order: `[rows][7]`,
/// float32, each row summing to 1. Progress goes to `events` as notes.
///
/// Errors: a teacher that does not load (the message names its path).
pub fn teacher_probabilities(
    config: &DistillConfig,
    split: &Split,
    events: &dyn Events,
) -> Result<Vec<[f32; NUM_CLASSES]>> {
    let teacher = EmotionClassifier::load(&config.teacher_source()?)
        .with_context(|| format!("the distillation teacher {}", config.teacher.display()))?;
    for note in &teacher.notes {
        events.note(&format!("distillation teacher: {note}"));
    }
    let views = match teacher.tta.label() {
        "" => String::new(),
        label => format!(", each face with {label}"),
    };
    events.note(&format!(
        "distillation: teacher {} ({}) reads the {} training faces once{views}",
        teacher.source.describe(),
        teacher.model_name,
        split.len()
    ));
    let start = std::time::Instant::now();
    let mut out = Vec::with_capacity(split.len());
    // Chunks, so that a long teaching pass reports its progress.
    const CHUNK: usize = 4096;
    for first in (0..split.len()).step_by(CHUNK) {
        let faces: Vec<Vec<u8>> = (first..(first + CHUNK).min(split.len())).map(|i| split.image(i).to_vec()).collect();
        out.extend(teacher.classify(&faces));
        let done = out.len();
        let seconds = start.elapsed().as_secs_f64();
        let left = seconds / done as f64 * (split.len() - done) as f64;
        events.note(&format!(
            "distillation: {done} of {} faces read ({seconds:.0} s, about {left:.0} s left)",
            split.len()
        ));
    }
    Ok(out)
}

/// Writes the teacher's probabilities into `run` ([`PROBABILITIES_FILE`], atomically).
pub fn save(run: &RunDir, probabilities: &[[f32; NUM_CLASSES]]) -> Result<()> {
    let bytes: Vec<u8> = probabilities.iter().flatten().flat_map(|p| p.to_le_bytes()).collect();
    write_atomic(&run.path.join(PROBABILITIES_FILE), bytes)
}

/// The teacher's probabilities `run` keeps, for a training split of `rows` faces. Errors: the
/// file unreadable or of another length (named, with what was expected).
pub fn load(run: &RunDir, rows: usize) -> Result<Vec<[f32; NUM_CLASSES]>> {
    let path = run.path.join(PROBABILITIES_FILE);
    let bytes = std::fs::read(&path).with_context(|| format!("{}: cannot read", path.display()))?;
    let row_bytes = 4 * NUM_CLASSES;
    crate::ensure!(
        BadInput,
        bytes.len() == rows * row_bytes,
        "{}: {} bytes, but {rows} training faces take {} ({NUM_CLASSES} float32 each): the run's data changed",
        path.display(),
        bytes.len(),
        rows * row_bytes
    );
    Ok(bytes
        .chunks_exact(row_bytes)
        .map(|row| std::array::from_fn(|c| f32::from_le_bytes(row[4 * c..4 * c + 4].try_into().expect("4 bytes"))))
        .collect())
}

/// The probabilities a run learns from: those its directory keeps, or (a run started through
/// [`crate::training::train`] directly) the teacher's, then kept there.
pub fn run_probabilities(
    config: &DistillConfig,
    run: &RunDir,
    split: &Split,
    events: &dyn Events,
) -> Result<Vec<[f32; NUM_CLASSES]>> {
    if run.path.join(PROBABILITIES_FILE).exists() {
        return load(run, split.len());
    }
    let probabilities = teacher_probabilities(config, split, events)?;
    save(run, &probabilities)?;
    Ok(probabilities)
}

/// The soft labels of one batch: rows `rows` of `probabilities`, blended with their mixup or
/// CutMix partners' (`mixed`: partner positions within the batch and lambda) as the hard labels
/// are. `[batch, 7]` on `device`.
pub fn batch_targets(
    probabilities: &[[f32; NUM_CLASSES]],
    rows: &[usize],
    mixed: Option<(&[usize], f64)>,
    device: &Device,
) -> Tensor<2> {
    let own: Vec<[f32; NUM_CLASSES]> = rows.iter().map(|&r| probabilities[r]).collect();
    let values: Vec<f32> = match mixed {
        None => own.iter().flatten().copied().collect(),
        Some((partner, lambda)) => own
            .iter()
            .zip(partner)
            .flat_map(|(p, &j)| {
                let q = own[j];
                (0..NUM_CLASSES).map(move |c| (lambda * p[c] as f64 + (1.0 - lambda) * q[c] as f64) as f32)
            })
            .collect(),
    };
    Tensor::from_data(TensorData::new(values, [rows.len(), NUM_CLASSES]), device)
}

/// The teacher term of the loss for one batch: `T^2 * mean over the batch of
/// sum_c teacher_T[c] * (log teacher_T[c] - log softmax(outputs / T)[c])` (the KL divergence), a
/// scalar tensor. `outputs` `[batch, 7]` are the student's logits (or log-probabilities: the
/// softmax of either is the same); `teacher` `[batch, 7]` the teacher's probabilities at
/// temperature 1. Probabilities are floored at 1e-12 inside the logarithm (0 log 0 = 0).
pub fn teacher_loss(outputs: Tensor<2>, teacher: Tensor<2>, temperature: f64) -> Tensor<1> {
    let log_teacher = teacher.clone().clamp_min(1e-12).log();
    let (teacher, log_teacher) = if temperature == 1.0 {
        (teacher, log_teacher)
    } else {
        // p^(1/T), renormalised: the softmax of log p / T.
        let log_t = log_softmax(log_teacher.div_scalar(temperature), 1);
        (log_t.clone().exp(), log_t)
    };
    let log_student = log_softmax(outputs.div_scalar(temperature), 1);
    (teacher * (log_teacher - log_student)).sum_dim(1).mean().mul_scalar(temperature * temperature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::device::DeviceKind;

    fn device() -> Device {
        DeviceKind::Cpu.device().unwrap()
    }

    fn tensor(rows: &[[f32; NUM_CLASSES]]) -> Tensor<2> {
        let values: Vec<f32> = rows.iter().flatten().copied().collect();
        Tensor::from_data(TensorData::new(values, [rows.len(), NUM_CLASSES]), &device())
    }

    fn scalar(t: Tensor<1>) -> f64 {
        t.into_scalar::<f32>() as f64
    }

    #[test]
    fn the_teacher_term_is_the_kl_divergence_from_the_teachers_probabilities() {
        let logits = [[2.0, -1.0, 0.5, 3.0, 0.0, -2.0, 1.0], [0.0; NUM_CLASSES]];
        let teacher = [[0.1, 0.0, 0.1, 0.6, 0.1, 0.0, 0.1], [0.3, 0.1, 0.1, 0.1, 0.1, 0.1, 0.2]];
        // By hand: sum_c t_c * (log t_c - log softmax(z)_c), averaged over the two rows (0 log 0 = 0).
        let by_hand: f64 = logits
            .iter()
            .zip(&teacher)
            .map(|(z, t)| {
                let log_sum = z.iter().map(|&v| (v as f64).exp()).sum::<f64>().ln();
                z.iter()
                    .zip(t)
                    .filter(|&(_, &p)| p > 0.0)
                    .map(|(&v, &p)| p as f64 * ((p as f64).ln() - (v as f64 - log_sum)))
                    .sum::<f64>()
            })
            .sum::<f64>()
            / 2.0;
        let loss = scalar(teacher_loss(tensor(&logits), tensor(&teacher), 1.0));
        assert!((loss - by_hand).abs() < 1e-5, "{loss} vs {by_hand}");
        // A one-hot teacher (entropy 0) is the plain cross-entropy with that label (Burn's own loss).
        let one_hot = [[0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]];
        let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![3i64, 0], [2]), &device());
        let burn = burn::nn::loss::CrossEntropyLossConfig::new().init(&device()).forward(tensor(&logits), labels);
        let ours = scalar(teacher_loss(tensor(&logits), tensor(&one_hot), 1.0));
        assert!((ours - scalar(burn)).abs() < 1e-5, "{ours}");
    }

    #[test]
    fn the_temperature_softens_both_sides_and_scales_by_its_square() {
        let logits = [[2.0, -1.0, 0.5, 3.0, 0.0, -2.0, 1.0]];
        let teacher = [[0.05, 0.05, 0.1, 0.5, 0.1, 0.1, 0.1]];
        let t = 2.0f64;
        // Teacher p^(1/T) renormalised; student softmax(z / T); times T^2.
        let soft: Vec<f64> = teacher[0].iter().map(|&p| (p as f64).powf(1.0 / t)).collect();
        let sum: f64 = soft.iter().sum();
        let z: Vec<f64> = logits[0].iter().map(|&v| v as f64 / t).collect();
        let log_sum = z.iter().map(|v| v.exp()).sum::<f64>().ln();
        let by_hand = t * t * soft.iter().zip(&z).map(|(p, v)| p / sum * ((p / sum).ln() - (v - log_sum))).sum::<f64>();
        let loss = scalar(teacher_loss(tensor(&logits), tensor(&teacher), t));
        assert!((loss - by_hand).abs() < 1e-4, "{loss} vs {by_hand}");
        assert!((loss - scalar(teacher_loss(tensor(&logits), tensor(&teacher), 1.0))).abs() > 0.1);
    }

    #[test]
    fn mixed_batches_blend_the_soft_labels_like_the_hard_ones() {
        let mut probabilities = vec![[0.0f32; NUM_CLASSES]; 5];
        for (r, p) in probabilities.iter_mut().enumerate() {
            p[r] = 1.0;
        }
        let rows = [4, 1, 2];
        let plain = batch_targets(&probabilities, &rows, None, &device()).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(plain[4], 1.0);
        assert_eq!(plain[NUM_CLASSES + 1], 1.0);
        // Partners reversed (as `mix` pairs them), lambda 0.75.
        let mixed = batch_targets(&probabilities, &rows, Some((&[2, 1, 0], 0.75)), &device())
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!((mixed[4], mixed[2]), (0.75, 0.25), "row 0: 0.75 of face 4, 0.25 of its partner face 2");
        assert_eq!(mixed[NUM_CLASSES + 1], 1.0, "row 1 is its own partner");
        assert!(mixed.chunks(NUM_CLASSES).all(|r| (r.iter().sum::<f32>() - 1.0).abs() < 1e-6));
    }

    #[test]
    fn a_run_keeps_the_teachers_probabilities_and_refuses_them_for_other_data() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::create(&dir.path().join("run"), false).unwrap();
        let probabilities = vec![[0.1f32, 0.2, 0.05, 0.3, 0.15, 0.1, 0.1], [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]];
        save(&run, &probabilities).unwrap();
        assert_eq!(load(&run, 2).unwrap(), probabilities);
        let err = load(&run, 3).unwrap_err().to_string();
        assert!(err.contains(PROBABILITIES_FILE) && err.contains("3 training faces"), "{err}");
        // A kept file is what a resumed run reads: the (absent) teacher is not asked again.
        let config = DistillConfig { teacher: "no/such/teacher".into(), weight: 0.5, temperature: 1.0 };
        let mut split = Split::new();
        for _ in 0..2 {
            split.push(&[0u8; crate::data::IMAGE_PIXELS], 0);
        }
        assert_eq!(run_probabilities(&config, &run, &split, &crate::events::Silent).unwrap(), probabilities);
    }

    #[test]
    fn a_hand_written_distill_table_defaults_and_refuses_unknown_keys() {
        let config: DistillConfig = toml::from_str("teacher = \"shipped\"").unwrap();
        assert_eq!((config.weight, config.temperature), (0.5, 1.0));
        assert!(toml::from_str::<DistillConfig>("teacher = \"shipped\"\ntemprature = 2.0").is_err());
    }

    #[test]
    fn out_of_range_settings_name_their_key() {
        let mut config = DistillConfig { teacher: "shipped".into(), weight: 0.5, temperature: 1.0 };
        assert!(config.check().is_ok());
        assert!(matches!(config.teacher_source().unwrap(), ModelSource::Shipped));
        config.weight = 1.5;
        let err = config.check().unwrap_err();
        assert_eq!(err.location().and_then(|l| l.field.clone()).as_deref(), Some("distill_weight"), "{err}");
        config.weight = 0.5;
        config.temperature = 0.01;
        let err = config.check().unwrap_err();
        assert_eq!(err.location().and_then(|l| l.field.clone()).as_deref(), Some("distill_temperature"), "{err}");
        config.teacher = "no/such/teacher".into();
        let err = format!("{:#}", config.teacher_source().unwrap_err());
        assert!(err.contains("no/such/teacher") && err.contains("teacher"), "{err}");
    }
}
