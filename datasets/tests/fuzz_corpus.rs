//! Replays the committed fuzz corpus (`fuzz/corpus/idx/`) through the IDX parser on stable
//! Rust, as the `idx` fuzz target does: each file as given and wrapped in gzip. Files named
//! `valid-*` must parse, `bad-*` must be rejected, any other (found by the fuzzer) may do
//! either; none may panic.

mod common;

use std::fs;
use std::panic;
use std::path::Path;

use common::gzip;
use rotor_datasets::{IdxArray, Origin};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus/idx");

/// Parses `bytes`; on success checks the array's invariants. Returns whether it parsed.
fn parses(bytes: &[u8], origin: Origin) -> bool {
    match IdxArray::parse(bytes, origin) {
        Ok(array) => {
            assert!((1..=4).contains(&array.dims().len()));
            assert_eq!(array.data().len(), array.dims().iter().product::<usize>());
            true
        }
        Err(error) => {
            assert!(!error.to_string().is_empty());
            false
        }
    }
}

#[test]
fn every_corpus_file_parses_or_fails_cleanly() {
    let mut entries: Vec<_> = fs::read_dir(Path::new(CORPUS))
        .expect("the fuzz corpus is committed beside the crate")
        .map(|entry| entry.expect("readable corpus directory").path())
        .collect();
    entries.sort();

    let (mut valid, mut bad, mut failures) = (0, 0, Vec::new());
    for path in &entries {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = fs::read(path).expect("readable corpus file");
        let outcome = panic::catch_unwind(|| {
            parses(&gzip(&bytes), Origin::memory());
            parses(&bytes, Origin::file(path))
        });
        match outcome {
            Err(_) => failures.push(format!("{name}: panicked")),
            Ok(parsed) if name.starts_with("valid-") => {
                valid += 1;
                if !parsed {
                    failures.push(format!("{name}: rejected"));
                }
            }
            Ok(parsed) if name.starts_with("bad-") => {
                bad += 1;
                if parsed {
                    failures.push(format!("{name}: accepted"));
                }
            }
            Ok(_) => {}
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(
        valid >= 4 && bad >= 10,
        "corpus too small: {valid} valid, {bad} bad"
    );
}
