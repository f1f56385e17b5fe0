//! Saving and loading a model's parameters and buffers as safetensors files.
//!
//! A checkpoint holds every parameter and buffer of a module under its dotted path, the
//! names of a PyTorch `state_dict` (`conv1.weight`, `act1.slope`, `bn.running_mean`), as
//! little-endian `F32` tensors with the module's shapes. Any safetensors reader opens it
//! (for instance Python's `safetensors.numpy.load_file`).
//!
//! When the model describes its layers ([`Module::architecture`]: a
//! [`Sequential`] or a built-in model), the file's metadata also holds that description
//! (see [`architecture`](crate::architecture)), so that [`Sequential::load`] rebuilds the
//! network, pruned widths included, from the file alone. Files without it (PyTorch's,
//! older ones) still load into a model the caller builds, with [`load`].
//!
//! Files are written atomically: to a temporary file in the destination's directory, which
//! is flushed and synced before it is renamed over the destination, so a crash leaves
//! either the old checkpoint or the new one. Loading checks the whole file against the
//! model (every expected name present, no other name, dtype and shape of each) before it
//! changes anything, so a failed load leaves the model as it was.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use safetensors::{Dtype, SafeTensors, View};

use crate::architecture::{Architecture, CustomLayers, METADATA_KEY};
use crate::layers::Sequential;
use crate::module::Module;

/// Where a checkpoint's bytes came from or go to, as error messages name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A file.
    File(PathBuf),
    /// A byte buffer ([`to_bytes`], [`from_bytes`]).
    Bytes,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::Bytes => f.write_str("checkpoint bytes"),
        }
    }
}

/// What can go wrong saving or loading a checkpoint; every variant names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// Reading or writing the file failed.
    #[error("{origin}: {source}")]
    Io {
        /// The file.
        origin: Origin,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The bytes are not a well-formed safetensors file (truncated, corrupt, not one at
    /// all).
    #[error("{origin}: not a valid safetensors checkpoint: {reason}")]
    Malformed {
        /// The file.
        origin: Origin,
        /// What is wrong.
        reason: String,
    },
    /// The model has a tensor the file lacks.
    #[error("{origin}: the checkpoint has no tensor \"{name}\", which the model needs")]
    Missing {
        /// The file.
        origin: Origin,
        /// The tensor's dotted path.
        name: String,
    },
    /// The file has a tensor the model lacks.
    #[error("{origin}: the checkpoint has a tensor \"{name}\", which the model does not have")]
    Unexpected {
        /// The file.
        origin: Origin,
        /// The tensor's dotted path.
        name: String,
    },
    /// A tensor's element type is not `F32`.
    #[error("{origin}: tensor \"{name}\" holds {dtype} values, the model needs F32")]
    Dtype {
        /// The file.
        origin: Origin,
        /// The tensor's dotted path.
        name: String,
        /// The type the file declares.
        dtype: String,
    },
    /// A tensor's shape differs from the model's.
    #[error("{origin}: tensor \"{name}\" has shape {found:?}, the model needs {expected:?}")]
    Shape {
        /// The file.
        origin: Origin,
        /// The tensor's dotted path.
        name: String,
        /// The model's shape.
        expected: Vec<usize>,
        /// The file's shape.
        found: Vec<usize>,
    },
    /// Two of the model's tensors have the same path, so no file can tell them apart.
    #[error("{origin}: the model has two tensors named \"{name}\"")]
    DuplicateName {
        /// The file.
        origin: Origin,
        /// The repeated dotted path.
        name: String,
    },
    /// The file does not describe its network (written by PyTorch, by an older version,
    /// or from a module that is not a network of layers), so no network can be built from
    /// it alone.
    #[error(
        "{origin}: the checkpoint does not describe its network's layers; build the model in code and load the tensors into it with checkpoint::load"
    )]
    NoArchitecture {
        /// The file.
        origin: Origin,
    },
    /// The file's description of its network is malformed or cannot be built.
    #[error("{origin}: the checkpoint's architecture cannot be used: {reason}")]
    Architecture {
        /// The file.
        origin: Origin,
        /// What is wrong.
        reason: String,
    },
    /// The module's visitors disagree: its mutable visitors reach other tensors than its
    /// immutable ones report (a broken [`Module`] implementation).
    #[error("{origin}: the model's visitors disagree: {reason}")]
    Visitors {
        /// The file.
        origin: Origin,
        /// Which tensor differs.
        reason: String,
    },
    /// The safetensors encoder refused the model's tensors.
    #[error("{origin}: cannot encode the checkpoint: {reason}")]
    Encode {
        /// The file.
        origin: Origin,
        /// The encoder's message.
        reason: String,
    },
}

