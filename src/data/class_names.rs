//! Class folder names as other data sets spell them, mapped to FER2013's seven classes.
//!
//! Built in: the names of FER2013's own image release, and the synonyms of the common facial
//! expression data sets (CK+ `anger`, `sadness`, `happiness`; AffectNet and RAF-DB `fearful`,
//! `disgusted`, `surprised`; ...); names whose meaning differs between data sets (AffectNet's
//! `none` is "none of the eight", not neutral) are not guessed. A user's `--class-map NAME=class,...` comes first. A class
//! outside the seven (CK+'s `contempt`, `unknown`) is refused, or skipped and counted under
//! `--skip-unknown-classes`.

use std::collections::BTreeMap;

use crate::error::{Result, bail};

use super::dataset::CLASS_NAMES;

/// Other spellings of the seven classes (lower case), with the class each means.
pub const SYNONYMS: [(&str, &str); 14] = [
    ("anger", "angry"),
    ("disgusted", "disgust"),
    ("disgusting", "disgust"),
    ("fearful", "fear"),
    ("afraid", "fear"),
    ("scared", "fear"),
    ("happiness", "happy"),
    ("joy", "happy"),
    ("joyful", "happy"),
    ("smile", "happy"),
    ("sadness", "sad"),
    ("surprised", "surprise"),
    ("surprising", "surprise"),
    ("neutrality", "neutral"),
];

/// What a class folder's name means: one of the seven (its label), or outside them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FolderClass {
    /// FER2013's label, 0..=6 in [`CLASS_NAMES`] order.
    Label(u8),
    /// Not one of the seven (left out under `--skip-unknown-classes`).
    Outside,
}

/// Parses `--class-map anger=angry,sadness=sad`: each target must be one of the seven classes.
pub fn parse_class_map(text: &str) -> Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((from, to)) = pair.split_once('=') else {
            bail!(BadInput, "--class-map: `{pair}` is not NAME=CLASS (e.g. anger=angry)");
        };
        let (from, to) = (from.trim().to_lowercase(), to.trim().to_lowercase());
        if from.is_empty() {
            bail!(BadInput, "--class-map: `{pair}` names no folder before `=`");
        }
        if !CLASS_NAMES.contains(&to.as_str()) {
            bail!(BadInput, "--class-map: in `{pair}`, `{to}` is not one of {}", CLASS_NAMES.join(", "));
        }
        if map.insert(from.clone(), to).is_some() {
            bail!(BadInput, "--class-map: `{from}` is mapped twice");
        }
    }
    Ok(map)
}

/// The class of a folder named `name` (any case): the user's map first, then the seven names,
/// then the built-in synonyms. Errors (unless `skip_unknown`) name the folder and the remedies.
pub fn folder_class(name: &str, user_map: &BTreeMap<String, String>, skip_unknown: bool) -> Result<FolderClass> {
    let lower = name.to_lowercase();
    // The map may come from a hand-edited config.toml: compare without case, check the target.
    let target = user_map
        .iter()
        .find(|(from, _)| from.to_lowercase() == lower)
        .map(|(_, to)| to.to_lowercase())
        .or_else(|| CLASS_NAMES.iter().find(|c| **c == lower).map(|c| c.to_string()))
        .or_else(|| SYNONYMS.iter().find(|(s, _)| *s == lower).map(|(_, c)| c.to_string()));
    match target {
        Some(class) => match CLASS_NAMES.iter().position(|c| *c == class) {
            Some(label) => Ok(FolderClass::Label(label as u8)),
            None => bail!(
                BadInput,
                "the class map sends `{name}` to `{class}`, which is not one of {}",
                CLASS_NAMES.join(", ")
            ),
        },
        None if skip_unknown => Ok(FolderClass::Outside),
        None => bail!(
            BadInput,
            "`{name}` is not a class name (expected one of {}, or a synonym such as anger, sadness, happiness); \
             map it with --class-map {lower}=CLASS, or pass --skip-unknown-classes to leave such folders out",
            CLASS_NAMES.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_names_map_to_the_seven_classes() {
        let none = BTreeMap::new();
        let label = |n: &str| folder_class(n, &none, false).unwrap();
        assert_eq!(label("Angry"), FolderClass::Label(0));
        assert_eq!(label("anger"), FolderClass::Label(0));
        assert_eq!(label("SADNESS"), FolderClass::Label(4));
        assert_eq!(label("happiness"), FolderClass::Label(3));
        assert_eq!(label("surprised"), FolderClass::Label(5));
        let err = folder_class("contempt", &none, false).unwrap_err().to_string();
        assert!(
            err.contains("`contempt`")
                && err.contains("--class-map contempt=")
                && err.contains("--skip-unknown-classes")
        );
        assert_eq!(folder_class("contempt", &none, true).unwrap(), FolderClass::Outside);
        let map = parse_class_map("contempt=disgust, Rage=angry").unwrap();
        assert_eq!(folder_class("contempt", &map, false).unwrap(), FolderClass::Label(1));
        assert_eq!(folder_class("rage", &map, false).unwrap(), FolderClass::Label(0));
        // Every synonym names one of the seven.
        for (_, class) in SYNONYMS {
            assert!(CLASS_NAMES.contains(&class));
        }
        assert!(parse_class_map("anger").unwrap_err().to_string().contains("NAME=CLASS"));
        assert!(parse_class_map("anger=rage").unwrap_err().to_string().contains("`rage` is not one of"));
        assert!(parse_class_map("a=angry,a=sad").unwrap_err().to_string().contains("mapped twice"));
    }
}
