//! A trained net as an ONNX model (IR version 8, the default operator set at version 18), for
//! ONNX Runtime and the other runtimes people deploy with.
//!
//! The graph has one input, `faces`: float32 `[batch, 1, 48, 48]` with a free batch dimension,
//! preprocessed as the net was trained (the metadata's `ferkit.preprocess` says how; see
//! [`crate::data::standardize`]), and two outputs over the seven classes in
//! [`crate::data::dataset::CLASS_NAMES`] order: `logits` `[batch, 7]` (an ensemble's are the
//! log of its mean probabilities, as [`Model::forward`] gives) and `probabilities` `[batch, 7]`.
//! Inference only: dropout is left out, batch norm uses its running statistics, and test-time
//! augmentation is not part of the graph.
//!
//! Every layer maps to one standard operator: `Conv` (explicit pads computed as ferkit's own
//! kernels pad, TensorFlow's "same" putting the odd extra row at the end), `BatchNormalization`,
//! `MaxPool`, `Gemm`, `Relu`/`Sigmoid`/`Tanh`/`Softmax`, `Clip` (ReLU6), `Add`,
//! `GlobalAveragePool`, `Flatten`, and for transfer nets `Concat` (grey to three channels), `Sub`,
//! `Div` and `Resize` (bilinear, `align_corners`, as Burn's interpolation).

use burn::module::Param;
use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::nn::{BatchNorm, Linear, PaddingConfig2d};
use burn::prelude::*;
use prost::Message;

use super::onnx_proto::*;
use crate::data::batch::Preprocess;
use crate::data::dataset::CLASS_NAMES;
use crate::error::{Result, bail};
use crate::kernels::Sliding;
use crate::models::efficientnet::{EfficientNetLite0, IMAGENET_MEAN, IMAGENET_STD};
use crate::models::model::Model;
use crate::models::net::{Layer, Net};
use crate::models::spec::ActivationFn;
use crate::models::transfer::{Backbone, TransferNet};
use crate::models::vgg16::Vgg16;

/// ONNX IR version written (8: ONNX 1.13 and later, ONNX Runtime 1.14 and later).
pub const IR_VERSION: i64 = 8;
/// The default-domain operator set the graph uses.
pub const OPSET: i64 = 18;
/// The face side the graph reads.
const SIDE: usize = 48;

/// What `ferkit.preprocess` in the metadata says, for each way a net reads faces.
pub fn preprocess_note(preprocess: Preprocess) -> &'static str {
    match preprocess {
        Preprocess::PerImage => {
            "per-image standardisation of the 48x48 grey levels p (0-255): (p - mean) / max(stdev, 1/48), \
             mean and sample standard deviation (n - 1) over the face's own 2304 pixels"
        }
        Preprocess::UnitRange => "grey levels scaled to [0, 1]: p / 255",
    }
}

