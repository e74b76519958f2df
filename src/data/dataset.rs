//! The in-memory data set: 48x48 grey faces held as `u8`, with labels 0..6.

use serde::Serialize;

/// Side of a FER2013 face in pixels.
pub const IMAGE_SIDE: usize = 48;
/// Pixels in one face.
pub const IMAGE_PIXELS: usize = IMAGE_SIDE * IMAGE_SIDE;
/// Number of emotion classes.
pub const NUM_CLASSES: usize = 7;
/// FER2013's class names, indexed by label.
pub const CLASS_NAMES: [&str; NUM_CLASSES] = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"];

/// Seven per-class values serialised as one map, `{"angry": v, ..., "neutral": v}` in
/// [`CLASS_NAMES`] order: the schema of a face's probabilities and of a video track's shares.
pub struct ByClass<'a, T>(pub &'a [T; NUM_CLASSES]);

impl<T: Serialize> Serialize for ByClass<'_, T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(NUM_CLASSES))?;
        for (class, value) in CLASS_NAMES.iter().zip(self.0) {
            map.serialize_entry(class, value)?;
        }
        map.end()
    }
}

/// Which part of the data a row belongs to. FER2013's `Usage` column maps
/// Training -> train, PublicTest -> validation, PrivateTest -> test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SplitName {
    Train,
    Val,
    Test,
}

impl crate::util::choice::Choice for SplitName {
    const CHOICES: &'static [(&'static str, Self, &'static str)] = &[
        ("train", SplitName::Train, "the training rows (FER2013's Training)"),
        ("val", SplitName::Val, "the validation rows (FER2013's PublicTest)"),
        ("test", SplitName::Test, "the test rows (FER2013's PrivateTest)"),
    ];
}

impl SplitName {
    pub const ALL: [SplitName; 3] = [SplitName::Train, SplitName::Val, SplitName::Test];

    pub fn as_str(self) -> &'static str {
        match self {
            SplitName::Train => "train",
            SplitName::Val => "val",
            SplitName::Test => "test",
        }
    }

    /// Parses a FER2013 `Usage` value or a folder name (case-insensitive).
    pub fn parse(name: &str) -> Option<SplitName> {
        match name.trim().to_ascii_lowercase().as_str() {
            "training" | "train" => Some(SplitName::Train),
            "publictest" | "val" | "valid" | "validation" => Some(SplitName::Val),
            "privatetest" | "test" => Some(SplitName::Test),
            _ => None,
        }
    }
}

/// One split: `len()` faces, row-major, `IMAGE_PIXELS` bytes each.
#[derive(Clone, Debug, Default)]
pub struct Split {
    pixels: Vec<u8>,
    labels: Vec<u8>,
}

impl Split {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a split from whole arrays; `pixels.len()` must be `labels.len() * IMAGE_PIXELS`.
    pub fn from_parts(pixels: Vec<u8>, labels: Vec<u8>) -> Self {
        assert_eq!(pixels.len(), labels.len() * IMAGE_PIXELS, "pixels and labels disagree");
        assert!(labels.iter().all(|&l| (l as usize) < NUM_CLASSES), "label out of range");
        Self { pixels, labels }
    }

    pub fn push(&mut self, image: &[u8], label: u8) {
        debug_assert_eq!(image.len(), IMAGE_PIXELS);
        debug_assert!((label as usize) < NUM_CLASSES);
        self.pixels.extend_from_slice(image);
        self.labels.push(label);
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn image(&self, index: usize) -> &[u8] {
        &self.pixels[index * IMAGE_PIXELS..(index + 1) * IMAGE_PIXELS]
    }

    pub fn label(&self, index: usize) -> u8 {
        self.labels[index]
    }

    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// Rows per class.
    pub fn class_counts(&self) -> [usize; NUM_CLASSES] {
        let mut counts = [0; NUM_CLASSES];
        for &l in &self.labels {
            counts[l as usize] += 1;
        }
        counts
    }

    /// The first `n` rows (all of them when `n >= len`).
    pub fn head(&self, n: usize) -> Split {
        let n = n.min(self.len());
        Split { pixels: self.pixels[..n * IMAGE_PIXELS].to_vec(), labels: self.labels[..n].to_vec() }
    }

    /// A subset of rows by index, in the given order.
    pub fn select(&self, indices: &[usize]) -> Split {
        let mut out = Split { pixels: Vec::with_capacity(indices.len() * IMAGE_PIXELS), labels: Vec::new() };
        for &i in indices {
            out.push(self.image(i), self.label(i));
        }
        out
    }
}

/// A data set in three splits. A split a source did not provide is empty.
#[derive(Clone, Debug, Default)]
pub struct Dataset {
    pub train: Split,
    pub val: Split,
    pub test: Split,
}

impl Dataset {
    pub fn split(&self, name: SplitName) -> &Split {
        match name {
            SplitName::Train => &self.train,
            SplitName::Val => &self.val,
            SplitName::Test => &self.test,
        }
    }

