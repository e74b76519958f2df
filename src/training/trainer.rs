//! The training loop: the optimizer (at the schedule's rate) on cross-entropy (optionally label-smoothed) plus Keras'
//! L2 penalty, an optional weight EMA, one validation pass per epoch, the best checkpoint kept, and everything
//! written to the run directory as it goes.
//!
//! The loop is our own rather than Burn's `Learner` because the notebook's recipe needs the L2
//! term inside the reported loss and a history file rewritten after every epoch; Burn provides
//! the modules, autodiff, Adam, the loss and the weight format.

use std::time::Instant;

use crate::error::{Context, Result, bail};
use burn::module::Module;
use std::sync::mpsc::Receiver;

use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::*;

use super::best::BestTracker;
use super::budget::{self, TimeBudget};
use super::checkpoint::{self, TrainState};
use super::config::TrainConfig;
use super::distill;
use super::ema::{Ema, recalibrate_batch_norm};
use crate::data::batch::Preprocess;
use crate::data::batch::{EpochAugment, EpochOrder, HostBatch, in_batches, prefetch, prepare_batch};
use crate::data::{Dataset, SplitName};
use crate::evaluation::{Tta, evaluate};
use crate::events::Events;
use crate::models::Model;
use crate::reporting::plots::plot_curves;
pub use crate::run::RunMetrics;
use crate::run::history::{EpochRecord, write_csv};
use crate::run::{RunDir, load_weights};
use crate::util::atomic::write_atomic;

/// What one pass over the training rows needs besides the net and the optimizer.
struct EpochPass<'a> {
    config: &'a TrainConfig,
    loss_fn: &'a CrossEntropyLoss,
    device: &'a Device,
    events: &'a dyn Events,
    epoch: usize,
    /// Optimizer steps taken before this epoch (the schedule's clock).
    steps_before: usize,
    steps_per_epoch: usize,
    /// The factor the validation history puts on the rate (reduce-on-plateau; 1 otherwise).
    history_factor: f64,
    /// The epoch's row order, as `prefetch` was given it.
    rows: &'a [usize],
    /// The teacher's probabilities of every training row, with distillation.
    teacher: Option<&'a [[f32; crate::data::NUM_CLASSES]]>,
}

impl EpochPass<'_> {
    /// Trains on every batch `batches` yields; returns the net, the summed loss (with L2) and
    /// the number of correct predictions, both as seen during training (dropout on). A loss that
    /// is not finite stops the pass at once with [`Diverged`], before the optimizer applies it;
    /// [`Events::should_stop`] stops it after the step it is asked after ([`PassStop::Interrupted`]).
    fn run(
        &self,
        mut model: Model,
        optimizer: &mut ModuleOptimizer,
        mut ema: Option<&mut Ema>,
        batches: Receiver<HostBatch>,
    ) -> Result<(Model, f64, usize), PassStop> {
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        // The rows of each batch, cut by the function that cut them for `prefetch`.
        let batch_rows = in_batches(self.rows, self.config.batch_size);
        for (i, (host, rows)) in batches.into_iter().zip(batch_rows).enumerate() {
            let n = host.labels.len();
            let mut host = host;
            let mixed = self.config.mix.map(|mix| {
                let side = (host.pixels.len() / n.max(1)).isqrt();
                mix.apply(&mut host.pixels, n, side, self.config.seed, self.epoch, i)
            });
            let soft = self.teacher.zip(self.config.distill.as_ref()).map(|(probabilities, d)| {
                let partner = mixed.as_ref().map(|m| (m.partner.as_slice(), m.lambda));
                SoftTargets {
                    probabilities: distill::batch_targets(probabilities, rows, partner, self.device),
                    weight: d.weight,
                    temperature: d.temperature,
                }
            });
            let mixed = mixed.map(|mixed| {
                let partner_labels: Vec<i64> = mixed.partner.iter().map(|&j| host.labels[j]).collect();
                (Tensor::<1, Int>::from_data(TensorData::new(partner_labels, [n]), self.device), mixed.lambda)
            });
            let batch = host.to_device(self.device);
            let rate = self.history_factor
                * self.config.schedule.rate(
                    self.config.learning_rate,
                    self.steps_before + i,
                    self.steps_per_epoch,
                    self.config.epochs,
                );
            let step = training_step(model, optimizer, self.loss_fn, batch.images, batch.labels, mixed, soft, rate);
            let StepOutcome { loss, correct: right } = match step {
                Ok((next, outcome)) => {
                    model = next;
                    outcome
                }
                // Dropping the receiver ends the prefetch thread at its next send.
                Err(loss) => {
                    let d = Diverged { epoch: self.epoch, step: i + 1, steps: self.steps_per_epoch, loss };
                    return Err(PassStop::Diverged(d));
                }
            };
            correct += right;
            loss_sum += loss as f64 * n as f64;
            if let Some(ema) = ema.as_deref_mut() {
                ema.update(&model);
            }
            seen += n;
            self.events.batch_finished(self.epoch, loss_sum / seen as f64);
            if self.events.should_stop() {
                return Err(PassStop::Interrupted { epoch: self.epoch, step: i + 1 });
            }
        }
        Ok((model, loss_sum, correct))
    }
}