/// The ONNX file's bytes for `net` (float32 weights), with `metadata` as its metadata
/// properties (beside `ferkit.preprocess`, `ferkit.classes` and `ferkit.input`).
///
/// Errors: a net whose weights are not float32 (load it through [`crate::trained::TrainedModel`],
/// which converts them), or a layer whose geometry does not fit the 48x48 input.
pub fn to_onnx(net: &Model, preprocess: Preprocess, name: &str, metadata: &[(String, String)]) -> Result<Vec<u8>> {
    let mut g = Graph::default();
    let input = Value { name: "faces".into(), shape: Shape::Image([1, SIDE, SIDE]) };
    let logits = g.model(net, input, "")?;
    if logits.shape != Shape::Flat(CLASS_NAMES.len()) {
        bail!(Model, "the net gives {:?} values per face, not {} class scores", logits.shape, CLASS_NAMES.len());
    }
    g.node_named("Identity", &[&logits.name], "logits", vec![]);
    g.node_named("Softmax", &["logits"], "probabilities", vec![int("axis", 1)]);
    let batch = || Dimension { dim_value: None, dim_param: Some("batch".into()) };
    let fixed = |n: usize| Dimension { dim_value: Some(n as i64), dim_param: None };
    let value_info = |name: &str, dims: Vec<Dimension>, doc: &str| ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: data_type::FLOAT,
                shape: Some(TensorShapeProto { dim: dims }),
            }),
        }),
        doc_string: doc.into(),
    };
    let classes = CLASS_NAMES.join(", ");
    let graph = GraphProto {
        node: g.nodes,
        name: name.into(),
        initializer: g.initializers,
        doc_string: format!("ferkit net `{name}`: 48x48 grey faces -> scores for {classes}"),
        input: vec![value_info(
            "faces",
            vec![batch(), fixed(1), fixed(SIDE), fixed(SIDE)],
            &format!("float32 [batch, 1, 48, 48]; {}", preprocess_note(preprocess)),
        )],
        output: vec![
            value_info("logits", vec![batch(), fixed(CLASS_NAMES.len())], &format!("float32 [batch, 7]: {classes}")),
            value_info(
                "probabilities",
                vec![batch(), fixed(CLASS_NAMES.len())],
                &format!("float32 [batch, 7], softmax of logits: {classes}"),
            ),
        ],
    };
    let mut props = vec![
        ("ferkit.preprocess".to_string(), preprocess_note(preprocess).to_string()),
        ("ferkit.classes".to_string(), classes.clone()),
        (
            "ferkit.input".to_string(),
            "faces: float32 [batch, 1, 48, 48], grey, preprocessed as ferkit.preprocess says".into(),
        ),
    ];
    props.extend(metadata.iter().cloned());
    let model = ModelProto {
        ir_version: IR_VERSION,
        producer_name: "ferkit".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        domain: String::new(),
        model_version: 1,
        doc_string: format!("ferkit facial-expression net `{name}`"),
        graph: Some(graph),
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: OPSET }],
        metadata_props: props.into_iter().map(|(key, value)| StringStringEntryProto { key, value }).collect(),
    };
    Ok(model.encode_to_vec())
}

/// The shape of one face's activations (the batch dimension left out).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Shape {
    /// `[channels, height, width]`.
    Image([usize; 3]),
    Flat(usize),
}

/// A named value of the graph and its shape.
#[derive(Clone, Debug)]
struct Value {
    name: String,
    shape: Shape,
}

fn int(name: &str, i: i64) -> AttributeProto {
    AttributeProto { name: name.into(), i: Some(i), r#type: attribute_type::INT, ..Default::default() }
}

fn ints(name: &str, values: impl IntoIterator<Item = usize>) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        ints: values.into_iter().map(|v| v as i64).collect(),
        r#type: attribute_type::INTS,
        ..Default::default()
    }
}

fn float(name: &str, f: f32) -> AttributeProto {
    AttributeProto { name: name.into(), f: Some(f), r#type: attribute_type::FLOAT, ..Default::default() }
}

fn string(name: &str, s: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        s: Some(s.as_bytes().to_vec()),
        r#type: attribute_type::STRING,
        ..Default::default()
    }
}

/// The graph being built: nodes in order and the weights they read.
#[derive(Default)]
struct Graph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    counter: usize,
}

impl Graph {
    /// Adds `op` reading `inputs`; its one output gets a fresh name, returned.
    fn node(&mut self, op: &str, inputs: &[&str], attributes: Vec<AttributeProto>) -> String {
        self.counter += 1;
        let output = format!("{}_{}", op.to_lowercase(), self.counter);
        self.node_named(op, inputs, &output, attributes);
        output
    }

