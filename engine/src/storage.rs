//! Recycled tensor storage.
//!
//! A training step allocates the same activation- and gradient-sized buffers every time.
//! Handing them back to the system allocator and asking for them again costs page faults
//! and zeroing: about a fifth of an MnistNet training step. So the buffers of dropped
//! tensors (and of spent gradients) are kept by length in one process-wide pool, up to a
//! limit, and handed out again to the next operation that needs that many elements.
//!
//! The pool never holds more than [`pool_limit`] bytes (512 MiB unless
//! [`set_pool_limit`] says otherwise); what does not fit goes back to the allocator.
//! [`release_pool`] empties it, for a program that is done training and wants its memory
//! back.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Buffers shorter than this are left to the allocator, whose small-size caches are fast.
const MIN_POOLED: usize = 4096;
const DEFAULT_LIMIT: usize = 512 << 20;

struct Pool {
    free: BTreeMap<usize, Vec<Vec<f32>>>,
    bytes: usize,
    limit: usize,
}

static POOL: Mutex<Pool> = Mutex::new(Pool {
    free: BTreeMap::new(),
    bytes: 0,
    limit: DEFAULT_LIMIT,
});

/// Whether recycled buffers are filled with NaN before they are handed out for overwriting.
static POISON: AtomicBool = AtomicBool::new(false);

fn pool() -> std::sync::MutexGuard<'static, Pool> {
    // NOTE: the pool holds no invariant a panicking holder could break halfway.
    POOL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn bytes_of(buffer: &Vec<f32>) -> usize {
    buffer.capacity() * size_of::<f32>()
}

fn take(len: usize) -> Option<Vec<f32>> {
    if len < MIN_POOLED {
        return None;
    }
    let mut pool = pool();
    let buffers = pool.free.get_mut(&len)?;
    let buffer = buffers.pop()?;
    if buffers.is_empty() {
        pool.free.remove(&len);
    }
    pool.bytes -= bytes_of(&buffer);
    Some(buffer)
}

/// A buffer of `len` elements whose contents are unspecified: the caller writes every
/// element before anything reads it.
pub(crate) fn for_overwrite(len: usize) -> Vec<f32> {
    match take(len) {
        Some(mut buffer) => {
            if POISON.load(Ordering::Relaxed) {
                buffer.fill(f32::NAN);
            }
            buffer
        }
        None => vec![0.0; len],
    }
}

/// A buffer holding a copy of `values`.
pub(crate) fn copy_of(values: &[f32]) -> Vec<f32> {
    let mut buffer = for_overwrite(values.len());
    buffer.copy_from_slice(values);
    buffer
}

/// A buffer of `len` zeros.
pub(crate) fn zeroed(len: usize) -> Vec<f32> {
    match take(len) {
        Some(mut buffer) => {
            buffer.fill(0.0);
            buffer
        }
        None => vec![0.0; len],
    }
}

/// Gives `buffer` back for reuse, or to the allocator if it is small or the pool is full.
pub(crate) fn recycle(buffer: Vec<f32>) {
    if buffer.len() < MIN_POOLED {
        return;
    }
    let mut pool = pool();
    let bytes = bytes_of(&buffer);
    if pool.bytes + bytes > pool.limit {
        return;
    }
    pool.bytes += bytes;
    pool.free.entry(buffer.len()).or_default().push(buffer);
}

/// Sets the most bytes the pool of recycled tensor buffers may hold, releasing buffers
/// until it holds no more. 0 turns recycling off.
pub fn set_pool_limit(bytes: usize) {
    let mut pool = pool();
    pool.limit = bytes;
    while pool.bytes > bytes {
        let Some(mut entry) = pool.free.last_entry() else {
            break;
        };
        let buffer = entry.get_mut().pop();
        if entry.get().is_empty() {
            entry.remove();
        }
        if let Some(buffer) = buffer {
            pool.bytes -= bytes_of(&buffer);
        }
    }
}

/// The most bytes the pool of recycled tensor buffers may hold.
pub fn pool_limit() -> usize {
    pool().limit
}

/// The bytes the pool of recycled tensor buffers holds now.
pub fn pooled_bytes() -> usize {
    pool().bytes
}

/// Returns every recycled buffer to the allocator (the limit stays).
pub fn release_pool() {
    let mut pool = pool();
    pool.free.clear();
    pool.bytes = 0;
}

/// Makes every recycled buffer handed out for overwriting hold NaN first, so that a test can
/// show that no operation reads an element of its output it has not written.
#[doc(hidden)]
pub fn poison_recycled_buffers(on: bool) {
    POISON.store(on, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    // NOTE: one test, because the pool is process-wide and tests run in parallel.
    #[test]
    fn recycles_by_length_within_the_limit() {
        let len = MIN_POOLED + 17;
        recycle(vec![1.0; len]);
        assert!(pooled_bytes() >= len * 4);
        let zeros = zeroed(len);
        assert_eq!(zeros.len(), len);
        assert!(zeros.iter().all(|&v| v == 0.0));
        recycle(zeros);
        poison_recycled_buffers(true);
        let reused = for_overwrite(len);
        poison_recycled_buffers(false);
        assert!(reused.iter().all(|v| v.is_nan()));
        let limit = pool_limit();
        set_pool_limit(0);
        recycle(reused);
        assert_eq!(pooled_bytes(), 0);
        set_pool_limit(limit);
    }
}
