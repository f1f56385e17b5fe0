//! What all optimizers share: walking a model's parameters with their gradients, folding
//! the penalties into each gradient, skipping frozen elements, splitting large parameters
//! into parallel tasks, and storing no denormal.

use rotor_engine::{Gradients, TensorId};
use rotor_kernels::denormal::with_denormals_flushed;

use crate::module::Module;
use crate::param::ParamKind;

/// The L1 penalties an optimizer folds into gradients, by parameter role: on
/// rotated-activation slopes (the paper's option) and on batch-norm scales (Network
/// Slimming's channel-sparsity penalty).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct L1Penalty {
    /// The coefficient on [`ParamKind::Slope`] parameters.
    pub slope: f32,
    /// The coefficient on [`ParamKind::NormScale`] parameters.
    pub norm_scale: f32,
}

impl L1Penalty {
    /// The coefficient for a parameter of role `kind` (0 for roles without a penalty).
    fn coefficient(self, kind: ParamKind) -> f32 {
        match kind {
            ParamKind::Slope => self.slope,
            ParamKind::NormScale => self.norm_scale,
            ParamKind::Weight | ParamKind::Bias | ParamKind::NormShift => 0.0,
        }
    }

    /// Checks a coefficient given to an optimizer's builder.
    ///
    /// # Panics
    /// If `value` is negative or not finite.
    pub fn check(optimizer: &str, what: &str, value: f32) -> f32 {
        assert!(
            value.is_finite() && value >= 0.0,
            "{optimizer}: invalid {what} L1 coefficient {value}"
        );
        value
    }
}

/// One parameter as an optimizer sees it during a step.
pub(crate) struct ParamStep<'a> {
    /// The key of the parameter's state.
    pub id: TensorId,
    /// The gradient, one value per element.
    grad: &'a [f32],
    /// The L2 coefficient folded into the gradient.
    weight_decay: f32,
    /// The L1 coefficient folded into the gradient (non-zero for slopes only).
    l1: f32,
    /// Which elements must not change (`None`: none).
    frozen: Option<&'a [bool]>,
}

/// Calls `update` with each parameter of `model` that has a gradient and at least one
/// element that is not frozen, and with the parameter's values to change in place.
///
/// `weight_decay` is the L2 coefficient folded into the gradient (0 for optimizers that
/// decay the weights themselves), `l1` the L1 coefficients by parameter role.
pub(crate) fn for_each_param_step(
    model: &mut dyn Module,
    grads: &Gradients,
    weight_decay: f32,
    l1: L1Penalty,
    mut update: impl FnMut(ParamStep<'_>, &mut [f32]),
) {
    model.visit_params_mut("", &mut |name, param| {
        let Some(grad) = param.grad(grads) else {
            return;
        };
        assert_eq!(
            grad.numel(),
            param.tensor().numel(),
            "the gradient of {name} does not have the parameter's number of elements"
        );
        // NOTE: the mask is borrowed from the parameter that `update` borrows mutably, so
        // it is copied; only partly frozen parameters pay for that.
        let frozen = match param.frozen() {
            Some(mask) if mask.iter().all(|&f| f) => return,
            Some(mask) => Some(mask.to_vec()),
            None => None,
        };
        let l1 = l1.coefficient(param.kind());
        let id = param.tensor().id();
        let grad = grad.as_slice();
        param.update(|values| {
            let step = ParamStep {
                id,
                grad,
                weight_decay,
                l1,
                frozen: frozen.as_deref(),
            };
            update(step, values);
        });
    });
}

impl ParamStep<'_> {
    /// Applies `rule(value, d, state)` to every element that is not frozen, where `d` is
    /// the element's penalised gradient `g + weight_decay * p + l1 * sign(p)` (taken at
    /// the value before the step) and `state` is the element's share of the optimizer
    /// state (see [`ElementState`]). Large parameters are split into rayon tasks.
    ///
    /// NOTE: each combination of enabled penalties gets its own loop, so a disabled one
    /// costs nothing and `d` is exactly `g` when both are off; the loops are plain zips of
    /// slice iterators with branch-free bodies, which the compiler vectorises.
    #[inline(always)]
    pub fn update_elements<S: ElementState>(
        &self,
        values: &mut [f32],
        state: S,
        rule: impl Fn(&mut f32, f32, S::Item) + Sync,
    ) {
        assert_eq!(values.len(), self.grad.len(), "internal: gradient length");
        let state_len = state.element_count();
        assert!(
            state_len.is_none_or(|n| n == values.len()),
            "internal: state length"
        );
        let (weight_decay, l1) = (self.weight_decay, self.l1);
        let (grad, frozen, rule) = (self.grad, self.frozen, &rule);
        match (weight_decay != 0.0, l1 != 0.0) {
            (false, false) => split_update(values, grad, state, frozen, &|g, _| g, rule),
            (true, false) => {
                let penalised = |g, p| g + weight_decay * p;
                split_update(values, grad, state, frozen, &penalised, rule);
            }
            (false, true) => {
                let penalised = |g, p| g + l1 * sign(p);
                split_update(values, grad, state, frozen, &penalised, rule);
            }
            (true, true) => {
                let penalised = |g, p| g + weight_decay * p + l1 * sign(p);
                split_update(values, grad, state, frozen, &penalised, rule);
            }
        }
    }
}

