//! The compiled plan and the per-caller workspace it runs in.

use std::sync::atomic::{AtomicU64, Ordering};

use rotor_engine::{Error, Result, Tensor};
use rotor_kernels::conv::SkipScratch;

use super::compile::compile;
use super::step::{Step, StepScratch};
use crate::layers::Sequential;

/// Distinguishes plans, so that a workspace is not used with a plan it was not made for.
static NEXT_PLAN_ID: AtomicU64 = AtomicU64::new(0);

// NOTE: the steps before the first linear layer (convolutions, pools, activations) run on
// chunks of the batch whose intermediate maps take at most CHUNK_FLOATS floats, so that
// each map is still in cache when the next step reads it; written out for the whole batch
// at once, MnistNet's first map alone (5.5 MB at batch 64) made the first convolution
// memory-bound. Linear layers run on the whole batch, so their weights are read once.
const CHUNK_FLOATS: usize = 256 * 1024;

/// How to compile a plan.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PlanOptions {
    /// `zeta`: skip the channels of fused rotated ReLUs whose slope has `|a| <= zeta`
    /// (`None`: compute every channel).
    pub skip_threshold: Option<f32>,
}

/// A `Sequential` compiled for inference on samples of a fixed shape; see the
/// [module documentation](super).
pub struct InferencePlan {
    id: u64,
    steps: Vec<Step>,
    /// Per-sample element counts of each step's output.
    lens: Vec<usize>,
    /// Steps `..prefix` run on chunks of `chunk` samples, the rest on the whole batch.
    prefix: usize,
    chunk: usize,
    input_shape: Vec<usize>,
    output_shape: Vec<usize>,
}

/// The buffers of one caller of an [`InferencePlan`]: one output buffer per step (for one
/// chunk of the batch before the first linear layer, for the largest batch seen so far
/// after it; reused from call to call), pooling indices and the kernels' scratch.
///
/// A workspace belongs to the plan that made it ([`InferencePlan::workspace`]).
#[derive(Debug)]
pub struct Workspace {
    plan: u64,
    buffers: Vec<Vec<f32>>,
    argmax: Vec<u32>,
    scratch: SkipScratch,
}

impl InferencePlan {
    /// Compiles `model` for samples of shape `input_shape` (without the batch dimension, as
    /// `[1, 28, 28]` for MnistNet).
    ///
    /// The values of the parameters are copied: later changes to `model` do not affect the
    /// plan.
    ///
    /// # Errors
    /// If the model holds a residual block or a custom layer, or a layer's shape does not
    /// fit its input.
    pub fn compile(
        model: &Sequential,
        input_shape: &[usize],
        options: PlanOptions,
    ) -> Result<Self> {
        let (steps, output_shape) = compile(model, input_shape, options.skip_threshold)?;
        let mut lens = Vec::with_capacity(steps.len());
        let mut shape_len = input_shape.iter().product::<usize>();
        for step in &steps {
            shape_len = step_output_len(step, shape_len);
            lens.push(shape_len);
        }
        let prefix = steps
            .iter()
            .position(|step| matches!(step, Step::Linear { .. }))
            .unwrap_or(steps.len());
        // NOTE: sized by the values a step writes: skipped channels take address space but
        // no cache.
        let widest = (0..prefix.saturating_sub(1))
            .map(|i| written_len(&steps[i], lens[i]))
            .max();
        let chunk = widest.map_or(usize::MAX, |len| (CHUNK_FLOATS / len.max(1)).max(1));
        Ok(Self {
            id: NEXT_PLAN_ID.fetch_add(1, Ordering::Relaxed),
            steps,
            lens,
            prefix,
            chunk,
            input_shape: input_shape.to_vec(),
            output_shape,
        })
    }

    /// The per-sample input shape.
    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    /// The per-sample output shape.
    pub fn output_shape(&self) -> &[usize] {
        &self.output_shape
    }

    /// Floating-point operations per sample of the convolutions and linear layers that the
    /// plan actually computes (2 per multiply-accumulate; skipped channels not counted).
    pub fn flops_per_sample(&self) -> u64 {
        self.steps.iter().map(Step::flops).sum()
    }

    /// A fresh workspace for this plan. Its buffers are allocated on first use.
    pub fn workspace(&self) -> Workspace {
        Workspace {
            plan: self.id,
            buffers: Vec::new(),
            argmax: Vec::new(),
            scratch: SkipScratch::new(),
        }
    }

