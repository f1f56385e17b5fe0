//! Moving data between a shape and the larger shape it broadcasts to.

use rotor_kernels::elementwise;

use crate::storage;

/// `from` seen inside `to` as `[outer, mid, inner]` where `from` holds exactly the `mid`
/// part: the layout of a per-channel bias or scale (`[C]` against `[N, C]`, `[C, 1, 1]`
/// against `[N, C, H, W]`, a one-element tensor against anything).
pub(crate) fn channel_view(from: &[usize], to: &[usize]) -> Option<(usize, usize, usize)> {
    if from.len() > to.len() {
        return None;
    }
    let pad = to.len() - from.len();
    let aligned = |i: usize| if i < pad { 1 } else { from[i - pad] };
    let non_one: Vec<usize> = (0..to.len()).filter(|&i| aligned(i) != 1).collect();
    let (first, last) = match (non_one.first(), non_one.last()) {
        (Some(&f), Some(&l)) => (f, l),
        _ => return Some((to.iter().product(), 1, 1)),
    };
    if (first..=last).any(|i| aligned(i) != to[i]) {
        return None;
    }
    Some((
        to[..first].iter().product(),
        to[first..=last].iter().product(),
        to[last + 1..].iter().product(),
    ))
}

/// Strides (in elements of the `from` data) that read `from` as if it had shape `to`:
/// zero along broadcast dimensions.
fn broadcast_strides(from: &[usize], to: &[usize]) -> Vec<usize> {
    let pad = to.len() - from.len();
    let mut strides = vec![0; to.len()];
    let mut stride = 1;
    for i in (0..from.len()).rev() {
        if from[i] != 1 {
            strides[i + pad] = stride;
        }
        stride *= from[i];
    }
    strides
}

/// Calls `f(offset_in_from, index_in_to)` for every element of `to`, in row-major order.
fn for_each_broadcast(from: &[usize], to: &[usize], mut f: impl FnMut(usize, usize)) {
    let total: usize = to.iter().product();
    if total == 0 {
        return;
    }
    let strides = broadcast_strides(from, to);
    let rank = to.len();
    let mut index = vec![0usize; rank];
    let mut offset = 0usize;
    for flat in 0..total {
        f(offset, flat);
        // Odometer step: bump the last dimension, carrying into earlier ones.
        for d in (0..rank).rev() {
            index[d] += 1;
            offset += strides[d];
            if index[d] < to[d] {
                break;
            }
            offset -= strides[d] * to[d];
            index[d] = 0;
        }
    }
}

/// The data of a tensor of shape `from` repeated to shape `to` (which it broadcasts to).
pub(crate) fn expand(data: &[f32], from: &[usize], to: &[usize]) -> Vec<f32> {
    if from == to {
        return storage::copy_of(data);
    }
    let total: usize = to.iter().product();
    if let Some((outer, mid, inner)) = channel_view(from, to) {
        let mut out = storage::zeroed(total);
        let zeros = storage::zeroed(total);
        elementwise::add_channels(outer, mid, inner, &zeros, data, &mut out);
        storage::recycle(zeros);
        return out;
    }
    let mut out = storage::zeroed(total);
    for_each_broadcast(from, to, |src, dst| out[dst] = data[src]);
    out
}

/// The gradient of a broadcast: `grad` (shape `to`) summed down to shape `from`.
pub(crate) fn reduce_to(grad: Vec<f32>, to: &[usize], from: &[usize]) -> Vec<f32> {
    if from == to {
        return grad;
    }
    let from_len: usize = from.iter().product();
    let mut out = storage::zeroed(from_len);
    if let Some((outer, mid, inner)) = channel_view(from, to) {
        elementwise::sum_channels(outer, mid, inner, &grad, &mut out);
    } else {
        for_each_broadcast(from, to, |src, dst| out[src] += grad[dst]);
    }
    storage::recycle(grad);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_views() {
        assert_eq!(channel_view(&[3], &[2, 3]), Some((2, 3, 1)));
        assert_eq!(channel_view(&[3, 1, 1], &[2, 3, 4, 5]), Some((2, 3, 20)));
        assert_eq!(channel_view(&[1], &[2, 3]), Some((6, 1, 1)));
        assert_eq!(channel_view(&[2, 1], &[2, 3]), Some((1, 2, 3)));
        assert_eq!(channel_view(&[2, 1, 5], &[2, 3, 5]), None);
    }

    #[test]
    fn expand_and_reduce_agree_with_loops() {
        // [2, 1, 3] against [2, 4, 3]: not a channel view, takes the general path.
        let from = [2, 1, 3];
        let to = [2, 4, 3];
        let data: Vec<f32> = (0..6).map(|v| v as f32).collect();
        let e = expand(&data, &from, &to);
        for a in 0..2 {
            for b in 0..4 {
                for c in 0..3 {
                    assert_eq!(e[(a * 4 + b) * 3 + c], data[a * 3 + c]);
                }
            }
        }
        let r = reduce_to(vec![1.0; 24], &to, &from);
        assert_eq!(r, vec![4.0; 6]);
    }
}
