//! Operations that take a recycled buffer for their output write every element of it: a
//! network's forward and backward give the same bits whether their buffers come fresh from
//! the allocator or recycled and filled with NaN.

mod common;

use common::{Values, tensor};
use rotor_engine::{Result, RunningStats, storage};

/// Every op whose output or gradient buffer is taken for overwriting, at sizes the pool
/// recycles, chained into one loss; returns the loss and the gradients of every leaf.
fn forward_backward() -> Result<Vec<Vec<f32>>> {
    let x = tensor(&[4, 3, 20, 20], Values::Any, 1).requires_grad();
    let w1 = tensor(&[16, 3, 3, 3], Values::Any, 2).requires_grad();
    let b1 = tensor(&[16], Values::Any, 3).requires_grad();
    let slope = tensor(&[16], Values::Positive, 4).requires_grad();
    let gamma = tensor(&[16], Values::Positive, 5).requires_grad();
    let beta = tensor(&[16], Values::Any, 6).requires_grad();
    let w2 = tensor(&[16, 16, 3, 3], Values::Any, 7).requires_grad();
    let slope2 = tensor(&[16], Values::Positive, 8).requires_grad();
    let fc = tensor(&[64, 8], Values::Any, 9).requires_grad();
    let fc_bias = tensor(&[64], Values::Any, 10).requires_grad();
    let leaves = [
        &x, &w1, &b1, &slope, &gamma, &beta, &w2, &slope2, &fc, &fc_bias,
    ];

    let mut stats = RunningStats::new(16);
    let h = x.conv2d(&w1, Some(&b1), [1, 1], [1, 1])?;
    let h = h.rotated_relu(&slope)?;
    let h = h.batch_norm_train(&gamma, &beta, &mut stats, 0.1, 1e-5)?;
    let h = h.relu().gelu().mul_scalar(0.5).add_scalar(0.1);
    // [4, 16, 9, 9]
    let h = h.conv2d(&w2, None, [2, 2], [0, 0])?.rotated_gelu(&slope2)?;
    let averaged = h.avg_pool2d([3, 3], [1, 1], [1, 1])?.global_avg_pool2d()?;
    let fused = h.rotated_relu_max_pool2d(&slope2, [3, 3], [2, 2], [1, 1])?;
    // [4, 16, 8, 8], then [4, 16, 8, 64] seen as 512 rows of 64 logits
    let pooled = h.max_pool2d([2, 2], [1, 1], [0, 0])?;
    let logits = pooled.linear(&fc, Some(&fc_bias))?.reshape(&[512, 64])?;
    let gram = logits.transpose(0, 1)?.matmul(&logits)?.mul_scalar(1e-3);
    let targets: Vec<u32> = (0..512).map(|i| (i * 7 % 64) as u32).collect();
    let loss = logits
        .cross_entropy(&targets)?
        .add(&gram.softmax()?.square().sum())?
        .add(&logits.log_softmax()?.mean())?
        .add(&averaged.sum())?
        .add(&fused.mean())?;
    let grads = loss.backward()?;
    let mut out = vec![loss.to_vec()];
    for leaf in leaves {
        out.push(grads.get(leaf).expect("every leaf has a gradient").to_vec());
    }
    Ok(out)
}

#[test]
fn recycled_buffers_are_overwritten() {
    storage::release_pool();
    let fresh = forward_backward().unwrap();
    assert!(storage::pooled_bytes() > 0, "dropped tensors fill the pool");
    storage::poison_recycled_buffers(true);
    let recycled = forward_backward().unwrap();
    let again = forward_backward().unwrap();
    storage::poison_recycled_buffers(false);
    for (index, ((a, b), c)) in fresh.iter().zip(&recycled).zip(&again).enumerate() {
        assert!(a.iter().all(|v| v.is_finite()), "result {index} is finite");
        assert_eq!(
            a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            b.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "result {index}: fresh and recycled buffers agree"
        );
        assert_eq!(b, c, "result {index}: a second recycled run agrees");
    }
}
