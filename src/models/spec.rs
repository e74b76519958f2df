//! Network specifications: a Keras-like layer list read from TOML, with shape inference and
//! Keras' parameter counts. Presets (`experiments/*.toml`) are such files too.
//!
//! ```toml
//! name = "cnn3"
//! input = [48, 48, 1]        # height, width, channels; [2304] for a flat input
//! learning_rate = 5e-4       # Adam's rate for this net
//!
//! [[layers]]
//! kind = "conv2d"
//! filters = 48
//! kernel = 5
//! stride = 2
//! padding = "same"
//! activation = "relu"
//! l2 = 0.01
//! ```
//!
//! Besides Keras' layers, the vocabulary has ResNet's basic block (`kind = "residual"`, He et al.
//! 2016) and global average pooling (`kind = "globalavgpool"`, Keras' GlobalAveragePooling2D).

use std::fmt;
use std::path::Path;

use crate::error::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::data::{IMAGE_PIXELS, IMAGE_SIDE, NUM_CLASSES};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActivationFn {
    Relu,
    Sigmoid,
    Tanh,
    Softmax,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Padding {
    Same,
    #[default]
    Valid,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenseSpec {
    pub units: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation: Option<ActivationFn>,
    /// Keras `kernel_regularizer=l2(x)`: adds `x * sum(kernel^2)` to the loss.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub l2: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conv2dSpec {
    pub filters: usize,
    pub kernel: usize,
    #[serde(default = "one")]
    pub stride: usize,
    #[serde(default)]
    pub padding: Padding,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation: Option<ActivationFn>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub l2: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaxPoolSpec {
    pub pool: usize,
    /// Defaults to `pool`, as in Keras.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stride: Option<usize>,
    #[serde(default)]
    pub padding: Padding,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchNormSpec {
    /// Keras' meaning: moving = momentum * moving + (1 - momentum) * batch.
    #[serde(default = "keras_bn_momentum")]
    pub momentum: f64,
    #[serde(default = "keras_bn_epsilon")]
    pub epsilon: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropoutSpec {
    pub rate: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlattenSpec {}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivationSpec {
    pub function: ActivationFn,
}

/// ResNet's basic block (He et al. 2016, torchvision's `BasicBlock`): conv3x3(stride) -> batch
/// norm -> ReLU -> conv3x3 -> batch norm, plus the input (through conv1x1(stride) -> batch norm
/// when the shape changes), then ReLU. Convolutions have no bias and "same" padding; batch norm
/// uses PyTorch's momentum 0.1 (Keras' 0.9) and epsilon 1e-5.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResidualSpec {
    pub filters: usize,
    /// 2 halves the height and width (the first block of a stage).
    #[serde(default = "one")]
    pub stride: usize,
}

impl ResidualSpec {
    /// Whether the shortcut needs its own convolution (the shape changes).
    pub fn has_projection(&self, in_channels: usize) -> bool {
        self.stride != 1 || in_channels != self.filters
    }
}

/// Global average pooling: each channel's mean over height and width, `[h, w, c] -> [c]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalAvgPoolSpec {}

/// One layer, tagged by `kind` in TOML.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum LayerSpec {
    Dense(DenseSpec),
    Conv2d(Conv2dSpec),
    MaxPool(MaxPoolSpec),
    BatchNorm(BatchNormSpec),
    Dropout(DropoutSpec),
    Flatten(FlattenSpec),
    Activation(ActivationSpec),
    Residual(ResidualSpec),
    #[serde(rename = "globalavgpool")]
    GlobalAvgPool(GlobalAvgPoolSpec),
}

/// Multiply-adds per image ([`NetSpec::arithmetic`]). A multiply-add is two floating-point
/// operations (FLOPs).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Arithmetic {
    /// A forward pass (inference; batch norm and activations, a pass over memory each, count 0).
    pub forward: u64,
    /// A training step: the forward pass, then the weight gradients and the input gradients.
    pub training: u64,
}

/// A whole net: its input, its layers, and the training defaults that belong to it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// `[height, width, channels]`, or `[features]` for a flat input.
    pub input: Vec<usize>,
    /// Adam's learning rate used unless the command line overrides it.
    #[serde(default = "default_lr")]
    pub learning_rate: f64,
    pub layers: Vec<LayerSpec>,
}

/// A tensor shape without the batch axis, in Keras' channels-last order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeatureShape {
    Image { height: usize, width: usize, channels: usize },
    Flat(usize),
}

impl fmt::Display for FeatureShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FeatureShape::Image { height, width, channels } => {
                write!(f, "(None, {height}, {width}, {channels})")
            }
            FeatureShape::Flat(n) => write!(f, "(None, {n})"),
        }
    }
}

