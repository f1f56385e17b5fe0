//! Finite-difference checks of the elementwise, arithmetic and reduction ops.

mod common;

use common::{Values, check_gradients, snapped, tensor};
use proptest::prelude::*;
use rotor_engine::{Gradients, Tensor};

fn shape(max_rank: usize, max_dim: usize) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1..=max_dim, 1..=max_rank)
}

/// A shape and another that broadcasts against it: some dimensions of the second set to 1,
/// and possibly fewer leading dimensions.
fn broadcast_pair() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    shape(4, 5).prop_flat_map(|a| {
        let rank = a.len();
        (
            Just(a),
            prop::collection::vec(any::<bool>(), rank),
            0..=rank,
            any::<bool>(),
        )
            .prop_map(move |(a, ones, drop, swap)| {
                let b: Vec<usize> = a
                    .iter()
                    .zip(&ones)
                    .map(|(&d, &one)| if one { 1 } else { d })
                    .skip(drop.min(rank - 1))
                    .collect();
                if swap { (b, a) } else { (a, b) }
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn add_sub_mul_broadcast((a, b) in broadcast_pair(), seed in any::<u64>()) {
        let x = tensor(&a, Values::Any, seed);
        let y = tensor(&b, Values::Any, seed + 1);
        check_gradients(|t| t[0].add(&t[1]), &[x.clone(), y.clone()]);
        check_gradients(|t| t[0].sub(&t[1]), &[x.clone(), y.clone()]);
        check_gradients(|t| t[0].mul(&t[1]), &[x, y]);
    }

    #[test]
    fn div_broadcast((a, b) in broadcast_pair(), seed in any::<u64>()) {
        let x = tensor(&a, Values::Any, seed);
        let y = tensor(&b, Values::Positive, seed + 1);
        check_gradients(|t| t[0].div(&t[1]), &[x, y]);
    }

    #[test]
    fn unary_maps(s in shape(3, 7), seed in any::<u64>()) {
        let any = tensor(&s, Values::Any, seed);
        let pos = tensor(&s, Values::Positive, seed);
        let kinked = tensor(&s, Values::AwayFromZero, seed);
        check_gradients(|t| Ok(t[0].neg()), std::slice::from_ref(&any));
        check_gradients(|t| Ok(t[0].mul_scalar(-1.5)), std::slice::from_ref(&any));
        check_gradients(|t| Ok(t[0].add_scalar(0.25)), std::slice::from_ref(&any));
        check_gradients(|t| Ok(t[0].exp()), std::slice::from_ref(&any));
        check_gradients(|t| Ok(t[0].square()), std::slice::from_ref(&any));
        check_gradients(|t| Ok(t[0].tanh()), std::slice::from_ref(&any));
        check_gradients(|t| Ok(t[0].sigmoid()), std::slice::from_ref(&any));
        check_gradients(|t| Ok(t[0].gelu()), std::slice::from_ref(&any));
        check_gradients(|t| Ok(t[0].ln()), std::slice::from_ref(&pos));
        check_gradients(|t| Ok(t[0].sqrt()), std::slice::from_ref(&pos));
        check_gradients(|t| Ok(t[0].relu()), std::slice::from_ref(&kinked));
        check_gradients(|t| Ok(t[0].abs()), std::slice::from_ref(&kinked));
    }

    #[test]
    fn reductions(s in shape(4, 5), dim_pick in any::<prop::sample::Index>(), keep in any::<bool>(), seed in any::<u64>()) {
        let x = tensor(&s, Values::Any, seed);
        let dim = dim_pick.index(s.len()) as isize;
        check_gradients(|t| Ok(t[0].sum()), std::slice::from_ref(&x));
        check_gradients(|t| Ok(t[0].mean()), std::slice::from_ref(&x));
        check_gradients(|t| t[0].sum_dim(dim, keep), std::slice::from_ref(&x));
        check_gradients(|t| t[0].mean_dim(dim - s.len() as isize, keep), std::slice::from_ref(&x));
        let distinct = tensor(&s, Values::Distinct, seed);
        check_gradients(|t| t[0].max_dim(dim, keep), &[distinct]);
    }

    #[test]
    fn pow(s in shape(3, 6), exponent in prop::sample::select(vec![-1.5f32, -1.0, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0]), whole in prop::sample::select(vec![0.0f32, 1.0, 2.0, 3.0]), seed in any::<u64>()) {
        // Any exponent on positive bases; negative bases only with whole exponents, whose
        // powers are real.
        let pos = tensor(&s, Values::Positive, seed);
        check_gradients(|t| Ok(t[0].pow(exponent)), &[pos]);
        let any = tensor(&s, Values::Any, seed + 1);
        check_gradients(|t| Ok(t[0].pow(whole)), &[any]);
    }

    #[test]
    fn clamp(s in shape(3, 6), low in -15i32..5, width in 2i32..20, seed in any::<u64>()) {
        // Values on the 0.1 grid, bounds halfway between grid points: none within a
        // finite-difference step of a bound.
        let x = snapped(&tensor(&s, Values::Any, seed), 0.0);
        let min = low as f32 / 10.0 + 0.05;
        let max = min + width as f32 / 10.0;
        check_gradients(|t| t[0].clamp(min, max), std::slice::from_ref(&x));
        check_gradients(|t| t[0].clamp(f32::NEG_INFINITY, max), std::slice::from_ref(&x));
        check_gradients(|t| t[0].clamp(min, f32::INFINITY), &[x]);
    }

    #[test]
    fn maximum_broadcast((a, b) in broadcast_pair(), seed in any::<u64>()) {
        // The operands sit on grids offset by half a step, so they never tie.
        let x = snapped(&tensor(&a, Values::Any, seed), 0.0);
        let y = snapped(&tensor(&b, Values::Any, seed + 1), 0.05);
        check_gradients(|t| t[0].maximum(&t[1]), &[x, y]);
    }
}

#[test]
fn a_tensor_used_twice_accumulates_its_gradient() {
    let x = Tensor::from_vec(vec![1.0, -2.0, 3.0], &[3])
        .unwrap()
        .requires_grad();
    // d/dx (x * x + x) = 2x + 1
    let y = x.mul(&x).unwrap().add(&x).unwrap().sum();
    let g = y.backward().unwrap();
    assert_eq!(g.get(&x).unwrap().as_slice(), &[3.0, -3.0, 7.0]);
}

#[test]
fn a_deep_graph_does_not_overflow_the_stack() {
    let x = Tensor::from_vec(vec![1.0], &[1]).unwrap().requires_grad();
    let mut y = x.clone();
    for _ in 0..100_000 {
        y = y.add_scalar(1.0);
    }
    let g = y.sum().backward().unwrap();
    assert_eq!(g.get(&x).unwrap().as_slice(), &[1.0]);
}

#[test]
fn untracked_tensors_record_nothing() {
    let x = Tensor::from_vec(vec![1.0, 2.0], &[2]).unwrap();
    let y = x.exp().add(&x).unwrap().sum();
    assert!(!y.tracks_grad());
    assert!(y.backward().unwrap().is_empty());
}

#[test]
fn detach_stops_gradients() {
    let x = Tensor::from_vec(vec![2.0], &[1]).unwrap().requires_grad();
    let y = x.mul(&x.detach()).unwrap().sum();
    assert_eq!(y.backward().unwrap().get(&x).unwrap().as_slice(), &[2.0]);
}

#[test]
fn pow_values_and_conventions() {
    let x = Tensor::from_vec(vec![-8.0, -2.0, 0.0, 4.0], &[4])
        .unwrap()
        .requires_grad();
    let y = x.pow(0.5);
    assert!(y.as_slice()[0].is_nan() && y.as_slice()[1].is_nan());
    assert_eq!(&y.as_slice()[2..], &[0.0, 2.0]);
    assert_eq!(x.pow(3.0).as_slice(), &[-512.0, -8.0, 0.0, 64.0]);
    assert_eq!(x.pow(-1.0).as_slice()[2], f32::INFINITY);
    // x^0 is constant: no gradient anywhere, not even NaN at 0.
    let g = x.pow(0.0).sum().backward().unwrap();
    assert_eq!(g.get(&x).unwrap().as_slice(), &[0.0; 4]);
    let g = x.pow(2.0).sum().backward().unwrap();
    assert_eq!(g.get(&x).unwrap().as_slice(), &[-16.0, -4.0, 0.0, 8.0]);
}

#[test]
fn clamp_passes_the_gradient_at_its_bounds() {
    let x = Tensor::from_vec(vec![-2.0, -1.0, 0.0, 1.0, 2.0, f32::NAN], &[6])
        .unwrap()
        .requires_grad();
    let y = x.clamp(-1.0, 1.0).unwrap();
    assert_eq!(&y.as_slice()[..5], &[-1.0, -1.0, 0.0, 1.0, 1.0]);
    assert!(y.as_slice()[5].is_nan());
    let g = y.sum().backward().unwrap();
    assert_eq!(
        g.get(&x).unwrap().as_slice(),
        &[0.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    );
    // A single-point interval still passes the gradient of the value on it.
    let g = x.clamp(0.0, 0.0).unwrap().sum().backward().unwrap();
    assert_eq!(
        g.get(&x).unwrap().as_slice(),
        &[0.0, 0.0, 1.0, 0.0, 0.0, 0.0]
    );
}

#[test]
fn clamp_rejects_bounds_that_make_no_interval() {
    let x = Tensor::zeros(&[2]).unwrap();
    assert_eq!(
        x.clamp(1.0, -1.0).unwrap_err().to_string(),
        "clamp: bounds [1, -1] do not make an interval"
    );
    assert!(x.clamp(f32::NAN, 1.0).is_err());
    assert!(x.clamp(0.0, f32::NAN).is_err());
}

#[test]
fn maximum_splits_the_gradient_at_ties() {
    let a = Tensor::from_vec(vec![1.0, 2.0, 3.0], &[3])
        .unwrap()
        .requires_grad();
    let b = Tensor::from_vec(vec![1.0, 5.0, 0.0], &[3])
        .unwrap()
        .requires_grad();
    let y = a.maximum(&b).unwrap();
    assert_eq!(y.as_slice(), &[1.0, 5.0, 3.0]);
    let g = y.sum().backward().unwrap();
    assert_eq!(g.get(&a).unwrap().as_slice(), &[0.5, 0.0, 1.0]);
    assert_eq!(g.get(&b).unwrap().as_slice(), &[0.5, 1.0, 0.0]);
    // A broadcast scalar collects its share from every position.
    let s = Tensor::from_vec(vec![2.0], &[1]).unwrap().requires_grad();
    let g = a.maximum(&s).unwrap().sum().backward().unwrap();
    assert_eq!(g.get(&s).unwrap().as_slice(), &[1.5]);
    assert_eq!(g.get(&a).unwrap().as_slice(), &[0.0, 0.5, 1.0]);
}

#[test]
fn maximum_propagates_nan_and_checks_shapes() {
    let a = Tensor::from_vec(vec![f32::NAN, 1.0], &[2]).unwrap();
    let b = Tensor::from_vec(vec![0.0, f32::NAN], &[2]).unwrap();
    let y = a.maximum(&b).unwrap();
    assert!(y.as_slice().iter().all(|v| v.is_nan()));
    let c = Tensor::zeros(&[3]).unwrap();
    assert!(
        a.maximum(&c)
            .unwrap_err()
            .to_string()
            .starts_with("maximum: [2] x [3]: cannot broadcast")
    );
}

#[test]
fn hand_built_gradients_match_backward() {
    let w = Tensor::from_vec(vec![1.0, -2.0, 3.0], &[3])
        .unwrap()
        .requires_grad();
    let x = Tensor::from_vec(vec![0.5, 4.0, -1.0], &[3]).unwrap();
    // d/dw sum(x * w) = x
    let from_backward = x.mul(&w).unwrap().sum().backward().unwrap();
    let mut by_hand = Gradients::new();
    assert!(by_hand.is_empty());
    assert!(by_hand.insert(&w, x.clone()).unwrap().is_none());
    assert_eq!(by_hand.len(), from_backward.len());
    assert_eq!(
        by_hand.get(&w).unwrap().as_slice(),
        from_backward.get(&w).unwrap().as_slice()
    );
    assert_eq!(
        by_hand.get_by_id(w.id()).unwrap().shape(),
        from_backward.get_by_id(w.id()).unwrap().shape()
    );
    // A second insert replaces the gradient and hands back the old one; a tracked
    // gradient is stored without its graph.
    let tracked = x.requires_grad().mul_scalar(2.0);
    let old = by_hand.insert(&w, tracked).unwrap().unwrap();
    assert_eq!(old.as_slice(), x.as_slice());
    assert!(!by_hand.get(&w).unwrap().tracks_grad());
    assert_eq!(by_hand.get(&w).unwrap().as_slice(), &[1.0, 8.0, -2.0]);
}

#[test]
fn gradients_insert_checks_the_leaf_and_the_shape() {
    let w = Tensor::zeros(&[2, 3]).unwrap().requires_grad();
    let mut grads = Gradients::new();
    assert_eq!(
        grads
            .insert(&w, Tensor::zeros(&[3, 2]).unwrap())
            .unwrap_err()
            .to_string(),
        "Gradients::insert: [2, 3] x [3, 2]: the gradient must have the leaf's shape"
    );
    let untracked = Tensor::zeros(&[2]).unwrap();
    assert!(
        grads
            .insert(&untracked, Tensor::zeros(&[2]).unwrap())
            .is_err()
    );
    let not_a_leaf = w.mul_scalar(2.0);
    assert!(
        grads
            .insert(&not_a_leaf, Tensor::zeros(&[2, 3]).unwrap())
            .is_err()
    );
    assert!(grads.is_empty());
}
