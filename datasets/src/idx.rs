//! The IDX file format (MNIST's), raw or gzipped.
//!
//! Layout, all integers big-endian:
//!
//! | bytes | content |
//! |---|---|
//! | 0..2 | `00 00` |
//! | 2 | data type, `0x08` = unsigned byte (the only one supported here) |
//! | 3 | rank `r`, 1..=4 |
//! | 4..4+4r | the `r` dimensions, `u32` each |
//! | 4+4r.. | `d0 * d1 * ... * d(r-1)` elements, row-major (last dimension fastest) |
//!
//! Nothing is allocated for the data before the declared size has been checked: against the
//! bytes present for a raw input, against the most a deflate stream of that length can
//! expand to for a gzipped one. Decompression reads at most the declared size plus a small
//! margin, so a stream that decompresses to more than it declares is an error, not an
//! allocation.

use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::path::Path;

use byteorder::{BigEndian, ByteOrder};
use flate2::bufread::MultiGzDecoder;

use crate::error::{DatasetError, Origin};

/// Length of the magic number: two zero bytes, the data type, the rank.
const MAGIC_LEN: usize = 4;
/// Data-type code of unsigned bytes.
const UNSIGNED_BYTE: u8 = 0x08;
/// Largest rank accepted: enough for images (`[n, rows, cols]`) with a channel axis.
const MAX_RANK: usize = 4;
/// First two bytes of every gzip member (RFC 1952).
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// Deflate's largest expansion: a 258-byte match costs at least 2 bits, so one compressed
/// byte yields at most 4 * 258 bytes.
const MAX_DEFLATE_RATIO: usize = 1032;
/// Bytes past the declared size that a gzip stream may decompress to before decompression
/// stops; enough to report how much trailing data there is in any plausible file.
const GZIP_TRAILING_MARGIN: usize = 4096;

/// An n-dimensional array of unsigned bytes read from an IDX input.
///
/// `data` is row-major with the last dimension fastest, and
/// `data.len() == dims.iter().product()`.
#[derive(Clone, PartialEq, Eq)]
pub struct IdxArray {
    origin: Origin,
    dims: Vec<usize>,
    data: Vec<u8>,
}

/// What the header declares, checked: rank in 1..=4, sizes that fit in `usize`.
struct Header {
    dims: Vec<usize>,
    header_len: usize,
    data_len: usize,
}

impl IdxArray {
    /// Parses an IDX input held in memory, gzipped (detected by the gzip magic bytes
    /// `1f 8b`) or raw. `origin` names the input in error messages.
    ///
    /// # Errors
    /// Every malformation is a [`DatasetError`] naming what was expected and what was found:
    /// [`Empty`](DatasetError::Empty), [`TruncatedHeader`](DatasetError::TruncatedHeader),
    /// [`BadMagic`](DatasetError::BadMagic),
    /// [`UnsupportedDataType`](DatasetError::UnsupportedDataType),
    /// [`BadRank`](DatasetError::BadRank), [`SizeOverflow`](DatasetError::SizeOverflow),
    /// [`TruncatedData`](DatasetError::TruncatedData),
    /// [`TrailingData`](DatasetError::TrailingData), and for gzip
    /// [`Gzip`](DatasetError::Gzip),
    /// [`DeclaredSizeExceedsCompressed`](DatasetError::DeclaredSizeExceedsCompressed),
    /// [`DecompressedTooLarge`](DatasetError::DecompressedTooLarge).
    pub fn parse(bytes: &[u8], origin: Origin) -> Result<Self, DatasetError> {
        if bytes.starts_with(&GZIP_MAGIC) {
            parse_gzip(bytes, origin)
        } else {
            parse_raw(bytes, origin)
        }
    }

    /// Reads `reader` to its end, then parses what it gave as [`IdxArray::parse`] does.
    ///
    /// Memory held while reading is what the reader actually yields, whatever the header
    /// declares.
    ///
    /// # Errors
    /// [`DatasetError::Io`] when the reader fails, otherwise as [`IdxArray::parse`].
    pub fn read(mut reader: impl Read, origin: Origin) -> Result<Self, DatasetError> {
        let mut bytes = Vec::new();
        match reader.read_to_end(&mut bytes) {
            Ok(_) => Self::parse(&bytes, origin),
            Err(source) => Err(DatasetError::Io {
                file: origin,
                source,
            }),
        }
    }

    /// Reads and parses the IDX file at `path` (gzipped or raw, whatever its name says).
    ///
    /// # Errors
    /// [`DatasetError::Io`] when the file cannot be read, otherwise as [`IdxArray::parse`],
    /// with the path in every message.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, DatasetError> {
        let path = path.as_ref();
        match fs::read(path) {
            Ok(bytes) => Self::parse(&bytes, Origin::file(path)),
            Err(source) => Err(DatasetError::Io {
                file: Origin::file(path),
                source,
            }),
        }
    }

    /// Where the array was read from.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// The dimensions, outermost first.
    pub fn dims(&self) -> &[usize] {
        &self.dims
    }

    /// The elements, row-major.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The elements, row-major, without copying.
    pub fn into_data(self) -> Vec<u8> {
        self.data
    }
}

impl fmt::Debug for IdxArray {
    // NOTE: a summary; printing tens of megabytes of elements helps nobody.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdxArray")
            .field("origin", &self.origin)
            .field("dims", &self.dims)
            .field("data_len", &self.data.len())
            .finish_non_exhaustive()
    }
}