/// What one layer does to the shape, and how many parameters it has.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerInfo {
    pub input: FeatureShape,
    pub output: FeatureShape,
    pub trainable: usize,
    /// Batch-norm moving mean and variance, which Keras counts as non-trainable parameters.
    pub non_trainable: usize,
}

fn one() -> usize {
    1
}
fn is_zero(x: &f64) -> bool {
    *x == 0.0
}
fn keras_bn_momentum() -> f64 {
    0.99
}
fn keras_bn_epsilon() -> f64 {
    1e-3
}
fn default_lr() -> f64 {
    1e-3
}

impl LayerSpec {
    /// Keras' layer type name, as shown in a summary.
    pub fn keras_type(&self) -> &'static str {
        match self {
            LayerSpec::Dense(_) => "Dense",
            LayerSpec::Conv2d(_) => "Conv2D",
            LayerSpec::MaxPool(_) => "MaxPooling2D",
            LayerSpec::BatchNorm(_) => "BatchNormalization",
            LayerSpec::Dropout(_) => "Dropout",
            LayerSpec::Flatten(_) => "Flatten",
            LayerSpec::Activation(_) => "Activation",
            LayerSpec::Residual(_) => "BasicBlock",
            LayerSpec::GlobalAvgPool(_) => "GlobalAveragePooling2D",
        }
    }

    /// Keras' default layer name stem (`conv2d`, `conv2d_1`, ...).
    pub fn keras_stem(&self) -> &'static str {
        match self {
            LayerSpec::Dense(_) => "dense",
            LayerSpec::Conv2d(_) => "conv2d",
            LayerSpec::MaxPool(_) => "max_pooling2d",
            LayerSpec::BatchNorm(_) => "batch_normalization",
            LayerSpec::Dropout(_) => "dropout",
            LayerSpec::Flatten(_) => "flatten",
            LayerSpec::Activation(_) => "activation",
            LayerSpec::Residual(_) => "residual",
            LayerSpec::GlobalAvgPool(_) => "global_average_pooling2d",
        }
    }

    /// The output shape and parameter counts for `input`, or why the layer cannot take it.
    pub fn infer(&self, input: FeatureShape) -> Result<LayerInfo, String> {
        fn l2_in_range(l2: f64) -> Result<(), String> {
            if !(l2 >= 0.0 && l2 <= 1.0) {
                return Err(format!("l2 must be in [0, 1] (got {l2})"));
            }
            Ok(())
        }
        use FeatureShape::*;
        let info = |output, trainable, non_trainable| LayerInfo { input, output, trainable, non_trainable };
        match (self, input) {
            (LayerSpec::Dense(d), Flat(n)) => {
                positive(d.units, "units")?;
                l2_in_range(d.l2)?;
                Ok(info(Flat(d.units), product(&[n + 1, d.units])?, 0))
            }
            (LayerSpec::Dense(_), Image { .. }) => {
                Err("dense needs a flat input: put a flatten layer before it".into())
            }
            (LayerSpec::Conv2d(c), Image { height, width, channels }) => {
                positive(c.filters, "filters")?;
                positive(c.kernel, "kernel")?;
                positive(c.stride, "stride")?;
                l2_in_range(c.l2)?;
                let h = out_size(height, c.kernel, c.stride, c.padding)?;
                let w = out_size(width, c.kernel, c.stride, c.padding)?;
                let params = product(&[c.kernel, c.kernel, channels, c.filters])?.saturating_add(c.filters);
                Ok(info(Image { height: h, width: w, channels: c.filters }, params, 0))
            }
            (LayerSpec::MaxPool(p), Image { height, width, channels }) => {
                positive(p.pool, "pool")?;
                let stride = p.stride.unwrap_or(p.pool);
                positive(stride, "stride")?;
                let h = out_size(height, p.pool, stride, p.padding)?;
                let w = out_size(width, p.pool, stride, p.padding)?;
                Ok(info(Image { height: h, width: w, channels }, 0, 0))
            }
            (LayerSpec::Residual(r), Image { height, width, channels }) => {
                positive(r.filters, "filters")?;
                positive(r.stride, "stride")?;
                let f = r.filters;
                // Two 3x3 convolutions and two batch norms (2 trainable, 2 moving values each).
                let convs = product(&[9, channels + f, f])?;
                let (mut trainable, mut moving) = (convs.saturating_add(4 * f), 4 * f);
                if r.has_projection(channels) {
                    trainable = trainable.saturating_add(product(&[channels + 2, f])?);
                    moving += 2 * f;
                }
                let (h, w) = (height.div_ceil(r.stride), width.div_ceil(r.stride));
                Ok(info(Image { height: h, width: w, channels: f }, trainable, moving))
            }
            (LayerSpec::GlobalAvgPool(_), Image { channels, .. }) => Ok(info(Flat(channels), 0, 0)),
            (
                LayerSpec::Conv2d(_) | LayerSpec::MaxPool(_) | LayerSpec::Residual(_) | LayerSpec::GlobalAvgPool(_),
                Flat(_),
            ) => Err(format!("{} needs an image input, but its input is flat", self.keras_stem())),
            (LayerSpec::BatchNorm(b), shape) => {
                if !(0.0..1.0).contains(&b.momentum) || !(b.epsilon > 0.0 && b.epsilon <= 1.0) {
                    return Err(format!(
                        "batchnorm needs 0 <= momentum < 1 and 0 < epsilon <= 1 (got momentum {}, epsilon {})",
                        b.momentum, b.epsilon
                    ));
                }
                let features = match shape {
                    Image { channels, .. } => channels,
                    Flat(n) => n,
                };
                Ok(info(shape, 2 * features, 2 * features))
            }
            (LayerSpec::Dropout(d), shape) => {
                if !(0.0..1.0).contains(&d.rate) {
                    return Err(format!("dropout rate {} is outside [0, 1)", d.rate));
                }
                Ok(info(shape, 0, 0))
            }
            (LayerSpec::Flatten(_), Image { height, width, channels }) => {
                Ok(info(Flat(height * width * channels), 0, 0))
            }
            (LayerSpec::Flatten(_), Flat(n)) => Ok(info(Flat(n), 0, 0)),
            (LayerSpec::Activation(_), shape) => Ok(info(shape, 0, 0)),
        }
    }

    /// Multiply-adds of one image's forward pass through the convolution or dense layer `info`
    /// describes (0 for the others: their cost is a pass over memory, not arithmetic). The usual
    /// measure of a net's compute; a training step costs about three times it.
    pub fn multiply_adds(&self, info: &LayerInfo) -> usize {
        use FeatureShape::*;
        match (self, info.input, info.output) {
            // Saturating: a net past the size limits is refused before this is asked, but the
            // products of its declared sizes must not overflow on the way.
            (LayerSpec::Dense(d), Flat(n), _) => n.saturating_mul(d.units),
            (LayerSpec::Conv2d(c), Image { channels, .. }, Image { height, width, .. }) => {
                [width, c.filters, c.kernel, c.kernel, channels].iter().fold(height, |p, &f| p.saturating_mul(f))
            }
            (LayerSpec::Residual(r), Image { channels, .. }, Image { height, width, .. }) => {
                let projection = if r.has_projection(channels) { channels.saturating_mul(r.filters) } else { 0 };
                let per_position =
                    9usize.saturating_mul(channels + r.filters).saturating_mul(r.filters).saturating_add(projection);
                height.saturating_mul(width).saturating_mul(per_position)
            }
            _ => 0,
        }
    }

    /// Multiply-adds of the gradient with respect to this layer's input, per image: a convolution's
    /// or dense layer's are its forward pass's; a residual block's are its first convolution's
    /// and its projection's (its second convolution reads the block's own first output, whose
    /// gradient the block computes whatever comes before it).
    pub fn input_gradient_multiply_adds(&self, info: &LayerInfo) -> usize {
        use FeatureShape::*;
        match (self, info.input, info.output) {
            (LayerSpec::Residual(r), Image { channels, .. }, Image { height, width, .. }) => {
                let projection = if r.has_projection(channels) { channels.saturating_mul(r.filters) } else { 0 };
                let per_position = 9usize.saturating_mul(channels).saturating_mul(r.filters).saturating_add(projection);
                height.saturating_mul(width).saturating_mul(per_position)
            }
            _ => self.multiply_adds(info),
        }
    }

    /// The activation this layer ends with, if any.
    pub fn activation(&self) -> Option<ActivationFn> {
        match self {
            LayerSpec::Dense(d) => d.activation,
            LayerSpec::Conv2d(c) => c.activation,
            LayerSpec::Activation(a) => Some(a.function),
            _ => None,
        }
    }
}

