//! The Burn module built from a [`NetSpec`]: one `Layer` per spec layer, run in order.

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Initializer, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation;

use super::spec::{ActivationFn, FeatureShape, LayerSpec, NetSpec, Padding};

/// Keras' default kernel initialiser (glorot uniform). Biases start at zero, as in Keras.
fn glorot() -> Initializer {
    Initializer::XavierUniform { gain: 1.0 }
}

fn zero_bias(size: usize, device: &Device) -> Option<Param<Tensor<1>>> {
    Some(Param::from_tensor(Tensor::zeros([size], device)))
}

fn padding(p: Padding) -> PaddingConfig2d {
    match p {
        // Burn's `Same` pads like TensorFlow: the odd extra row/column goes at the end.
        Padding::Same => PaddingConfig2d::Same,
        Padding::Valid => PaddingConfig2d::Valid,
    }
}

/// An activation function as a (parameter-free) module field.
#[derive(Module, Debug)]
pub struct Act {
    #[module(skip)]
    pub function: Option<ActivationFn>,
}

impl Act {
    fn apply<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match self.function {
            None => x,
            Some(ActivationFn::Relu) => activation::relu(x),
            Some(ActivationFn::Sigmoid) => activation::sigmoid(x),
            Some(ActivationFn::Tanh) => activation::tanh(x),
            // Keras applies softmax over the last axis; for images that is the channel axis.
            Some(ActivationFn::Softmax) => activation::softmax(x, if D == 4 { 1 } else { D - 1 }),
        }
    }
}

#[derive(Module, Debug)]
pub struct Dense {
    pub linear: Linear,
    pub act: Act,
    pub l2: f64,
}

#[derive(Module, Debug)]
pub struct Conv {
    pub conv: Conv2d,
    pub act: Act,
    pub l2: f64,
}

#[derive(Module, Debug)]
pub struct Flatten;

#[derive(Module, Debug)]
pub enum Layer {
    Dense(Dense),
    Conv(Conv),
    MaxPool(MaxPool2d),
    BatchNorm(BatchNorm),
    Dropout(Dropout),
    Flatten(Flatten),
    Activation(Act),
}

/// Activations between layers: images `[batch, channels, height, width]` or flat `[batch, n]`.
enum Features {
    Image(Tensor<4>),
    Flat(Tensor<2>),
}

impl Features {
    fn image(self) -> Tensor<4> {
        match self {
            Features::Image(x) => x,
            Features::Flat(_) => unreachable!("the spec's shape check puts only images here"),
        }
    }

    fn flat(self) -> Tensor<2> {
        match self {
            Features::Flat(x) => x,
            Features::Image(_) => unreachable!("the spec's shape check puts only flat inputs here"),
        }
    }

    fn map(self, f4: impl FnOnce(Tensor<4>) -> Tensor<4>, f2: impl FnOnce(Tensor<2>) -> Tensor<2>) -> Self {
        match self {
            Features::Image(x) => Features::Image(f4(x)),
            Features::Flat(x) => Features::Flat(f2(x)),
        }
    }
}

impl Layer {
    fn forward(&self, x: Features) -> Features {
        match self {
            Layer::Dense(d) => Features::Flat(d.act.apply(d.linear.forward(x.flat()))),
            Layer::Conv(c) => Features::Image(c.act.apply(c.conv.forward(x.image()))),
            Layer::MaxPool(p) => Features::Image(p.forward(x.image())),
            Layer::BatchNorm(bn) => x.map(|x| bn.forward(x), |x| bn.forward(x)),
            Layer::Dropout(d) => x.map(|x| d.forward(x), |x| d.forward(x)),
            Layer::Flatten(_) => match x {
                Features::Image(x) => Features::Flat(x.flatten(1, 3)),
                flat => flat,
            },
            Layer::Activation(a) => x.map(|x| a.apply(x), |x| a.apply(x)),
        }
    }

    /// The layer's L2 penalty `l2 * sum(kernel^2)`, when it has one.
    fn l2_penalty(&self) -> Option<Tensor<1>> {
        let (weight_sq, l2) = match self {
            Layer::Dense(d) if d.l2 > 0.0 => (d.linear.weight.val().square().sum(), d.l2),
            Layer::Conv(c) if c.l2 > 0.0 => (c.conv.weight.val().square().sum(), c.l2),
            _ => return None,
        };
        Some(weight_sq.mul_scalar(l2))
    }
}