/// A teacher's soft labels for one batch ([`super::distill`]).
pub struct SoftTargets {
    /// `[batch, 7]` probabilities, on the autodiff device.
    pub probabilities: Tensor<2>,
    /// The teacher term's share of the loss, in (0, 1].
    pub weight: f64,
    /// The softmax temperature of the teacher term (> 0; 1: the distributions as they are).
    pub temperature: f64,
}

/// What one training step saw: its loss (with the L2 term) and the batch's correct predictions,
/// both with dropout on.
#[derive(Clone, Copy, Debug)]
pub struct StepOutcome {
    pub loss: f32,
    pub correct: usize,
}

/// One optimizer step on one batch, the step that training runs and `ferkit bench` times: forward
/// pass, loss (`loss_fn`, label-smoothed as configured, plus the net's L2 term), backward pass,
/// and the update at `rate`. `images` `[batch, 1, 48, 48]` and `labels` `[batch]` are on the
/// autodiff device. With `mixed` (the partners' labels and lambda of a mixup or CutMix batch),
/// the loss is `lambda * CE(labels) + (1 - lambda) * CE(partner labels)`; the correct count is
/// against `labels`. With `soft` (distillation), that loss is weighted `1 - weight` and the
/// teacher term ([`super::distill::teacher_loss`]) `weight`.
///
/// Errors: a loss that is NaN or infinite, returned before the update is applied (the net is
/// dropped: the caller keeps its last good checkpoint).
pub fn training_step(
    model: Model,
    optimizer: &mut ModuleOptimizer,
    loss_fn: &CrossEntropyLoss,
    images: Tensor<4>,
    labels: Tensor<1, Int>,
    mixed: Option<(Tensor<1, Int>, f64)>,
    soft: Option<SoftTargets>,
    rate: f64,
) -> Result<(Model, StepOutcome), f32> {
    // On a kernel thread: see `util::on_pool`.
    let device = images.device();
    crate::util::on_pool(&device, move || {
        let logits = model.forward(images);
        let mut loss = loss_fn.forward(logits.clone(), labels.clone());
        if let Some((partner_labels, lambda)) = mixed {
            loss = loss.mul_scalar(lambda) + loss_fn.forward(logits.clone(), partner_labels).mul_scalar(1.0 - lambda);
        }
        if let Some(SoftTargets { probabilities, weight, temperature }) = soft {
            loss = loss.mul_scalar(1.0 - weight)
                + distill::teacher_loss(logits.clone(), probabilities, temperature).mul_scalar(weight);
        }
        if let Some(l2) = model.l2_penalty() {
            loss = loss + l2;
        }
        let loss_value = loss.clone().into_scalar::<f32>();
        if !loss_value.is_finite() {
            return Err(loss_value);
        }
        let correct = logits.argmax(1).squeeze_dim::<1>(1).equal(labels).int().sum().into_scalar::<i64>() as usize;
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let model = optimizer.step(rate, model, grads);
        Ok((model, StepOutcome { loss: loss_value, correct }))
    })
}

