//! The Burn module built from a [`NetSpec`]: one `Layer` per spec layer, run in order.

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Initializer, Linear, LinearConfig, PaddingConfig2d,
};
use burn::prelude::*;
use burn::tensor::activation;

use crate::kernels;
use crate::kernels::channels_last::{self, ChannelsLast};

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
    /// The activation a layer's kernel applies as it writes the output (ReLU, sigmoid), if this
    /// is one.
    fn in_kernel(&self) -> Option<kernels::fused::Activation> {
        match self.function {
            Some(ActivationFn::Relu) => Some(kernels::fused::Activation::Relu),
            Some(ActivationFn::Sigmoid) => Some(kernels::fused::Activation::Sigmoid),
            _ => None,
        }
    }

    /// The rest of the activation for the output of a kernel given [`Act::in_kernel`]: nothing
    /// when the kernel applied it, the activation itself otherwise.
    fn after_kernel<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        if self.in_kernel().is_some() { x } else { self.apply(x) }
    }

    fn apply<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match self.function {
            None => x,
            Some(ActivationFn::Relu) => activation::relu(x),
            Some(ActivationFn::Sigmoid) => kernels::sigmoid::sigmoid(x),
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
    /// The layer's weights packed for one face or a few (`kernels::dense::DensePack`), in nets
    /// that `models::fold` prepared for inference only, as [`Conv`]'s pack. Not part of the
    /// record.
    #[module(skip)]
    pub pack: Option<kernels::dense::DensePack>,
}

#[derive(Module, Debug)]
pub struct Conv {
    pub conv: Conv2d,
    pub act: Act,
    pub l2: f64,
    /// The convolution's parameters as the inference kernels read them
    /// (`kernels::conv2d::WeightPack`), in nets that `models::fold` prepared for inference only;
    /// `None` in nets that train, whose weights change. Not part of the record.
    #[module(skip)]
    pub pack: Option<kernels::conv2d::WeightPack>,
}

#[derive(Module, Debug)]
pub struct Flatten;

#[derive(Module, Debug)]
pub struct GlobalAvgPool;

/// ResNet's basic block; see [`super::spec::ResidualSpec`].
#[derive(Module, Debug)]
pub struct Residual {
    pub conv1: Conv2d,
    pub bn1: BatchNorm,
    pub conv2: Conv2d,
    pub bn2: BatchNorm,
    /// conv1x1(stride) and batch norm on the shortcut, when the block changes the shape.
    pub projection: Option<Projection>,
}

#[derive(Module, Debug)]
pub struct Projection {
    pub conv: Conv2d,
    pub bn: BatchNorm,
}

impl Residual {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        use kernels::fused::{Activation, conv_bn_act};
        let y = conv_bn_act(&self.conv1, Some(&self.bn1), Some(Activation::Relu), x.clone());
        let y = conv_bn_act(&self.conv2, Some(&self.bn2), None, y);
        let shortcut = match &self.projection {
            Some(p) => conv_bn_act(&p.conv, Some(&p.bn), None, x),
            None => x,
        };
        activation::relu(y + shortcut)
    }
}

#[derive(Module, Debug)]
pub enum Layer {
    Dense(Dense),
    Conv(Conv),
    MaxPool(MaxPool2d),
    BatchNorm(BatchNorm),
    Dropout(Dropout),
    Flatten(Flatten),
    Activation(Act),
    Residual(Residual),
    GlobalAvgPool(GlobalAvgPool),
}

/// Activations between layers: images `[batch, channels, height, width]`, flat `[batch, n]`,
/// or, at CPU inference between the convolutions and pools that run channel-last, images
/// `[batch, height, width, channels]` (see [`Conv::channels_last`]).
enum Features {
    Image(Tensor<4>),
    Flat(Tensor<2>),
    ChannelsLast(ChannelsLast),
}

impl Features {
    /// The images channel-first (turned back from channel-last where they are).
    fn image(self) -> Tensor<4> {
        match self {
            Features::Image(x) => x,
            Features::ChannelsLast(x) => x.to_channels_first(),
            Features::Flat(_) => unreachable!("the spec's shape check puts only images here"),
        }
    }

    fn flat(self) -> Tensor<2> {
        match self {
            Features::Flat(x) => x,
            Features::Image(_) | Features::ChannelsLast(_) => {
                unreachable!("the spec's shape check puts only flat inputs here")
            }
        }
    }

    fn map(self, f4: impl FnOnce(Tensor<4>) -> Tensor<4>, f2: impl FnOnce(Tensor<2>) -> Tensor<2>) -> Self {
        match self {
            Features::Flat(x) => Features::Flat(f2(x)),
            images => Features::Image(f4(images.image())),
        }
    }
}

