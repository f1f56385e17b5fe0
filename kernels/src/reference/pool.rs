//! Reference pooling: one loop per index, windows walked position by position with
//! explicit padding checks.

use crate::pool::Pool2dGeometry;

/// The index within the input plane of padded position `(py, px)` (padded coordinates count
/// from the top-left padding corner), or `None` where that position is padding.
fn at_padded(g: &Pool2dGeometry, py: usize, px: usize) -> Option<usize> {
    let iy = py.checked_sub(g.pad_h).filter(|&iy| iy < g.in_h)?;
    let ix = px.checked_sub(g.pad_w).filter(|&ix| ix < g.in_w)?;
    Some(iy * g.in_w + ix)
}

/// Reference for [`crate::pool::max_pool2d_forward`]: same formula, ties and NaN rule.
///
/// # Panics
/// If the geometry is invalid or a slice length differs from the geometry's.
pub fn max_pool2d_forward(
    g: &Pool2dGeometry,
    input: &[f32],
    output: &mut [f32],
    argmax: &mut [u32],
) {
    assert!(g.is_valid());
    assert_eq!(input.len(), g.input_len());
    assert_eq!(output.len(), g.output_len());
    assert_eq!(argmax.len(), g.output_len());
    let (out_h, out_w) = (g.out_h(), g.out_w());
    for plane in 0..g.batch * g.channels {
        let x = &input[plane * g.in_h * g.in_w..][..g.in_h * g.in_w];
        for oy in 0..out_h {
            for ox in 0..out_w {
                let mut best: Option<(f32, usize)> = None;
                for ky in 0..g.kernel_h {
                    for kx in 0..g.kernel_w {
                        let Some(at) = at_padded(g, oy * g.stride_h + ky, ox * g.stride_w + kx)
                        else {
                            continue;
                        };
                        let v = x[at];
                        let replace = match best {
                            None => true,
                            Some((b, _)) => v > b || (v.is_nan() && !b.is_nan()),
                        };
                        if replace {
                            best = Some((v, at));
                        }
                    }
                }
                let (v, at) = best.expect("a valid geometry gives every window an input element");
                let o = (plane * out_h + oy) * out_w + ox;
                output[o] = v;
                argmax[o] = at as u32;
            }
        }
    }
}

/// Reference for [`crate::pool::max_pool2d_backward`].
///
/// # Panics
/// If the geometry is invalid, a slice length differs from the geometry's, or an argmax is
/// out of its plane.
pub fn max_pool2d_backward(
    g: &Pool2dGeometry,
    grad_output: &[f32],
    argmax: &[u32],
    grad_input: &mut [f32],
) {
    assert!(g.is_valid());
    assert_eq!(grad_output.len(), g.output_len());
    assert_eq!(argmax.len(), g.output_len());
    assert_eq!(grad_input.len(), g.input_len());
    let in_plane = g.in_h * g.in_w;
    let out_plane = g.out_h() * g.out_w();
    grad_input.fill(0.0);
    for plane in 0..g.batch * g.channels {
        for o in 0..out_plane {
            let at = argmax[plane * out_plane + o] as usize;
            assert!(at < in_plane);
            grad_input[plane * in_plane + at] += grad_output[plane * out_plane + o];
        }
    }
}

/// Reference for [`crate::pool::avg_pool2d_forward`] (padding counted in the divisor).
///
/// # Panics
/// If the geometry is invalid or a slice length differs from the geometry's.
pub fn avg_pool2d_forward(g: &Pool2dGeometry, input: &[f32], output: &mut [f32]) {
    assert!(g.is_valid());
    assert_eq!(input.len(), g.input_len());
    assert_eq!(output.len(), g.output_len());
    let (out_h, out_w) = (g.out_h(), g.out_w());
    let area = (g.kernel_h * g.kernel_w) as f64;
    for plane in 0..g.batch * g.channels {
        let x = &input[plane * g.in_h * g.in_w..][..g.in_h * g.in_w];
        for oy in 0..out_h {
            for ox in 0..out_w {
                let mut total = 0.0_f64;
                for ky in 0..g.kernel_h {
                    for kx in 0..g.kernel_w {
                        if let Some(at) = at_padded(g, oy * g.stride_h + ky, ox * g.stride_w + kx) {
                            total += f64::from(x[at]);
                        }
                    }
                }
                output[(plane * out_h + oy) * out_w + ox] = (total / area) as f32;
            }
        }
    }
}

/// Reference for [`crate::pool::avg_pool2d_backward`].
///
/// # Panics
/// If the geometry is invalid or a slice length differs from the geometry's.
pub fn avg_pool2d_backward(g: &Pool2dGeometry, grad_output: &[f32], grad_input: &mut [f32]) {
    assert!(g.is_valid());
    assert_eq!(grad_output.len(), g.output_len());
    assert_eq!(grad_input.len(), g.input_len());
    let (out_h, out_w) = (g.out_h(), g.out_w());
    let in_plane = g.in_h * g.in_w;
    let area = (g.kernel_h * g.kernel_w) as f32;
    grad_input.fill(0.0);
    for plane in 0..g.batch * g.channels {
        for oy in 0..out_h {
            for ox in 0..out_w {
                let d = grad_output[(plane * out_h + oy) * out_w + ox];
                for ky in 0..g.kernel_h {
                    for kx in 0..g.kernel_w {
                        if let Some(at) = at_padded(g, oy * g.stride_h + ky, ox * g.stride_w + kx) {
                            grad_input[plane * in_plane + at] += d / area;
                        }
                    }
                }
            }
        }
    }
}

/// Reference for [`crate::pool::global_avg_pool2d_forward`].
///
/// # Panics
/// If `plane == 0` while `batch * channels > 0`, or a slice length differs from the sizes.
pub fn global_avg_pool2d_forward(
    batch: usize,
    channels: usize,
    plane: usize,
    input: &[f32],
    output: &mut [f32],
) {
    assert_eq!(input.len(), batch * channels * plane);
    assert_eq!(output.len(), batch * channels);
    assert!(plane >= 1 || output.is_empty());
    for (o, out) in output.iter_mut().enumerate() {
        let total: f64 = input[o * plane..][..plane]
            .iter()
            .map(|&v| f64::from(v))
            .sum();
        *out = (total / plane as f64) as f32;
    }
}

/// Reference for [`crate::pool::global_avg_pool2d_backward`].
///
/// # Panics
/// If a slice length differs from the sizes.
pub fn global_avg_pool2d_backward(
    batch: usize,
    channels: usize,
    plane: usize,
    grad_output: &[f32],
    grad_input: &mut [f32],
) {
    assert_eq!(grad_output.len(), batch * channels);
    assert_eq!(grad_input.len(), batch * channels * plane);
    for (o, &d) in grad_output.iter().enumerate() {
        for p in 0..plane {
            grad_input[o * plane + p] = d / plane as f32;
        }
    }
}
