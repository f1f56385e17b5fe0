//! Scratch buffers, grown to what the kernels need and then reused: the caller-held
//! [`SkipScratch`] of the channel-skipping and packed kernels, and the per-thread buffers
//! of the convolutions' tasks.

use std::cell::Cell;
use std::sync::{Mutex, PoisonError};

/// Buffers of the channel-skipping kernels, kept by the caller and reused from call to
/// call: the gathered filters, gathered inputs and products, and one im2col scratch per
/// thread of the rayon pool current when it was made.
pub struct SkipScratch {
    pub(crate) threads: ScratchPerThread,
    pub(crate) weight: Vec<f32>,
    pub(crate) gathered: Vec<f32>,
    pub(crate) product: Vec<f32>,
    pub(crate) offsets: Vec<usize>,
}

impl SkipScratch {
    /// Empty buffers; they grow to what the calls need and are then reused.
    pub fn new() -> Self {
        Self {
            threads: ScratchPerThread::new(),
            weight: Vec::new(),
            gathered: Vec::new(),
            product: Vec::new(),
            offsets: Vec::new(),
        }
    }
}

impl Default for SkipScratch {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for SkipScratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SkipScratch").finish_non_exhaustive()
    }
}

/// Scratch buffers of one task: the padded strip of one channel's input rows that a tile
/// reads, the tile's im2col matrix and, for the channel-skipping forward, the tile's
/// product before its epilogue moves it into the output. They grow to the largest tile seen and are then
/// reused.
#[derive(Default)]
pub(crate) struct Scratch {
    pub(crate) strip: Vec<f32>,
    pub(crate) col: Vec<f32>,
    pub(crate) product: Vec<f32>,
}

/// One [`Scratch`] per thread of the current rayon pool, for the duration of one kernel call.
///
/// NOTE: rayon's `for_each_init` would build a fresh scratch for every piece its work
/// stealing splits off (dozens per call), each allocating and zeroing a few hundred KiB;
/// one scratch per thread, found by the thread's index in the pool, is allocated once.
pub(crate) struct ScratchPerThread {
    slots: Vec<Mutex<Scratch>>,
}

impl ScratchPerThread {
    pub(crate) fn new() -> Self {
        Self {
            slots: (0..rayon::current_num_threads())
                .map(|_| Mutex::default())
                .collect(),
        }
    }

    /// Runs `f` with the scratch of participant `participant` of
    /// [`for_each_task`](crate::parallel::for_each_task).
    pub(crate) fn with_slot<R>(&self, participant: usize, f: impl FnOnce(&mut Scratch) -> R) -> R {
        let mut scratch = self.slots[participant % self.slots.len()]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        f(&mut scratch)
    }

    /// Runs `f` with the calling thread's scratch.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Scratch) -> R) -> R {
        // NOTE: tasks run on the threads of the pool current when `new` ran, so the index
        // is in range; a thread outside it would merely share slot 0 through the mutex.
        let slot = rayon::current_thread_index().unwrap_or(0) % self.slots.len();
        let mut scratch = self.slots[slot]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        f(&mut scratch)
    }
}

impl Scratch {
    /// The strip, a column buffer of `col_len` and a product buffer of `product_len` floats
    /// (contents unspecified), for callers that lay out their own im2col matrices.
    pub(crate) fn parts(
        &mut self,
        col_len: usize,
        product_len: usize,
    ) -> (&mut Vec<f32>, &mut [f32], &mut [f32]) {
        (
            &mut self.strip,
            grown(&mut self.col, col_len),
            grown(&mut self.product, product_len),
        )
    }

    /// A column buffer of `len` floats (contents unspecified) for a gradient in im2col
    /// layout, to be passed on with the convolution's `col2im_add`.
    pub(crate) fn col_mut(&mut self, len: usize) -> &mut [f32] {
        grown(&mut self.col, len)
    }
}

/// The first `len` elements of `buffer`, grown (with zeros) if it is shorter.
pub(crate) fn grown(buffer: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buffer.len() < len {
        buffer.resize(len, 0.0);
    }
    &mut buffer[..len]
}

thread_local! {
    /// Buffers of whole-call size (a padded copy of a layer's output gradient, partial sums
    /// of a weight gradient), kept by each calling thread at the largest size each has
    /// needed.
    ///
    /// NOTE: kept, not allocated per call: the fresh pages of a new buffer (12.8 MB for 64
    /// channels of 28x28 at batch 64) cost as much again as the copy into them.
    static KEPT: Cell<Vec<Vec<f32>>> = const { Cell::new(Vec::new()) };
}

/// Runs `f` with one of the calling thread's kept buffers (contents unspecified; grow it
/// with [`grown`]), and keeps it again afterwards.
///
/// NOTE: taken out for the call, not borrowed: while this thread waits for the pool it may
/// run another task that needs a kept buffer too, and which then takes another one.
pub(crate) fn with_kept_buffer<R>(f: impl FnOnce(&mut Vec<f32>) -> R) -> R {
    let taken = KEPT.with(|kept| {
        let mut buffers = kept.take();
        let buffer = buffers.pop();
        kept.set(buffers);
        buffer
    });
    let mut buffer = taken.unwrap_or_default();
    let result = f(&mut buffer);
    KEPT.with(|kept| {
        let mut buffers = kept.take();
        buffers.push(buffer);
        kept.set(buffers);
    });
    result
}
