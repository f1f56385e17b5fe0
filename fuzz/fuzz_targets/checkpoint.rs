//! Arbitrary bytes loaded as a checkpoint of a small `MnistNet`, and as a checkpoint that
//! describes its own network: an error, or a model whose state saves back to bytes that
//! load again; never a panic, an abort or an allocation beyond what the bytes hold.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rotor_engine::{SeedableRng, SeededRng};
use rotor_nn::architecture::CustomLayers;
use rotor_nn::{Activation, MnistNet, checkpoint};

fuzz_target!(|bytes: &[u8]| {
    let mut rng = SeededRng::seed_from_u64(0);
    // The widths of the seed checkpoint `corpus/checkpoint/valid-mnistnet-2-2-3`.
    let mut net = MnistNet::with_widths(Activation::Rotated, [2, 2, 3], &mut rng)
        .expect("a valid architecture");
    match checkpoint::from_bytes(&mut net, bytes) {
        Ok(()) => {
            let saved = checkpoint::to_bytes(&net).expect("a loaded model saves");
            checkpoint::from_bytes(&mut net, &saved).expect("a saved model loads");
        }
        Err(error) => assert!(!error.to_string().is_empty()),
    }
    match checkpoint::network_from_bytes(bytes, &CustomLayers::new()) {
        Ok(rebuilt) => {
            let saved = checkpoint::to_bytes(&rebuilt).expect("a rebuilt network saves");
            checkpoint::network_from_bytes(&saved, &CustomLayers::new())
                .expect("a saved network rebuilds");
        }
        Err(error) => assert!(!error.to_string().is_empty()),
    }
});
