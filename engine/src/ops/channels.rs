//! The `[N, C, ...]` layout shared by the per-channel operations.

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// `x` as `[batch, channels, plane]` (`[N, C]` has plane 1, `[N, C, H, W]` has plane H*W),
/// checking that each per-channel parameter has `channels` elements.
pub(crate) fn channel_layout(
    op: &'static str,
    x: &Tensor,
    params: &[&Tensor],
) -> Result<(usize, usize, usize)> {
    let shape = x.shape();
    let mut shapes = vec![shape];
    shapes.extend(params.iter().map(|p| p.shape()));
    if shape.len() < 2 {
        return Err(Error::shape(op, &shapes, "expected an input [N, C, ...]"));
    }
    let channels = shape[1];
    if let Some(p) = params.iter().find(|p| p.shape() != [channels]) {
        return Err(Error::shape(
            op,
            &shapes,
            format!(
                "per-channel parameters must be [{channels}], found {:?}",
                p.shape()
            ),
        ));
    }
    Ok((shape[0], channels, shape[2..].iter().product()))
}
