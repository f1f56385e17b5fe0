//! Replays the checkpoint fuzz corpus on stable Rust: every `valid-*` seed loads into the
//! small `MnistNet` it was saved from, every `bad-*` seed is an error, none panics; the
//! seeds that describe their network rebuild it with no model given, the others are an
//! error there (`bad-architecture-*` seeds hold sound tensors under a broken description).

use std::path::Path;

use rotor_engine::{SeedableRng, SeededRng};
use rotor_nn::architecture::CustomLayers;
use rotor_nn::{Activation, MnistNet, Module, ModuleExt, checkpoint};

#[test]
fn the_fuzz_corpus_loads_or_fails_cleanly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/checkpoint");
    let mut seen = (0, 0, 0);
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(&path).unwrap();
        let mut rng = SeededRng::seed_from_u64(0);
        let mut net = MnistNet::with_widths(Activation::Rotated, [2, 2, 3], &mut rng).unwrap();
        let result = checkpoint::from_bytes(&mut net, &bytes);
        let rebuilt = checkpoint::network_from_bytes(&bytes, &CustomLayers::new());
        if name.starts_with("valid-") {
            result.unwrap_or_else(|e| panic!("{name}: {e}"));
            let saved = checkpoint::to_bytes(&net).unwrap();
            if name.starts_with("valid-described-") {
                assert_eq!(saved, bytes, "{name}");
                let rebuilt = rebuilt.unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(rebuilt.named_params().len(), net.named_params().len());
                assert_eq!(rebuilt.architecture(), net.architecture(), "{name}");
                seen.0 += 1;
            } else {
                // A file of tensors only (as PyTorch writes) still loads into a model
                // built in code, but cannot rebuild one by itself.
                let error = rebuilt.expect_err(&name).to_string();
                assert!(error.contains("does not describe"), "{name}: {error}");
                seen.1 += 1;
            }
        } else if name.starts_with("bad-architecture-") {
            // The tensors are sound, so a model built in code takes them; the description
            // is not, so nothing is rebuilt from it.
            result.unwrap_or_else(|e| panic!("{name}: {e}"));
            let error = rebuilt.expect_err(&name).to_string();
            // A description wider than the tensors is caught by comparing shapes before
            // anything is allocated; the others when the description is read.
            let caught = if name.contains("wider") {
                error.contains("[3000000000, 288]")
            } else {
                error.contains("architecture")
            };
            assert!(caught, "{name}: {error}");
            seen.2 += 1;
        } else {
            let error = result.expect_err(&name);
            assert!(!error.to_string().is_empty(), "{name}");
            assert!(!rebuilt.expect_err(&name).to_string().is_empty());
            seen.2 += 1;
        }
    }
    assert!(
        seen.0 >= 1 && seen.1 >= 1 && seen.2 >= 13,
        "corpus incomplete: {seen:?}"
    );
}