/// A net file's problem, with where it is: the layer (0-based) and the key, when known.
#[derive(Debug)]
pub struct SpecProblem {
    pub layer: Option<usize>,
    pub field: Option<&'static str>,
    pub message: String,
}

impl fmt::Display for SpecProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SpecProblem {}

/// The key an [`LayerSpec::infer`] message is about (its messages are written in this file).
fn offending_field(layer: &LayerSpec, message: &str) -> Option<&'static str> {
    const KEYS: [&str; 9] = ["units", "filters", "kernel", "stride", "pool", "l2", "rate", "momentum", "epsilon"];
    if let Some(quoted) = message.strip_prefix('`').and_then(|m| m.split('`').next()) {
        return KEYS.into_iter().find(|k| *k == quoted);
    }
    match layer {
        _ if message.starts_with("l2 ") => Some("l2"),
        LayerSpec::BatchNorm(b) => Some(if (0.0..1.0).contains(&b.momentum) { "epsilon" } else { "momentum" }),
        LayerSpec::Dropout(_) => Some("rate"),
        LayerSpec::Conv2d(_) if message.starts_with("window") => Some("kernel"),
        LayerSpec::MaxPool(_) if message.starts_with("window") => Some("pool"),
        _ if message.contains("needs a flat input") || message.contains("needs an image input") => Some("kind"),
        _ => None,
    }
}

