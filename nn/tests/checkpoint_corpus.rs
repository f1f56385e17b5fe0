//! Replays the checkpoint fuzz corpus on stable Rust: every `valid-*` seed loads into the
//! small `MnistNet` it was saved from, every `bad-*` seed is an error, none panics.

use std::path::Path;

use rotor_engine::{SeedableRng, SeededRng};
use rotor_nn::{Activation, MnistNet, checkpoint};

#[test]
fn the_fuzz_corpus_loads_or_fails_cleanly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/checkpoint");
    let mut seen = (0, 0);
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(&path).unwrap();
        let mut rng = SeededRng::seed_from_u64(0);
        let mut net = MnistNet::with_widths(Activation::Rotated, [2, 2, 3], &mut rng).unwrap();
        let result = checkpoint::from_bytes(&mut net, &bytes);
        if name.starts_with("valid-") {
            result.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(checkpoint::to_bytes(&net).unwrap(), bytes, "{name}");
            seen.0 += 1;
        } else {
            let error = result.expect_err(&name);
            assert!(!error.to_string().is_empty(), "{name}");
            seen.1 += 1;
        }
    }
    assert!(seen.0 >= 1 && seen.1 >= 10, "corpus incomplete: {seen:?}");
}
