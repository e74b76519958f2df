//! What loading a data set did: rows read, rows skipped, files left out, notes, seconds.

/// What loading did: rows kept, rows skipped and files passed over (each with its reason), seconds.
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    pub rows_read: usize,
    /// Malformed rows or unreadable images skipped under `--skip-bad-rows`, each "path line N: reason".
    pub skipped: Vec<String>,
    /// Files in image folders that are not images (notes, sidecars, thumbnail databases) and class
    /// folders outside the seven under `--skip-unknown-classes`, each "path: reason"; never an
    /// error, always counted.
    pub ignored_files: Vec<String>,
    /// What loading did besides reading rows that a user should know (an archive opened, rows
    /// held out for validation), in order; shown before the counts.
    pub notes: Vec<String>,
    pub seconds: f64,
}

impl LoadReport {
    /// How many reasons of each list the terminal shows; the run directory's load_report.txt has all.
    const EXAMPLES_SHOWN: usize = 5;

    /// Records a skipped row or image ("path line N: reason").
    pub fn skip(&mut self, message: String) {
        self.skipped.push(message);
    }

    /// Records a note for the user (see [`LoadReport::notes`]).
    pub fn note(&mut self, message: String) {
        self.notes.push(message);
    }

    /// Records a file or folder left out of the data set ("path: reason").
    pub fn ignore_file(&mut self, message: String) {
        self.ignored_files.push(message);
    }

    /// A line for stderr, plus the first few skipped rows' and passed-over files' reasons.
    pub fn describe(&self) -> String {
        self.render(Self::EXAMPLES_SHOWN)
    }

    /// Every reason, for `load_report.txt`.
    pub fn full(&self) -> String {
        self.render(usize::MAX) + "\n"
    }

    fn render(&self, shown: usize) -> String {
        let mut s: String = self.notes.iter().map(|n| format!("{n}\n")).collect();
        s += &format!("loaded {} rows in {:.2} s", self.rows_read, self.seconds);
        let lists = [
            (&self.skipped, "skipped", "bad rows or images"),
            (&self.ignored_files, "left out", "files or folders that are not faces of the seven classes"),
        ];
        for (list, verb, what) in lists {
            if list.is_empty() {
                continue;
            }
            s += &format!("\n{verb} {} {what}:", list.len());
            for e in list.iter().take(shown) {
                s += &format!("\n  {e}");
            }
            if list.len() > shown {
                s += &format!("\n  ... and {} more (all in the run directory's load_report.txt)", list.len() - shown);
            }
        }
        s
    }
}
