//! Builders for IDX inputs shared by the integration tests.

#![allow(dead_code)] // NOTE: each test binary uses its own part of this module.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;

/// A raw IDX file of unsigned bytes: magic `00 00 08 rank`, big-endian dimensions, data.
pub fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0, 0, 0x08, dims.len() as u8];
    for dim in dims {
        bytes.extend_from_slice(&dim.to_be_bytes());
    }
    bytes.extend_from_slice(data);
    bytes
}

/// `bytes` gzipped.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder
        .write_all(bytes)
        .expect("writing to a Vec cannot fail");
    encoder.finish().expect("writing to a Vec cannot fail")
}