    fn node_named(&mut self, op: &str, inputs: &[&str], output: &str, attribute: Vec<AttributeProto>) {
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            name: output.to_string(),
            op_type: op.into(),
            attribute,
        });
    }

    /// A float32 constant named `name`.
    fn constant(&mut self, name: &str, dims: &[usize], values: &[f32]) -> String {
        debug_assert_eq!(dims.iter().product::<usize>(), values.len());
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: data_type::FLOAT,
            name: name.into(),
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        });
        name.into()
    }

    fn int64_constant(&mut self, name: &str, values: &[i64]) -> String {
        self.initializers.push(TensorProto {
            dims: vec![values.len() as i64],
            data_type: data_type::INT64,
            name: name.into(),
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        });
        name.into()
    }

    /// A weight of the net, under its module path.
    fn weight<const D: usize>(&mut self, name: &str, param: &Param<Tensor<D>>) -> Result<String> {
        self.tensor(name, param.val())
    }

    fn tensor<const D: usize>(&mut self, name: &str, tensor: Tensor<D>) -> Result<String> {
        let dims = tensor.dims();
        let values = tensor
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| crate::err!(Model, "{name}: the weights are not float32 ({e:?})"))?;
        Ok(self.constant(name, &dims, &values))
    }

    /// `model`'s logits for `x` (its module paths prefixed by `prefix`).
    fn model(&mut self, model: &Model, x: Value, prefix: &str) -> Result<Value> {
        match model {
            Model::Layers(net) => self.net(net, x, prefix),
            Model::Transfer(net) => self.transfer(net, x, prefix),
            Model::Ensemble(e) => {
                // The log of the members' mean probability, as `Model::forward` computes it.
                let mut probabilities = Vec::new();
                for (i, member) in e.members.iter().enumerate() {
                    let logits = self.model(member, x.clone(), &format!("{prefix}members.{i}."))?;
                    probabilities.push(self.node("Softmax", &[&logits.name], vec![int("axis", 1)]));
                }
                let inputs: Vec<&str> = probabilities.iter().map(String::as_str).collect();
                let mean = self.node("Mean", &inputs, vec![]);
                let floor = self.constant(&format!("{prefix}ensemble.floor"), &[], &[f32::MIN_POSITIVE]);
                let clamped = self.node("Max", &[&mean, &floor], vec![]);
                Ok(Value { name: self.node("Log", &[&clamped], vec![]), shape: Shape::Flat(CLASS_NAMES.len()) })
            }
        }
    }

    fn net(&mut self, net: &Net, mut x: Value, prefix: &str) -> Result<Value> {
        if net.flat_input {
            x = self.flatten(x);
        }
        for (i, layer) in net.layers[..net.logit_layers].iter().enumerate() {
            let path = format!("{prefix}layers.{i}");
            x = match layer {
                Layer::Dense(d) => {
                    let y = self.linear(&d.linear, x, &format!("{path}.linear"))?;
                    self.activation(d.act.function, y)
                }
                Layer::Conv(c) => {
                    let y = self.conv(&c.conv, x, &format!("{path}.conv"))?;
                    self.activation(c.act.function, y)
                }
                Layer::MaxPool(p) => self.max_pool(p, x)?,
                Layer::BatchNorm(bn) => self.batch_norm(bn, x, &path)?,
                Layer::Dropout(_) => x,
                Layer::Flatten(_) => self.flatten(x),
                Layer::Activation(a) => self.activation(a.function, x),
                Layer::Residual(r) => {
                    let y = self.conv(&r.conv1, x.clone(), &format!("{path}.conv1"))?;
                    let y = self.batch_norm(&r.bn1, y, &format!("{path}.bn1"))?;
                    let y = self.unary("Relu", y);
                    let y = self.conv(&r.conv2, y, &format!("{path}.conv2"))?;
                    let y = self.batch_norm(&r.bn2, y, &format!("{path}.bn2"))?;
                    let shortcut = match &r.projection {
                        Some(p) => {
                            let s = self.conv(&p.conv, x, &format!("{path}.projection.conv"))?;
                            self.batch_norm(&p.bn, s, &format!("{path}.projection.bn"))?
                        }
                        None => x,
                    };
                    let sum = Value { name: self.node("Add", &[&y.name, &shortcut.name], vec![]), shape: y.shape };
                    self.unary("Relu", sum)
                }
                Layer::GlobalAvgPool(_) => self.global_average(x)?,
            };
        }
        Ok(x)
    }

    fn transfer(&mut self, net: &TransferNet, x: Value, prefix: &str) -> Result<Value> {
        // Grey to three channels, ImageNet normalisation, then the backbone's input size.
        let grey = x.name.as_str();
        let rgb = self.node("Concat", &[grey, grey, grey], vec![int("axis", 1)]);
        let mean = self.constant(&format!("{prefix}imagenet.mean"), &[1, 3, 1, 1], &IMAGENET_MEAN);
        let std = self.constant(&format!("{prefix}imagenet.std"), &[1, 3, 1, 1], &IMAGENET_STD);
        let centred = self.node("Sub", &[&rgb, &mean], vec![]);
        let mut name = self.node("Div", &[&centred, &std], vec![]);
        let side = net.input_size;
        if side != SIDE {
            let sizes = self.int64_constant(&format!("{prefix}resize.sizes"), &[side as i64, side as i64]);
            name = self.node(
                "Resize",
                &[&name, "", "", &sizes],
                vec![
                    string("mode", "linear"),
                    string("coordinate_transformation_mode", "align_corners"),
                    ints("axes", [2, 3]),
                ],
            );
        }
        let x = Value { name, shape: Shape::Image([3, side, side]) };
        let mut z = match &net.backbone {
            Backbone::EfficientNetLite0(e) => self.efficientnet(e, x, &format!("{prefix}backbone"))?,
            Backbone::Vgg16(v) => self.vgg16(v, x, &format!("{prefix}backbone"))?,
        };
        for (i, layer) in net.head.iter().enumerate() {
            let y = self.linear(layer, z, &format!("{prefix}head.{i}"))?;
            z = self.unary("Relu", y);
        }
        self.linear(&net.output, z, &format!("{prefix}output"))
    }

    fn efficientnet(&mut self, net: &EfficientNetLite0, x: Value, path: &str) -> Result<Value> {
        let y = self.conv(&net.conv_stem, x, &format!("{path}.conv_stem"))?;
        let y = self.batch_norm(&net.bn0, y, &format!("{path}.bn0"))?;
        let mut x = self.relu6(y, path);
        for (i, block) in net.blocks.iter().enumerate() {
            let p = format!("{path}.blocks.{i}");
            let input = x.clone();
            if let (Some(expand), Some(bn0)) = (&block.expand_conv, &block.bn0) {
                let y = self.conv(expand, x, &format!("{p}.expand_conv"))?;
                let y = self.batch_norm(bn0, y, &format!("{p}.bn0"))?;
                x = self.relu6(y, path);
            }
            let y = self.conv(&block.depthwise_conv, x, &format!("{p}.depthwise_conv"))?;
            let y = self.batch_norm(&block.bn1, y, &format!("{p}.bn1"))?;
            let y = self.relu6(y, path);
            let y = self.conv(&block.project_conv, y, &format!("{p}.project_conv"))?;
            x = self.batch_norm(&block.bn2, y, &format!("{p}.bn2"))?;
            if block.skip {
                x = Value { name: self.node("Add", &[&x.name, &input.name], vec![]), shape: x.shape };
            }
        }
        let y = self.conv(&net.conv_head, x, &format!("{path}.conv_head"))?;
        let y = self.batch_norm(&net.bn1, y, &format!("{path}.bn1"))?;
        let y = self.relu6(y, path);
        self.global_average(y)
    }

    fn vgg16(&mut self, net: &Vgg16, mut x: Value, path: &str) -> Result<Value> {
        for (b, block) in net.blocks.iter().enumerate() {
            for (c, conv) in block.convs.iter().enumerate() {
                let y = self.conv(conv, x, &format!("{path}.blocks.{b}.convs.{c}"))?;
                x = self.unary("Relu", y);
            }
            x = self.max_pool(&block.pool, x)?;
        }
        self.global_average(x)
    }

    fn unary(&mut self, op: &str, x: Value) -> Value {
        Value { name: self.node(op, &[&x.name], vec![]), shape: x.shape }
    }

    fn activation(&mut self, function: Option<ActivationFn>, x: Value) -> Value {
        match function {
            None => x,
            Some(ActivationFn::Relu) => self.unary("Relu", x),
            Some(ActivationFn::Sigmoid) => self.unary("Sigmoid", x),
            Some(ActivationFn::Tanh) => self.unary("Tanh", x),
            // Over the channels for images, as `net::Act` applies it (Keras' last axis).
            Some(ActivationFn::Softmax) => {
                Value { name: self.node("Softmax", &[&x.name], vec![int("axis", 1)]), shape: x.shape }
            }
        }
    }

    fn relu6(&mut self, x: Value, path: &str) -> Value {
        let (lo, hi) = (format!("{path}.relu6.min"), format!("{path}.relu6.max"));
        if !self.initializers.iter().any(|t| t.name == lo) {
            self.constant(&lo, &[], &[0.0]);
            self.constant(&hi, &[], &[6.0]);
        }
        Value { name: self.node("Clip", &[&x.name, &lo, &hi], vec![]), shape: x.shape }
    }

    fn flatten(&mut self, x: Value) -> Value {
        let n = match x.shape {
            Shape::Image([c, h, w]) => c * h * w,
            Shape::Flat(n) => return Value { name: x.name, shape: Shape::Flat(n) },
        };
        Value { name: self.node("Flatten", &[&x.name], vec![int("axis", 1)]), shape: Shape::Flat(n) }
    }

    fn global_average(&mut self, x: Value) -> Result<Value> {
        let Shape::Image([c, ..]) = x.shape else { bail!(Model, "global average pooling needs an image") };
        let pooled = self.node("GlobalAveragePool", &[&x.name], vec![]);
        Ok(Value { name: self.node("Flatten", &[&pooled], vec![int("axis", 1)]), shape: Shape::Flat(c) })
    }

    fn linear(&mut self, linear: &Linear, x: Value, path: &str) -> Result<Value> {
        let [_, units] = linear.weight.val().dims();
        // Burn keeps the weight as [inputs, units]: Gemm's B without transposition.
        let w = self.weight(&format!("{path}.weight"), &linear.weight)?;
        let mut inputs = vec![x.name.clone(), w];
        if let Some(b) = &linear.bias {
            inputs.push(self.weight(&format!("{path}.bias"), b)?);
        }
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        Ok(Value { name: self.node("Gemm", &inputs, vec![]), shape: Shape::Flat(units) })
    }

    fn conv(&mut self, conv: &Conv2d, x: Value, path: &str) -> Result<Value> {
        let Shape::Image([_, h, w]) = x.shape else { bail!(Model, "{path}: a convolution needs an image") };
        let [out_channels, ..] = conv.weight.val().dims();
        let pads = pads(path, &conv.padding, [h, w], conv.kernel_size, conv.stride, conv.dilation)?;
        let weight = self.weight(&format!("{path}.weight"), &conv.weight)?;
        let mut inputs = vec![x.name.clone(), weight];
        if let Some(b) = &conv.bias {
            inputs.push(self.weight(&format!("{path}.bias"), b)?);
        }
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let name = self.node(
            "Conv",
            &inputs,
            vec![
                ints("kernel_shape", conv.kernel_size),
                ints("strides", conv.stride),
                ints("dilations", conv.dilation),
                int("group", conv.groups as i64),
                ints("pads", [pads.pad[0], pads.pad[1], pads.end[0], pads.end[1]]),
            ],
        );
        Ok(Value { name, shape: Shape::Image([out_channels, pads.output[0], pads.output[1]]) })
    }

    fn max_pool(&mut self, pool: &MaxPool2d, x: Value) -> Result<Value> {
        let Shape::Image([c, h, w]) = x.shape else { bail!(Model, "max pooling needs an image") };
        if pool.ceil_mode {
            bail!(Unsupported, "max pooling with ceil mode has no ONNX export in ferkit");
        }
        let pads = pads("max pool", &pool.padding, [h, w], pool.kernel_size, pool.stride, pool.dilation)?;
        // ONNX's MaxPool never picks a padded position (as if padded with -inf), as ferkit's does.
        let name = self.node(
            "MaxPool",
            &[&x.name],
            vec![
                ints("kernel_shape", pool.kernel_size),
                ints("strides", pool.stride),
                ints("dilations", pool.dilation),
                ints("pads", [pads.pad[0], pads.pad[1], pads.end[0], pads.end[1]]),
            ],
        );
        Ok(Value { name, shape: Shape::Image([c, pads.output[0], pads.output[1]]) })
    }

    fn batch_norm(&mut self, bn: &BatchNorm, x: Value, path: &str) -> Result<Value> {
        let gamma = self.weight(&format!("{path}.gamma"), &bn.gamma)?;
        let beta = self.weight(&format!("{path}.beta"), &bn.beta)?;
        let mean = self.tensor(&format!("{path}.running_mean"), bn.running_mean.value())?;
        let var = self.tensor(&format!("{path}.running_var"), bn.running_var.value())?;
        let name = self.node(
            "BatchNormalization",
            &[&x.name, &gamma, &beta, &mean, &var],
            vec![float("epsilon", bn.epsilon as f32)],
        );
        Ok(Value { name, shape: x.shape })
    }
}