/// The 1-based line of `field` in a TOML text: in the `index`-th table whose header line is
/// `header` (e.g. the third `[[layers]]`, the first `[mix]`), or among the top-level keys when
/// `table` is none; the table's header line when the key is not written there (a default); none
/// when the text is not laid out that way (e.g. inline tables).
pub fn key_line(text: &str, table: Option<(&str, usize)>, field: Option<&str>) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let is_header = |l: &str| l.trim_start().starts_with('[');
    let start = match table {
        None => 0,
        Some((header, i)) => lines.iter().enumerate().filter(|(_, l)| l.trim() == header).nth(i)?.0,
    };
    let end = (start + 1..lines.len()).find(|&j| is_header(lines[j])).unwrap_or(lines.len());
    let from = if table.is_some() { start + 1 } else { start };
    if let Some(field) = field {
        for (j, line) in lines.iter().enumerate().take(end).skip(from) {
            if let Some(rest) = line.trim_start().strip_prefix(field)
                && rest.trim_start().starts_with('=')
            {
                return Some(j + 1);
            }
        }
    }
    table.map(|_| start + 1)
}

/// The largest width, kernel, stride or pool size a layer may declare.
const MAX_SIZE: usize = 1 << 16;

fn positive(value: usize, field: &str) -> Result<(), String> {
    match value {
        0 => Err(format!("`{field}` must be at least 1")),
        v if v > MAX_SIZE => Err(format!("`{field}` must be at most {MAX_SIZE} (got {v})")),
        _ => Ok(()),
    }
}