/// Parses an uncompressed IDX input.
fn parse_raw(bytes: &[u8], origin: Origin) -> Result<IdxArray, DatasetError> {
    let mut rest = bytes;
    let header = read_header(&mut rest, &origin, |source, file| DatasetError::Io {
        file,
        source,
    })?;
    let found = rest.len();
    if found < header.data_len {
        return Err(DatasetError::TruncatedData {
            file: origin,
            dims: header.dims,
            offset: bytes.len(),
            expected: header.data_len,
            found,
        });
    }
    if found > header.data_len {
        return Err(DatasetError::TrailingData {
            file: origin,
            offset: header.header_len + header.data_len,
            expected: header.data_len,
            dims: header.dims,
            extra: found - header.data_len,
        });
    }
    Ok(IdxArray {
        origin,
        dims: header.dims,
        data: rest.to_vec(),
    })
}

/// Parses a gzipped IDX input (one or more gzip members, as RFC 1952 allows).
fn parse_gzip(bytes: &[u8], origin: Origin) -> Result<IdxArray, DatasetError> {
    let gzip_error = |source, file| DatasetError::Gzip { file, source };
    let mut decoder = MultiGzDecoder::new(bytes);
    let header = read_header(&mut decoder, &origin, gzip_error)?;

    let declared = header.header_len.saturating_add(header.data_len);
    let max_possible = bytes.len().saturating_mul(MAX_DEFLATE_RATIO);
    if declared > max_possible {
        return Err(DatasetError::DeclaredSizeExceedsCompressed {
            file: origin,
            dims: header.dims,
            declared: header.data_len,
            compressed: bytes.len(),
            max_possible,
        });
    }

    // NOTE: reserving the declared size exactly is bounded by the ratio check above, and
    // avoids the copies of a growing buffer for the 47 MB MNIST training images.
    let mut data = Vec::with_capacity(header.data_len);
    // NOTE: usize -> u64 is lossless on every platform Rust supports.
    let declared_data = header.data_len as u64;
    if let Err(source) = (&mut decoder).take(declared_data).read_to_end(&mut data) {
        return Err(gzip_error(source, origin));
    }
    if data.len() < header.data_len {
        return Err(DatasetError::TruncatedData {
            file: origin,
            offset: header.header_len + data.len(),
            expected: header.data_len,
            found: data.len(),
            dims: header.dims,
        });
    }

    // NOTE: reading on to the end of the stream is also what makes the decoder verify the
    // CRC-32 and length in each gzip trailer.
    let mut extra = 0usize;
    let mut scratch = [0u8; 512];
    loop {
        match decoder.read(&mut scratch) {
            Ok(0) => break,
            Ok(n) => extra += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => return Err(gzip_error(source, origin)),
        }
        if extra > GZIP_TRAILING_MARGIN {
            return Err(DatasetError::DecompressedTooLarge {
                file: origin,
                dims: header.dims,
                expected: declared,
                limit: declared.saturating_add(extra),
            });
        }
    }
    if extra > 0 {
        return Err(DatasetError::TrailingData {
            file: origin,
            offset: declared,
            expected: header.data_len,
            dims: header.dims,
            extra,
        });
    }
    Ok(IdxArray {
        origin,
        dims: header.dims,
        data,
    })
}

/// Reads and validates the magic number and dimensions, leaving `reader` at the first data
/// byte. `io_error` turns a failure of the reader into the error fitting its kind.
fn read_header<R: Read>(
    reader: &mut R,
    origin: &Origin,
    io_error: impl Fn(io::Error, Origin) -> DatasetError,
) -> Result<Header, DatasetError> {
    let file = || origin.clone();

    let mut magic = [0u8; MAGIC_LEN];
    let found = read_full(reader, &mut magic).map_err(|e| io_error(e, file()))?;
    if found == 0 {
        return Err(DatasetError::Empty { file: file() });
    }
    if found < MAGIC_LEN {
        return Err(DatasetError::TruncatedHeader {
            file: file(),
            expected: MAGIC_LEN,
            found,
        });
    }
    if magic[..2] != [0, 0] {
        return Err(DatasetError::BadMagic {
            file: file(),
            found: [magic[0], magic[1]],
        });
    }
    if magic[2] != UNSIGNED_BYTE {
        return Err(DatasetError::UnsupportedDataType {
            file: file(),
            code: magic[2],
        });
    }
    let rank = usize::from(magic[3]);
    if !(1..=MAX_RANK).contains(&rank) {
        return Err(DatasetError::BadRank {
            file: file(),
            rank: magic[3],
        });
    }

    let mut dim_bytes = [0u8; 4 * MAX_RANK];
    let dim_bytes = &mut dim_bytes[..4 * rank];
    let header_len = MAGIC_LEN + dim_bytes.len();
    let found = read_full(reader, dim_bytes).map_err(|e| io_error(e, file()))?;
    if found < dim_bytes.len() {
        return Err(DatasetError::TruncatedHeader {
            file: file(),
            expected: header_len,
            found: MAGIC_LEN + found,
        });
    }

    let declared: Vec<u32> = dim_bytes.chunks_exact(4).map(BigEndian::read_u32).collect();
    let dims: Option<Vec<usize>> = declared.iter().map(|&d| usize::try_from(d).ok()).collect();
    let data_len = dims.as_ref().and_then(|dims| {
        dims.iter()
            .try_fold(1usize, |product, &d| product.checked_mul(d))
            .filter(|len| len.checked_add(header_len).is_some())
    });
    match (dims, data_len) {
        (Some(dims), Some(data_len)) => Ok(Header {
            dims,
            header_len,
            data_len,
        }),
        _ => Err(DatasetError::SizeOverflow {
            file: file(),
            dims: declared,
        }),
    }
}

/// Fills `buf` from `reader` until it is full or the reader ends; returns the bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}
