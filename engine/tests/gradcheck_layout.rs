//! Finite-difference checks of the shape and matrix-product ops.

mod common;

use common::{Values, check_gradients, tensor};
use proptest::prelude::*;
use rotor_engine::{Rng, SeedableRng, SeededRng, Tensor};

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

    #[test]
    fn gather(s in shape(1, 4, 4), dim_pick in any::<prop::sample::Index>(), picks in 1usize..6, seed in any::<u64>()) {
        let x = tensor(&s, Values::Any, seed);
        let dim = dim_pick.index(s.len());
        let mut rng = SeededRng::seed_from_u64(seed);
        // No larger than the input beside `dim`, any number of picks along it: indices
        // repeat, so the backward scatter must add.
        let index_shape: Vec<usize> = s
            .iter()
            .enumerate()
            .map(|(k, &n)| if k == dim { picks } else { rng.random_range(1..=n) })
            .collect();
        let count: usize = index_shape.iter().product();
        let index: Vec<usize> = (0..count).map(|_| rng.random_range(0..s[dim])).collect();
        check_gradients(|t| t[0].gather(dim as isize, &index, &index_shape), std::slice::from_ref(&x));
        // Each output element is the input element its index names.
        let out = x.gather(dim as isize - s.len() as isize, &index, &index_shape).unwrap();
        prop_assert_eq!(out.shape(), index_shape.as_slice());
        let mut position = vec![0usize; s.len()];
        for (&i, &v) in index.iter().zip(out.as_slice()) {
            let mut source = position.clone();
            source[dim] = i;
            let offset = source.iter().zip(&s).fold(0, |acc, (&p, &n)| acc * n + p);
            prop_assert_eq!(v, x.as_slice()[offset]);
            for k in (0..s.len()).rev() {
                position[k] += 1;
                if position[k] < index_shape[k] {
                    break;
                }
                position[k] = 0;
            }
        }
    }

    #[test]
    fn select_channels(s in shape(1, 4, 4), with_cols in any::<bool>(), picks in (1usize..5, 1usize..5), seed in any::<u64>()) {
        let with_cols = with_cols && s.len() >= 2;
        let x = tensor(&s, Values::Any, seed);
        let mut rng = SeededRng::seed_from_u64(seed);
        // Indices may repeat and come in any order: the backward scatter must add.
        let rows: Vec<usize> = (0..picks.0).map(|_| rng.random_range(0..s[0])).collect();
        let cols: Option<Vec<usize>> =
            with_cols.then(|| (0..picks.1).map(|_| rng.random_range(0..s[1])).collect());
        check_gradients(|t| t[0].select_channels(&rows, cols.as_deref()), std::slice::from_ref(&x));
        let out = x.select_channels(&rows, cols.as_deref()).unwrap();
        let inner: usize = s[if with_cols { 2 } else { 1 }..].iter().product();
        let row_len: usize = s[1..].iter().product();
        let cols = cols.unwrap_or(vec![0]);
        let mut expected = Vec::new();
        for &r in &rows {
            for &c in &cols {
                let start = r * row_len + c * inner;
                expected.extend_from_slice(&x.as_slice()[start..start + inner]);
            }
        }
        prop_assert_eq!(out.as_slice(), expected.as_slice());
    }
}

#[test]
fn gather_scatters_repeated_picks_and_checks_its_index() {
    let x = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3])
        .unwrap()
        .requires_grad();
    // Along dim 0: out[i][j] = x[index[i][j]][j].
    let y = x.gather(0, &[1, 0, 1, 1, 1, 0], &[2, 3]).unwrap();
    assert_eq!(y.as_slice(), &[4.0, 2.0, 6.0, 4.0, 5.0, 3.0]);
    let g = y.sum().backward().unwrap();
    assert_eq!(
        g.get(&x).unwrap().as_slice(),
        &[0.0, 1.0, 1.0, 2.0, 1.0, 1.0]
    );
    assert_eq!(
        x.gather(1, &[0, 3], &[2, 1]).unwrap_err().to_string(),
        "gather: index 3 at [1, 0] is out of range for dimension 1 of size 3"
    );
    assert_eq!(
        x.gather(1, &[0, 1, 2], &[2, 1]).unwrap_err().to_string(),
        "gather: [2, 3] x [2, 1]: the index shape holds 2 indices but 3 are given"
    );
    assert!(x.gather(1, &[0, 1], &[2]).is_err());
    assert!(x.gather(1, &[0, 0, 0], &[3, 1]).is_err());
    assert!(x.gather(2, &[0], &[1, 1]).is_err());
    // An index with no elements gives an empty output.
    assert_eq!(x.gather(1, &[], &[2, 0]).unwrap().shape(), &[2, 0]);
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

#[test]
fn select_channels_checks_its_indices() {
    let x = Tensor::from_vec((0..12).map(|v| v as f32).collect(), &[2, 3, 2]).unwrap();
    let y = x.select_channels(&[1], Some(&[2, 0])).unwrap();
    assert_eq!(y.shape(), &[1, 2, 2]);
    assert_eq!(y.as_slice(), &[10.0, 11.0, 6.0, 7.0]);
    assert_eq!(
        x.select_channels(&[2], None).unwrap_err().to_string(),
        "select_channels: row 2 is out of range for 2 in [2, 3, 2]"
    );
    assert!(x.select_channels(&[0], Some(&[3])).is_err());
    let scalar = Tensor::from_vec(vec![1.0], &[]).unwrap();
    assert!(scalar.select_channels(&[0], None).is_err());
}