/// The product of `factors`, or an error when it does not fit (a layer no machine could hold).
fn product(factors: &[usize]) -> Result<usize, String> {
    factors.iter().try_fold(1usize, |p, &f| p.checked_mul(f)).ok_or_else(|| {
        format!(
            "the layer's size overflows ({})",
            factors.iter().map(|f| f.to_string()).collect::<Vec<_>>().join(" x ")
        )
    })
}

/// The most parameters a net may have: 500 M (2 GB of float32 weights, before the optimizer's
/// state); ferkit's presets have at most 20 M. A net file cannot make ferkit allocate more.
pub const MAX_PARAMETERS: usize = 500_000_000;

/// The most values one layer may output per image: 16 M (64 MB of float32 per image, times the
/// batch); the presets' largest is 0.4 M.
pub const MAX_LAYER_OUTPUT: usize = 16_000_000;

/// Keras' output size: `same` gives ceil(n / stride); `valid` gives floor((n - k) / stride) + 1.
fn out_size(n: usize, kernel: usize, stride: usize, padding: Padding) -> Result<usize, String> {
    match padding {
        Padding::Same => Ok(n.div_ceil(stride)),
        Padding::Valid if n >= kernel => Ok((n - kernel) / stride + 1),
        Padding::Valid => Err(format!("window {kernel} is larger than the input size {n} (use padding = \"same\")")),
    }
}

impl NetSpec {
    /// Parses a TOML net file's text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<NetSpec> {
        let spec: NetSpec = toml::from_str(text).with_context(|| format!("{origin}: not a valid net file"))?;
        if let Err(e) = spec.layer_infos() {
            // A problem with a key gets the key's own line (not its table's header).
            let line = e
                .downcast_ref::<SpecProblem>()
                .and_then(|p| key_line(text, p.layer.map(|i| ("[[layers]]", i)), p.field));
            let at = line.map(|l| format!(" line {l}:")).unwrap_or_default();
            return Err(e.context(format!("{origin}:{at} net `{}` is inconsistent", spec.name)));
        }
        Ok(spec)
    }

    pub fn from_file(path: &Path) -> Result<NetSpec> {
        let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
        Self::from_toml(&text, &path.display().to_string())
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a net spec always serialises")
    }

    pub fn input_shape(&self) -> Result<FeatureShape> {
        match self.input.as_slice() {
            [h, w, c] if *h == IMAGE_SIDE && *w == IMAGE_SIDE && *c == 1 => {
                Ok(FeatureShape::Image { height: *h, width: *w, channels: *c })
            }
            [n] if *n == IMAGE_PIXELS => Ok(FeatureShape::Flat(*n)),
            other => bail!(Model, "input {other:?} is not supported: use [48, 48, 1] or [2304]"),
        }
    }

    /// Each layer's shapes and parameter counts; fails on the first layer that does not fit,
    /// naming it, or when the net does not end with 7 outputs.
    pub fn layer_infos(&self) -> Result<Vec<LayerInfo>> {
        if self.layers.is_empty() {
            bail!(Model, "the net has no layers");
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return Err(SpecProblem {
                layer: None,
                field: Some("learning_rate"),
                message: format!("learning_rate must be a positive finite number, got {}", self.learning_rate),
            }
            .into());
        }
        // Training folds the final softmax into the loss; a softmax anywhere else (or a layer
        // after it) would be applied on top of that, and the probabilities would be wrong.
        let last = self.layers.len() - 1;
        if let Some(i) = self.layers[..last].iter().position(|l| l.activation() == Some(ActivationFn::Softmax)) {
            bail!(
                Model,
                "layer {} ({}) applies softmax, but {} more layer(s) follow it: softmax belongs on the last layer only \
                 (the class scores)",
                i + 1,
                self.layers[i].keras_stem(),
                last - i
            );
        }
        let mut shape = self.input_shape()?;
        let mut infos = Vec::with_capacity(self.layers.len());
        let mut total = 0usize;
        for (i, layer) in self.layers.iter().enumerate() {
            let info = layer.infer(shape).map_err(|e| SpecProblem {
                layer: Some(i),
                field: offending_field(layer, &e),
                message: format!("layer {} ({}): {e}", i + 1, layer.keras_stem()),
            })?;
            let values = match info.output {
                FeatureShape::Flat(n) => Some(n),
                FeatureShape::Image { height, width, channels } => {
                    height.checked_mul(width).and_then(|hw| hw.checked_mul(channels))
                }
            };
            if values.is_none_or(|v| v > MAX_LAYER_OUTPUT) {
                return Err(SpecProblem {
                    layer: Some(i),
                    field: None,
                    message: format!(
                        "layer {} ({}) outputs {} values per image, more than the limit of {MAX_LAYER_OUTPUT}",
                        i + 1,
                        layer.keras_stem(),
                        info.output
                    ),
                }
                .into());
            }
            total = total.saturating_add(info.trainable).saturating_add(info.non_trainable);
            if total > MAX_PARAMETERS {
                return Err(SpecProblem {
                    layer: Some(i),
                    field: None,
                    message: format!(
                        "the net has more than {MAX_PARAMETERS} parameters by layer {} ({}), ferkit's limit",
                        i + 1,
                        layer.keras_stem()
                    ),
                }
                .into());
            }
            shape = info.output;
            infos.push(info);
        }
        if shape != FeatureShape::Flat(NUM_CLASSES) {
            bail!(Model, "the net must end with {NUM_CLASSES} outputs (one per emotion), but it ends with {shape}");
        }
        Ok(infos)
    }

    /// The arithmetic of one image through this net, in multiply-adds: what any framework must
    /// compute, however fast, so that images/s can be set against the machine's peak (`bash
    /// bench/run.sh` prints both). Errors as [`NetSpec::layer_infos`].
    pub fn arithmetic(&self) -> Result<Arithmetic> {
        let infos = self.layer_infos()?;
        let layers = || self.layers.iter().zip(&infos);
        let forward: u64 = layers().map(|(l, i)| l.multiply_adds(i) as u64).sum();
        // Backward, every layer with weights computes its weight gradient and its input gradient,
        // each as many multiply-adds as its forward pass, but for the first such layer's input
        // gradient: its input is the image (or a pass over memory of it), which needs none.
        let first =
            layers().find(|(l, i)| l.multiply_adds(i) > 0).map_or(0, |(l, i)| l.input_gradient_multiply_adds(i) as u64);
        Ok(Arithmetic { forward, training: 3 * forward - first })
    }

    /// (trainable, non-trainable) parameters, as Keras counts them.
    pub fn param_counts(&self) -> Result<(usize, usize)> {
        let infos = self.layer_infos()?;
        Ok((infos.iter().map(|i| i.trainable).sum(), infos.iter().map(|i| i.non_trainable).sum()))
    }

    /// Whether the last thing the net does is a softmax. Training folds it into the
    /// cross-entropy (on logits), which is the numerically stable way to compute the same loss.
    pub fn ends_with_softmax(&self) -> bool {
        self.layers.last().and_then(LayerSpec::activation) == Some(ActivationFn::Softmax)
    }
}

