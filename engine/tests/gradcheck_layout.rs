//! Finite-difference checks of the shape and matrix-product ops.

mod common;

use common::{Values, check_gradients, tensor};
use proptest::prelude::*;
use rotor_engine::Tensor;

fn shape(min_rank: usize, max_rank: usize, max_dim: usize) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1..=max_dim, min_rank..=max_rank)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn reshape_flatten_permute_transpose(s in shape(1, 4, 5), perm_seed in any::<u64>(), seed in any::<u64>()) {
        let x = tensor(&s, Values::Any, seed);
        let numel: usize = s.iter().product();
        check_gradients(|t| t[0].reshape(&[numel]), std::slice::from_ref(&x));
        check_gradients(|t| t[0].flatten(0), std::slice::from_ref(&x));
        let mut order: Vec<usize> = (0..s.len()).collect();
        let mut state = perm_seed;
        for i in (1..order.len()).rev() {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            order.swap(i, (state >> 33) as usize % (i + 1));
        }
        check_gradients(|t| t[0].permute(&order), std::slice::from_ref(&x));
        check_gradients(|t| t[0].transpose(0, -1), std::slice::from_ref(&x));
    }

    #[test]
    fn narrow_and_concat(s in shape(1, 3, 6), dim_pick in any::<prop::sample::Index>(), cut in any::<prop::sample::Index>(), seed in any::<u64>()) {
        let x = tensor(&s, Values::Any, seed);
        let dim = dim_pick.index(s.len());
        let start = cut.index(s[dim]);
        let len = s[dim] - start;
        check_gradients(|t| t[0].narrow(dim as isize, start, len), std::slice::from_ref(&x));
        let mut other_shape = s.clone();
        other_shape[dim] = 1 + start;
        let y = tensor(&other_shape, Values::Any, seed + 1);
        check_gradients(|t| Tensor::concat(&[&t[0], &t[1], &t[0]], dim as isize), &[x, y]);
    }

    #[test]
    fn broadcast_to(s in shape(1, 3, 4), lead in 1usize..4, seed in any::<u64>()) {
        let from: Vec<usize> = s.iter().enumerate().map(|(i, &d)| if i % 2 == 0 { 1 } else { d }).collect();
        let mut to = vec![lead];
        to.extend(&s);
        let x = tensor(&from, Values::Any, seed);
        check_gradients(|t| t[0].broadcast_to(&to), &[x]);
    }

    #[test]
    fn matmul_batched_and_broadcast(m in 1usize..6, k in 1usize..6, n in 1usize..6, batch in 1usize..4, shared_b in any::<bool>(), seed in any::<u64>()) {
        let a = tensor(&[batch, m, k], Values::Any, seed);
        let b_shape = if shared_b { vec![k, n] } else { vec![batch, k, n] };
        let b = tensor(&b_shape, Values::Any, seed + 1);
        check_gradients(|t| t[0].matmul(&t[1]), &[a, b]);
    }

    #[test]
    fn linear(rows in 1usize..5, lead in 1usize..3, inf in 1usize..9, outf in 1usize..9, bias in any::<bool>(), seed in any::<u64>()) {
        let x = tensor(&[lead, rows, inf], Values::Any, seed);
        let w = tensor(&[outf, inf], Values::Any, seed + 1);
        let b = tensor(&[outf], Values::Any, seed + 2);
        if bias {
            check_gradients(|t| t[0].linear(&t[1], Some(&t[2])), &[x, w, b]);
        } else {
            check_gradients(|t| t[0].linear(&t[1], None), &[x, w]);
        }
    }
}

#[test]
fn shape_errors_name_the_op_and_the_shapes() {
    let a = Tensor::zeros(&[2, 3]).unwrap();
    let b = Tensor::zeros(&[4, 5]).unwrap();
    assert_eq!(
        a.matmul(&b).unwrap_err().to_string(),
        "matmul: [2, 3] x [4, 5]: inner dimensions 3 and 4 differ"
    );
    assert!(
        a.add(&b)
            .unwrap_err()
            .to_string()
            .starts_with("add: [2, 3] x [4, 5]: cannot broadcast")
    );
    assert!(a.reshape(&[7]).is_err());
    assert!(a.narrow(1, 2, 2).is_err());
    assert!(a.permute(&[0, 0]).is_err());
    assert!(a.transpose(0, 2).is_err());
    assert!(Tensor::concat(&[], 0).is_err());
    assert!(a.linear(&b, None).is_err());
    assert!(Tensor::zeros(&[usize::MAX, 2]).is_err());
}
