//! Finite-difference checks of the neural-network ops.

mod common;

use common::{Values, check_gradients, tensor};
use proptest::prelude::*;
use rotor_engine::{Reduction, RunningStats, Tensor};

/// A valid convolution or pooling window: (input extent, kernel, stride, pad).
fn window(
    max_in: usize,
    max_kernel: usize,
    pool: bool,
) -> impl Strategy<Value = (usize, usize, usize, usize)> {
    (1..=max_kernel, 1usize..=3).prop_flat_map(move |(k, s)| {
        let max_pad = if pool { k / 2 } else { 2 };
        (0..=max_pad).prop_flat_map(move |p| {
            let min_in = k.saturating_sub(2 * p).max(1);
            (min_in..=max_in.max(min_in)).prop_map(move |i| (i, k, s, p))
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20))]

    #[test]
    fn conv2d(n in 1usize..3, c in 1usize..4, o in 1usize..4, (h, kh, sh, ph) in window(7, 4, false), (w, kw, sw, pw) in window(7, 4, false), bias in any::<bool>(), seed in any::<u64>()) {
        let x = tensor(&[n, c, h, w], Values::Any, seed);
        let wt = tensor(&[o, c, kh, kw], Values::Any, seed + 1);
        let b = tensor(&[o], Values::Any, seed + 2);
        if bias {
            check_gradients(|t| t[0].conv2d(&t[1], Some(&t[2]), [sh, sw], [ph, pw]), &[x, wt, b]);
        } else {
            check_gradients(|t| t[0].conv2d(&t[1], None, [sh, sw], [ph, pw]), &[x, wt]);
        }
    }

    #[test]
    fn pools(n in 1usize..3, c in 1usize..3, (h, kh, sh, ph) in window(8, 3, true), (w, kw, sw, pw) in window(8, 3, true), seed in any::<u64>()) {
        let x = tensor(&[n, c, h, w], Values::Distinct, seed);
        check_gradients(|t| t[0].max_pool2d([kh, kw], [sh, sw], [ph, pw]), std::slice::from_ref(&x));
        check_gradients(|t| t[0].avg_pool2d([kh, kw], [sh, sw], [ph, pw]), std::slice::from_ref(&x));
        check_gradients(|t| t[0].global_avg_pool2d(), &[x]);
    }

    #[test]
    fn rotated_relu_max_pool(n in 1usize..3, c in 1usize..4, (h, kh, sh, ph) in window(8, 3, true), (w, kw, sw, pw) in window(8, 3, true), seed in any::<u64>()) {
        // Off the ReLU's kink: the ladder's values are multiples of 0.025, so shifted by
        // 0.0125 none lies within a finite-difference step (0.01) of 0.
        let x = tensor(&[n, c, h, w], Values::Distinct, seed).add_scalar(0.0125);
        let slope = tensor(&[c], Values::AwayFromZero, seed + 1);
        let (k, s, p) = ([kh, kw], [sh, sw], [ph, pw]);
        check_gradients(|t| t[0].rotated_relu_max_pool2d(&t[1], k, s, p), &[x.clone(), slope.clone()]);
        // The fused op is the composition, its gradients to rounding.
        let (x, slope) = (x.detach().requires_grad(), slope.detach().requires_grad());
        let fused = x.rotated_relu_max_pool2d(&slope, k, s, p).unwrap();
        let composed = x.rotated_relu(&slope).unwrap().max_pool2d(k, s, p).unwrap();
        prop_assert_eq!(fused.as_slice(), composed.as_slice());
        let weights = tensor(fused.shape(), Values::Any, seed + 2);
        let fused_grads = fused.mul(&weights).unwrap().sum().backward().unwrap();
        let composed_grads = composed.mul(&weights).unwrap().sum().backward().unwrap();
        for leaf in [&x, &slope] {
            let (a, b) = (fused_grads.get(leaf).unwrap(), composed_grads.get(leaf).unwrap());
            for (a, b) in a.as_slice().iter().zip(b.as_slice()) {
                prop_assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{} against {}", a, b);
            }
        }
    }

    #[test]
    fn batch_norm(n in 2usize..4, c in 1usize..4, plane in prop::sample::select(vec![vec![], vec![3], vec![2, 3]]), seed in any::<u64>()) {
        let mut s = vec![n, c];
        s.extend(&plane);
        let x = tensor(&s, Values::Spread, seed);
        let gamma = tensor(&[c], Values::Positive, seed + 1);
        let beta = tensor(&[c], Values::Any, seed + 2);
        check_gradients(
            |t| t[0].batch_norm_train(&t[1], &t[2], &mut RunningStats::new(c), 0.1, 1e-5),
            &[x.clone(), gamma.clone(), beta.clone()],
        );
        let stats = RunningStats {
            mean: tensor(&[c], Values::Any, seed + 3).to_vec(),
            var: tensor(&[c], Values::Positive, seed + 4).to_vec(),
        };
        check_gradients(|t| t[0].batch_norm_eval(&t[1], &t[2], &stats, 1e-5), &[x, gamma, beta]);
    }

    #[test]
    fn rotated_activations(n in 1usize..4, c in 1usize..6, plane in prop::sample::select(vec![vec![], vec![5], vec![3, 3]]), seed in any::<u64>()) {
        let mut s = vec![n, c];
        s.extend(&plane);
        let x = tensor(&s, Values::AwayFromZero, seed);
        let slope = tensor(&[c], Values::Any, seed + 1);
        check_gradients(|t| t[0].rotated_relu(&t[1]), &[x.clone(), slope.clone()]);
        check_gradients(|t| t[0].rotated_gelu(&t[1]), &[x, slope]);
    }

    #[test]
    fn softmax_family(rows in 1usize..5, cols in 1usize..9, seed in any::<u64>()) {
        let x = tensor(&[rows, cols], Values::Any, seed);
        check_gradients(|t| t[0].softmax(), std::slice::from_ref(&x));
        check_gradients(|t| t[0].log_softmax(), std::slice::from_ref(&x));
        let targets: Vec<u32> = (0..rows).map(|r| ((seed as usize + r * 7) % cols) as u32).collect();
        check_gradients(|t| t[0].cross_entropy(&targets), &[x]);
    }

    #[test]
    fn softmax_along_any_dim(s in prop::collection::vec(1usize..5, 1..=4), dim_pick in any::<prop::sample::Index>(), seed in any::<u64>()) {
        let x = tensor(&s, Values::Any, seed);
        let dim = dim_pick.index(s.len()) as isize;
        check_gradients(|t| t[0].softmax_dim(dim), std::slice::from_ref(&x));
        check_gradients(|t| t[0].log_softmax_dim(dim - s.len() as isize), std::slice::from_ref(&x));
        // Probabilities along `dim` sum to 1, and the log version is their logarithm.
        let p = x.softmax_dim(dim).unwrap();
        for total in p.sum_dim(dim, false).unwrap().as_slice() {
            prop_assert!((total - 1.0).abs() < 1e-5, "sum {total}");
        }
        let logp = x.log_softmax_dim(dim).unwrap();
        for (a, b) in p.ln().as_slice().iter().zip(logp.as_slice()) {
            prop_assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        let last = s.len() as isize - 1;
        prop_assert_eq!(x.softmax_dim(last).unwrap().to_vec(), x.softmax().unwrap().to_vec());
        prop_assert_eq!(x.log_softmax_dim(-1).unwrap().to_vec(), x.log_softmax().unwrap().to_vec());
    }

    #[test]
    fn cross_entropy_reductions(rows in 1usize..5, cols in 1usize..9, seed in any::<u64>()) {
        let x = tensor(&[rows, cols], Values::Any, seed);
        let targets: Vec<u32> = (0..rows).map(|r| ((seed as usize + r * 5) % cols) as u32).collect();
        for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
            check_gradients(|t| t[0].cross_entropy_with(&targets, reduction), std::slice::from_ref(&x));
        }
        let mean = x.cross_entropy_with(&targets, Reduction::Mean).unwrap();
        prop_assert_eq!(mean.to_scalar().unwrap(), x.cross_entropy(&targets).unwrap().to_scalar().unwrap());
        let each = x.cross_entropy_with(&targets, Reduction::None).unwrap();
        prop_assert_eq!(each.shape(), &[rows]);
        let sum = x.cross_entropy_with(&targets, Reduction::Sum).unwrap().to_scalar().unwrap();
        let total: f32 = each.as_slice().iter().sum();
        prop_assert!((sum - total).abs() <= 1e-5 * total.abs().max(1.0));
        let mean = mean.to_scalar().unwrap();
        prop_assert!((sum / rows as f32 - mean).abs() <= 1e-5 * mean.abs().max(1.0), "{sum} / {rows} vs {mean}");
        // Each example's loss is minus the log-probability of its target.
        let logp = x.log_softmax().unwrap();
        for (r, (&t, &l)) in targets.iter().zip(each.as_slice()).enumerate() {
            prop_assert_eq!(l, -logp.as_slice()[r * cols + t as usize]);
        }
    }
}

#[test]
fn nn_ops_reject_bad_arguments() {
    let x = Tensor::zeros(&[2, 3, 5, 5]).unwrap();
    let w = Tensor::zeros(&[4, 2, 3, 3]).unwrap();
    let err = x.conv2d(&w, None, [1, 1], [0, 0]).unwrap_err().to_string();
    assert!(
        err.starts_with("conv2d: [2, 3, 5, 5] x [4, 2, 3, 3]"),
        "{err}"
    );
    let w = Tensor::zeros(&[4, 3, 3, 3]).unwrap();
    assert!(x.conv2d(&w, None, [0, 1], [0, 0]).is_err());
    assert!(x.conv2d(&w, None, [1, 1], [0, 0]).is_ok());
    let big = Tensor::zeros(&[4, 3, 9, 9]).unwrap();
    assert!(x.conv2d(&big, None, [1, 1], [0, 0]).is_err());
    assert!(x.max_pool2d([2, 2], [2, 2], [2, 2]).is_err());
    assert!(x.max_pool2d([0, 2], [2, 2], [0, 0]).is_err());
    let logits = Tensor::zeros(&[2, 3]).unwrap();
    let err = logits.cross_entropy(&[0, 3]).unwrap_err().to_string();
    assert_eq!(
        err,
        "cross_entropy: target 1 is class 3, but there are only 3 classes"
    );
    assert!(logits.cross_entropy(&[0]).is_err());
    let err = logits
        .cross_entropy_with(&[2, 5], Reduction::None)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "cross_entropy_with: target 1 is class 5, but there are only 3 classes"
    );
    assert!(logits.cross_entropy_with(&[0], Reduction::Sum).is_err());
    assert_eq!(
        x.softmax_dim(4).unwrap_err().to_string(),
        "softmax_dim: [2, 3, 5, 5]: dimension 4 is out of range for rank 4"
    );
    assert!(x.log_softmax_dim(-5).is_err());
    assert!(Tensor::scalar(1.0).softmax_dim(0).is_err());
    assert!(x.rotated_relu(&Tensor::zeros(&[4]).unwrap()).is_err());
    let one = Tensor::zeros(&[1, 3]).unwrap();
    let g = Tensor::ones(&[3]).unwrap();
    assert!(
        one.batch_norm_train(&g, &g, &mut RunningStats::new(3), 0.1, 1e-5)
            .is_err()
    );
}
