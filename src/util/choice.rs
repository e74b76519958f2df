//! Enumerations a user picks by name (on the command line, in Python, in a request), listed once
//! with each value's name and help, so that every front offers the same names.

/// A closed set of values with names: `CHOICES` lists each value's name (as configs and
/// results spell it) and one line of help.
pub trait Choice: Sized + Copy + PartialEq + 'static {
    const CHOICES: &'static [(&'static str, Self, &'static str)];

    /// The value called `name` (exact spelling), if any.
    fn from_name(name: &str) -> Option<Self> {
        Self::CHOICES.iter().find(|(n, ..)| *n == name).map(|&(_, v, _)| v)
    }

    /// This value's name.
    fn name(self) -> &'static str {
        Self::CHOICES.iter().find(|(_, v, _)| *v == self).map(|&(n, ..)| n).expect("every value is listed")
    }
}
