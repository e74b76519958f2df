//! The command line's advice for library errors: the library says what is wrong in its own
//! terms (an [`ErrorKind`], the setting or the file line it is about); this says which flag
//! to change.

use ferkit::error::{Error, ErrorKind};

/// The flag that sets a training or data setting (the library's config key).
fn flag_for(key: &str) -> Option<&'static str> {
    Some(match key {
        "learning_rate" => "--lr",
        "momentum" => "--momentum",
        "weight_decay" => "--weight-decay",
        "optimizer" => "--optimizer",
        "schedule" => "--schedule",
        "warmup_epochs" => "--warmup-epochs",
        "plateau_factor" => "--plateau-factor",
        "plateau_patience" => "--plateau-patience",
        "mixup" => "--mixup",
        "cutmix" => "--cutmix",
        "time_budget_minutes" => "--time-budget",
        "mix" => "--mixup or --cutmix",
        "distill_weight" => "--distill-weight",
        "distill_temperature" => "--distill-temperature",
        "distill" => "--teacher",
        "augment" => "--augment",
        "label_smoothing" => "--label-smoothing",
        "ema_decay" => "--ema",
        "epochs" => "--epochs and --batch",
        "every" => "--every",
        "fps" => "--fps",
        "start" => "--start",
        "end" => "--end",
        "detect_every" => "--detect-every",
        "smooth" => "--smooth",
        _ => return None,
    })
}

/// One line of advice for `e`, if the command line has one.
pub fn hint(e: &Error) -> Option<String> {
    let location = e.location();
    let in_file = location.is_some_and(|l| l.file.is_some());
    let field = location.and_then(|l| l.field.as_deref());
    Some(match (e.kind(), field) {
        (ErrorKind::Diverged, _) => "start again with a lower --lr".to_string(),
        (_, Some("resume")) => "`ferkit train --resume DIR` goes on with it (one that diverged would diverge again: \
                                start it anew with a lower --lr and --overwrite)"
            .to_string(),
        (_, Some("overwrite")) => "pick another --out, or pass --overwrite".to_string(),
        (_, Some("search_out")) => "use another --out, or the same options to resume the search".to_string(),
        (_, Some("val_split")) => {
            "for data with train and test only, hold out part of train with --val-split 0.1".to_string()
        }
        (_, Some("data")) => "use --data FILE_OR_FOLDER, or --train/--val/--test FILE".to_string(),
        (ErrorKind::BadInput, _) if in_file && location.is_some_and(|l| l.line.is_some()) => {
            "use --skip-bad-rows to skip such rows (they are counted and listed)".to_string()
        }
        (_, Some(key)) if !in_file => format!("set with {}", flag_for(key)?),
        _ => return None,
    })
}