impl Conv {
    /// The layer's output channel-last, where it runs so ([`channels_last::conv`]: a folded net's
    /// convolution at CPU inference on a pass of few positions, an activation the kernel applies
    /// or none): from channel-last maps, or from channel-first ones turned channel-last first.
    /// Why: at one face a layer net's convolutions and pools then hand each other whole rows of
    /// channels, where channel-first the direct convolution scatters every tile into planes.
    /// `None`: the layer runs channel-first.
    fn channels_last(&self, x: &Features) -> Option<ChannelsLast> {
        let act = self.act.in_kernel();
        if act.is_none() && self.act.function.is_some() {
            return None;
        }
        let pack = self.pack.as_ref();
        match x {
            Features::ChannelsLast(x) => channels_last::conv(&self.conv, pack, act, x),
            Features::Image(x) => {
                let [n, c, h, w] = x.dims();
                if !channels_last::conv_applies(&self.conv, pack, [n, h, w, c], true) {
                    return None;
                }
                channels_last::conv(&self.conv, pack, act, &ChannelsLast::from_channels_first(x)?)
            }
            Features::Flat(_) => None,
        }
    }
}

impl Layer {
    fn forward(&self, x: Features) -> Features {
        match self {
            // At inference the kernels apply a ReLU or sigmoid as they write the layer's output
            // (`kernels::dense`, `kernels::fused`); other activations follow as a layer.
            Layer::Dense(d) => {
                Features::Flat(d.act.after_kernel(kernels::dense::linear_act(&d.linear, d.pack.as_ref(), d.act.in_kernel(), x.flat())))
            }
            Layer::Conv(c) => match c.channels_last(&x) {
                Some(y) => Features::ChannelsLast(y),
                None => Features::Image(c.act.after_kernel(kernels::fused::packed_conv_bn_act(
                    &c.conv,
                    c.pack.as_ref(),
                    None,
                    c.act.in_kernel(),
                    x.image(),
                ))),
            },
            Layer::MaxPool(p) => match &x {
                Features::ChannelsLast(cl) if let Some(y) = channels_last::max_pool(p, cl) => Features::ChannelsLast(y),
                _ => Features::Image(kernels::max_pool2d::max_pool2d(p, x.image())),
            },
            Layer::BatchNorm(bn) => {
                x.map(|x| kernels::batch_norm::batch_norm(bn, x), |x| kernels::batch_norm::batch_norm(bn, x))
            }
            Layer::Dropout(d) => x.map(|x| d.forward(x), |x| d.forward(x)),
            Layer::Flatten(_) => match x {
                Features::Flat(x) => Features::Flat(x),
                images => Features::Flat(images.image().flatten(1, 3)),
            },
            Layer::Activation(a) => x.map(|x| a.apply(x), |x| a.apply(x)),
            Layer::Residual(r) => Features::Image(r.forward(x.image())),
            Layer::GlobalAvgPool(_) => {
                let x = x.image();
                let [batch, channels, _, _] = x.dims();
                Features::Flat(x.flatten::<3>(2, 3).mean_dim(2).reshape([batch, channels]))
            }
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
    /// Bytes (f32) of one face's largest image layer, its input and output maps together; 0 for
    /// a net that starts flat. A residual block counts as one layer (its inner maps are not
    /// added). Sets how many faces [`Net::forward`] runs through the image layers at once at
    /// inference ([`inference_chunk_faces`]).
    pub largest_layer_bytes_per_face: usize,
}

impl Net {
    /// Builds the net with fresh Keras-style initial weights on `device`.
    pub fn new(spec: &NetSpec, device: &Device) -> crate::error::Result<Net> {
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
        let elements = |shape: FeatureShape| match shape {
            FeatureShape::Image { height, width, channels } => height * width * channels,
            FeatureShape::Flat(_) => 0,
        };
        let largest_layer_bytes_per_face = infos
            .iter()
            .filter(|info| matches!(info.output, FeatureShape::Image { .. }))
            .map(|info| 4 * (elements(info.input) + elements(info.output)))
            .max()
            .unwrap_or(0);
        Ok(Net { layers, flat_input, logit_layers, largest_layer_bytes_per_face })
    }

    /// Logits `[batch, 7]` for images `[batch, 1, 48, 48]`.
    ///
    /// At CPU inference (Flex without autodiff) the image layers (up to the first that flattens)
    /// run on chunks of the batch that [`inference_chunk_faces`] sizes, and the flat layers on the
    /// whole batch: the same values up to rounding (every layer is per face at inference; a
    /// chunk's size can pick another kernel, Winograd or im2col, for a layer) in less memory
    /// traffic. On an autodiff device the batch is never split (batch norm in training normalises
    /// with the whole batch's statistics), nor on the GPU backend (the budget is the CPU's).
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let layers = &self.layers[..self.logit_layers];
        if self.flat_input {
            return run_layers(layers, Features::Flat(images.flatten(1, 3))).flat();
        }
        let [batch, ..] = images.dims();
        let chunk = if kernels::on_cpu_inference(&images) {
            inference_chunk_faces(batch, self.largest_layer_bytes_per_face)
        } else {
            batch
        };
        self.forward_in_chunks(images, chunk)
    }

    /// Logits of images `[batch, 1, 48, 48]` with the image layers (up to and including the
    /// first that flattens) run on chunks of `chunk` faces, the rest on the whole batch.
    fn forward_in_chunks(&self, images: Tensor<4>, chunk: usize) -> Tensor<2> {
        let layers = &self.layers[..self.logit_layers];
        let image_layers = layers
            .iter()
            .position(|l| matches!(l, Layer::Flatten(_) | Layer::GlobalAvgPool(_)))
            .map_or(layers.len(), |i| i + 1);
        let (image_part, flat_part) = layers.split_at(image_layers);
        let x = if chunk < images.dims()[0] {
            let part = |images| run_layers(image_part, Features::Image(images)).flat();
            Features::Flat(Tensor::cat(images.split(chunk, 0).into_iter().map(part).collect(), 0))
        } else {
            run_layers(image_part, Features::Image(images))
        };
        run_layers(flat_part, x).flat()
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

fn run_layers(layers: &[Layer], mut x: Features) -> Features {
    for layer in layers {
        x = layer.forward(x);
    }
    x
}

/// The largest input and output maps of one chunk of faces at inference, in bytes: a batch
/// whose largest layer would hold more runs through the image layers in chunks.
///
/// Why this size: vgg-lite's second convolution holds 48 x 48 x 32 floats per face in and as much
/// out (590 KB); at batch 256 its inference ran at 518-599 images/s whole, 647-683 in two
/// chunks of 128 (this budget), 576-661 in chunks of 86 or 43 (`ferkit bench --models
/// vgg-lite:64 --infer-batches 256`, three rounds alternated, AMD EPYC Zen 4, session 33), with
/// a sixth of the page faults. cnn1 and cnn3 (64 KB and 119 KB per face) stay whole up to
/// batches of 2000 and 1100: cnn1's dense layers reuse each weight across the batch and ran
/// fastest at the largest batch (session 32).
pub const INFERENCE_CHUNK_BYTES: usize = 128 << 20;

/// Faces per chunk for a batch of `batch` faces whose largest layer holds `bytes_per_face`: the
/// batch split into as few nearly equal chunks as keep each chunk's maps within
/// [`INFERENCE_CHUNK_BYTES`] (at least one face per chunk, whatever its size).
pub fn inference_chunk_faces(batch: usize, bytes_per_face: usize) -> usize {
    let fit = INFERENCE_CHUNK_BYTES.checked_div(bytes_per_face).unwrap_or(usize::MAX).max(1);
    let chunks = batch.div_ceil(fit).max(1);
    batch.div_ceil(chunks).max(1)
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
            Layer::Dense(Dense { linear, act: Act { function: d.activation }, l2: d.l2, pack: None })
        }
        LayerSpec::Conv2d(c) => {
            let mut conv = Conv2dConfig::new([in_features, c.filters], [c.kernel, c.kernel])
                .with_stride([c.stride, c.stride])
                .with_padding(padding(c.padding))
                .with_initializer(glorot())
                .init(device);
            conv.bias = zero_bias(c.filters, device);
            Layer::Conv(Conv { conv, act: Act { function: c.activation }, l2: c.l2, pack: None })
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
        LayerSpec::Residual(r) => Layer::Residual(build_residual(r, in_features, device)),
        LayerSpec::GlobalAvgPool(_) => Layer::GlobalAvgPool(GlobalAvgPool),
    }
}

/// A basic block with PyTorch ResNet's initialisation: Kaiming-normal convolutions (fan out,
/// ReLU gain), batch norm scale 1 and shift 0, momentum 0.1, epsilon 1e-5.
fn build_residual(r: &super::spec::ResidualSpec, in_channels: usize, device: &Device) -> Residual {
    let kaiming = Initializer::KaimingNormal { gain: std::f64::consts::SQRT_2, fan_out_only: true };
    let conv = |from: usize, kernel: usize, stride: usize, pad: Padding| {
        Conv2dConfig::new([from, r.filters], [kernel, kernel])
            .with_stride([stride, stride])
            .with_padding(padding(pad))
            .with_bias(false)
            .with_initializer(kaiming.clone())
            .init(device)
    };
    let bn = || BatchNormConfig::new(r.filters).with_momentum(0.1).with_epsilon(1e-5).init(device);
    Residual {
        conv1: conv(in_channels, 3, r.stride, Padding::Same),
        bn1: bn(),
        conv2: conv(r.filters, 3, 1, Padding::Same),
        bn2: bn(),
        projection: r
            .has_projection(in_channels)
            .then(|| Projection { conv: conv(in_channels, 1, r.stride, Padding::Valid), bn: bn() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::registry::resolve_net as resolve;
    use burn::nn::loss::CrossEntropyLossConfig;

    fn values(t: Tensor<2>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn burn_params_match_the_spec() {
        // Burn counts batch norm's running mean and variance too, as Keras' total does.
        let device = Device::flex();
        for name in ["fnn1", "cnn1", "cnn3", "vgg-lite", "resnet-lite"] {
            let spec = resolve(name).unwrap();
            let (trainable, non_trainable) = spec.param_counts().unwrap();
            assert_eq!(Net::new(&spec, &device).unwrap().num_params(), trainable + non_trainable, "{name}");
        }
    }

    #[test]
    fn l2_penalty_is_l2_times_the_sum_of_squared_kernels() {
        let device = Device::flex();
        let net = Net::new(&resolve("fnn1").unwrap(), &device).unwrap();
        // fnn1: three dense layers with l2 0.01, the output layer without.
        let mut expected = 0.0f64;
        for layer in &net.layers[..3] {
            let Layer::Dense(d) = layer else { panic!("fnn1 is all dense") };
            expected += 0.01 * values(d.linear.weight.val()).iter().map(|w| (*w as f64).powi(2)).sum::<f64>();
        }
        let got = net.l2_penalty().unwrap().into_scalar::<f32>() as f64;
        assert!((got - expected).abs() < 1e-4 * expected, "{got} vs {expected}");
        // Biases start at zero, as in Keras.
        let Layer::Dense(d) = &net.layers[0] else { unreachable!() };
        assert!(d.linear.bias.as_ref().unwrap().val().abs().max().into_scalar::<f32>() == 0.0);
    }

    #[test]
    fn cross_entropy_on_logits_is_the_mean_negative_log_softmax() {
        let device = Device::flex();
        let logits = Tensor::<2>::from_floats([[2.0, 0.0, -1.0, 0.5, 0.0, 0.0, 0.0], [0.0; 7]], &device);
        let labels = Tensor::<1, Int>::from_ints([0, 3], &device);
        let got: f32 = CrossEntropyLossConfig::new().init(&device).forward(logits, labels).into_scalar();
        // Row 1: -log(e^2 / (e^2 + 1 + e^-1 + e^0.5 + 3)); row 2: -log(1/7).
        let z = 2f64.exp() + 1.0 + (-1f64).exp() + 0.5f64.exp() + 3.0;
        let expected = ((z.ln() - 2.0) + 7f64.ln()) / 2.0;
        assert!((got as f64 - expected).abs() < 1e-5, "{got} vs {expected}");
    }

    /// `--label-smoothing s`: the target is `(1 - s) * one_hot + s / 7`, so the loss is
    /// `(1 - s) * CE + s * mean over classes of -log p` (Szegedy et al. 2016, PyTorch's definition).
    #[test]
    fn label_smoothing_mixes_in_the_uniform_target() {
        let device = Device::flex();
        let rows = [[2.0f32, 0.0, -1.0, 0.5, 0.0, 0.3, 0.0], [0.1, -0.4, 0.0, 0.0, 1.5, 0.0, 0.2]];
        let logits = Tensor::<2>::from_floats(rows, &device);
        let labels = Tensor::<1, Int>::from_ints([0, 3], &device);
        let s = 0.2f64;
        let got: f32 = CrossEntropyLossConfig::new()
            .with_smoothing(Some(s as f32))
            .init(&device)
            .forward(logits, labels)
            .into_scalar();
        let mut expected = 0.0;
        for (row, label) in rows.iter().zip([0usize, 3]) {
            let z: f64 = row.iter().map(|&x| (x as f64).exp()).sum();
            let nll = |k: usize| z.ln() - row[k] as f64;
            expected += (1.0 - s) * nll(label) + s * (0..7).map(nll).sum::<f64>() / 7.0;
        }
        expected /= 2.0;
        assert!((got as f64 - expected).abs() < 1e-5, "{got} vs {expected}");
    }

    /// vgg-lite's largest layer (its second convolution, 48 x 48 x 32 in and out) sets its
    /// chunks: a batch of 256 runs in two chunks of 128; cnn1's and smaller batches stay whole.
    #[test]
    fn inference_chunks_keep_the_largest_maps_within_the_budget() {
        let device = Device::flex();
        let vgg = Net::new(&resolve("vgg-lite").unwrap(), &device).unwrap();
        assert_eq!(vgg.largest_layer_bytes_per_face, 4 * 2 * 48 * 48 * 32);
        assert_eq!(inference_chunk_faces(256, vgg.largest_layer_bytes_per_face), 128);
        assert_eq!(inference_chunk_faces(512, vgg.largest_layer_bytes_per_face), 171);
        assert_eq!(inference_chunk_faces(64, vgg.largest_layer_bytes_per_face), 64);
        let cnn1 = Net::new(&resolve("cnn1").unwrap(), &device).unwrap();
        assert_eq!(inference_chunk_faces(512, cnn1.largest_layer_bytes_per_face), 512);
        assert_eq!(inference_chunk_faces(1, usize::MAX / 2), 1);
        for batch in [100, 227, 228, 455, 1000] {
            let chunk = inference_chunk_faces(batch, vgg.largest_layer_bytes_per_face);
            assert!(chunk * vgg.largest_layer_bytes_per_face <= INFERENCE_CHUNK_BYTES, "{batch}: {chunk}");
            let fewest = batch.div_ceil(INFERENCE_CHUNK_BYTES / vgg.largest_layer_bytes_per_face);
            assert!(chunk <= batch && batch.div_ceil(chunk) == fewest, "{batch}: {chunk}, not {fewest} chunks");
        }
        assert_eq!(Net::new(&resolve("fnn1").unwrap(), &device).unwrap().largest_layer_bytes_per_face, 0);
    }

    /// Running the image layers in chunks (the last one shorter) gives the logits of the whole
    /// batch up to rounding, for nets as built and for vgg-lite with its batch norms folded in and
    /// its ReLUs in the kernels (as prediction runs it).
    #[test]
    fn chunked_inference_gives_the_whole_batch_logits() {
        let device = Device::flex();
        let folded = || crate::models::fold::fold_net(Net::new(&resolve("vgg-lite").unwrap(), &device).unwrap());
        let built = |name| (name, Net::new(&resolve(name).unwrap(), &device).unwrap());
        let nets = ["vgg-lite", "cnn3", "resnet-lite"].map(built);
        for (name, net) in nets.into_iter().chain([("vgg-lite folded", folded())]) {
            let images = crate::kernels::tests::random_input([7, 1, 48, 48], &device, 5);
            let whole = values(net.forward_in_chunks(images.clone(), 7));
            let chunked = values(net.forward_in_chunks(images, 3));
            let worst = whole.iter().zip(&chunked).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(worst < 1e-5, "{name}: chunks differ from the whole batch by {worst}");
            assert!(whole.iter().any(|v| v.abs() > 1e-3), "{name}: logits all near zero");
        }
    }

    #[test]
    fn forward_gives_seven_logits_and_strips_the_final_softmax() {
        let device = Device::flex();
        for name in ["fnn2", "cnn1", "cnn3"] {
            let spec = resolve(name).unwrap();
            let net = Net::new(&spec, &device).unwrap();
            let out = net.forward(Tensor::zeros([3, 1, 48, 48], &device).add_scalar(0.5));
            assert_eq!(out.dims(), [3, 7], "{name}");
            let probs = net.predict(Tensor::ones([2, 1, 48, 48], &device));
            let sums = values(probs.sum_dim(1));
            assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5), "{name}: {sums:?}");
        }
        // cnn1 ends with an activation layer: it is skipped; cnn3 ends with dense+softmax: the
        // dense layer stays and loses its activation.
        let cnn1 = Net::new(&resolve("cnn1").unwrap(), &device).unwrap();
        assert_eq!(cnn1.logit_layers, cnn1.layers.len() - 1);
        let cnn3 = Net::new(&resolve("cnn3").unwrap(), &device).unwrap();
        assert_eq!(cnn3.logit_layers, cnn3.layers.len());
    }
}

#[cfg(test)]
mod channels_last_tests {
    use super::*;
    use crate::kernels::tests::{assert_close, random_input};

    /// A folded net at one face runs its convolutions of enough taps channel-last (where the CPU
    /// has the instructions), convolutions and pools channel-last in and out after them, and the
    /// other layers (dropout, an activation layer, global pooling) read the maps as
    /// the unfolded net does: the same logits within 1e-4.
    #[test]
    fn layers_after_a_channel_last_convolution_read_its_maps() {
        let device = Device::flex();
        let conv = |filters: usize, activation: &str| {
            format!("[[layers]]\nkind = \"conv2d\"\nfilters = {filters}\nkernel = 3\npadding = \"same\"\nactivation = \"{activation}\"\n")
        };
        let layer = |kind: &str, rest: &str| format!("[[layers]]\nkind = \"{kind}\"\n{rest}");
        let text = [
            "name = \"cl\"\ninput = [48, 48, 1]\n".to_string(),
            conv(8, "relu"),                // 9 taps: channel-first
            layer("maxpool", "pool = 2\n"), // 24 x 24
            conv(24, "relu"),               // 72 taps, 576 positions: turns channel-last
            conv(20, "sigmoid"),            // channel-last in and out
            layer("maxpool", "pool = 2\n"), // channel-last
            conv(16, "relu"),               // channel-last in and out, 12 x 12
            layer("dropout", "rate = 0.2\n"), // turns them back
            conv(12, "relu"),               // 144 taps: channel-last again
            layer("activation", "function = \"tanh\"\n"),
            layer("globalavgpool", ""),
            layer("dense", "units = 7\n"),
        ]
        .concat();
        let spec = NetSpec::from_toml(&text, "cl.toml").unwrap();
        device.seed(5);
        let net = Net::new(&spec, &device).unwrap();
        let face = random_input([1, 1, 48, 48], &device, 12);
        let expected = net.forward(face.clone());
        let folded = crate::models::fold::fold_net(net);
        assert!(folded.layers.iter().all(|l| !matches!(l, Layer::Conv(c) if c.pack.is_none())), "a conv without a pack");
        assert_close(&folded.forward(face.clone()), &expected, 1e-4, "one face");
        // Where it runs: the first layer's output is channel-first, the sixth's channel-last.
        let first = run_layers(&folded.layers[..1], Features::Image(face.clone()));
        assert!(matches!(first, Features::Image(_)), "a 9-tap layer ran channel-last");
        let sixth = run_layers(&folded.layers[..6], Features::Image(face));
        let has_isa = crate::util::cpu::isa().is_some();
        assert_eq!(matches!(sixth, Features::ChannelsLast(_)), has_isa, "the 12 x 12 layer's output");
    }
}

#[cfg(test)]
mod batchnorm_tests {
    use super::*;

    /// After many training-mode batches from one distribution (weights fixed), the running
    /// statistics match that distribution: inference-mode output equals training-mode output.
    #[test]
    fn running_statistics_converge_to_the_batch_statistics() {
        let text = "name = \"bn\"\ninput = [2304]\n[[layers]]\nkind = \"dense\"\nunits = 16\n\
                    [[layers]]\nkind = \"batchnorm\"\n[[layers]]\nkind = \"dense\"\nunits = 7\n";
        let spec = NetSpec::from_toml(text, "bn").unwrap();
        let device = Device::flex().autodiff();
        device.seed(3);
        let net = Net::new(&spec, &device).unwrap();
        // Normal(0.5, 2) inputs from a local seeded generator (batch k draws with seed k).
        let batch = |n: usize, seed: u64| {
            Tensor::<4>::from_inner(
                crate::kernels::tests::random_input([n, 1, 48, 48], &Device::flex(), seed)
                    .mul_scalar(2.0)
                    .add_scalar(0.5),
            )
        };
        // Keras' momentum 0.99: after 600 batches 0.99^600 = 0.2% of the initial values remain.
        for k in 0..600 {
            let _ = net.forward(batch(128, k));
        }
        // A large batch, so that its own statistics are close to the distribution's.
        let x = batch(4096, 600);
        let train_out = net.forward(x.clone()).inner().into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        let eval_out = net.valid().forward(x.inner()).into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        let worst = train_out.iter().zip(&eval_out).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        let scale = train_out.iter().map(|a| a.abs()).fold(0.0f32, f32::max);
        assert!(worst < 0.05 * scale, "train vs eval differ by {worst} (scale {scale})");
    }
}

#[cfg(test)]
mod residual_tests {
    use super::*;

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
    }

    /// A block whose convolutions are zero passes relu(input) (identity shortcut) or
    /// relu(bn(conv1x1(input))) (projection), as ResNet's definition says; global average pooling
    /// is each channel's mean.
    #[test]
    fn residual_block_adds_the_shortcut_and_pooling_averages() {
        let device = Device::flex();
        let text = "name = \"r\"\ninput = [48, 48, 1]\n\
            [[layers]]\nkind = \"conv2d\"\nfilters = 4\nkernel = 3\npadding = \"same\"\n\
            [[layers]]\nkind = \"residual\"\nfilters = 4\n\
            [[layers]]\nkind = \"residual\"\nfilters = 8\nstride = 2\n\
            [[layers]]\nkind = \"globalavgpool\"\n[[layers]]\nkind = \"dense\"\nunits = 7\n";
        let spec = NetSpec::from_toml(text, "r").unwrap();
        let infos = spec.layer_infos().unwrap();
        assert_eq!(infos[1].output, FeatureShape::Image { height: 48, width: 48, channels: 4 });
        assert_eq!(infos[2].output, FeatureShape::Image { height: 24, width: 24, channels: 8 });
        assert_eq!(infos[3].output, FeatureShape::Flat(8));
        // Block 1: 9*4*4 + 9*4*4 weights, 2 batch norms; block 2 adds the 1x1 projection.
        assert_eq!((infos[1].trainable, infos[1].non_trainable), (288 + 16, 16));
        assert_eq!((infos[2].trainable, infos[2].non_trainable), (9 * 4 * 8 + 9 * 8 * 8 + 32 + 4 * 8 + 16, 48));
        let net = Net::new(&spec, &device).unwrap();
        assert_eq!(net.num_params(), infos.iter().map(|i| i.trainable + i.non_trainable).sum::<usize>());

        let zero = |c: Conv2d| Conv2d { weight: c.weight.map(|w| w.zeros_like()), ..c };
        let Layer::Residual(block) = &net.layers[1] else { panic!("layer 2 is a residual block") };
        let block = Residual {
            conv1: zero(block.conv1.clone()),
            conv2: zero(block.conv2.clone()),
            bn1: block.bn1.clone(),
            bn2: block.bn2.clone(),
            projection: None,
        }
        .valid();
        let x = crate::kernels::tests::random_input([2, 4, 6, 6], &device, 17);
        let got = values(block.forward(x.clone()));
        let want = values(activation::relu(x.clone()));
        // Inference-mode batch norm of zeros with fresh statistics gives (0 - 0) / sqrt(1 + 1e-5) * 1 + 0 = 0.
        assert!(got.iter().zip(&want).all(|(g, w)| (g - w).abs() < 1e-6));
        assert!(want.iter().any(|w| *w > 0.0) && want.iter().any(|w| *w == 0.0));

        let pooled = values(net.layers[3].forward(Features::Image(x.clone())).flat());
        let means = values(x.mean_dim(3).mean_dim(2).reshape([2, 4]));
        assert!(pooled.iter().zip(&means).all(|(a, b)| (a - b).abs() < 1e-5));
    }

    #[test]
    fn residual_blocks_need_images() {
        let text = "name = \"r\"\ninput = [2304]\n[[layers]]\nkind = \"residual\"\nfilters = 4\n\
                    [[layers]]\nkind = \"dense\"\nunits = 7\n";
        let err = format!("{:#}", NetSpec::from_toml(text, "r.toml").unwrap_err());
        assert!(err.contains("layer 1 (residual)") && err.contains("image input"), "{err}");
    }
}

#[cfg(test)]
mod semantics_tests {
    //! The training semantics the trainer relies on, each checked so that breaking it fails a
    //! test (issue 22): the L2 term's gradient, and Keras' batch-norm momentum and epsilon.
    use super::*;
    use crate::kernels::tests::random_input;

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
    }

    /// d/dW of `l2 * sum(W^2)` is `2 * l2 * W` for dense and convolution kernels; biases and
    /// layers without `l2` get no gradient from it.
    #[test]
    fn the_l2_gradient_is_twice_l2_times_the_kernel_and_spares_biases() {
        let text = "name = \"l2\"\ninput = [48, 48, 1]\n\
            [[layers]]\nkind = \"conv2d\"\nfilters = 4\nkernel = 3\nstride = 4\nl2 = 0.05\n\
            [[layers]]\nkind = \"conv2d\"\nfilters = 4\nkernel = 3\nstride = 4\n\
            [[layers]]\nkind = \"flatten\"\n[[layers]]\nkind = \"dense\"\nunits = 7\nl2 = 0.2\n";
        let device = Device::flex().autodiff();
        let net = Net::new(&NetSpec::from_toml(text, "l2").unwrap(), &device).unwrap();
        let grads = net.l2_penalty().unwrap().backward();
        let (Layer::Conv(c1), Layer::Conv(c2), Layer::Dense(d)) = (&net.layers[0], &net.layers[1], &net.layers[3])
        else {
            panic!("conv, conv, flatten, dense")
        };
        let checks = [
            (
                values(c1.conv.weight.val().grad(&grads).expect("the kernel has a gradient")),
                values(c1.conv.weight.val().inner()),
                0.05f32,
            ),
            (
                values(d.linear.weight.val().grad(&grads).expect("the kernel has a gradient")),
                values(d.linear.weight.val().inner()),
                0.2,
            ),
        ];
        for (grad, w, l2) in checks {
            assert!(w.iter().any(|v| v.abs() > 1e-3));
            for (g, w) in grad.iter().zip(&w) {
                assert!((g - 2.0 * l2 * w).abs() < 1e-6, "{g} vs 2 * {l2} * {w}");
            }
        }
        assert!(c1.conv.bias.as_ref().unwrap().val().grad(&grads).is_none(), "a bias got an L2 gradient");
        assert!(d.linear.bias.as_ref().unwrap().val().grad(&grads).is_none(), "a bias got an L2 gradient");
        assert!(c2.conv.weight.val().grad(&grads).is_none(), "a layer without l2 got an L2 gradient");
    }

    /// Keras' convention: after one training batch from fresh statistics (mean 0, variance 1),
    /// `moving = 0.99 * moving + 0.01 * batch` (momentum 0.99 weighs the running value; the
    /// batch variance is the biased one); inference then divides by sqrt(variance + 1e-3).
    #[test]
    fn batch_norm_follows_keras_momentum_and_epsilon() {
        let text = "name = \"bn\"\ninput = [48, 48, 1]\n\
            [[layers]]\nkind = \"conv2d\"\nfilters = 3\nkernel = 1\n\
            [[layers]]\nkind = \"batchnorm\"\n\
            [[layers]]\nkind = \"flatten\"\n[[layers]]\nkind = \"dense\"\nunits = 7\n";
        let device = Device::flex().autodiff();
        let net = Net::new(&NetSpec::from_toml(text, "bn").unwrap(), &device).unwrap();
        let Layer::Conv(conv) = &net.layers[0] else { panic!("a convolution first") };
        let Layer::BatchNorm(bn) = &net.layers[1] else { panic!("then batch norm") };
        let x = random_input([5, 1, 48, 48], &Device::flex(), 11).mul_scalar(3.0).add_scalar(2.0);
        let conv_out = values(kernels::conv2d::conv2d(&conv.conv.valid(), x.clone()));
        let _ = net.forward(Tensor::from_inner(x.clone()));
        let plane = 48 * 48;
        let (mean, var) = (values(bn.running_mean.value_sync().inner()), values(bn.running_var.value_sync().inner()));
        let mut batch = Vec::new();
        for c in 0..3 {
            let channel: Vec<f64> = (0..5)
                .flat_map(|n| conv_out[(n * 3 + c) * plane..(n * 3 + c + 1) * plane].iter().map(|v| *v as f64))
                .collect();
            let m = channel.iter().sum::<f64>() / channel.len() as f64;
            let v = channel.iter().map(|x| (x - m).powi(2)).sum::<f64>() / channel.len() as f64;
            assert!((mean[c] as f64 - 0.01 * m).abs() < 1e-5, "channel {c}: running mean {} vs 0.01 * {m}", mean[c]);
            assert!(
                (var[c] as f64 - (0.99 + 0.01 * v)).abs() < 1e-4,
                "channel {c}: running variance {} vs 0.99 + 0.01 * {v}",
                var[c]
            );
            batch.push((m, v));
        }
        // Inference: (x - moving mean) / sqrt(moving variance + 1e-3), gamma 1 and beta 0.
        let inference = net.valid();
        let Layer::BatchNorm(bn) = &inference.layers[1] else { unreachable!() };
        let out = values(kernels::batch_norm::batch_norm(
            bn,
            Tensor::<4>::from_data(TensorData::new(conv_out.clone(), [5, 3, 48, 48]), &Device::flex()),
        ));
        for c in 0..3 {
            let (m, v) = (0.01 * batch[c].0, 0.99 + 0.01 * batch[c].1);
            let i = (2 * 3 + c) * plane + 100;
            let want = (conv_out[i] as f64 - m) / (v + 1e-3).sqrt();
            assert!((out[i] as f64 - want).abs() < 1e-4, "channel {c}: {} vs {want}", out[i]);
        }
    }
}
