//! `ferkit data stats` and `ferkit data grid`.

use std::path::PathBuf;

use clap::Subcommand;
use ferkit::error::Result;

use super::DataArgs;
use ferkit::data::SplitName;
use ferkit::data::augment::AugmentConfig;
use ferkit::reporting::plots::{augment_preview, face_grid};
use ferkit::reporting::table::{stats_json, stats_table};

#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Rows per class and split.
    Stats {
        #[command(flatten)]
        data: DataArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// A PNG grid of faces, a column per class with its name.
    Grid {
        #[command(flatten)]
        data: DataArgs,
        /// Where to write the PNG.
        #[arg(long)]
        out: PathBuf,
        /// Faces per class.
        #[arg(long, default_value_t = 2)]
        per_class: usize,
        /// Which split to draw from.
        #[arg(long, value_parser = super::choice::<SplitName>(), default_value = "train")]
        split: SplitName,
    },
    /// A 3 x 5 PNG preview of augmented training faces (standardised, then augmented).
    AugmentGrid {
        #[command(flatten)]
        data: DataArgs,
        #[arg(long)]
        out: PathBuf,
        /// The recipe, as for `ferkit train --augment`.
        #[arg(long, default_value = "rotation=20,shear=20,zoom=0.1,hflip,fill=nearest")]
        augment: String,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
}

pub fn run(cmd: DataCommand) -> Result<()> {
    match cmd {
        DataCommand::Stats { data, json } => {
            let dataset = data.load()?;
            if json {
                super::lines::say(&format!("{}", serde_json::to_string_pretty(&stats_json(&dataset))?));
            } else {
                print!("{}", stats_table(&dataset));
            }
            Ok(())
        }
        DataCommand::Grid { data, out, per_class, split } => {
            ferkit::ensure!(Config, per_class >= 1, "--per-class must be at least 1");
            let dataset = data.load()?;
            face_grid(dataset.split(split), per_class, &out)?;
            super::lines::tell(&format!("wrote {}", out.display()));
            Ok(())
        }
        DataCommand::AugmentGrid { data, out, augment, seed } => {
            let config = AugmentConfig::parse(&augment)?;
            let dataset = data.load()?;
            augment_preview(&dataset.train, &config, seed, &out)?;
            super::lines::tell(&format!("wrote {}", out.display()));
            Ok(())
        }
    }
}
