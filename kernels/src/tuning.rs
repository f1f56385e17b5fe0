//! Every tuning constant of the kernels, by family, with what it was measured on: the sizes
//! that cut work into tasks and tiles, and the thresholds below which a call stays on the
//! calling thread. (The register tiles of each instruction set are in each family's table:
//! `conv/implicit/kernel.rs`, `linear/packed/tile.rs`, `linear/skip/tile.rs`.)
//!
//! Unless said otherwise, "the AMD EPYC" is the 2-core virtual machine the project is
//! benchmarked on; sessions have had a Zen 3 (AVX2, 512 KiB of L2 per core) and a Zen 4
//! (AVX-512, 1 MiB of L2 per core).

/// The implicit convolution (`conv/implicit.rs`), measured on the AMD EPYC with AVX-512 on
/// MnistNet's second convolution.
pub(crate) mod implicit {
    /// Positions per task: large tiles waste fewer masked lanes at segment edges, and there
    /// is no im2col tile to keep in cache.
    pub(crate) const TILE_POSITIONS: usize = 2048;
    /// Below this many multiply-accumulates a call runs on the calling thread. MnistNet's
    /// first layer at batch 1 (210k) is above it: split, it costs about what it saves, but
    /// it wakes a second thread, which the next layer then finds awake (batch 1 took 5 µs
    /// less in all).
    pub(crate) const SERIAL_MACS: usize = 1 << 17;
    /// A batch split by filters is cut into this many times more groups than tasks wanted,
    /// so that a thread that starts late (woken from sleep) takes fewer.
    pub(crate) const GROUPS_PER_TASK: usize = 2;
    /// The fewest input channels (filters of the transposed convolution) for which a
    /// layer's input gradient runs on the implicit product: fewer leave the micro-kernel's
    /// blocks of filters mostly empty (measured on the Xeon with AVX-512: 3 to 6 channels
    /// lost to col2im, 8 won by a tenth, 16 by a fifth; see `conv/dense.rs`).
    pub(crate) const MIN_INPUT_GRADIENT_FILTERS: usize = 8;
}

/// The fused channel-skipping forward on im2col tiles (`conv/skip.rs`, strided or padded
/// layers), sized for MnistNet's second convolution (288 im2col rows) on a 2-core AVX-512
/// Xeon with 2 MiB of L2 per core.
pub(crate) mod conv_im2col {
    /// Floats of an im2col tile: the tile, its packed copy and the product tile stay in L2.
    /// Twice the dense forward's tile, so the filters are packed half as often per output;
    /// not tuned further (the machine was shared).
    pub(crate) const TILE_FLOATS: usize = 160 * 1024;
    /// Tiles are multiples of this many positions, the width of matrixmultiply's AVX-512
    /// micro-kernel.
    pub(crate) const TILE_ALIGN: usize = 16;
    /// Below this many multiply-accumulates a call runs on the calling thread, where waking
    /// the pool would cost more than it saves (a batch-1 first convolution).
    pub(crate) const SERIAL_MACS: usize = 1 << 21;
}

/// The training convolutions (im2col + GEMM: `conv/plan.rs`, `conv/forward.rs`,
/// `conv/backward.rs`, `conv/skip_backward.rs`; the implicit weight gradient:
/// `conv/weight_gradient.rs`), measured with MnistNet's second convolution (im2col rows
/// 288, 576 positions per image), on the AMD EPYC (Zen 3) unless a constant says
/// otherwise.
pub(crate) mod conv {
    /// Floats of an im2col tile (160 KiB): it and matrixmultiply's packed copy of it stay
    /// together in one core's L2, with room for the weights. 40, 64 and 96 Ki floats
    /// measured the same within noise (~130 GFLOP/s forward on 2 cores, 5, 3 and 2 tiles
    /// per image), so the size that fits the cache, and gives work stealing more tasks, was
    /// kept.
    pub(crate) const COL_TILE_FLOATS: usize = 40 * 1024;
    /// Narrower tiles make the 8-wide micro-kernel's edges and the per-tile packing of the
    /// weights cost more than the cache misses they avoid.
    pub(crate) const MIN_TILE: usize = 32;
    /// With 2 tasks per thread a batch of one image still keeps both cores busy; 4 made each
    /// task's matrix product smaller and the batch-1 backward 15% slower.
    pub(crate) const TASKS_PER_THREAD: usize = 2;
    /// The weight gradient is summed in this many independent partial sums (then added in a
    /// fixed order); a constant, not the thread count, so the result does not depend on how
    /// many threads run. 8 keeps 2 to 4 threads busy.
    pub(crate) const WEIGHT_GRADIENT_GROUPS: usize = 8;
    /// Channel blocks are multiples of the micro-kernel's 8 rows.
    pub(crate) const BLOCK_ALIGN: usize = 8;
    /// The implicit weight gradient (`conv/weight_gradient.rs`) passes over the rows of the
    /// im2col matrix for about this many output positions at a time: their transposed
    /// gradient (256 bytes a position for 64 channels) stays in L1 while every row reads it.
    /// Measured on the Intel Xeon with AVX-512: 5.7 ms at batch 64, against 8.7 ms for the
    /// im2col + GEMM weight gradient it replaced.
    pub(crate) const WEIGHT_GRADIENT_CHUNK_POSITIONS: usize = 64;
}