/// Why an epoch's pass stopped before its end.
enum PassStop {
    Diverged(Diverged),
    /// [`Events::should_stop`] said so after this step (1-based) of this epoch.
    Interrupted {
        epoch: usize,
        step: usize,
    },
}

/// A training loss that is NaN or infinite: where it happened.
#[derive(Clone, Copy, Debug)]
struct Diverged {
    epoch: usize,
    /// 1-based batch within the epoch.
    step: usize,
    steps: usize,
    loss: f32,
}

/// Trains `config.model` on `dataset` from fresh weights (or `config.init_from`'s) and fills `run`.
///
/// Errors: no training or validation rows, zero epochs or batch, weights that do not fit, an
/// unwritable run directory, and a loss that turns non-finite (the message names the epoch and
/// step; the best checkpoint so far stays in `model.bpk`).
pub fn train(config: &TrainConfig, dataset: &Dataset, run: &RunDir, events: &dyn Events) -> Result<RunMetrics> {
    check_inputs(config, dataset)?;
    write_atomic(&run.config(), config.to_toml())?;
    write_atomic(&run.summary(), config.model.summary()?)?;
    run_epochs(config, dataset, run, None, events)
}

/// Goes on with a run that stopped (killed, or its machine gone) after its last finished epoch,
/// with the run's own `config.toml`. The result equals that of a run that never stopped (under a
/// time budget, the guard counts the resumed process's time alone, so the two may stop at
/// different epochs). A run that finished no epoch starts again from its beginning.
pub fn resume(run: &RunDir, dataset: &Dataset, events: &dyn Events) -> Result<RunMetrics> {
    run.remove_stale_temporaries();
    let config = run.load_config()?;
    check_inputs(&config, dataset)?;
    let state = checkpoint::load_state(run)?;
    if let Some(state) = &state {
        events.note(&format!(
            "resuming {} after epoch {} of {} ({:.0} s trained so far)",
            run.path.display(),
            state.epochs_done,
            config.epochs,
            state.train_seconds
        ));
        if state.epochs_done > config.epochs {
            bail!(
                Config,
                "{}: {} epochs done, more than the {} of config.toml",
                run.checkpoint_state().display(),
                state.epochs_done,
                config.epochs
            );
        }
    } else {
        events.note(&format!("{}: no epoch had finished; starting the run from its beginning", run.path.display()));
    }
    run_epochs(&config, dataset, run, state, events)
}

/// Where the kept checkpoint is, for a divergence message.
fn kept_message(tracker: &BestTracker, run: &RunDir) -> String {
    match tracker.best() {
        Some((e, _)) => format!("the best checkpoint so far (epoch {e}) is kept in {}", run.weights().display()),
        None => "no epoch had finished, so no checkpoint was kept".to_string(),
    }
}

/// What must hold before a run directory is made: training and validation rows, at least one
/// epoch and one row per batch.
pub fn check_inputs(config: &TrainConfig, dataset: &Dataset) -> Result<()> {
    if dataset.train.is_empty() {
        bail!(BadInput, "the data has no training rows");
    }
    if dataset.val.is_empty() {
        return Err(crate::err!(
            BadInput,
            "the data has no validation rows (FER2013's PublicTest): the kept checkpoint is chosen on them; \
             for data with train and test only, hold out part of train as validation rows (val_split = 0.1)"
        )
        .at(None, None, Some("val_split")));
    }
    if config.epochs == 0 || config.batch_size == 0 {
        return Err(crate::err!(Config, "epochs and batch_size must be at least 1").at(None, None, Some("epochs")));
    }
    if let Some(distill) = &config.distill {
        distill.teacher_source()?;
    }
    config.check_trainable()
}

/// How many training images give the EMA's batch-norm layers their statistics before each
/// validation: about 14% of FER2013's training split, costing about as much as the validation.
const EMA_CALIBRATION_IMAGES: usize = 4096;

/// The training rows whose batch statistics recalibrate the EMA: [`EMA_CALIBRATION_IMAGES`]
/// rows evenly spaced over the split (all of them in a smaller one), the same every epoch.
fn calibration_rows(train_rows: usize) -> Vec<usize> {
    let n = EMA_CALIBRATION_IMAGES.min(train_rows);
    (0..n).map(|i| i * train_rows / n).collect()
}