#[cfg(test)]
mod tests {
    /// A flat net: `layers` (TOML `[[layers]]` tables) after a [2304] input.
    fn flat_net(layers: &str) -> Result<NetSpec> {
        NetSpec::from_toml(&format!("name = \"t\"\ninput = [2304]\n{layers}"), "t.toml")
    }

    /// Issue 20: a net file cannot make ferkit allocate past its limits: too many parameters,
    /// a layer too large for one image, sizes whose products overflow.
    #[test]
    fn nets_past_the_size_limits_are_refused_before_they_are_built() {
        let image =
            |layers: &str| NetSpec::from_toml(&format!("name = \"t\"\ninput = [48, 48, 1]\n{layers}"), "t.toml");
        let dense7 = "[[layers]]\nkind = \"dense\"\nunits = 7\n";
        let wide = format!(
            "[[layers]]\nkind = \"conv2d\"\nfilters = 64\nkernel = 1\n[[layers]]\nkind = \"flatten\"\n[[layers]]\nkind = \"dense\"\nunits = 65536\n{dense7}"
        );
        let err = format!("{:#}", image(&wide).unwrap_err());
        assert!(err.contains("more than 500000000 parameters by layer 3"), "{err}");
        let conv = "[[layers]]\nkind = \"conv2d\"\nfilters = 8000\nkernel = 1\n[[layers]]\nkind = \"globalavgpool\"\n";
        let err = format!("{:#}", image(&format!("{conv}{dense7}")).unwrap_err());
        assert!(err.contains("layer 1 (conv2d) outputs") && err.contains("limit of 16000000"), "{err}");
        let err =
            format!("{:#}", flat_net(&format!("[[layers]]\nkind = \"dense\"\nunits = 100000\n{dense7}")).unwrap_err());
        assert!(err.contains("`units` must be at most 65536"), "{err}");
        assert!(image(&format!("[[layers]]\nkind = \"conv2d\"\nfilters = 6000\nkernel = 1\n[[layers]]\nkind = \"globalavgpool\"\n{dense7}")).is_ok());
    }