/// An optimizer's per-element state for a run of elements: nothing (`()`), one buffer
/// (`&mut [f32]`), or two (`(&mut [f32], &mut [f32])`), which can be split like the
/// parameter's values.
pub(crate) trait ElementState: Send + Sized {
    /// One element's state.
    type Item;

    /// The number of elements, or `None` for stateless rules (any number).
    fn element_count(&self) -> Option<usize>;

    /// The state of the elements before `mid` and of those from `mid` on.
    fn split_at(self, mid: usize) -> (Self, Self);

    /// Each element's state in turn.
    fn into_elements(self) -> impl Iterator<Item = Self::Item>;
}

impl ElementState for () {
    type Item = ();

    fn element_count(&self) -> Option<usize> {
        None
    }

    fn split_at(self, _mid: usize) -> (Self, Self) {
        ((), ())
    }

    fn into_elements(self) -> impl Iterator<Item = ()> {
        std::iter::repeat(())
    }
}

impl<'a> ElementState for &'a mut [f32] {
    type Item = &'a mut f32;

    fn element_count(&self) -> Option<usize> {
        Some(<[f32]>::len(self))
    }

    fn split_at(self, mid: usize) -> (Self, Self) {
        self.split_at_mut(mid)
    }

    fn into_elements(self) -> impl Iterator<Item = &'a mut f32> {
        self.iter_mut()
    }
}

impl<'a> ElementState for (&'a mut [f32], &'a mut [f32]) {
    type Item = (&'a mut f32, &'a mut f32);

    fn element_count(&self) -> Option<usize> {
        debug_assert_eq!(self.0.len(), self.1.len(), "internal: state lengths");
        Some(self.0.len())
    }

    fn split_at(self, mid: usize) -> (Self, Self) {
        let (a0, a1) = self.0.split_at_mut(mid);
        let (b0, b1) = self.1.split_at_mut(mid);
        ((a0, b0), (a1, b1))
    }

    fn into_elements(self) -> impl Iterator<Item = Self::Item> {
        self.0.iter_mut().zip(self.1.iter_mut())
    }
}

/// Elements per parallel task: enough work (tens of microseconds) that a task's overhead
/// does not show, few enough that MnistNet's largest weight makes dozens of tasks.
const ELEMENTS_PER_TASK: usize = 1 << 15;

