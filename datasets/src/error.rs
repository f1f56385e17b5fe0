//! The one error type of the crate.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Where the bytes being parsed came from: a file, or memory (no name known).
///
/// Displayed as `` `path` `` for a file and `in-memory input` otherwise, so every error
/// message can say which input was wrong.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Origin(Option<PathBuf>);

impl Origin {
    /// An input read from the file at `path`.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Origin(Some(path.into()))
    }

    /// An input handed over as bytes or a reader, with no file name.
    pub fn memory() -> Self {
        Origin(None)
    }

    /// The file's path, when the input came from a file.
    pub fn path(&self) -> Option<&Path> {
        self.0.as_deref()
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(path) => write!(f, "`{}`", path.display()),
            None => f.write_str("in-memory input"),
        }
    }
}

/// Everything that can go wrong while reading, assembling or converting a dataset.
///
/// Byte offsets count from the start of the IDX content (after decompression when the file
/// is gzipped).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DatasetError {
    /// The operating system failed to open or read a file.
    #[error("cannot read {file}: {source}")]
    Io {
        /// The file being read.
        file: Origin,
        /// What the operating system reported.
        #[source]
        source: io::Error,
    },

    /// The input holds no byte at all.
    #[error("{file} is empty: an IDX file starts with a 4-byte magic number")]
    Empty {
        /// The empty input.
        file: Origin,
    },

    /// The input ends inside the header (magic number and dimensions).
    #[error("{file}: IDX header truncated: expected {expected} bytes, found {found}")]
    TruncatedHeader {
        /// The truncated input.
        file: Origin,
        /// Header length implied by what was read so far (4, or 4 + 4 * rank).
        expected: usize,
        /// Bytes present.
        found: usize,
    },

    /// The first two bytes are not the two zero bytes every IDX file starts with.
    #[error("{file}: bad IDX magic number at byte 0: expected 00 00, found {:02x} {:02x}", found[0], found[1])]
    BadMagic {
        /// The input.
        file: Origin,
        /// The two bytes found.
        found: [u8; 2],
    },

    /// The data-type byte (byte 2) names a type other than unsigned byte (0x08).
    #[error(
        "{file}: unsupported IDX data type at byte 2: expected 0x08 (unsigned byte), found {code:#04x} ({})",
        idx_type_name(*code)
    )]
    UnsupportedDataType {
        /// The input.
        file: Origin,
        /// The data-type code found.
        code: u8,
    },

    /// The rank byte (byte 3) is 0 or above 4.
    #[error("{file}: unsupported IDX rank at byte 3: expected 1 to 4 dimensions, found {rank}")]
    BadRank {
        /// The input.
        file: Origin,
        /// The rank found.
        rank: u8,
    },

    /// The product of the dimensions does not fit in `usize`.
    #[error("{file}: IDX dimensions {dims:?} multiply to more elements than usize can count")]
    SizeOverflow {
        /// The input.
        file: Origin,
        /// The dimensions as declared in the header.
        dims: Vec<u32>,
    },

    /// Fewer data bytes follow the header than the dimensions declare.
    #[error(
        "{file}: IDX data truncated at byte {offset}: dimensions {dims:?} need {expected} bytes after the header, found {found}"
    )]
    TruncatedData {
        /// The input.
        file: Origin,
        /// The declared dimensions.
        dims: Vec<usize>,
        /// Offset where the data ran out.
        offset: usize,
        /// Data bytes the dimensions declare.
        expected: usize,
        /// Data bytes present.
        found: usize,
    },

    /// More bytes follow the data than the dimensions declare.
    #[error(
        "{file}: {extra} unexpected bytes at byte {offset}, after the {expected} data bytes that dimensions {dims:?} declare"
    )]
    TrailingData {
        /// The input.
        file: Origin,
        /// The declared dimensions.
        dims: Vec<usize>,
        /// Offset of the first unexpected byte.
        offset: usize,
        /// Data bytes the dimensions declare.
        expected: usize,
        /// Unexpected bytes found after them.
        extra: usize,
    },

    /// The gzip stream is corrupt (bad header, bad deflate data, bad checksum, cut short).
    #[error("{file}: corrupt gzip stream: {source}")]
    Gzip {
        /// The input.
        file: Origin,
        /// What the decoder reported.
        #[source]
        source: io::Error,
    },

    /// A gzipped input declares more data than its compressed size could possibly hold.
    ///
    /// Deflate expands at most about 1032 times, so a small file declaring a huge size is
    /// rejected before any allocation (the "gzip bomb" case).
    #[error(
        "{file}: IDX dimensions {dims:?} declare {declared} bytes, but {compressed} gzip bytes can hold at most {max_possible}"
    )]
    DeclaredSizeExceedsCompressed {
        /// The input.
        file: Origin,
        /// The declared dimensions.
        dims: Vec<usize>,
        /// Bytes the dimensions declare.
        declared: usize,
        /// Size of the compressed input.
        compressed: usize,
        /// Largest decompressed size that many compressed bytes can produce.
        max_possible: usize,
    },

    /// A gzipped input decompresses to far more than its header declares; decompression
    /// stopped at `limit` bytes.
    #[error(
        "{file}: gzip content runs past the declared size: IDX header plus dimensions {dims:?} need {expected} bytes, decompression stopped after {limit}"
    )]
    DecompressedTooLarge {
        /// The input.
        file: Origin,
        /// The declared dimensions.
        dims: Vec<usize>,
        /// Header plus data bytes declared.
        expected: usize,
        /// Bytes decompressed before giving up.
        limit: usize,
    },

    /// An IDX array does not have the shape its role needs (rank-3 images, rank-1 labels).
    #[error("{file}: expected {expected}, found dimensions {found:?}")]
    UnexpectedShape {
        /// The input.
        file: Origin,
        /// The shape wanted, in words.
        expected: &'static str,
        /// The dimensions found.
        found: Vec<usize>,
    },

    /// The images and labels of a dataset disagree on the number of examples.
    #[error("{images_file} holds {images} images but {labels_file} holds {labels} labels")]
    CountMismatch {
        /// Where the images came from.
        images_file: Origin,
        /// Number of images.
        images: usize,
        /// Where the labels came from.
        labels_file: Origin,
        /// Number of labels.
        labels: usize,
    },

    /// A label is not below the dataset's class count (a corrupt label file, or a class count
    /// that does not fit the dataset).
    #[error("{file}: label {label} at index {index} is out of range for {classes} classes")]
    LabelOutOfRange {
        /// Where the labels came from (memory for [`ImageDataset::new`](crate::ImageDataset::new)).
        file: Origin,
        /// Position of the first label out of range.
        index: usize,
        /// The label found there.
        label: u8,
        /// The class count labels must stay below.
        classes: usize,
    },

    /// Buffers handed to [`ImageDataset::new`](crate::ImageDataset::new) disagree with the
    /// stated sizes.
    #[error(
        "inconsistent dataset buffers: {images_len} image bytes and {labels_len} labels do not make images of {rows}x{cols}"
    )]
    InconsistentBuffers {
        /// Length of the image buffer.
        images_len: usize,
        /// Length of the label buffer.
        labels_len: usize,
        /// Rows per image.
        rows: usize,
        /// Columns per image.
        cols: usize,
    },

    /// A dataset directory holds none of the accepted names for one of its files.
    #[error("no {what} file in `{}`: tried {tried:?}", dir.display())]
    MissingFile {
        /// The directory searched.
        dir: PathBuf,
        /// Which file was looked for ("training images", ...).
        what: &'static str,
        /// File names tried, in order.
        tried: Vec<String>,
    },

    /// A picture file could not be decoded.
    #[error("cannot decode picture {file}: {source}")]
    Picture {
        /// The picture.
        file: Origin,
        /// What the decoder reported.
        #[source]
        source: image::ImageError,
    },

    /// A picture decoded to zero pixels.
    #[error("picture {file} has no pixels ({width}x{height})")]
    EmptyPicture {
        /// The picture.
        file: Origin,
        /// Decoded width.
        width: u32,
        /// Decoded height.
        height: u32,
    },
}

/// The IDX format's name for a data-type code, for error messages.
fn idx_type_name(code: u8) -> &'static str {
    match code {
        0x08 => "unsigned byte",
        0x09 => "signed byte",
        0x0B => "16-bit integer",
        0x0C => "32-bit integer",
        0x0D => "32-bit float",
        0x0E => "64-bit float",
        _ => "not an IDX type",
    }
}