/// The parallel matrix product over matrixmultiply (`gemm.rs`), measured on the AMD EPYC
/// (Zen 3).
pub(crate) mod gemm {
    /// Below this many multiply-accumulates (about 50 µs on one core) the cost of waking a
    /// second thread and packing the shared operand twice outweighs the gain.
    pub(crate) const PARALLEL_MIN_MACS: usize = 1 << 21;
    /// Every block packs the whole operand that is not split (B when rows are split), so
    /// blocks are as few as the threads: 1024^3 ran at ~157 GFLOP/s with one block per
    /// thread, ~148 with two and ~134 with four. The price is that a core slowed by another
    /// process is not helped out by the other.
    pub(crate) const BLOCKS_PER_THREAD: usize = 1;
    /// Blocks are multiples of this, the side of matrixmultiply's largest micro-kernel
    /// (16x16 with AVX-512; 8x8 with AVX2 and FMA, which divides it), so that only the last
    /// block runs the slower masked kernel on its edge. It also keeps results independent of
    /// the cut: the masked kernel rounds `alpha AB + beta C` in two steps where the full one
    /// fuses them, so every element must fall in the same kind of tile whatever the cut.
    pub(crate) const BLOCK_ALIGN: usize = 16;
    /// Keeps blocks from becoming so thin that packing the shared operand dominates.
    pub(crate) const MIN_BLOCK: usize = 64;
}

/// `PackedLinear` (`linear/packed.rs`), measured with MnistNet's first linear layer
/// (9216 -> 128) on the AMD EPYC with AVX-512.
pub(crate) mod packed_linear {
    /// From this many rows per thread the batch is split by rows (each thread reads the
    /// whole weight once); below it by input features (the weight read once in all), in
    /// [`FEATURE_PARTS_PER_THREAD`] parts per thread.
    pub(crate) const ROW_BATCH: usize = 8;
    /// See [`ROW_BATCH`].
    pub(crate) const FEATURE_PARTS_PER_THREAD: usize = 4;
    /// Below this many multiply-accumulates a call runs on the calling thread.
    pub(crate) const PARALLEL_MACS: usize = 1 << 17;
    /// From this many weights the tiles are transposed in parallel.
    pub(crate) const PARALLEL_REPACK: usize = 1 << 16;
    /// Outputs of the tiles the weight is transposed in (4 KiB each).
    pub(crate) const TILE_OUTPUTS: usize = 16;
    /// Input features of the tiles the weight is transposed in.
    pub(crate) const TILE_FEATURES: usize = 64;
    /// Input features per block: a block of the transposed weight (128 KiB for 128
    /// outputs) stays in L2 while every row of a thread's share reads it.
    pub(crate) const FEATURE_BLOCK: usize = 256;
}

/// The channel-skipping linear layer (`linear/skip.rs`), chosen for MnistNet's first linear
/// layer (9216 -> 128).
pub(crate) mod skip_linear {
    /// Up to this many rows the dot products should win: each weight row is read once from
    /// memory, in place, and reused from L1 for every row of the batch. A larger batch runs
    /// the tiles, which reuse each vector of weights for several rows and each vector of
    /// inputs for several weight rows (8 and 3 with AVX-512).
    ///
    /// Every set runs the tiles. CPUs without AVX-512 used to gather the active weights into
    /// a `PackedLinear` on every call and run its product; with the generic packed tiles
    /// that path, measured on two threads at batch 64 (MnistNet's first layer, half of it
    /// active), took 610, 790 and 1,775 µs (AVX-512, AVX2, portable) against the tiles' 520,
    /// 470 and 1,300, and at batch 16 410, 510 and 770 against 125, 160 and 360 (on one
    /// thread it was 5 to 12% faster at batch 64: the repacking's parallel iterator and
    /// fresh pages cost on two).
    pub(crate) const DOT_MAX_BATCH: usize = 4;
    /// Below this many multiply-accumulates a call runs on the calling thread.
    pub(crate) const PARALLEL_MACS: usize = 1 << 17;
    /// Active input features per block of the tiles.
    pub(crate) const FEATURE_BLOCK: usize = 512;
    /// The most active outputs whose gathered weight rows of a block (runs shorter than a
    /// vector) are kept for every tile of rows: 256 KiB of them.
    pub(crate) const GATHERED_OUTPUTS: usize = 128;
}

/// The memory-bound kernels (elementwise, activations, pooling, batch norm, losses).
pub(crate) mod memory_bound {
    /// Slices shorter than this many elements are processed on the calling thread: below
    /// ~32K elements a memory-bound pass takes a few microseconds, comparable to waking
    /// rayon's workers, so splitting it would not pay.
    pub const PARALLEL_THRESHOLD: usize = 1 << 15;
    /// Elements per rayon task above [`PARALLEL_THRESHOLD`] (also the block whose partial
    /// sum a reduction keeps): 16K elements (64 KiB per operand) make a task long enough
    /// (~10 µs) that rayon's per-task cost is noise, and short enough that 2 to 16 threads
    /// share a large array evenly.
    pub const TASK_LEN: usize = 1 << 14;
    /// Columns of the `[len, inner]` slab that one work item of an axis reduction covers:
    /// 256 columns (1 KiB per row) keep the tile's scratch rows in L1 while each row
    /// segment is still long enough for the hardware prefetcher.
    pub(crate) const REDUCE_TILE: usize = 256;
    /// Planes smaller than this go through the row path of the per-channel reductions:
    /// below 16 elements (and above all at `plane == 1`, an `[N, C]` matrix) a plane is
    /// shorter than a vector or two, so most of its loop would be the scalar tail; the row
    /// path vectorises across channels instead.
    pub(crate) const SMALL_PLANE: usize = 16;
}

/// `parallel::for_each_task`'s wait for its helpers.
pub(crate) mod parallel {
    /// Spins between checks before the waiting caller starts yielding its core.
    pub(crate) const SPINS_BEFORE_YIELD: u32 = 1 << 12;
    /// Yields before the waiting caller goes to sleep until the helpers are done.
    pub(crate) const YIELDS: u32 = 1 << 10;
}