/// The loop of [`ParamStep::update_elements`] for one choice of `penalised(g, p)`,
/// halving the run into parallel tasks while it is longer than [`ELEMENTS_PER_TASK`].
fn split_update<S: ElementState>(
    values: &mut [f32],
    grad: &[f32],
    state: S,
    frozen: Option<&[bool]>,
    penalised: &(impl Fn(f32, f32) -> f32 + Sync),
    rule: &(impl Fn(&mut f32, f32, S::Item) + Sync),
) {
    if values.len() > ELEMENTS_PER_TASK {
        let mid = values.len() / 2;
        let (values0, values1) = values.split_at_mut(mid);
        let (grad0, grad1) = grad.split_at(mid);
        let (state0, state1) = state.split_at(mid);
        let (frozen0, frozen1) = match frozen.map(|mask| mask.split_at(mid)) {
            Some((mask0, mask1)) => (Some(mask0), Some(mask1)),
            None => (None, None),
        };
        rayon::join(
            || split_update(values0, grad0, state0, frozen0, penalised, rule),
            || split_update(values1, grad1, state1, frozen1, penalised, rule),
        );
        return;
    }
    // NOTE: denormals flushed as in every kernel: the momentum of a weight whose gradient
    // stays zero decays into them within an epoch, and arithmetic on them is many times
    // slower on x86 (MnistNet's later epochs ran at half speed).
    with_denormals_flushed(|| {
        let elements = values.iter_mut().zip(grad).zip(state.into_elements());
        match frozen {
            None => {
                for ((p, &g), s) in elements {
                    rule(p, penalised(g, *p), s);
                }
            }
            Some(mask) => {
                for (((p, &g), s), &is_frozen) in elements.zip(mask) {
                    if !is_frozen {
                        rule(p, penalised(g, *p), s);
                    }
                }
            }
        }
    });
}

/// `-1`, `0` or `1` as `x` is negative, zero or positive (`torch.sign`; unlike
/// `f32::signum`, zero maps to zero, so a slope pruned to zero feels no L1 pull).
#[inline(always)]
fn sign(x: f32) -> f32 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// `x`, or 0 when `|x| < f32::MIN_POSITIVE`.
///
/// NOTE: weight decay and vanishing gradients shrink parameters and moments geometrically
/// into the denormal range, where every CPU operation on them can take a microcode assist
/// of ~100 cycles, in this loop and in every kernel that later reads them. Storing them as
/// zero keeps all arithmetic on normal floats; the kernels' flush-to-zero mode covers
/// only their own threads, so the optimizer flushes what it stores itself.
#[inline(always)]
pub(crate) fn flush_denormal(x: f32) -> f32 {
    if x.abs() < f32::MIN_POSITIVE { 0.0 } else { x }
}

#[cfg(test)]
mod tests {
    use rotor_engine::Tensor;

    use super::*;

    #[test]
    fn sign_maps_zero_to_zero() {
        assert_eq!(sign(2.5), 1.0);
        assert_eq!(sign(-1e-30), -1.0);
        assert_eq!(sign(0.0), 0.0);
        assert_eq!(sign(-0.0), 0.0);
    }

    #[test]
    fn flush_denormal_zeroes_only_denormals() {
        let denormal = f32::MIN_POSITIVE / 2.0;
        assert!(denormal > 0.0 && !denormal.is_normal());
        assert_eq!(flush_denormal(denormal), 0.0);
        assert_eq!(flush_denormal(-denormal), 0.0);
        assert_eq!(flush_denormal(f32::MIN_POSITIVE), f32::MIN_POSITIVE);
        assert_eq!(flush_denormal(-1.5), -1.5);
        assert!(flush_denormal(f32::NAN).is_nan());
    }