    pub fn split_mut(&mut self, name: SplitName) -> &mut Split {
        match name {
            SplitName::Train => &mut self.train,
            SplitName::Val => &mut self.val,
            SplitName::Test => &mut self.test,
        }
    }

    pub fn total_rows(&self) -> usize {
        self.train.len() + self.val.len() + self.test.len()
    }

    /// A smaller data set: at most `n` rows of each split, taken in a seeded random order so
    /// that every class is represented (FER2013 rows are not shuffled within a split).
    pub fn subsample(&self, n: usize, seed: u64) -> Dataset {
        use rand::SeedableRng;
        use rand::seq::SliceRandom;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut take = |split: &Split| {
            let mut idx: Vec<usize> = (0..split.len()).collect();
            idx.shuffle(&mut rng);
            idx.truncate(n);
            split.select(&idx)
        };
        Dataset { train: take(&self.train), val: take(&self.val), test: take(&self.test) }
    }
}

impl Dataset {
    /// Moves `fraction` of each class's training rows to the validation split (stratified; the
    /// rows drawn with `seed`), for data that comes with train and test only (FER2013's image
    /// release). Each class with at least two training rows gives at least one.
    ///
    /// Errors: a fraction outside (0, 0.5], or a data set that has validation rows already.
    pub fn carve_validation(&mut self, fraction: f64, seed: u64) -> crate::error::Result<usize> {
        use rand::SeedableRng;
        use rand::seq::SliceRandom;
        if !(fraction > 0.0 && fraction <= 0.5) {
            crate::bail!(
                BadInput,
                "--val-split must be in (0, 0.5], the share of the training rows kept apart (got {fraction})"
            );
        }
        if !self.val.is_empty() {
            crate::bail!(
                BadInput,
                "--val-split: the data has {} validation rows already; drop --val-split to use them",
                self.val.len()
            );
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut held = Vec::new();
        for class in 0..NUM_CLASSES as u8 {
            let mut rows: Vec<usize> = (0..self.train.len()).filter(|&i| self.train.label(i) == class).collect();
            if rows.len() < 2 {
                continue;
            }
            rows.shuffle(&mut rng);
            let n = ((rows.len() as f64 * fraction).round() as usize).clamp(1, rows.len() - 1);
            held.extend_from_slice(&rows[..n]);
        }
        held.sort_unstable();
        let mut is_held = vec![false; self.train.len()];
        for &i in &held {
            is_held[i] = true;
        }
        let kept: Vec<usize> = (0..self.train.len()).filter(|&i| !is_held[i]).collect();
        self.val = self.train.select(&held);
        self.train = self.train.select(&kept);
        Ok(held.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_validation_split_is_carved_by_class_and_seed() {
        let mut d = Dataset::default();
        for i in 0..100u8 {
            let label = if i < 80 { 3 } else { 5 }; // 80 happy, 20 surprise
            d.train.push(&[i; IMAGE_PIXELS], label);
        }
        d.train.push(&[200; IMAGE_PIXELS], 1); // a class with one row stays in train
        let mut again = d.clone();
        assert_eq!(d.carve_validation(0.1, 7).unwrap(), 10);
        assert_eq!(d.val.class_counts(), [0, 0, 0, 8, 0, 2, 0]);
        assert_eq!(d.train.class_counts(), [0, 1, 0, 72, 0, 18, 0]);
        again.carve_validation(0.1, 7).unwrap();
        assert_eq!(again.val.labels(), d.val.labels());
        assert_eq!(again.val.image(0), d.val.image(0));
        // Nothing is lost or doubled.
        let mut seen: Vec<u8> = (0..d.train.len()).map(|i| d.train.image(i)[0]).collect();
        seen.extend((0..d.val.len()).map(|i| d.val.image(i)[0]));
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 101);
        assert!(d.carve_validation(0.1, 7).unwrap_err().to_string().contains("validation rows already"));
        assert!(Dataset::default().carve_validation(0.0, 7).is_err());
        assert!(Dataset::default().carve_validation(f64::NAN, 7).is_err());
    }

    #[test]
    fn usage_names_map_to_splits() {
        assert_eq!(SplitName::parse("Training"), Some(SplitName::Train));
        assert_eq!(SplitName::parse("PublicTest"), Some(SplitName::Val));
        assert_eq!(SplitName::parse("PrivateTest"), Some(SplitName::Test));
        assert_eq!(SplitName::parse("validation"), Some(SplitName::Val));
        assert_eq!(SplitName::parse("Holdout"), None);
    }

    #[test]
    fn split_counts_and_select() {
        let mut s = Split::new();
        for l in [0u8, 3, 3, 6] {
            s.push(&[l; IMAGE_PIXELS], l);
        }
        assert_eq!(s.class_counts(), [1, 0, 0, 2, 0, 0, 1]);
        let sub = s.select(&[3, 0]);
        assert_eq!(sub.labels(), &[6, 0]);
        assert_eq!(sub.image(0)[0], 6);
        assert_eq!(s.head(2).labels(), &[0, 3]);
    }
}
