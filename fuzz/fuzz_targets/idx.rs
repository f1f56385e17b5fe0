//! Arbitrary bytes into the IDX parser, as given (raw, or gzip when they start with the gzip
//! magic) and wrapped in a well-formed gzip stream: an error or a consistent array, never a
//! panic, an abort or an allocation beyond the declared size.

#![no_main]

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use libfuzzer_sys::fuzz_target;
use rotor_datasets::{IdxArray, Origin};

fuzz_target!(|bytes: &[u8]| {
    check(bytes);
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder
        .write_all(bytes)
        .expect("writing to a Vec cannot fail");
    check(&encoder.finish().expect("writing to a Vec cannot fail"));
});

fn check(bytes: &[u8]) {
    match IdxArray::parse(bytes, Origin::memory()) {
        Ok(array) => {
            assert!((1..=4).contains(&array.dims().len()));
            assert_eq!(array.data().len(), array.dims().iter().product::<usize>());
        }
        Err(error) => {
            assert!(!error.to_string().is_empty());
        }
    }
}