    /// Runs the plan on `batch` samples laid out one after another in `input`, returning the
    /// `batch` outputs (each of [`output_shape`](Self::output_shape)) from the workspace.
    ///
    /// # Errors
    /// If `input` does not hold `batch` samples of the input shape, or `workspace` was made
    /// by another plan.
    pub fn run<'a>(
        &self,
        input: &'a [f32],
        batch: usize,
        workspace: &'a mut Workspace,
    ) -> Result<&'a [f32]> {
        let sample: usize = self.input_shape.iter().product();
        if input.len() != batch * sample {
            return Err(Error::Shape {
                op: "inference plan run",
                operands: format!("{} values", input.len()),
                reason: format!(
                    "expected {batch} samples of shape {:?} ({} values)",
                    self.input_shape,
                    batch * sample
                ),
            });
        }
        if workspace.plan != self.id {
            return Err(Error::InvalidArgument {
                op: "inference plan run",
                reason: "the workspace was made by another plan".to_string(),
            });
        }
        let chunk = self.chunk.min(batch).max(1);
        // Chunked steps but the last keep one chunk; the others hold the whole batch.
        let sizes: Vec<usize> = (0..self.steps.len())
            .map(|i| {
                let samples = if i + 1 < self.prefix { chunk } else { batch };
                samples * self.lens[i]
            })
            .collect();
        workspace.reserve(&sizes);
        let Workspace {
            buffers,
            argmax,
            scratch,
            ..
        } = workspace;
        let mut run_step = |i: usize, samples: usize, input: &[f32], output_at: usize| {
            let (done, rest) = buffers.split_at_mut(i);
            let source = match done.last() {
                Some(previous) => &previous[..samples * self.lens[i - 1]],
                None => input,
            };
            let target = &mut rest[0][output_at..][..samples * self.lens[i]];
            let step_scratch = StepScratch {
                skip: &mut *scratch,
                argmax: &mut *argmax,
            };
            self.steps[i].run(samples, source, target, step_scratch);
        };
        for start in (0..batch).step_by(chunk) {
            let samples = chunk.min(batch - start);
            let chunk_input = &input[start * sample..][..samples * sample];
            for i in 0..self.prefix {
                let output_at = if i + 1 == self.prefix {
                    start * self.lens[i]
                } else {
                    0
                };
                run_step(i, samples, chunk_input, output_at);
            }
        }
        for i in self.prefix..self.steps.len() {
            run_step(i, batch, input, 0);
        }
        Ok(match self.steps.len().checked_sub(1) {
            Some(last) => &buffers[last][..batch * self.lens[last]],
            None => input,
        })
    }

    /// [`run`](Self::run) on a tensor `[N, ...input shape]`, returning `[N, ...output
    /// shape]`.
    ///
    /// # Errors
    /// As [`run`](Self::run), or if the tensor's shape is not `[N, ...input shape]`.
    pub fn forward(&self, x: &Tensor, workspace: &mut Workspace) -> Result<Tensor> {
        let shape = x.shape();
        if shape.len() != self.input_shape.len() + 1 || shape[1..] != self.input_shape[..] {
            return Err(Error::Shape {
                op: "inference plan forward",
                operands: format!("{shape:?}"),
                reason: format!("expected [N, {:?}...]", self.input_shape),
            });
        }
        let batch = shape[0];
        let output = self.run(x.as_slice(), batch, workspace)?;
        let mut out_shape = vec![batch];
        out_shape.extend_from_slice(&self.output_shape);
        Tensor::from_slice(output, &out_shape)
    }
}

impl std::fmt::Debug for InferencePlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The steps hold the weights: name them rather than print them.
        let steps: Vec<&str> = self.steps.iter().map(Step::name).collect();
        f.debug_struct("InferencePlan")
            .field("input_shape", &self.input_shape)
            .field("output_shape", &self.output_shape)
            .field("steps", &steps)
            .field("flops_per_sample", &self.flops_per_sample())
            .finish()
    }
}

impl Workspace {
    /// Makes every step's buffer hold at least `sizes[i]` floats. Buffers start zeroed,
    /// which skipped channels rely on: no step ever writes them.
    fn reserve(&mut self, sizes: &[usize]) {
        self.buffers.resize_with(sizes.len(), Vec::new);
        for (buffer, &size) in self.buffers.iter_mut().zip(sizes) {
            if buffer.len() < size {
                *buffer = vec![0.0; size];
            }
        }
    }
}

/// Per-sample values a step writes, of its per-sample output length `len`: only the computed
/// channels of a convolution.
fn written_len(step: &Step, len: usize) -> usize {
    match step {
        Step::Conv { conv, .. } => {
            len / conv.geometry().out_channels.max(1) * conv.active().outputs.len()
        }
        _ => len,
    }
}

/// Per-sample output length of `step` given its per-sample input length.
fn step_output_len(step: &Step, input_len: usize) -> usize {
    match step {
        Step::Conv { conv, pool, .. } => {
            let g = conv.geometry();
            let (h, w) = (g.out_h(), g.out_w());
            let plane = if *pool { (h / 2) * (w / 2) } else { h * w };
            g.out_channels * plane
        }
        Step::Linear { layer, .. } => layer.out_features(),
        Step::MaxPool(g) | Step::AvgPool(g) => g.output_len(),
        Step::GlobalAvgPool { channels, .. } => *channels,
        Step::Relu
        | Step::Gelu
        | Step::RotatedRelu { .. }
        | Step::RotatedGelu { .. }
        | Step::BatchNorm { .. } => input_len,
    }
}
