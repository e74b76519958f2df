//! `x.clamp(low, high)` (EfficientNet's ReLU6 is `clamp(0, 6)`), forward and backward, on Flex
//! tensors of any rank.
//!
//! Why: Burn's `clamp` is a `clamp_min` then a `clamp_max`, each a comparison into a mask and a
//! masked fill, and its backward step masks again; in an EfficientNet-Lite0 training step that
//! was over a tenth of the time. Here it is one pass forward and one backward. The gradient
//! passes where `low <= x <= high`, as through Burn's masked fills.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::{Flex, FlexTensor};
use burn::tensor::Tensor;

use super::flex::{self, TrackedTensor, TrainFlex};

/// Values per parallel task (elementwise work is too cheap to split finer).
const CHUNK: usize = 1 << 14;

/// `x.clamp(low, high)`, computed here when `x` is a Flex f32 tensor.
pub fn clamp<const D: usize>(x: Tensor<D>, low: f32, high: f32) -> Tensor<D> {
    if let Some(t) = flex::tracked(&x) {
        return Tensor::from_primitive::<TrainFlex>(tracked_clamp(t, low, high));
    }
    if let Some(t) = flex::plain(&x) {
        return Tensor::from_primitive::<Flex>(forward(&t, low, high));
    }
    x.clamp(low, high)
}

fn forward(x: &FlexTensor, low: f32, high: f32) -> FlexTensor {
    let values = flex::values(x);
    let out = flex::map_in_parallel(&values, CHUNK, |_| move |v: f32| v.max(low).min(high));
    flex::tensor(out, x.layout().shape())
}

/// The output gradient where `low <= x <= high`, zero elsewhere.
fn backward(x: &FlexTensor, grad: &FlexTensor, low: f32, high: f32) -> FlexTensor {
    let (values, grad_values) = (flex::values(x), flex::values(grad));
    let dx = flex::zip_map_in_parallel(
        &values,
        &grad_values,
        CHUNK,
        |_| move |v, g| if (low..=high).contains(&v) { g } else { 0.0 },
    );
    flex::tensor(dx, x.layout().shape())
}

#[derive(Debug)]
struct ClampBackward;

impl Backward<Flex, 1> for ClampBackward {
    /// The input and the bounds.
    type State = (FlexTensor, f32, f32);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<Flex>(&ops.node);
        let (x, low, high) = ops.state;
        if let [Some(node)] = ops.parents {
            grads.register::<Flex>(node.id, backward(&x, &grad, low, high));
        }
    }
}

fn tracked_clamp(x: TrackedTensor, low: f32, high: f32) -> TrackedTensor {
    let out = forward(x.primitive(), low, high);
    match ClampBackward.prepare::<NoCheckpointing>([x.node()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish((x.primitive().clone(), low, high), out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::tests::{assert_close, random_input};
    use burn::prelude::*;

    #[test]
    fn matches_burns_clamp_in_values_and_gradient() {
        let device = Device::flex().autodiff();
        // Normal values times 4: many below 0 and above 6 as well as between; more than one chunk.
        let x = random_input([3, 5, 40, 41], &device, 1).mul_scalar(4.0).require_grad();
        let weights = random_input([3, 5, 40, 41], &device, 2);
        let (ours, burns) = (clamp(x.clone(), 0.0, 6.0), x.clone().clamp(0.0, 6.0));
        assert_close(&ours, &burns, 0.0, "output");
        let ours_grads = (ours * weights.clone()).sum().backward();
        let burns_grads = (burns * weights).sum().backward();
        assert_close(&x.grad(&ours_grads).unwrap(), &x.grad(&burns_grads).unwrap(), 0.0, "gradient");
        let plain = x.inner();
        assert_close(&clamp(plain.clone(), -1.0, 2.0), &plain.clamp(-1.0, 2.0), 0.0, "inference output");
    }
}
