//! The compiled plan and the per-caller workspace it runs in.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use rotor_engine::{Error, Result, Tensor};
use rotor_kernels::parallel::for_each_task;
use rotor_kernels::skip::SkipScratch;

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

/// The buffers of one caller of an [`InferencePlan`]: one output buffer per step (for a
/// chunk of the batch before the first linear layer, one set per thread working on chunks;
/// for the largest batch seen so far after it; all reused from call to call), pooling
/// indices and the kernels' scratch.
///
/// A workspace belongs to the plan that made it ([`InferencePlan::workspace`]).
#[derive(Debug)]
pub struct Workspace {
    plan: u64,
    /// One per chunk processed at the same time: the chunked steps' buffers.
    lanes: Vec<Mutex<Lane>>,
    /// The whole batch: the output of the last chunked step and of every step after it.
    tail: Lane,
}

/// Step buffers, pooling indices and kernel scratch of one thread of work.
#[derive(Debug, Default)]
struct Lane {
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
    /// If the model holds a residual block, or a layer's shape does not fit its input (a
    /// custom layer is tried once on a zero sample to find its output shape).
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
            lanes: Vec::new(),
            tail: Lane::default(),
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
        // NOTE: the kernels run serially within a chunk (see `for_each_task`), so the chunks
        // are made of equal size and as many as a multiple of the threads: with MnistNet's
        // 24-image chunks a batch of 64 left one thread alone on the last 16 images.
        let threads = rayon::current_num_threads();
        let chunks = batch
            .div_ceil(self.chunk.max(1))
            .next_multiple_of(threads)
            .min(batch);
        let chunk = batch.div_ceil(chunks.max(1)).max(1);
        let chunks = batch.div_ceil(chunk);
        // NOTE: the chunks of the batch go to the threads whole, each thread running every
        // chunked step on its chunk in its own buffers, so a map stays in the cache of the
        // core that wrote it and the steps pay no fork and join each.
        let lanes = if self.prefix > 0 {
            threads.min(chunks).max(1)
        } else {
            0
        };
        let chunked = self.prefix.saturating_sub(1);
        let lane_sizes: Vec<usize> = (0..chunked).map(|i| chunk * self.lens[i]).collect();
        let tail_sizes: Vec<usize> = (chunked..self.steps.len())
            .map(|i| batch * self.lens[i])
            .collect();
        workspace.reserve(lanes, &lane_sizes, &tail_sizes);
        let Workspace {
            lanes: lane_slots,
            tail,
            ..
        } = workspace;
        if self.prefix > 0 {
            let (out_len, sample_out) = (self.lens[chunked], self.lens[chunked] * chunk);
            let outputs = &mut tail.buffers[0][..batch * out_len];
            let pieces = input
                .chunks(chunk * sample)
                .zip(outputs.chunks_mut(sample_out))
                .collect();
            let failure = Mutex::new(None);
            for_each_task(pieces, |participant, (x, out): (&[f32], &mut [f32])| {
                let mut lane = lane_slots[participant % lane_slots.len()]
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if let Err(e) = self.run_chunk(&mut lane, x, x.len() / sample, out) {
                    *failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(e);
                }
            });
            if let Some(e) = failure.into_inner().unwrap_or_else(PoisonError::into_inner) {
                return Err(e);
            }
        }
        let Lane {
            buffers,
            argmax,
            scratch,
        } = tail;
        for i in self.prefix..self.steps.len() {
            let (done, rest) = buffers.split_at_mut(i - chunked);
            let source = match done.last() {
                Some(previous) => &previous[..batch * self.lens[i - 1]],
                None => input,
            };
            let step_scratch = StepScratch {
                skip: &mut *scratch,
                argmax: &mut *argmax,
            };
            let target = &mut rest[0][..batch * self.lens[i]];
            self.steps[i].run(batch, source, target, step_scratch)?;
        }
        Ok(match self.steps.len().checked_sub(1) {
            Some(last) => &buffers[last - chunked][..batch * self.lens[last]],
            None => input,
        })
    }

    /// Runs the chunked steps on the `samples` samples of `input` in `lane`'s buffers, the
    /// last of them into `output`.
    fn run_chunk(
        &self,
        lane: &mut Lane,
        input: &[f32],
        samples: usize,
        output: &mut [f32],
    ) -> Result<()> {
        let Lane {
            buffers,
            argmax,
            scratch,
        } = lane;
        for i in 0..self.prefix {
            let (done, rest) = buffers.split_at_mut(i);
            let source = match i.checked_sub(1) {
                Some(previous) => &done[previous][..samples * self.lens[previous]],
                None => input,
            };
            let target = if i + 1 == self.prefix {
                &mut *output
            } else {
                &mut rest[0][..samples * self.lens[i]]
            };
            let step_scratch = StepScratch {
                skip: &mut *scratch,
                argmax: &mut *argmax,
            };
            self.steps[i].run(samples, source, target, step_scratch)?;
        }
        Ok(())
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
                reason: format!(
                    "expected [N, {}]",
                    self.input_shape
                        .iter()
                        .map(usize::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
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
    /// Makes `lanes` lanes whose buffers hold at least `lane_sizes[i]` floats and a tail
    /// whose buffers hold at least `tail_sizes[i]`. Buffers start zeroed, which skipped
    /// channels rely on: no step ever writes them.
    fn reserve(&mut self, lanes: usize, lane_sizes: &[usize], tail_sizes: &[usize]) {
        if self.lanes.len() < lanes {
            self.lanes.resize_with(lanes, Mutex::default);
        }
        for lane in &mut self.lanes {
            let lane = lane.get_mut().unwrap_or_else(PoisonError::into_inner);
            grow(&mut lane.buffers, lane_sizes);
        }
        grow(&mut self.tail.buffers, tail_sizes);
    }
}

/// Makes `buffers[i]` hold at least `sizes[i]` floats, zeroed when (re)allocated.
fn grow(buffers: &mut Vec<Vec<f32>>, sizes: &[usize]) {
    buffers.resize_with(sizes.len(), Vec::new);
    for (buffer, &size) in buffers.iter_mut().zip(sizes) {
        if buffer.len() < size {
            *buffer = vec![0.0; size];
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
        Step::Custom { output_shape, .. } => output_shape.iter().product(),
        Step::Relu
        | Step::Gelu
        | Step::RotatedRelu { .. }
        | Step::RotatedGelu { .. }
        | Step::BatchNorm { .. } => input_len,
    }
}