/// A feed-forward net or CNN built from a spec.
#[derive(Module, Debug)]
pub struct Net {
    pub layers: Vec<Layer>,
    /// The input is flattened to 2304 features before the first layer (the notebook's FNNs).
    pub flat_input: bool,
    /// How many layers `forward_logits` runs: all but a final softmax, which the loss applies.
    pub logit_layers: usize,
}

impl Net {
    /// Builds the net with fresh Keras-style initial weights on `device`.
    pub fn new(spec: &NetSpec, device: &Device) -> anyhow::Result<Net> {
        let infos = spec.layer_infos()?;
        let mut layers = Vec::with_capacity(spec.layers.len());
        for (layer, info) in spec.layers.iter().zip(&infos) {
            layers.push(build_layer(layer, info.input, device));
        }
        // A final softmax (an activation layer, or a dense layer's activation) is left to the
        // loss; a dense layer keeps its weights and drops only the activation.
        let mut logit_layers = layers.len();
        if spec.ends_with_softmax() {
            match layers.last_mut() {
                Some(Layer::Activation(_)) => logit_layers -= 1,
                Some(Layer::Dense(d)) => d.act.function = None,
                Some(Layer::Conv(c)) => c.act.function = None,
                _ => unreachable!("only these layers carry an activation"),
            }
        }
        let flat_input = matches!(spec.input_shape()?, FeatureShape::Flat(_));
        Ok(Net { layers, flat_input, logit_layers })
    }

    /// Logits `[batch, 7]` for images `[batch, 1, 48, 48]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x = if self.flat_input {
            Features::Flat(images.flatten(1, 3))
        } else {
            Features::Image(images)
        };
        for layer in &self.layers[..self.logit_layers] {
            x = layer.forward(x);
        }
        x.flat()
    }

    /// Class probabilities `[batch, 7]`.
    pub fn predict(&self, images: Tensor<4>) -> Tensor<2> {
        activation::softmax(self.forward(images), 1)
    }

    /// Keras' regularisation loss: the sum of every layer's `l2 * sum(kernel^2)`.
    pub fn l2_penalty(&self) -> Option<Tensor<1>> {
        self.layers.iter().filter_map(Layer::l2_penalty).reduce(|a, b| a + b)
    }
}

fn build_layer(layer: &LayerSpec, input: FeatureShape, device: &Device) -> Layer {
    let in_features = match input {
        FeatureShape::Image { channels, .. } => channels,
        FeatureShape::Flat(n) => n,
    };
    match layer {
        LayerSpec::Dense(d) => {
            let mut linear = LinearConfig::new(in_features, d.units).with_initializer(glorot()).init(device);
            linear.bias = zero_bias(d.units, device);
            Layer::Dense(Dense { linear, act: Act { function: d.activation }, l2: d.l2 })
        }
        LayerSpec::Conv2d(c) => {
            let mut conv = Conv2dConfig::new([in_features, c.filters], [c.kernel, c.kernel])
                .with_stride([c.stride, c.stride])
                .with_padding(padding(c.padding))
                .with_initializer(glorot())
                .init(device);
            conv.bias = zero_bias(c.filters, device);
            Layer::Conv(Conv { conv, act: Act { function: c.activation }, l2: c.l2 })
        }
        LayerSpec::MaxPool(p) => {
            let stride = p.stride.unwrap_or(p.pool);
            Layer::MaxPool(
                MaxPool2dConfig::new([p.pool, p.pool])
                    .with_strides([stride, stride])
                    .with_padding(padding(p.padding))
                    .init(),
            )
        }
        // Burn's momentum is the weight of the new batch statistic; Keras' is the weight of
        // the running value.
        LayerSpec::BatchNorm(b) => Layer::BatchNorm(
            BatchNormConfig::new(in_features).with_momentum(1.0 - b.momentum).with_epsilon(b.epsilon).init(device),
        ),
        LayerSpec::Dropout(d) => Layer::Dropout(DropoutConfig::new(d.rate).init()),
        LayerSpec::Flatten(_) => Layer::Flatten(Flatten),
        LayerSpec::Activation(a) => Layer::Activation(Act { function: Some(a.function) }),
    }
}
