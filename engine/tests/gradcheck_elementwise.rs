//! Finite-difference checks of the elementwise, arithmetic and reduction ops.

mod common;

use common::{Values, check_gradients, tensor};
use proptest::prelude::*;
use rotor_engine::Tensor;

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