/// The epochs from `state` (or the first) to the last, then the kept checkpoint's evaluation.
fn run_epochs(
    config: &TrainConfig,
    dataset: &Dataset,
    run: &RunDir,
    state: Option<TrainState>,
    events: &dyn Events,
) -> Result<RunMetrics> {
    let (trainable_params, non_trainable_params) = config.model.param_counts()?;
    let preprocess: Preprocess = config.model.preprocess();

    let device = config.device.device()?;
    device.seed(config.seed);
    let train_device = device.clone().autodiff();
    train_device.seed(config.seed);
    let mut optimizer = config.optimizer.init();
    let train = &dataset.train;
    let batches_per_epoch = train.len().div_ceil(config.batch_size);
    let mut ema: Option<Ema> = None;
    let mut model = match &state {
        Some(state) => {
            if state.train_rows != dataset.train.len() {
                bail!(
                    BadInput,
                    "{}: the run trained on {} rows, but its data now has {}: resume with the same data",
                    run.checkpoint_state().display(),
                    state.train_rows,
                    dataset.train.len()
                );
            }
            let net = config.model.without_pretrained().build(&train_device)?;
            let (net, optim) = checkpoint::restore(run, state, net, optimizer)?;
            optimizer = optim;
            if let Some(decay) = config.ema_decay {
                let steps = (state.epochs_done * batches_per_epoch) as u64;
                let average = checkpoint::restore_ema(run, state, config.model.without_pretrained().build(&device)?)?;
                ema = Some(Ema { decay, updates: steps, model: average });
            }
            // The process may have died after the checkpoint of a new best epoch and before
            // model.bpk was written: the checkpoint's weights are that epoch's.
            if state.best.is_some_and(|(epoch, _)| epoch == state.epochs_done) {
                run.save_weights(ema.as_ref().map_or_else(|| net.valid(), |e| e.model.valid()))?;
            }
            net
        }
        None => {
            let mut net = config.model.build(&train_device)?;
            if let Some(from) = &config.init_from {
                let from = RunDir::open(from)?;
                net = load_weights(net, from.read_weights()?, &from.weights()).context("init_from")?;
            }
            if let Some(decay) = config.ema_decay {
                ema = Some(Ema::new(decay, &net, 0));
            }
            net
        }
    };
    let smoothing = (config.label_smoothing > 0.0).then_some(config.label_smoothing as f32);
    let loss_fn = CrossEntropyLossConfig::new().with_smoothing(smoothing).init(&train_device);
    // With distillation, the teacher's probabilities, from the run directory (written when the
    // run started, so a resumed run learns from the same ones).
    let teacher = match &config.distill {
        Some(d) => Some(distill::run_probabilities(d, run, train, events)?),
        None => None,
    };
    let mut order = EpochOrder::new(config.seed);
    let epochs_done = state.as_ref().map_or(0, |s| s.epochs_done);
    events.training_started(
        config.model.name(),
        config.epochs,
        (batches_per_epoch * config.epochs) as u64,
        (batches_per_epoch * epochs_done) as u64,
    );
    let mut tracker = BestTracker::resume(config.monitor, state.as_ref().and_then(|s| s.best));
    let mut history = state.as_ref().map_or_else(Vec::new, |s| s.history.clone());
    let seconds_before = state.as_ref().map_or(0.0, |s| s.train_seconds);
    // The data order of the finished epochs is drawn again, so the next epoch's is the same.
    for _ in 0..epochs_done {
        order.next_epoch(train.len());
    }
    let start = Instant::now();
    // The time budget may cut the epochs after the first one; the run's config.toml then says so.
    let mut planned = config.clone();
    let budget = config.time_budget_minutes.map(TimeBudget::minutes);
    // The final evaluation reads the training split plainly and the others with the run's TTA.
    let rows_evaluated_at_end =
        dataset.train.len() + config.tta.view_count() * (dataset.val.len() + dataset.test.len());
    let (mut longest_epoch, mut final_seconds) = (0.0f64, 0.0f64);
    // Set when the epochs were just cut: config.toml is rewritten after the epoch's checkpoint.
    let mut cut_epochs = false;

    for epoch in epochs_done + 1..=config.epochs {
        let config = &planned;
        if epoch > config.epochs {
            break;
        }
        if let Some(budget) = budget
            && epoch > epochs_done + 1
            && !budget.next_epoch_fits(start.elapsed().as_secs_f64(), longest_epoch, final_seconds)
        {
            events.note(&format!(
                "time budget: stopping before epoch {epoch} of {}: at {:.0} s an epoch (the longest so far) it \
                 would end, with the final evaluation, past the {} minutes",
                config.epochs,
                longest_epoch,
                budget.seconds / 60.0
            ));
            // The run is finished at this epoch count: config.toml says so, and `--resume` of a
            // run killed during its final evaluation finishes it rather than training on.
            planned.epochs = epoch - 1;
            write_atomic(&run.config(), planned.to_toml())?;
            break;
        }
        let epoch_start = Instant::now();
        train_device.seed(checkpoint::epoch_seed(config.seed, epoch));
        let rows = order.next_epoch(train.len());
        let augment = config.augment.as_ref().map(|a| EpochAugment { config: a, seed: config.seed, epoch });
        let pass = EpochPass {
            config,
            loss_fn: &loss_fn,
            device: &train_device,
            events,
            epoch,
            steps_before: (epoch - 1) * batches_per_epoch,
            steps_per_epoch: batches_per_epoch,
            history_factor: config.schedule.history_factor(&history, config.monitor),
            rows: &rows,
            teacher: teacher.as_deref(),
        };
        let passed = std::thread::scope(|scope| {
            let batches = prefetch(scope, train, rows.clone(), config.batch_size, preprocess, augment);
            pass.run(model, &mut optimizer, ema.as_mut(), batches)
        });
        let (trained, loss_sum, correct) = match passed {
            Ok(done) => done,
            Err(PassStop::Interrupted { epoch, step }) => {
                events.training_finished();
                return Err(crate::err!(
                    Interrupted,
                    "training interrupted at epoch {epoch}, step {step}; {}; the run goes on from its last \
                     finished epoch when resumed",
                    kept_message(&tracker, run)
                )
                .at(Some(&run.path), None, Some("resume")));
            }
            Err(PassStop::Diverged(d)) => {
                events.training_finished();
                let kept = kept_message(&tracker, run);
                return Err(crate::err!(
                    Diverged,
                    "training diverged: the loss is {} at epoch {}, step {} of {}; {kept}. Start again with a lower learning rate (it was {}).",
                    d.loss,
                    d.epoch,
                    d.step,
                    d.steps,
                    config.learning_rate
                )
                .at(None, None, Some("learning_rate")));
            }
        };
        model = trained;
        // With an EMA, the average is what is validated and kept, with batch-norm statistics
        // of its own (see `ema`'s module comment).
        let kept_net = match &ema {
            Some(e) => recalibrate_batch_norm(
                &e.model,
                calibration_rows(train.len())
                    .chunks(config.batch_size)
                    .map(|rows| prepare_batch(train, rows, preprocess, None).to_device(&train_device).images),
            ),
            None => model.valid(),
        };
        let val_start = Instant::now();
        let val = evaluate(&kept_net, preprocess, &dataset.val, "val", config.batch_size, &device, Tta::None);
        final_seconds = budget::final_evaluation_seconds(
            val_start.elapsed().as_secs_f64(),
            dataset.val.len(),
            rows_evaluated_at_end,
        );
        if !(val.loss.is_finite() && val.accuracy.is_finite()) {
            events.training_finished();
            return Err(crate::err!(
                Diverged,
                "training diverged: the validation loss is {} after epoch {epoch} (the weights are no longer finite); {}. \
                 Start again with a lower learning rate (it was {}).",
                val.loss,
                kept_message(&tracker, run),
                config.learning_rate
            )
            .at(None, None, Some("learning_rate")));
        }
        let record = EpochRecord {
            epoch,
            train_loss: loss_sum / train.len() as f64,
            train_accuracy: correct as f64 / train.len() as f64,
            val_loss: val.loss,
            val_accuracy: val.accuracy,
            seconds: epoch_start.elapsed().as_secs_f64(),
        };
        let kept = tracker.update(&record);
        longest_epoch = longest_epoch.max(record.seconds);
        if let Some(budget) = budget
            && epoch == 1
        {
            let fit =
                budget.epochs_that_fit(start.elapsed().as_secs_f64(), record.seconds, final_seconds, config.epochs);
            if fit < config.epochs {
                events.note(&format!(
                    "time budget: {fit} of the {} epochs fit in {} minutes at {:.0} s an epoch (and about {:.0} s \
                     of final evaluation); the run now trains {fit}, its schedule spanning them",
                    config.epochs,
                    budget.seconds / 60.0,
                    record.seconds,
                    final_seconds
                ));
                planned.epochs = fit;
                cut_epochs = true;
                events.training_replanned(fit, (batches_per_epoch * fit) as u64);
            }
        }
        let config = &planned;
        let epochs_here = epoch - epochs_done;
        let mean_epoch = start.elapsed().as_secs_f64() / epochs_here as f64;
        events.epoch_finished(&record, kept, mean_epoch * (config.epochs - epoch) as f64);
        history.push(record);
        write_csv(&run.history(), &history)?;
        let seconds = seconds_before + start.elapsed().as_secs_f64();
        // The checkpoint first, then the kept weights: a kill between the two leaves a state
        // whose best epoch is its last, and resuming re-saves model.bpk from the checkpoint.
        let at_end = checkpoint::EpochEnd { net: &model.valid(), ema: ema.as_ref().map(|e| &e.model) };
        checkpoint::save(run, at_end, &optimizer, &history, tracker.best(), train.len(), seconds)?;
        // A cut made after epoch 1 goes to config.toml once that epoch's checkpoint is saved (a
        // kill in between resumes with the old count: the run would then train all of it).
        if std::mem::take(&mut cut_epochs) {
            write_atomic(&run.config(), planned.to_toml())?;
        }
        if kept {
            run.save_weights(kept_net)?;
        }
    }
    events.training_finished();
    let train_seconds = seconds_before + start.elapsed().as_secs_f64();
    plot_curves(&history, config.model.name(), &run.curves())?;

    let (best_epoch, _) = tracker
        .best()
        .ok_or_else(|| crate::err!(Diverged, "no epoch gave a finite validation figure (did the loss diverge?)"))?;
    let best = run.load_model(config, &device)?;
    let eval = |name: SplitName| {
        let tta = if name == SplitName::Train { Tta::None } else { config.tta };
        evaluate(&best, preprocess, dataset.split(name), name.as_str(), config.batch_size, &device, tta)
    };
    let metrics = RunMetrics {
        model: config.model.name().to_string(),
        trainable_params,
        non_trainable_params,
        // Those the run trained (fewer than asked when its time budget ran out).
        epochs: history.len(),
        best_epoch,
        train_seconds,
        train: eval(SplitName::Train),
        val: eval(SplitName::Val),
        test: (!dataset.test.is_empty()).then(|| eval(SplitName::Test)),
    };
    write_atomic(&run.metrics(), serde_json::to_string_pretty(&metrics)?)?;
    run.remove_stale_temporaries();
    Ok(metrics)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::tests::random_input;
    use crate::training::OptimizerKind;

    /// A mixed batch's loss is `lambda * CE(labels) + (1 - lambda) * CE(partners' labels)`.
    #[test]
    fn a_mixed_batch_weighs_both_labels_cross_entropies() {
        let text = "name = \"lin\"\ninput = [48, 48, 1]\n[[layers]]\nkind = \"flatten\"\n[[layers]]\nkind = \"dense\"\nunits = 7\n";
        let spec = crate::models::ModelSpec::Layers(crate::models::NetSpec::from_toml(text, "lin").unwrap());
        let device = Device::flex().autodiff();
        let model = spec.build(&device).unwrap();
        let images = Tensor::<4>::from_inner(random_input([4, 1, 48, 48], &Device::flex(), 3));
        let labels = Tensor::<1, Int>::from_ints([0, 1, 2, 3], &device);
        let partners = Tensor::<1, Int>::from_ints([3, 2, 1, 0], &device);
        let loss_fn = CrossEntropyLossConfig::new().init(&device);
        let ce = |l: Tensor<1, Int>| loss_fn.forward(model.forward(images.clone()), l).into_scalar::<f32>() as f64;
        let (a, b) = (ce(labels.clone()), ce(partners.clone()));
        assert!((a - b).abs() > 1e-3, "the two labelings must differ for the test to mean anything");
        let mut optimizer = OptimizerKind::Adam.init();
        let (_, outcome) = training_step(
            model.clone(),
            &mut optimizer,
            &loss_fn,
            images.clone(),
            labels,
            Some((partners, 0.3)),
            None,
            1e-3,
        )
        .unwrap();
        assert!((outcome.loss as f64 - (0.3 * a + 0.7 * b)).abs() < 1e-5, "{} vs {}", outcome.loss, 0.3 * a + 0.7 * b);
    }

    /// With a teacher's soft labels, the step's loss is `(1 - w) * CE(labels) + w * teacher
    /// term` (distillation), and a different teacher gives a different loss.
    #[test]
    fn a_distilling_step_weighs_the_labels_against_the_teacher() {
        let text = "name = \"lin\"\ninput = [48, 48, 1]\n[[layers]]\nkind = \"flatten\"\n[[layers]]\nkind = \"dense\"\nunits = 7\n";
        let spec = crate::models::ModelSpec::Layers(crate::models::NetSpec::from_toml(text, "lin").unwrap());
        let device = Device::flex().autodiff();
        device.seed(11);
        let model = spec.build(&device).unwrap();
        let images = Tensor::<4>::from_inner(random_input([4, 1, 48, 48], &Device::flex(), 5));
        let labels = Tensor::<1, Int>::from_ints([0, 1, 2, 3], &device);
        let loss_fn = CrossEntropyLossConfig::new().init(&device);
        let teacher = |hot: usize| {
            let mut values = vec![0.05f32; 4 * 7];
            for row in 0..4 {
                values[row * 7 + hot] = 0.7;
            }
            Tensor::<2>::from_data(TensorData::new(values, [4, 7]), &device)
        };
        let outputs = model.forward(images.clone());
        let ce = loss_fn.forward(outputs.clone(), labels.clone()).into_scalar::<f32>() as f64;
        let step = |hot: usize| {
            let soft = SoftTargets { probabilities: teacher(hot), weight: 0.25, temperature: 2.0 };
            let mut optimizer = OptimizerKind::Adam.init();
            training_step(
                model.clone(),
                &mut optimizer,
                &loss_fn,
                images.clone(),
                labels.clone(),
                None,
                Some(soft),
                1e-3,
            )
            .unwrap()
            .1
            .loss as f64
        };
        let term = distill::teacher_loss(outputs, teacher(6), 2.0).into_scalar::<f32>() as f64;
        let expected = 0.75 * ce + 0.25 * term;
        assert!((step(6) - expected).abs() < 1e-4, "{} vs {expected}", step(6));
        assert!((step(6) - step(3)).abs() > 1e-4, "the teacher's probabilities must move the loss");
    }

    /// The values of a nested JSON array of numbers, in row-major order.
    fn floats(v: &serde_json::Value) -> Vec<f32> {
        match v {
            serde_json::Value::Array(items) => items.iter().flat_map(floats).collect(),
            other => vec![other.as_f64().expect("a number") as f32],
        }
    }

    /// One full training step (forward, mean cross-entropy + L2 on both kernels, backward, Adam
    /// with epsilon 1e-7) from PyTorch's weights on PyTorch's batch gives PyTorch's loss and
    /// weights: tests/fixtures/make_training_step_reference.py wrote the fixture (torch 2.15).
    #[test]
    fn one_training_step_equals_pytorchs() {
        use crate::models::net::Layer;
        use burn::module::Param;
        let doc: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/fixtures/training_step_reference.json")).unwrap();
        let text = "name = \"step\"\ninput = [48, 48, 1]\n\
            [[layers]]\nkind = \"conv2d\"\nfilters = 4\nkernel = 3\nstride = 2\npadding = \"valid\"\nl2 = 0.01\n\
            [[layers]]\nkind = \"activation\"\nfunction = \"relu\"\n\
            [[layers]]\nkind = \"maxpool\"\npool = 2\npadding = \"valid\"\n\
            [[layers]]\nkind = \"flatten\"\n\
            [[layers]]\nkind = \"dense\"\nunits = 7\nl2 = 0.01\nactivation = \"softmax\"\n";
        let device = Device::flex().autodiff();
        let spec = crate::models::ModelSpec::Layers(crate::models::NetSpec::from_toml(text, "step").unwrap());
        let Model::Layers(mut net) = spec.build(&device).unwrap() else { unreachable!() };
        let tensor = |v: &serde_json::Value, shape: Vec<usize>| TensorData::new(floats(v), shape);
        let w = &doc["before"];
        for layer in &mut net.layers {
            match layer {
                Layer::Conv(c) => {
                    c.conv.weight =
                        Param::from_tensor(Tensor::from_data(tensor(&w["conv_weight"], vec![4, 1, 3, 3]), &device));
                    c.conv.bias =
                        Some(Param::from_tensor(Tensor::from_data(tensor(&w["conv_bias"], vec![4]), &device)));
                }
                Layer::Dense(d) => {
                    d.linear.weight =
                        Param::from_tensor(Tensor::from_data(tensor(&w["dense_weight"], vec![484, 7]), &device));
                    d.linear.bias =
                        Some(Param::from_tensor(Tensor::from_data(tensor(&w["dense_bias"], vec![7]), &device)));
                }
                _ => {}
            }
        }
        let images = Tensor::<4>::from_data(tensor(&doc["images"], vec![4, 1, 48, 48]), &device);
        let labels: Vec<i64> = doc["labels"].as_array().unwrap().iter().map(|l| l.as_i64().unwrap()).collect();
        let labels = Tensor::<1, Int>::from_data(TensorData::new(labels, [4]), &device);
        let mut optimizer = OptimizerKind::Adam.init();
        let loss_fn = CrossEntropyLossConfig::new().init(&device);
        let (model, outcome) =
            training_step(Model::Layers(net), &mut optimizer, &loss_fn, images, labels, None, None, 1e-3).unwrap();
        let loss_diff = (outcome.loss as f64 - doc["loss"].as_f64().unwrap()).abs();
        let Model::Layers(net) = model.valid() else { unreachable!() };
        let values = |t: Tensor<1>| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        let mut ours = Vec::new();
        for layer in &net.layers {
            match layer {
                Layer::Conv(c) => ours.push(("conv_weight", values(c.conv.weight.val().flatten(0, 3)))),
                Layer::Dense(d) => ours.push(("dense_weight", values(d.linear.weight.val().flatten(0, 1)))),
                _ => {}
            }
        }
        for layer in &net.layers {
            match layer {
                Layer::Conv(c) => ours.push(("conv_bias", values(c.conv.bias.as_ref().unwrap().val()))),
                Layer::Dense(d) => ours.push(("dense_bias", values(d.linear.bias.as_ref().unwrap().val()))),
                _ => {}
            }
        }
        let mut report = vec![format!("loss {loss_diff:.2e}")];
        let mut worst = 0f32;
        for (name, got) in &ours {
            let (want, start) = (floats(&doc["after"][*name]), floats(&doc["before"][*name]));
            assert_eq!(got.len(), want.len(), "{name}");
            let diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            // The step moved the weights by about the learning rate, so equal-to-PyTorch can fail.
            let moved = want.iter().zip(&start).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(moved > 5e-4, "{name}: PyTorch's step moved the weights by {moved}");
            report.push(format!("{name} {diff:.2e}"));
            worst = worst.max(diff);
        }
        eprintln!("largest |ferkit - pytorch| after one step: {}", report.join(", "));
        // Measured (session 10): loss and convolution equal, dense weights within 3.7e-9.
        assert!(loss_diff < 1e-6 && worst < 1e-7, "{}", report.join(", "));
    }
}