    #[test]
    fn values_outside_their_range_are_refused_with_the_range() {
        let dense7 = "[[layers]]\nkind = \"dense\"\nunits = 7\nactivation = \"softmax\"\n";
        assert!(flat_net(dense7).is_ok());
        for (bad, expected) in [
            ("[[layers]]\nkind = \"batchnorm\"\nepsilon = inf\n", "0 < epsilon <= 1"),
            ("[[layers]]\nkind = \"batchnorm\"\nepsilon = nan\n", "0 < epsilon <= 1"),
            ("[[layers]]\nkind = \"batchnorm\"\nmomentum = -0.5\n", "0 <= momentum < 1"),
            ("[[layers]]\nkind = \"dense\"\nunits = 16\nl2 = -0.01\n", "l2 must be in [0, 1]"),
            ("[[layers]]\nkind = \"dense\"\nunits = 16\nl2 = nan\n", "l2 must be in [0, 1]"),
            ("[[layers]]\nkind = \"dropout\"\nrate = 1.0\n", "outside [0, 1)"),
        ] {
            let err = format!("{:#}", flat_net(&format!("{bad}{dense7}")).unwrap_err());
            assert!(err.contains(expected), "{bad}: {err}");
        }
        let err = format!(
            "{:#}",
            NetSpec::from_toml(&format!("name = \"t\"\ninput = [2304]\nlearning_rate = inf\n{dense7}"), "t")
                .unwrap_err()
        );
        assert!(err.contains("positive finite"), "{err}");
    }

    /// Issue 23: an out-of-range value is named with the line of its own key, not its table's.
    #[test]
    fn errors_name_the_line_of_the_offending_key() {
        let text = "name = \"t\"\ninput = [48, 48, 1]\n\n[[layers]]\nkind = \"conv2d\"\nfilters = 8\nkernel = 3\n\n\
                    [[layers]]\nkind = \"maxpool\"\npool = 2\n\n[[layers]]\nkind = \"dropout\"\n# why\nrate = 1.5\n\n\
                    [[layers]]\nkind = \"flatten\"\n[[layers]]\nkind = \"dense\"\nunits = 7\n";
        let err = format!("{:#}", NetSpec::from_toml(text, "net.toml").unwrap_err());
        assert!(err.starts_with("net.toml: line 16: net `t` is inconsistent") && err.contains("rate 1.5"), "{err}");
        let err = format!(
            "{:#}",
            NetSpec::from_toml(&text.replace("kernel = 3", "kernel = 60\npadding = \"valid\""), "net.toml")
                .unwrap_err()
        );
        assert!(err.starts_with("net.toml: line 7:") && err.contains("window 60"), "{err}");
        let err =
            format!("{:#}", NetSpec::from_toml(&text.replace("filters = 8", "filters = 0"), "net.toml").unwrap_err());
        assert!(err.starts_with("net.toml: line 6:") && err.contains("`filters` must be at least 1"), "{err}");
        let err = format!(
            "{:#}",
            NetSpec::from_toml(
                &text.replace("input = [48, 48, 1]", "input = [48, 48, 1]\nlearning_rate = -1"),
                "n.toml"
            )
            .unwrap_err()
        );
        assert!(err.starts_with("n.toml: line 3:"), "{err}");
        // Batch norm's momentum, in a later table.
        let bn = text.replace("rate = 1.5", "rate = 0.5").replace(
            "[[layers]]\nkind = \"flatten\"",
            "[[layers]]\nkind = \"batchnorm\"\nmomentum = 2.0\n[[layers]]\nkind = \"flatten\"",
        );
        let err = format!("{:#}", NetSpec::from_toml(&bn, "bn.toml").unwrap_err());
        assert!(err.starts_with("bn.toml: line 20:") && err.contains("momentum"), "{err}");
    }

