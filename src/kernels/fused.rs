//! A convolution, the batch norm after it and the activation after that, in one pass at
//! inference: each output value goes through the batch norm's affine map and the activation as
//! the convolution writes it (the "epilogue"), instead of in two more passes over the whole
//! output, each a new tensor and a round of rayon tasks.
//!
//! Why: at batch 1 (one face from a photo), EfficientNet-Lite0's batch-norm and ReLU6 passes
//! were 17% of the main thread's time (`perf record ferkit bench --models efficientnet-lite0:1
//! --infer-batches 1`, session 18, AMD EPYC), most of it splitting a few thousand values into
//! rayon tasks; at batch 256 they are two extra round trips through memory per layer. ONNX
//! Runtime fuses the same way (its `Conv` + `BatchNormalization` + `Clip` fusions).
//!
//! The epilogue applies the same operations in the same order as the separate layers
//! ([`super::batch_norm::batch_norm`]'s inference map `y * scale + shift`, then the clamp of
//! [`super::clamp`] or Flex's ReLU), so the fused output is the same bits as the unfused one
//! (the tests check it). In training, and on any other backend, [`conv_bn_act`] runs the three
//! layers one after the other as before: the autodiff graph needs their separate outputs.

use burn::backend::flex::Flex;
use burn::nn::BatchNorm;
use burn::nn::conv::Conv2d;
use burn::tensor::Tensor;

pub use super::epilogue::Activation;
use super::epilogue::Epilogue;
use super::conv2d::WeightPack;
use super::{batch_norm, conv2d};

/// `act(bn(conv(x)))` (each of `bn` and `act` when given) for `x` `[batch, channels, height,
/// width]`: at inference on Flex f32 tensors in one pass (see the module's doc; same bits as the
/// layers one by one), otherwise (training, other backends, convolutions the kernels do not
/// cover) as [`conv2d::conv2d`], [`batch_norm::batch_norm`] and the activation's own layer.
pub fn conv_bn_act(conv: &Conv2d, bn: Option<&BatchNorm>, act: Option<Activation>, x: Tensor<4>) -> Tensor<4> {
    packed_conv_bn_act(conv, None, bn, act, x)
}