    /// A step over a gradient of ones with the given penalties and mask.
    fn param_step<'a>(weight_decay: f32, l1: f32, frozen: Option<&'a [bool]>) -> ParamStep<'a> {
        let id = Tensor::scalar(0.0).id();
        ParamStep {
            id,
            grad: &[1.0; 3],
            weight_decay,
            l1,
            frozen,
        }
    }

    /// The penalised gradients `update_elements` hands its rule for `values`.
    fn penalised(step: &ParamStep<'_>, values: [f32; 3]) -> [f32; 3] {
        let mut values = values;
        let mut seen = [f32::NAN; 3];
        step.update_elements(&mut values, &mut seen[..], |_, d, s| *s = d);
        seen
    }

    #[test]
    fn penalties_are_added_only_when_enabled() {
        assert_eq!(
            penalised(&param_step(0.0, 0.0, None), [-2.0, 0.0, 3.0]),
            [1.0, 1.0, 1.0]
        );
        assert_eq!(
            penalised(&param_step(0.5, 0.0, None), [-2.0, 0.0, 3.0]),
            [0.0, 1.0, 2.5]
        );
        assert_eq!(
            penalised(&param_step(0.0, 0.25, None), [-2.0, 0.0, 3.0]),
            [0.75, 1.0, 1.25]
        );
        assert_eq!(
            penalised(&param_step(0.5, 0.25, None), [-2.0, 0.0, 3.0]),
            [-0.25, 1.0, 2.75]
        );
    }

    #[test]
    fn update_elements_skips_frozen_elements() {
        let mut values = [1.0, 2.0, 3.0];
        let mut state = [0.0f32; 3];
        let rule = |p: &mut f32, d: f32, s: &mut f32| {
            *s += d;
            *p -= d;
        };
        let mask = [false, true, false];
        param_step(0.0, 0.0, Some(&mask)).update_elements(&mut values, &mut state[..], rule);
        assert_eq!(values, [0.0, 2.0, 2.0]);
        assert_eq!(state, [1.0, 0.0, 1.0]);
        param_step(0.0, 0.0, None).update_elements(&mut values, &mut state[..], rule);
        assert_eq!(values, [-1.0, 1.0, 1.0]);
        assert_eq!(state, [2.0, 1.0, 2.0]);
    }

    /// Deterministic test values in `[-2, 2)`, a tenth of them exactly zero.
    fn pattern(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let k = (i * 7919 + seed * 104_729) % 1000;
                if k.is_multiple_of(10) {
                    0.0
                } else {
                    k as f32 / 250.0 - 2.0
                }
            })
            .collect()
    }

    #[test]
    fn update_elements_matches_its_scalar_definition_at_every_size() {
        let (weight_decay, l1) = (0.125, 0.5);
        let rule = |p: &mut f32, d: f32, (m, v): (&mut f32, &mut f32)| {
            *m = 0.5 * *m + d;
            *v += d * d;
            *p -= 0.25 * *m / (v.sqrt() + 1.0);
        };
        let big = [
            ELEMENTS_PER_TASK - 1,
            ELEMENTS_PER_TASK + 1,
            3 * ELEMENTS_PER_TASK + 7,
            100_003,
        ];
        for n in (0..=20).chain(big) {
            for masked in [false, true] {
                let grad = pattern(n, 1);
                let mask: Vec<bool> = (0..n).map(|i| masked && i % 3 == 0).collect();
                let (mut values, mut m, mut v) = (pattern(n, 2), pattern(n, 3), vec![0.5; n]);
                let (mut want, mut want_m, mut want_v) = (values.clone(), m.clone(), v.clone());
                for i in (0..n).filter(|&i| !mask[i]) {
                    let p = want[i];
                    let d = grad[i] + weight_decay * p + l1 * sign(p);
                    rule(&mut want[i], d, (&mut want_m[i], &mut want_v[i]));
                }
                let step = ParamStep {
                    id: Tensor::scalar(0.0).id(),
                    grad: &grad,
                    weight_decay,
                    l1,
                    frozen: masked.then_some(&mask[..]),
                };
                step.update_elements(&mut values, (&mut m[..], &mut v[..]), rule);
                let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&values),
                    bits(&want),
                    "values, n = {n}, masked = {masked}"
                );
                assert_eq!(
                    bits(&m),
                    bits(&want_m),
                    "first state, n = {n}, masked = {masked}"
                );
                assert_eq!(
                    bits(&v),
                    bits(&want_v),
                    "second state, n = {n}, masked = {masked}"
                );
            }
        }
    }
}