/// Padding before (`pad`) and after (`end`) each spatial axis, and the output size.
struct Pads {
    pad: [usize; 2],
    end: [usize; 2],
    output: [usize; 2],
}

/// The explicit padding ferkit's kernels use for `padding` (via [`Sliding`]).
fn pads(
    what: &str,
    padding: &PaddingConfig2d,
    input: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
) -> Result<Pads> {
    if dilation != [1, 1] {
        bail!(Unsupported, "{what}: dilated windows have no ONNX export in ferkit");
    }
    let Some(s) = Sliding::new(padding, input, kernel, stride) else {
        bail!(Model, "{what}: a {kernel:?} window does not fit a {input:?} input");
    };
    let mut end = [0; 2];
    for a in 0..2 {
        // The input the windows span, less what lies before: the rest is padding at the end.
        let span = (s.output[a] - 1) * stride[a] + kernel[a];
        end[a] = span.saturating_sub(input[a] + s.pad[a]);
    }
    Ok(Pads { pad: s.pad, end, output: s.output })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Same padding of a 48-wide input, kernel 11, stride 4 (cnn1's first layer): TensorFlow pads
    /// 3 before and 4 after (12 outputs); valid padding none.
    #[test]
    fn pads_follow_tensorflows_same_rule() {
        let p = pads("t", &PaddingConfig2d::Same, [48, 48], [11, 11], [4, 4], [1, 1]).unwrap();
        assert_eq!((p.pad, p.end, p.output), ([3, 3], [4, 4], [12, 12]));
        let p = pads("t", &PaddingConfig2d::Same, [5, 5], [2, 2], [2, 2], [1, 1]).unwrap();
        assert_eq!((p.pad, p.end, p.output), ([0, 0], [1, 1], [3, 3]));
        let p = pads("t", &PaddingConfig2d::Valid, [48, 48], [3, 3], [1, 1], [1, 1]).unwrap();
        assert_eq!((p.pad, p.end, p.output), ([0, 0], [0, 0], [46, 46]));
        assert!(pads("t", &PaddingConfig2d::Valid, [2, 2], [3, 3], [1, 1], [1, 1]).is_err());
    }

    /// The file decodes back as ONNX: IR and opset versions, the batch dimension free, one
    /// initializer per weight of cnn3, and the metadata naming the preprocessing.
    #[test]
    fn a_net_becomes_an_onnx_model_with_a_free_batch_dimension() {
        let device = Device::flex();
        let spec = crate::models::resolve("cnn3").unwrap();
        let net = spec.build(&device).unwrap();
        let bytes = to_onnx(&net, Preprocess::PerImage, "cnn3", &[("k".into(), "v".into())]).unwrap();
        let model = ModelProto::decode(bytes.as_slice()).unwrap();
        assert_eq!((model.ir_version, model.opset_import[0].version), (IR_VERSION, OPSET));
        let graph = model.graph.unwrap();
        let dims = &graph.input[0].r#type.as_ref().unwrap().tensor_type.as_ref().unwrap().shape.as_ref().unwrap().dim;
        assert_eq!(dims[0].dim_param.as_deref(), Some("batch"));
        assert_eq!(dims.iter().skip(1).map(|d| d.dim_value.unwrap()).collect::<Vec<_>>(), [1, 48, 48]);
        let weights: usize = graph.initializer.iter().map(|t| t.raw_data.len() / 4).sum();
        let (trainable, fixed) = spec.param_counts().unwrap();
        assert_eq!(weights, trainable + fixed);
        assert_eq!(graph.output.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(), ["logits", "probabilities"]);
        let props: std::collections::BTreeMap<_, _> =
            model.metadata_props.iter().map(|p| (p.key.as_str(), p.value.as_str())).collect();
        assert!(props["ferkit.preprocess"].contains("per-image standardisation"));
        assert_eq!(props["k"], "v");
        // Every node reads values made before it (a topological order, as ONNX requires).
        let mut known: std::collections::HashSet<String> =
            graph.initializer.iter().map(|t| t.name.clone()).chain(["faces".to_string()]).collect();
        for node in &graph.node {
            for input in node.input.iter().filter(|i| !i.is_empty()) {
                assert!(known.contains(input), "{} reads {input} before it is made", node.name);
            }
            known.extend(node.output.iter().cloned());
        }
    }
}