/// Writes every parameter and buffer of `model` to `path` as a safetensors file,
/// atomically (see the module documentation).
///
/// # Errors
/// [`CheckpointError::Io`] if the file cannot be written, [`CheckpointError::DuplicateName`]
/// if two tensors of the model share a path.
///
/// # Panics
/// If a module reports a buffer whose length is not the product of its shape.
pub fn save(model: &dyn Module, path: &Path) -> Result<(), CheckpointError> {
    let origin = Origin::File(path.to_path_buf());
    let bytes = encode(model, &origin)?;
    write_atomically(path, &bytes).map_err(|source| CheckpointError::Io { origin, source })
}

/// Sets every parameter and buffer of `model` from the safetensors file at `path`.
///
/// Parameters keep their identity (optimizer state stays attached) and frozen masks.
///
/// # Errors
/// [`CheckpointError::Io`] if the file cannot be read; [`CheckpointError::Malformed`] if it
/// is not a safetensors file; [`CheckpointError::Missing`], [`CheckpointError::Unexpected`],
/// [`CheckpointError::Dtype`] or [`CheckpointError::Shape`] naming the first tensor that
/// does not fit the model; [`CheckpointError::Visitors`] if the module's mutable visitors
/// do not reach the tensors its immutable ones report. On error the model is unchanged.
pub fn load(model: &mut dyn Module, path: &Path) -> Result<(), CheckpointError> {
    let origin = Origin::File(path.to_path_buf());
    let bytes = fs::read(path).map_err(|source| CheckpointError::Io {
        origin: origin.clone(),
        source,
    })?;
    decode_into(model, &bytes, &origin)
}

/// The checkpoint of `model` as safetensors bytes (what [`save`] writes).
///
/// # Errors
/// As [`save`], less the I/O errors.
///
/// # Panics
/// As [`save`].
pub fn to_bytes(model: &dyn Module) -> Result<Vec<u8>, CheckpointError> {
    encode(model, &Origin::Bytes)
}

/// Sets every parameter and buffer of `model` from safetensors bytes (what [`load`] does
/// with a file's contents).
///
/// # Errors
/// As [`load`], less the I/O errors.
pub fn from_bytes(model: &mut dyn Module, bytes: &[u8]) -> Result<(), CheckpointError> {
    decode_into(model, bytes, &Origin::Bytes)
}

/// Rebuilds the network saved at `path` from the architecture in its metadata and loads
/// its tensors: the way to reload a pruned network without knowing its widths. Custom
/// layers are rebuilt by `custom`.
///
/// # Errors
/// As [`load`]; [`CheckpointError::NoArchitecture`] if the file does not describe its
/// network, [`CheckpointError::Architecture`] if the description is malformed or names a
/// custom kind `custom` does not know.
pub fn load_network(path: &Path, custom: &CustomLayers) -> Result<Sequential, CheckpointError> {
    let origin = Origin::File(path.to_path_buf());
    let bytes = fs::read(path).map_err(|source| CheckpointError::Io {
        origin: origin.clone(),
        source,
    })?;
    decode_network(&bytes, custom, &origin)
}

/// [`load_network`] from a checkpoint's bytes.
///
/// # Errors
/// As [`load_network`], less the I/O errors.
pub fn network_from_bytes(
    bytes: &[u8],
    custom: &CustomLayers,
) -> Result<Sequential, CheckpointError> {
    decode_network(bytes, custom, &Origin::Bytes)
}

fn decode_network(
    bytes: &[u8],
    custom: &CustomLayers,
    origin: &Origin,
) -> Result<Sequential, CheckpointError> {
    let malformed = |reason: String| CheckpointError::Malformed {
        origin: origin.clone(),
        reason,
    };
    let architecture_error = |reason: String| CheckpointError::Architecture {
        origin: origin.clone(),
        reason,
    };
    check_offsets_within_file(bytes).map_err(malformed)?;
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| malformed(e.to_string()))?;
    let description = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get(METADATA_KEY))
        .ok_or_else(|| CheckpointError::NoArchitecture {
            origin: origin.clone(),
        })?;
    let architecture: Architecture =
        serde_json::from_str(description).map_err(|e| architecture_error(e.to_string()))?;
    // NOTE: the description is untrusted: every tensor of its built-in layers must be in
    // the file with its shape before anything is allocated, so that building the network
    // never allocates more than the file holds.
    let file = SafeTensors::deserialize(bytes).map_err(|e| malformed(e.to_string()))?;
    let mut mismatch = None;
    let fits = architecture.visit_tensors(&mut |name, shape| {
        if mismatch.is_some() {
            return;
        }
        mismatch = match file.tensor(name) {
            Err(_) => Some(CheckpointError::Missing {
                origin: origin.clone(),
                name: name.to_string(),
            }),
            Ok(view) if view.shape() != shape => Some(CheckpointError::Shape {
                origin: origin.clone(),
                name: name.to_string(),
                expected: shape.to_vec(),
                found: view.shape().to_vec(),
            }),
            Ok(_) => None,
        };
    });
    if fits.is_none() {
        return Err(architecture_error("a layer's size overflows".into()));
    }
    if let Some(e) = mismatch {
        return Err(e);
    }
    let mut net = architecture
        .build(custom)
        .map_err(|e| architecture_error(e.to_string()))?;
    decode_into(&mut net, bytes, origin)?;
    Ok(net)
}