/// [`conv_bn_act`] with the layer's `WeightPack` (`pack`, kept by a net prepared for inference:
/// `models::fold`): its parameters and Winograd filters kept there, passes of few output
/// positions run as a direct convolution (`conv2d::direct`) over its packed weights.
pub fn packed_conv_bn_act(
    conv: &Conv2d,
    pack: Option<&WeightPack>,
    bn: Option<&BatchNorm>,
    act: Option<Activation>,
    x: Tensor<4>,
) -> Tensor<4> {
    let affine = match bn {
        Some(bn) => batch_norm::inference_affine(bn),
        None => None,
    };
    if bn.is_none() || affine.is_some() {
        let epilogue = Epilogue { affine: affine.as_ref().map(|(s, t)| (s.as_slice(), t.as_slice())), act };
        if let Some(out) = conv2d::inference(conv, &x, &epilogue, pack) {
            return Tensor::from_primitive::<Flex>(out);
        }
    }
    let y = conv2d::conv2d(conv, x);
    let y = match bn {
        Some(bn) => batch_norm::batch_norm(bn, y),
        None => y,
    };
    match act {
        Some(act) => act.layer(y),
        None => y,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::kernels::tests::random_input;
    use burn::module::{Param, RunningState};
    use burn::nn::conv::Conv2dConfig;
    use burn::nn::{BatchNormConfig, PaddingConfig2d};
    use burn::tensor::activation;
    use burn::prelude::*;

    fn bits(t: Tensor<4>) -> Vec<u32> {
        t.into_data().try_to_vec::<f32>().unwrap().iter().map(|v| v.to_bits()).collect()
    }

    /// A batch norm with non-trivial running statistics and affine parameters.
    pub(crate) fn batch_norm(channels: usize, device: &Device, seed: u64) -> BatchNorm {
        let mut bn = BatchNormConfig::new(channels).with_epsilon(1e-3).init(device);
        let vector = |s| random_input([channels], device, seed + s);
        bn.gamma = Param::from_tensor(vector(0));
        bn.beta = Param::from_tensor(vector(1));
        bn.running_mean = RunningState::new(vector(2));
        bn.running_var = RunningState::new(vector(3).abs().add_scalar(0.1));
        bn
    }

    /// Fused against unfused at inference, bit for bit, for the convolutions EfficientNet-Lite0
    /// and the layer nets use: ordinary (im2col: shifted planes, table, planes; 1 x 1 on a small map) and
    /// depthwise (small-map and wide paths), each with and without a bias, with batch norm, ReLU, ReLU6 and sigmoid.
    #[test]
    fn fused_inference_is_the_same_bits_as_the_layers_one_by_one() {
        let device = Device::flex();
        let cases = [
            // (c_in, c_out, kernel, stride, groups, input size, batch)
            (3, 8, 3, 2, 1, 20, 2),   // a stem: strided, through the table
            (4, 6, 3, 1, 1, 18, 3),   // stride 1, "same": shifted planes
            (16, 24, 1, 1, 1, 4, 5),  // a 1x1 expansion: planes, several samples per group
            (16, 24, 1, 1, 1, 3, 1),  // one face's 1x1 on a 3 x 3 map: small_maps (AVX2 + FMA)
            (24, 24, 5, 1, 24, 4, 2), // depthwise, small map
            (20, 20, 3, 2, 20, 9, 1), // depthwise, small map, strided, a partial block of lanes
            (8, 8, 3, 1, 8, 20, 2),   // depthwise, wide rows
        ];
        for (i, &(c_in, c_out, k, stride, groups, size, batch)) in cases.iter().enumerate() {
            for with_bias in [false, true] {
                let conv: Conv2d = Conv2dConfig::new([c_in, c_out], [k, k])
                    .with_stride([stride, stride])
                    .with_groups(groups)
                    .with_padding(PaddingConfig2d::Same)
                    .with_bias(with_bias)
                    .init(&device);
                let bn = batch_norm(c_out, &device, 10 * i as u64);
                let x = random_input([batch, c_in, size, size], &device, 100 + i as u64);
                let layers = |bn: Option<&BatchNorm>, act: Option<Activation>| {
                    let y = conv2d::conv2d(&conv, x.clone());
                    let y = bn.map_or(y.clone(), |bn| batch_norm::batch_norm(bn, y));
                    act.map_or(y.clone(), |a| a.layer(y))
                };
                for (bn, act) in [
                    (Some(&bn), Some(Activation::RELU6)),
                    (Some(&bn), None),
                    (None, Some(Activation::Relu)),
                    (Some(&bn), Some(Activation::Relu)),
                    (None, Some(Activation::Sigmoid)),
                    (Some(&bn), Some(Activation::Sigmoid)),
                    (None, None),
                ] {
                    let what = format!("case {i}, bias {with_bias}, bn {}, {act:?}", bn.is_some());
                    let expected = bits(layers(bn, act));
                    // The fused kernel itself (not a fallback to the layers)...
                    let affine = bn.map(|bn| batch_norm::inference_affine(bn).expect("a Flex batch norm"));
                    let epilogue = Epilogue { affine: affine.as_ref().map(|(s, t)| (s.as_slice(), t.as_slice())), act };
                    let kernel = conv2d::inference(&conv, &x, &epilogue, None).expect("the kernels cover the convolution");
                    assert_eq!(bits(Tensor::from_primitive::<Flex>(kernel)), expected, "{what}: the kernel");
                    // ... and the entry point the models call.
                    assert_eq!(bits(conv_bn_act(&conv, bn, act, x.clone())), expected, "{what}: conv_bn_act");
                }
            }
        }
    }

    /// In training the three layers run one by one: the same values and gradients as composing
    /// them by hand (the autodiff graph keeps each layer's own backward step).
    #[test]
    fn in_training_it_is_the_layers_one_by_one() {
        let device = Device::flex().autodiff();
        let conv = Conv2dConfig::new([3, 4], [3, 3]).with_padding(PaddingConfig2d::Same).init(&device);
        let bn = batch_norm(4, &device, 7);
        let x = random_input([2, 3, 6, 6], &device, 8).require_grad();
        let fused = conv_bn_act(&conv, Some(&bn), Some(Activation::Relu), x.clone());
        let by_hand = activation::relu(batch_norm::batch_norm(&bn, conv2d::conv2d(&conv, x.clone())));
        let grads = (fused.clone() * fused.clone()).sum().backward();
        let by_hand_grads = (by_hand.clone() * by_hand.clone()).sum().backward();
        assert_eq!(bits(fused.inner()), bits(by_hand.inner()));
        assert_eq!(bits(x.grad(&grads).unwrap()), bits(x.grad(&by_hand_grads).unwrap()));
    }
}
