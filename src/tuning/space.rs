//! Search spaces: hyperparameters (Int, Float, Choice, Fixed), their encoding to [0, 1] as
//! keras-tuner encodes them, and a net template whose `"$name"` strings take their values.
//!
//! ```toml
//! name = "tune_cnn"
//! batch_size = 512
//!
//! [[params]]
//! name = "conv_1_filter"
//! type = "int"
//! min = 32
//! max = 128
//! step = 16
//!
//! [[params]]
//! name = "learning_rate"
//! type = "choice"
//! values = [1e-2, 1e-3]
//!
//! [net]                       # a net file (see models::spec) with "$param" placeholders
//! name = "tuned_cnn"
//! input = [48, 48, 1]
//! learning_rate = "$learning_rate"
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::models::NetSpec;

/// Values of every parameter of one trial, by name.
pub type Assignment = BTreeMap<String, Value>;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sampling {
    #[default]
    Linear,
    Log,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ParamKind {
    Int {
        min: i64,
        max: i64,
        #[serde(default = "one")]
        step: i64,
    },
    Float {
        min: f64,
        max: f64,
        #[serde(default)]
        sampling: Sampling,
    },
    Choice {
        values: Vec<Value>,
    },
    Fixed {
        value: Value,
    },
}

fn one() -> i64 {
    1
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Param {
    pub name: String,
    #[serde(flatten)]
    pub kind: ParamKind,
}

impl Param {
    /// Whether the parameter takes part in the search (Fixed ones do not).
    pub fn is_searched(&self) -> bool {
        !matches!(self.kind, ParamKind::Fixed { .. })
    }

    /// The key [`Self::check`] objects to first (for the error's line number).
    fn offending_key(&self) -> &'static str {
        match &self.kind {
            ParamKind::Int { min, max, .. } if min > max => "max",
            ParamKind::Int { .. } => "step",
            ParamKind::Float { min, max, .. } if !(min.is_finite() && max.is_finite() && min < max) => "max",
            ParamKind::Float { .. } => "min",
            ParamKind::Choice { .. } => "values",
            ParamKind::Fixed { .. } => "value",
        }
    }

    fn check(&self) -> Result<()> {
        match &self.kind {
            ParamKind::Int { min, max, step } if min > max || *step < 1 => {
                bail!(Config, "parameter `{}`: needs min <= max and step >= 1", self.name)
            }
            ParamKind::Float { min, max, sampling } => {
                if !(min < max) || !min.is_finite() || !max.is_finite() {
                    bail!(Config, "parameter `{}`: needs finite min < max", self.name);
                }
                if *sampling == Sampling::Log && *min <= 0.0 {
                    bail!(Config, "parameter `{}`: log sampling needs min > 0", self.name);
                }
                Ok(())
            }
            ParamKind::Choice { values } if values.is_empty() => bail!(Config, "parameter `{}`: no values", self.name),
            _ => Ok(()),
        }
    }

    fn int_count(min: i64, max: i64, step: i64) -> i64 {
        (max - min) / step + 1
    }

    /// Maps a value to [0, 1]: Int and Choice to the centre of their bucket, Float linearly or
    /// on a log scale (keras-tuner's `value_to_prob`).
    pub fn encode(&self, value: &Value) -> Result<f64> {
        let bad = || crate::err!(Config, "parameter `{}`: {value} is not one of its values", self.name);
        Ok(match &self.kind {
            ParamKind::Int { min, max, step } => {
                let v = value.as_i64().ok_or_else(bad)?;
                if v < *min || v > *max || (v - min) % step != 0 {
                    return Err(bad());
                }
                let n = Self::int_count(*min, *max, *step);
                (((v - min) / step) as f64 + 0.5) / n as f64
            }
            ParamKind::Float { min, max, sampling } => {
                let v = value.as_f64().ok_or_else(bad)?;
                if v < *min || v > *max {
                    return Err(bad());
                }
                match sampling {
                    Sampling::Linear => (v - min) / (max - min),
                    Sampling::Log => (v / min).ln() / (max / min).ln(),
                }
            }
            ParamKind::Choice { values } => {
                let i = values.iter().position(|c| same_value(c, value)).ok_or_else(bad)?;
                (i as f64 + 0.5) / values.len() as f64
            }
            ParamKind::Fixed { .. } => 0.5,
        })
    }

    /// Maps a point of [0, 1] back to a value (keras-tuner's `prob_to_value`).
    pub fn decode(&self, prob: f64) -> Value {
        let prob = prob.clamp(0.0, 1.0);
        let bucket = |n: usize| ((prob * n as f64).floor() as usize).min(n - 1);
        match &self.kind {
            ParamKind::Int { min, max, step } => {
                let n = Self::int_count(*min, *max, *step) as usize;
                Value::from(min + bucket(n) as i64 * step)
            }
            ParamKind::Float { min, max, sampling } => {
                let v = match sampling {
                    Sampling::Linear => min + prob * (max - min),
                    Sampling::Log => min * (max / min).powf(prob),
                };
                Value::from(v.clamp(*min, *max))
            }
            ParamKind::Choice { values } => values[bucket(values.len())].clone(),
            ParamKind::Fixed { value } => value.clone(),
        }
    }

    /// The values at the edges of the parameter's range: an int's least and greatest reachable
    /// value, a float's bounds, every choice, the fixed value.
    pub fn extremes(&self) -> Vec<Value> {
        match &self.kind {
            ParamKind::Int { min, max, step } => {
                let last = min + (Self::int_count(*min, *max, *step) - 1) * step;
                if last == *min { vec![Value::from(*min)] } else { vec![Value::from(*min), Value::from(last)] }
            }
            ParamKind::Float { min, max, .. } => vec![Value::from(*min), Value::from(*max)],
            ParamKind::Choice { values } => values.clone(),
            ParamKind::Fixed { value } => vec![value.clone()],
        }
    }

    /// Every value, for grid search; `float_points` evenly spaced points (on the parameter's
    /// scale) stand for a Float's range.
    pub fn grid_values(&self, float_points: usize) -> Vec<Value> {
        match &self.kind {
            ParamKind::Int { min, max, step } => {
                (0..Self::int_count(*min, *max, *step)).map(|i| Value::from(min + i * step)).collect()
            }
            ParamKind::Float { .. } => {
                let n = float_points.max(2);
                (0..n).map(|i| self.decode(i as f64 / (n - 1) as f64)).collect()
            }
            ParamKind::Choice { values } => values.clone(),
            ParamKind::Fixed { value } => vec![value.clone()],
        }
    }
}

/// Values compare numerically when both are numbers (3 and 3.0 are the same choice).
pub fn same_value(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// A whole search space: parameters and the net template they fill in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchSpace {
    pub name: String,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    pub params: Vec<Param>,
    /// A net file's content with `"$param"` strings (absent for a search over plain functions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<toml::Table>,
}

fn default_batch() -> usize {
    512
}

impl SearchSpace {
    pub fn from_toml(text: &str, origin: &str) -> Result<SearchSpace> {
        let space: SearchSpace = toml::from_str(text).with_context(|| format!("{origin}: not a valid search space"))?;
        let mut names = std::collections::HashSet::new();
        // Errors name the line of the offending key of the parameter's `[[params]]` table.
        let at = |i: usize, key: &str| {
            crate::models::spec::key_line(text, Some(("[[params]]", i)), Some(key))
                .map(|l| format!(" line {l}:"))
                .unwrap_or_default()
        };
        for (i, p) in space.params.iter().enumerate() {
            if let Err(e) = p.check() {
                return Err(e.context(format!("{origin}:{}", at(i, p.offending_key()))));
            }
            if !names.insert(p.name.as_str()) {
                bail!(Config, "{origin}:{} parameter `{}` is defined twice", at(i, "name"), p.name);
            }
        }
        // Every placeholder must name a parameter and every parameter must be used; the template
        // must give a valid net at the centre of the space and at its corners, so that no trial
        // fails for a net that cannot be built.
        if let Some(template) = &space.net {
            let centre: Assignment = space.params.iter().map(|p| (p.name.clone(), p.decode(0.5))).collect();
            space.net_for(&centre).with_context(|| format!("{origin}: the net template"))?;
            let mut used = std::collections::BTreeSet::new();
            placeholders(&toml::Value::Table(template.clone()), &mut used);
            for p in &space.params {
                if !used.contains(&p.name) {
                    bail!(
                        Config,
                        "{origin}: parameter `{}` is not used by the [net] template (no \"${}\" in it)",
                        p.name,
                        p.name
                    );
                }
            }
            space.check_corners().with_context(|| format!("{origin}: the net template"))?;
        }
        Ok(space)
    }

    /// Builds the net at every corner of the space: each parameter at each of its extremes (an
    /// int's or a float's least and greatest value, every choice), all combinations when there
    /// are at most [`MAX_CORNERS`], otherwise each parameter's extremes with the others at the
    /// centre. Errors name the assignment that fails and why.
    pub fn check_corners(&self) -> Result<()> {
        let extremes: Vec<Vec<Value>> = self.params.iter().map(Param::extremes).collect();
        let combinations = extremes.iter().try_fold(1usize, |n, e| n.checked_mul(e.len()));
        let centre: Assignment = self.params.iter().map(|p| (p.name.clone(), p.decode(0.5))).collect();
        let mut assignments = Vec::new();
        match combinations {
            Some(n) if n <= MAX_CORNERS => {
                for mut k in 0..n {
                    let mut values = Assignment::new();
                    for (p, e) in self.params.iter().zip(&extremes) {
                        values.insert(p.name.clone(), e[k % e.len()].clone());
                        k /= e.len();
                    }
                    assignments.push(values);
                }
            }
            _ => {
                for (p, e) in self.params.iter().zip(&extremes) {
                    for v in e {
                        let mut values = centre.clone();
                        values.insert(p.name.clone(), v.clone());
                        assignments.push(values);
                    }
                }
            }
        }
        for values in &assignments {
            if let Err(e) = self.net_for(values) {
                let shown: Vec<String> = values.iter().map(|(k, v)| format!("{k} = {v}")).collect();
                bail!(Config, "no valid net for the corner {}: {e:#}", shown.join(", "));
            }
        }
        Ok(())
    }

    pub fn from_file(path: &Path) -> Result<SearchSpace> {
        let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// The searched parameters, in file order: the dimensions of the encoded space.
    pub fn searched(&self) -> Vec<&Param> {
        self.params.iter().filter(|p| p.is_searched()).collect()
    }

    pub fn dimensions(&self) -> usize {
        self.searched().len()
    }

    /// Encodes an assignment as a point of [0, 1]^dimensions.
    pub fn encode(&self, values: &Assignment) -> Result<Vec<f64>> {
        self.searched()
            .iter()
            .map(|p| {
                let v = values.get(&p.name).with_context(|| format!("no value for `{}`", p.name))?;
                p.encode(v)
            })
            .collect()
    }

    /// Decodes a point of [0, 1]^dimensions, adding the Fixed parameters.
    pub fn decode(&self, point: &[f64]) -> Assignment {
        let mut searched = point.iter();
        self.params
            .iter()
            .map(|p| {
                let v = if p.is_searched() {
                    p.decode(*searched.next().expect("one coordinate per dimension"))
                } else {
                    p.decode(0.5)
                };
                (p.name.clone(), v)
            })
            .collect()
    }

    /// The net for an assignment: every `"$name"` string in the template replaced by its value.
    pub fn net_for(&self, values: &Assignment) -> Result<NetSpec> {
        let template =
            self.net.as_ref().with_context(|| format!("search space {} has no [net] template", self.name))?;
        let mut net = toml::Value::Table(template.clone());
        substitute(&mut net, values)?;
        let text = toml::to_string(&net).context("the filled-in template does not serialise")?;
        NetSpec::from_toml(&text, &format!("search space {}", self.name))
    }
}

/// At most this many corners are checked as all combinations (2^12).
pub const MAX_CORNERS: usize = 4096;

/// The parameter names that `"$name"` strings in `value` refer to.
fn placeholders(value: &toml::Value, out: &mut std::collections::BTreeSet<String>) {
    match value {
        toml::Value::String(s) if s.starts_with('$') => {
            out.insert(s[1..].to_string());
        }
        toml::Value::Array(items) => items.iter().for_each(|v| placeholders(v, out)),
        toml::Value::Table(table) => table.values().for_each(|v| placeholders(v, out)),
        _ => {}
    }
}

fn substitute(value: &mut toml::Value, values: &Assignment) -> Result<()> {
    match value {
        toml::Value::String(s) if s.starts_with('$') => {
            let name = &s[1..];
            let v = values.get(name).with_context(|| format!("`{s}` names no parameter"))?;
            *value = json_to_toml(v).with_context(|| format!("`{s}`: {v} cannot go into a net file"))?;
        }
        toml::Value::Array(items) => items.iter_mut().try_for_each(|v| substitute(v, values))?,
        toml::Value::Table(table) => table.iter_mut().try_for_each(|(_, v)| substitute(v, values))?,
        _ => {}
    }
    Ok(())
}

fn json_to_toml(v: &Value) -> Option<toml::Value> {
    Some(match v {
        Value::Bool(b) => toml::Value::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => toml::Value::Integer(i),
            None => toml::Value::Float(n.as_f64()?),
        },
        Value::String(s) => toml::Value::String(s.clone()),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn int(min: i64, max: i64, step: i64) -> Param {
        Param { name: "i".into(), kind: ParamKind::Int { min, max, step } }
    }

    #[test]
    fn int_buckets_round_trip() {
        let p = int(32, 128, 16); // 7 values
        for v in (32..=128).step_by(16) {
            let x = p.encode(&json!(v)).unwrap();
            assert!((0.0..=1.0).contains(&x));
            assert_eq!(p.decode(x), json!(v));
        }
        assert!((p.encode(&json!(32)).unwrap() - 0.5 / 7.0).abs() < 1e-12);
        assert_eq!(p.decode(0.0), json!(32));
        assert_eq!(p.decode(1.0), json!(128));
        assert!(p.encode(&json!(40)).is_err());
        assert!(p.encode(&json!(144)).is_err());
    }

    #[test]
    fn float_linear_and_log_round_trip() {
        let lin =
            Param { name: "f".into(), kind: ParamKind::Float { min: -5.0, max: 10.0, sampling: Sampling::Linear } };
        let log = Param { name: "g".into(), kind: ParamKind::Float { min: 1e-4, max: 1e-1, sampling: Sampling::Log } };
        for x in [0.0, 0.25, 0.5, 0.9, 1.0] {
            let v = lin.decode(x);
            assert!((lin.encode(&v).unwrap() - x).abs() < 1e-12);
            let v = log.decode(x);
            assert!((log.encode(&v).unwrap() - x).abs() < 1e-9);
        }
        assert!((log.decode(0.5).as_f64().unwrap() - 10f64.powf(-2.5)).abs() < 1e-12);
    }

    #[test]
    fn choices_round_trip_and_compare_numbers() {
        let p = Param { name: "c".into(), kind: ParamKind::Choice { values: vec![json!("relu"), json!("sigmoid")] } };
        assert_eq!(p.decode(p.encode(&json!("sigmoid")).unwrap()), json!("sigmoid"));
        assert_eq!(p.encode(&json!("relu")).unwrap(), 0.25);
        let n = Param { name: "k".into(), kind: ParamKind::Choice { values: vec![json!(3), json!(5)] } };
        assert_eq!(n.encode(&json!(5.0)).unwrap(), 0.75);
    }

    #[test]
    fn the_notebooks_space_fills_a_valid_net() {
        let text = include_str!("../../experiments/tune_cnn.toml");
        let space = SearchSpace::from_toml(text, "tune_cnn.toml").unwrap();
        assert_eq!(space.dimensions(), 10);
        let values = space.decode(&[0.0; 10]);
        let net = space.net_for(&values).unwrap();
        assert_eq!(net.learning_rate, 1e-2);
        let back = space.encode(&values).unwrap();
        assert_eq!(space.decode(&back), values);
        // 32 filters k3 relu, pool 2, 32 filters k3, pool 2, 12*12*32 -> 64 sigmoid -> 7
        let (trainable, _) = net.param_counts().unwrap();
        assert_eq!(trainable, (9 * 32 + 32) + (9 * 32 * 32 + 32) + (12 * 12 * 32 * 64 + 64) + (64 * 7 + 7));
    }

    #[test]
    fn placeholders_must_name_parameters() {
        let text = "name = \"s\"\n[[params]]\nname = \"u\"\ntype = \"int\"\nmin = 8\nmax = 16\n\
                    [net]\nname = \"n\"\ninput = [2304]\n[[net.layers]]\nkind = \"dense\"\nunits = \"$units\"\n";
        let err = format!("{:#}", SearchSpace::from_toml(text, "s.toml").unwrap_err());
        assert!(err.contains("`$units` names no parameter"), "{err}");
        // A parameter the template never uses would be searched for nothing.
        let unused = text
            .replace("\"$units\"", "7")
            .replace("[net]", "[[params]]\nname = \"v\"\ntype = \"fixed\"\nvalue = 1\n[net]");
        let err = format!("{:#}", SearchSpace::from_toml(&unused, "s.toml").unwrap_err());
        assert!(err.contains("parameter `u` is not used"), "{err}");
    }

    /// Issue 23: the centre of a space may build while a corner does not; the search is refused
    /// before its first trial, naming the corner.
    /// Issue 23: a parameter's bad value is named with the line of its key.
    #[test]
    fn parameter_errors_name_the_line_of_the_key() {
        let text = "name = \"s\"\n\n[[params]]\nname = \"a\"\ntype = \"fixed\"\nvalue = 1\n\n\
                    [[params]]\nname = \"b\"\ntype = \"int\"\nmin = 9\nmax = 3\n";
        let err = format!("{:#}", SearchSpace::from_toml(text, "s.toml").unwrap_err());
        assert!(err.starts_with("s.toml: line 12:") && err.contains("parameter `b`"), "{err}");
        let twice = text.replace("name = \"b\"", "name = \"a\"").replace("min = 9\nmax = 3", "min = 1\nmax = 3");
        let err = format!("{:#}", SearchSpace::from_toml(&twice, "s.toml").unwrap_err());
        assert!(err.starts_with("s.toml: line 9: parameter `a` is defined twice"), "{err}");
    }

    #[test]
    fn every_corner_of_the_space_must_build() {
        let text = |pools: &str| {
            format!(
                "name = \"s\"\n[[params]]\nname = \"pool\"\ntype = \"choice\"\nvalues = {pools}\n\
                 [[params]]\nname = \"filters\"\ntype = \"int\"\nmin = 4\nmax = 9\nstep = 2\n\
                 [net]\nname = \"n\"\ninput = [48, 48, 1]\n\
                 [[net.layers]]\nkind = \"conv2d\"\nfilters = \"$filters\"\nkernel = 3\n\
                 [[net.layers]]\nkind = \"maxpool\"\npool = \"$pool\"\n\
                 [[net.layers]]\nkind = \"maxpool\"\npool = \"$pool\"\n\
                 [[net.layers]]\nkind = \"flatten\"\n[[net.layers]]\nkind = \"dense\"\nunits = 7\n"
            )
        };
        let space = SearchSpace::from_toml(&text("[2, 4]"), "ok.toml").unwrap();
        // The int's greatest reachable value is 8, not 9.
        assert_eq!(space.params[1].extremes(), [Value::from(4), Value::from(8)]);
        // 46 -> 23 -> 11 with pools of 2 (the centre), but 46 / 8 = 5, 5 < 8 with pools of 8.
        let err = format!("{:#}", SearchSpace::from_toml(&text("[2, 3, 8]"), "bad.toml").unwrap_err());
        assert!(
            err.contains("bad.toml") && err.contains("no valid net for the corner") && err.contains("pool = 8"),
            "{err}"
        );
    }
}