/// One tensor to write.
struct Entry {
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl View for &Entry {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }

    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

fn le_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn encode(model: &dyn Module, origin: &Origin) -> Result<Vec<u8>, CheckpointError> {
    let mut entries: Vec<(String, Entry)> = Vec::new();
    model.visit_params("", &mut |name, param| {
        let (shape, values) = (param.shape().to_vec(), param.tensor().as_slice());
        entries.push((
            name.to_owned(),
            Entry {
                shape,
                bytes: le_bytes(values),
            },
        ));
    });
    model.visit_buffers("", &mut |name, shape, values| {
        assert_eq!(
            shape.iter().product::<usize>(),
            values.len(),
            "buffer {name}: shape {shape:?} does not hold its {} values",
            values.len()
        );
        let entry = Entry {
            shape: shape.to_vec(),
            bytes: le_bytes(values),
        };
        entries.push((name.to_owned(), entry));
    });
    let mut seen = HashSet::new();
    if let Some((name, _)) = entries.iter().find(|(name, _)| !seen.insert(name.as_str())) {
        return Err(CheckpointError::DuplicateName {
            origin: origin.clone(),
            name: name.clone(),
        });
    }
    let views = entries.iter().map(|(name, entry)| (name.as_str(), entry));
    let metadata = match model.architecture() {
        Some(architecture) => {
            let json =
                serde_json::to_string(&architecture).map_err(|e| CheckpointError::Encode {
                    origin: origin.clone(),
                    reason: e.to_string(),
                })?;
            Some(HashMap::from([(METADATA_KEY.to_string(), json)]))
        }
        None => None,
    };
    safetensors::serialize(views, metadata).map_err(|e| CheckpointError::Encode {
        origin: origin.clone(),
        reason: e.to_string(),
    })
}

/// A tensor the model expects.
struct Expected {
    name: String,
    shape: Vec<usize>,
}

fn expected_tensors(model: &dyn Module) -> Vec<Expected> {
    let mut expected = Vec::new();
    model.visit_params("", &mut |name, param| {
        expected.push(Expected {
            name: name.to_owned(),
            shape: param.shape().to_vec(),
        });
    });
    model.visit_buffers("", &mut |name, shape, _| {
        expected.push(Expected {
            name: name.to_owned(),
            shape: shape.to_vec(),
        });
    });
    expected
}

fn decode_into(
    model: &mut dyn Module,
    bytes: &[u8],
    origin: &Origin,
) -> Result<(), CheckpointError> {
    let malformed = |reason: String| CheckpointError::Malformed {
        origin: origin.clone(),
        reason,
    };
    check_offsets_within_file(bytes).map_err(malformed)?;
    let file = SafeTensors::deserialize(bytes).map_err(|e| malformed(e.to_string()))?;
    let expected = expected_tensors(model);

    // NOTE: everything is decoded and checked before the model changes, so an error
    // cannot leave it half loaded. The decoded values are the file's own bytes, so this
    // never allocates more than the file holds.
    let mut values: HashMap<&str, Vec<f32>> = HashMap::with_capacity(expected.len());
    for Expected { name, shape } in &expected {
        let Ok(view) = file.tensor(name) else {
            return Err(CheckpointError::Missing {
                origin: origin.clone(),
                name: name.clone(),
            });
        };
        if view.dtype() != Dtype::F32 {
            return Err(CheckpointError::Dtype {
                origin: origin.clone(),
                name: name.clone(),
                dtype: format!("{:?}", view.dtype()),
            });
        }
        if view.shape() != shape.as_slice() {
            return Err(CheckpointError::Shape {
                origin: origin.clone(),
                name: name.clone(),
                expected: shape.clone(),
                found: view.shape().to_vec(),
            });
        }
        let data = view.data().chunks_exact(4);
        let floats = data
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        values.insert(name, floats);
    }
    let mut names = file.names();
    names.sort_unstable();
    if let Some(name) = names.into_iter().find(|name| !values.contains_key(name)) {
        return Err(CheckpointError::Unexpected {
            origin: origin.clone(),
            name: name.to_owned(),
        });
    }

    check_mutable_visitors(model, &values).map_err(|reason| CheckpointError::Visitors {
        origin: origin.clone(),
        reason,
    })?;
    model.visit_params_mut("", &mut |name, param| {
        param.update(|data| data.copy_from_slice(&values[name]));
    });
    model.visit_buffers_mut("", &mut |name, data| {
        data.copy_from_slice(&values[name]);
    });
    Ok(())
}

/// Checks, changing nothing, that the mutable visitors reach exactly the tensors in
/// `values` (which the immutable visitors reported), each with its length.
fn check_mutable_visitors(
    model: &mut dyn Module,
    values: &HashMap<&str, Vec<f32>>,
) -> Result<(), String> {
    let mut reached = Vec::new();
    model.visit_params_mut("", &mut |name, param| {
        reached.push((name.to_string(), param.tensor().numel()));
    });
    model.visit_buffers_mut("", &mut |name, data| {
        reached.push((name.to_string(), data.len()));
    });
    let mut seen = HashSet::new();
    for (name, len) in &reached {
        match values.get(name.as_str()) {
            None => {
                return Err(format!(
                    "\"{name}\" is reached by the mutable visitors but not reported by the immutable ones"
                ));
            }
            Some(v) if v.len() != *len => {
                return Err(format!(
                    "\"{name}\" holds {len} values but was reported with {}",
                    v.len()
                ));
            }
            Some(_) if !seen.insert(name.as_str()) => {
                return Err(format!("\"{name}\" is reached twice"));
            }
            Some(_) => {}
        }
    }
    if let Some(name) = values.keys().find(|name| !seen.contains(**name)) {
        return Err(format!(
            "\"{name}\" is reported by the immutable visitors but not reached by the mutable ones"
        ));
    }
    Ok(())
}

/// Checks that no tensor's data offsets in the header point past the end of the file.
///
/// NOTE: the safetensors crate adds the header length and the declared data length before
/// comparing their sum with the file's length; a crafted header whose tensors declare
/// nearly `usize::MAX` bytes makes that addition overflow, which panics wherever overflow
/// checks are on (debug and test builds, fuzzing). With every end offset at most the data
/// length, the sum cannot overflow. The header itself lies within the file, so parsing it
/// allocates in proportion to the file.
fn check_offsets_within_file(bytes: &[u8]) -> Result<(), String> {
    // Too short or inconsistent headers are left to the crate's own checks.
    let Some((len_bytes, rest)) = bytes.split_first_chunk::<8>() else {
        return Ok(());
    };
    let Some(header_len) = usize::try_from(u64::from_le_bytes(*len_bytes))
        .ok()
        .filter(|&n| n <= rest.len())
    else {
        return Ok(());
    };
    let (header, data) = rest.split_at(header_len);
    let Ok(serde_json::Value::Object(entries)) = serde_json::from_slice(header) else {
        return Ok(());
    };
    for (name, entry) in &entries {
        let end = entry
            .get("data_offsets")
            .and_then(|offsets| offsets.get(1))
            .and_then(serde_json::Value::as_u64);
        if let Some(end) = end
            && end > data.len() as u64
        {
            return Err(format!(
                "tensor \"{name}\" ends at byte {end} of the data, which holds {} bytes",
                data.len()
            ));
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` through a synced temporary file in the same directory that is
/// then renamed over `path` (a rename within one file system is atomic).
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let file_name = path.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "the path does not name a file")
    })?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let (temp_path, mut temp) = create_temporary(dir, &file_name.to_string_lossy())?;
    let written = (|| {
        temp.write_all(bytes)?;
        temp.flush()?;
        temp.sync_all()?;
        drop(temp);
        fs::rename(&temp_path, path)
    })();
    if let Err(e) = written {
        // NOTE: the write error is what the caller needs; a failure to clean up the
        // temporary file as well adds nothing it could act on.
        let _ = fs::remove_file(&temp_path);
        return Err(e);
    }
    sync_directory(dir)
}

/// Creates a new, uniquely named file `.<name>.<pid>.<n>.tmp` in `dir`.
fn create_temporary(dir: &Path, name: &str) -> io::Result<(PathBuf, File)> {
    // NOTE: a process-wide counter only makes names unique between threads; `create_new`
    // makes a leftover file of a crashed process a reason to try the next name instead
    // of overwriting it.
    static NEXT: AtomicU64 = AtomicU64::new(0);
    const ATTEMPTS: usize = 64;
    let mut last_error = None;
    for _ in 0..ATTEMPTS {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let temp_path = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp_path)
        {
            Ok(file) => return Ok((temp_path, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_error = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_error.expect("internal: at least one attempt"))
}

/// Makes a rename in `dir` durable (on Unix a rename is recorded in the directory, which
/// has to be synced itself).
fn sync_directory(dir: &Path) -> io::Result<()> {
    if cfg!(unix) {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}