    #[test]
    fn softmax_must_be_the_last_layer() {
        for after in ["[[layers]]\nkind = \"dropout\"\nrate = 0.2\n", "[[layers]]\nkind = \"flatten\"\n"] {
            let net = format!("[[layers]]\nkind = \"dense\"\nunits = 7\nactivation = \"softmax\"\n{after}");
            let err = format!("{:#}", flat_net(&net).unwrap_err());
            assert!(err.contains("layer 1 (dense) applies softmax") && err.contains("1 more layer"), "{err}");
        }
        let inner = "[[layers]]\nkind = \"dense\"\nunits = 32\nactivation = \"softmax\"\n[[layers]]\nkind = \"dense\"\nunits = 7\n";
        assert!(flat_net(inner).is_err());
        // A separate softmax layer at the end is fine.
        let last =
            "[[layers]]\nkind = \"dense\"\nunits = 7\n[[layers]]\nkind = \"activation\"\nfunction = \"softmax\"\n";
        assert!(flat_net(last).unwrap().ends_with_softmax());
    }

    use super::*;

    fn conv(filters: usize, kernel: usize, stride: usize) -> LayerSpec {
        LayerSpec::Conv2d(Conv2dSpec { filters, kernel, stride, padding: Padding::Same, activation: None, l2: 0.0 })
    }

    #[test]
    fn same_padding_sizes_follow_keras() {
        assert_eq!(out_size(48, 11, 4, Padding::Same), Ok(12));
        assert_eq!(out_size(48, 5, 2, Padding::Same), Ok(24));
        assert_eq!(out_size(47, 2, 2, Padding::Same), Ok(24));
        assert_eq!(out_size(47, 2, 2, Padding::Valid), Ok(23));
        assert!(out_size(3, 5, 1, Padding::Valid).is_err());
    }

    #[test]
    fn conv_params() {
        let info = conv(48, 5, 2).infer(FeatureShape::Image { height: 48, width: 48, channels: 1 }).unwrap();
        assert_eq!(info.trainable, 5 * 5 * 48 + 48);
        assert_eq!(info.output, FeatureShape::Image { height: 24, width: 24, channels: 48 });
    }

    #[test]
    fn mismatches_name_the_layer() {
        let spec = NetSpec {
            name: "bad".into(),
            description: String::new(),
            input: vec![48, 48, 1],
            learning_rate: 1e-3,
            layers: vec![conv(8, 3, 1), LayerSpec::Dense(DenseSpec { units: 7, activation: None, l2: 0.0 })],
        };
        let err = format!("{:#}", spec.layer_infos().unwrap_err());
        assert!(err.contains("layer 2 (dense)") && err.contains("flatten"), "{err}");
    }

    #[test]
    fn unknown_fields_and_kinds_are_rejected() {
        let base = "name = \"x\"\ninput = [2304]\n";
        let typo = format!("{base}[[layers]]\nkind = \"dense\"\nunit = 7\n");
        assert!(NetSpec::from_toml(&typo, "typo.toml").is_err());
        let kind = format!("{base}[[layers]]\nkind = \"lstm\"\nunits = 7\n");
        let err = format!("{:#}", NetSpec::from_toml(&kind, "kind.toml").unwrap_err());
        assert!(err.contains("kind.toml"), "{err}");
        let good = format!("{base}[[layers]]\nkind = \"dense\"\nunits = 7\nactivation = \"softmax\"\n");
        let spec = NetSpec::from_toml(&good, "good.toml").unwrap();
        assert_eq!(spec.param_counts().unwrap(), (2304 * 7 + 7, 0));
        assert!(spec.ends_with_softmax());
        // Round trip through TOML.
        assert_eq!(NetSpec::from_toml(&spec.to_toml(), "again").unwrap(), spec);
    }
}
