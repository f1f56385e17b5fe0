//! Visiting the leaf layers of a network with their dotted paths.

use crate::layers::{Layer, Sequential};
use crate::param::join_path;

/// Calls `f` with every layer below `seq` that is neither a [`Sequential`] nor a
/// [`Residual`](crate::Residual), and its path (`"block.body.conv1"`), in forward order
/// (a residual block's body before its shortcut).
pub(crate) fn visit_leaves(seq: &Sequential, prefix: &str, f: &mut dyn FnMut(&str, &Layer)) {
    for (name, layer) in seq.layers() {
        let path = join_path(prefix, name);
        match layer {
            Layer::Sequential(inner) => visit_leaves(inner, &path, f),
            Layer::Residual(block) => {
                visit_leaves(&block.body, &join_path(&path, "body"), f);
                if let Some(shortcut) = &block.shortcut {
                    visit_leaves(shortcut, &join_path(&path, "shortcut"), f);
                }
            }
            leaf => f(&path, leaf),
        }
    }
}

/// [`visit_leaves`] with mutable layers.
pub(crate) fn visit_leaves_mut(
    seq: &mut Sequential,
    prefix: &str,
    f: &mut dyn FnMut(&str, &mut Layer),
) {
    for (name, layer) in seq.layers_mut() {
        let path = join_path(prefix, name);
        match layer {
            Layer::Sequential(inner) => visit_leaves_mut(inner, &path, f),
            Layer::Residual(block) => {
                visit_leaves_mut(&mut block.body, &join_path(&path, "body"), f);
                if let Some(shortcut) = &mut block.shortcut {
                    visit_leaves_mut(shortcut, &join_path(&path, "shortcut"), f);
                }
            }
            leaf => f(&path, leaf),
        }
    }
}
