//! Classification metrics from a confusion matrix: accuracy, per-class precision, recall, F1.

use serde::{Deserialize, Serialize};

use crate::data::{CLASS_NAMES, NUM_CLASSES};

/// `counts[true][predicted]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Confusion {
    pub counts: [[usize; NUM_CLASSES]; NUM_CLASSES],
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    /// The class name (one of [`crate::data::CLASS_NAMES`]).
    pub class: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Rows of this class in the split.
    pub support: usize,
}

impl Confusion {
    pub fn add(&mut self, truth: u8, predicted: u8) {
        self.counts[truth as usize][predicted as usize] += 1;
    }

    pub fn total(&self) -> usize {
        self.counts.iter().flatten().sum()
    }

    pub fn correct(&self) -> usize {
        (0..NUM_CLASSES).map(|c| self.counts[c][c]).sum()
    }

    pub fn accuracy(&self) -> f64 {
        ratio(self.correct(), self.total())
    }

    /// Precision, recall and F1 per class; 0 where a ratio has nothing to divide by
    /// (scikit-learn's `zero_division=0`).
    pub fn per_class(&self) -> Vec<ClassMetrics> {
        (0..NUM_CLASSES)
            .map(|c| {
                let tp = self.counts[c][c];
                let predicted: usize = (0..NUM_CLASSES).map(|t| self.counts[t][c]).sum();
                let support: usize = self.counts[c].iter().sum();
                let precision = ratio(tp, predicted);
                let recall = ratio(tp, support);
                let f1 = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
                ClassMetrics { class: CLASS_NAMES[c].to_string(), precision, recall, f1, support }
            })
            .collect()
    }

    /// The unweighted mean of the per-class F1 scores over all seven classes (a class with no rows
    /// and no predictions counts as 0, as scikit-learn's `zero_division=0` with `labels=range(7)`).
    pub fn macro_f1(&self) -> f64 {
        self.per_class().iter().map(|m| m.f1).sum::<f64>() / NUM_CLASSES as f64
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_match_hand_computed_figures() {
        let mut c = Confusion::default();
        // class 0: 3 rows, 2 right, 1 called class 1; class 1: 2 rows, both right;
        // class 2: 1 row called class 0.
        for (t, p) in [(0, 0), (0, 0), (0, 1), (1, 1), (1, 1), (2, 0)] {
            c.add(t, p);
        }
        assert_eq!(c.total(), 6);
        assert!((c.accuracy() - 4.0 / 6.0).abs() < 1e-12);
        let m = c.per_class();
        // class 0: precision 2/3, recall 2/3, F1 2/3
        assert!((m[0].precision - 2.0 / 3.0).abs() < 1e-12);
        assert!((m[0].recall - 2.0 / 3.0).abs() < 1e-12);
        // class 1: precision 2/3, recall 1, F1 0.8
        assert!((m[1].precision - 2.0 / 3.0).abs() < 1e-12);
        assert!((m[1].f1 - 0.8).abs() < 1e-12);
        // class 2: nothing right
        assert_eq!((m[2].precision, m[2].recall, m[2].f1, m[2].support), (0.0, 0.0, 0.0, 1));
        // Classes with no rows and no predictions count as zero.
        assert_eq!(m[5].support, 0);
        assert!((m[0].f1 - 2.0 / 3.0).abs() < 1e-12 && (m[1].recall - 1.0).abs() < 1e-12);
        // Macro F1 over all seven classes, the four without rows counting as 0 (scikit-learn's
        // `f1_score(average="macro", labels=range(7), zero_division=0)`; its default `labels`
        // would average over the three classes present only).
        assert!((c.macro_f1() - (2.0 / 3.0 + 0.8 + 0.0) / 7.0).abs() < 1e-12, "{}", c.macro_f1());
    }
}
