//! Checkpoints: bit-exact round trips, every kind of mismatch named, and malformed bytes
//! rejected with an error rather than a panic.

use std::borrow::Cow;
use std::path::Path;

use rand::{Rng, SeedableRng};
use rotor_engine::{SeededRng, Tensor};
use rotor_nn::checkpoint::{self, CheckpointError, Origin};
use rotor_nn::{
    Activation, BatchNorm2d, Conv2d, Flatten, GlobalAvgPool, Linear, MnistNet, Module, ModuleExt,
    RotatedRelu, Sequential,
};
use safetensors::{Dtype, View};

/// Every parameter and buffer of a model: name, shape and the values' bit patterns.
fn state_bits(model: &dyn Module) -> Vec<(String, Vec<usize>, Vec<u32>)> {
    let bits = |values: &[f32]| values.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    let mut state = Vec::new();
    model.visit_params("", &mut |name, p| {
        state.push((
            name.to_owned(),
            p.shape().to_vec(),
            bits(p.tensor().as_slice()),
        ));
    });
    model.visit_buffers("", &mut |name, shape, values| {
        state.push((name.to_owned(), shape.to_vec(), bits(values)));
    });
    state
}

/// conv 1->3 (no bias), batch norm, rotated ReLU, global pool, linear 3->2.
fn small_net(seed: u64) -> Sequential {
    let mut rng = SeededRng::seed_from_u64(seed);
    Sequential::new()
        .push(
            "conv",
            Conv2d::new(1, 3, 3, 1, 1, &mut rng)
                .expect("conv")
                .without_bias(),
        )
        .push("bn", BatchNorm2d::new(3).expect("bn"))
        .push("act", RotatedRelu::new(3, &mut rng).expect("act"))
        .push("pool", GlobalAvgPool)
        .push("flatten", Flatten)
        .push("fc", Linear::new(3, 2, true, &mut rng).expect("fc"))
}

/// A small net whose batch-norm statistics have moved away from their initial values.
fn trained_small_net(seed: u64) -> Sequential {
    let mut net = small_net(seed);
    let mut rng = SeededRng::seed_from_u64(seed + 100);
    let x = Tensor::rand_normal(&[4, 1, 5, 5], 0.5, 2.0, &mut rng).expect("input");
    net.forward_train(&x).expect("forward");
    net
}

#[test]
fn mnist_net_round_trips_bit_exactly() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("mnist.safetensors");
    let source = MnistNet::new(Activation::Rotated, &mut SeededRng::seed_from_u64(1)).unwrap();
    let mut target = MnistNet::new(Activation::Rotated, &mut SeededRng::seed_from_u64(2)).unwrap();
    assert_ne!(state_bits(&source), state_bits(&target));

    checkpoint::save(&source, &path).expect("save");
    checkpoint::load(&mut target, &path).expect("load");
    assert_eq!(state_bits(&source), state_bits(&target));
    let names: Vec<String> = target.named_params().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "conv1.weight",
            "conv1.bias",
            "act1.slope",
            "conv2.weight",
            "conv2.bias",
            "act2.slope",
            "fc1.weight",
            "fc1.bias",
            "act3.slope",
            "fc2.weight",
            "fc2.bias"
        ]
    );
}

#[test]
fn parameters_and_buffers_of_a_batch_norm_net_round_trip() {
    let source = trained_small_net(3);
    let state = state_bits(&source);
    let moved = |name: &str, initial: f32| {
        let (_, _, bits) = state.iter().find(|(n, _, _)| n == name).expect(name);
        bits.iter().any(|&b| b != initial.to_bits())
    };
    assert!(moved("bn.running_mean", 0.0) && moved("bn.running_var", 1.0));

    let mut target = small_net(4);
    checkpoint::from_bytes(&mut target, &checkpoint::to_bytes(&source).unwrap()).unwrap();
    assert_eq!(state_bits(&target), state);

    let x = Tensor::rand_normal(&[2, 1, 5, 5], 0.0, 1.0, &mut SeededRng::seed_from_u64(5)).unwrap();
    let (want, got) = (source.forward(&x).unwrap(), target.forward(&x).unwrap());
    assert_eq!(want.as_slice(), got.as_slice());
}

#[test]
fn loading_keeps_parameter_identity_and_frozen_masks() {
    let source = small_net(6);
    let mut target = small_net(7);
    target.visit_params_mut("", &mut |name, p| {
        if name == "act.slope" {
            p.set_frozen(Some(vec![true, false, true]));
        }
    });
    let ids = |m: &Sequential| {
        m.named_params()
            .iter()
            .map(|(_, p)| p.tensor().id())
            .collect::<Vec<_>>()
    };
    let before = ids(&target);
    checkpoint::from_bytes(&mut target, &checkpoint::to_bytes(&source).unwrap()).unwrap();
    assert_eq!(ids(&target), before);
    let (_, slope) = target
        .named_params()
        .into_iter()
        .find(|(n, _)| n == "act.slope")
        .unwrap();
    assert_eq!(slope.frozen(), Some(&[true, false, true][..]));
}

#[test]
fn saving_writes_the_same_bytes_as_to_bytes_and_overwrites_atomically() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("net.safetensors");
    std::fs::write(&path, b"an older file").unwrap();
    let net = small_net(8);
    checkpoint::save(&net, &path).expect("save over an existing file");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        checkpoint::to_bytes(&net).unwrap()
    );
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        files,
        ["net.safetensors"],
        "no temporary file is left behind"
    );
}

#[test]
fn io_errors_name_the_file() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let missing = dir.path().join("absent.safetensors");
    let err = checkpoint::load(&mut small_net(9), &missing).unwrap_err();
    assert!(matches!(&err, CheckpointError::Io { origin: Origin::File(p), .. } if p == &missing));
    assert!(err.to_string().contains("absent.safetensors"), "{err}");

    let unwritable = dir.path().join("no-such-dir").join("net.safetensors");
    let err = checkpoint::save(&small_net(9), &unwritable).unwrap_err();
    assert!(matches!(err, CheckpointError::Io { .. }), "{err}");
    assert!(err.to_string().contains("no-such-dir"), "{err}");

    let err = checkpoint::save(&small_net(9), dir.path()).unwrap_err();
    assert!(
        matches!(err, CheckpointError::Io { .. }),
        "a directory is not a file: {err}"
    );
}

#[test]
fn a_missing_tensor_is_named() {
    let mut rng = SeededRng::seed_from_u64(10);
    let without_bn = Sequential::new().push("conv", Conv2d::new(1, 3, 3, 1, 1, &mut rng).unwrap());
    let mut with_bn = Sequential::new()
        .push("conv", Conv2d::new(1, 3, 3, 1, 1, &mut rng).unwrap())
        .push("bn", BatchNorm2d::new(3).unwrap());
    let before = state_bits(&with_bn);
    let err = checkpoint::from_bytes(&mut with_bn, &checkpoint::to_bytes(&without_bn).unwrap());
    let err = err.unwrap_err();
    assert!(
        matches!(&err, CheckpointError::Missing { name, .. } if name == "bn.weight"),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "checkpoint bytes: the checkpoint has no tensor \"bn.weight\", which the model needs"
    );
    assert_eq!(
        state_bits(&with_bn),
        before,
        "a failed load changes nothing"
    );
}

#[test]
fn an_unexpected_tensor_is_named() {
    let mut rng = SeededRng::seed_from_u64(11);
    let with_bn = Sequential::new()
        .push("conv", Conv2d::new(1, 3, 3, 1, 1, &mut rng).unwrap())
        .push("bn", BatchNorm2d::new(3).unwrap());
    let mut without_bn =
        Sequential::new().push("conv", Conv2d::new(1, 3, 3, 1, 1, &mut rng).unwrap());
    let before = state_bits(&without_bn);
    let err = checkpoint::from_bytes(&mut without_bn, &checkpoint::to_bytes(&with_bn).unwrap());
    let err = err.unwrap_err();
    assert!(
        matches!(&err, CheckpointError::Unexpected { name, .. } if name == "bn.bias"),
        "{err}"
    );
    assert_eq!(
        state_bits(&without_bn),
        before,
        "a failed load changes nothing"
    );
}

#[test]
fn a_mis_shaped_tensor_is_named() {
    let mut rng = SeededRng::seed_from_u64(12);
    let half = MnistNet::with_widths(Activation::Rotated, [16, 32, 64], &mut rng).unwrap();
    let mut full = MnistNet::new(Activation::Rotated, &mut rng).unwrap();
    let err = checkpoint::from_bytes(&mut full, &checkpoint::to_bytes(&half).unwrap()).unwrap_err();
    match &err {
        CheckpointError::Shape {
            name,
            expected,
            found,
            ..
        } => {
            assert_eq!(name, "conv1.weight");
            assert_eq!(expected, &[32, 1, 3, 3]);
            assert_eq!(found, &[16, 1, 3, 3]);
        }
        other => panic!("expected a shape error, got {other}"),
    }
}

/// A tensor of any dtype for hand-made files.
struct Raw {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl View for &Raw {
    fn dtype(&self) -> Dtype {
        self.dtype
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

#[test]
fn a_tensor_of_another_dtype_is_named() {
    let mut rng = SeededRng::seed_from_u64(13);
    let mut model = Linear::new(2, 1, false, &mut rng).unwrap();
    let weight = Raw {
        dtype: Dtype::F64,
        shape: vec![1, 2],
        bytes: vec![0; 16],
    };
    let bytes = safetensors::serialize([("weight", &weight)], None).unwrap();
    let err = checkpoint::from_bytes(&mut model, &bytes).unwrap_err();
    assert!(
        matches!(&err, CheckpointError::Dtype { name, dtype, .. } if name == "weight" && dtype == "F64"),
        "{err}"
    );
}

fn assert_malformed(bytes: &[u8], what: &str) {
    let mut model = small_net(14);
    let before = state_bits(&model);
    match checkpoint::from_bytes(&mut model, bytes) {
        Err(CheckpointError::Malformed { .. }) => {}
        other => panic!("{what}: expected a malformed-file error, got {other:?}"),
    }
    assert_eq!(
        state_bits(&model),
        before,
        "{what}: a failed load changes nothing"
    );
}

#[test]
fn every_truncation_of_a_checkpoint_is_an_error() {
    let bytes = checkpoint::to_bytes(&small_net(15)).unwrap();
    for len in 0..bytes.len() {
        assert_malformed(
            &bytes[..len],
            &format!("the first {len} of {} bytes", bytes.len()),
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_malformed(&longer, "one byte too many");
}

/// A file with the given header text and `data_len` zero bytes of data.
fn with_header(header: &str, data_len: usize) -> Vec<u8> {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.resize(bytes.len() + data_len, 0);
    bytes
}

#[test]
fn garbage_and_lying_headers_are_errors() {
    let mut rng = SeededRng::seed_from_u64(16);
    for len in [1, 7, 8, 9, 64, 1000] {
        let noise: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        assert_malformed(&noise, &format!("{len} random bytes"));
    }
    assert_malformed(&u64::MAX.to_le_bytes(), "a header length of 2^64 - 1");
    assert_malformed(&with_header("{}", 0)[..9], "a header longer than the file");
    assert_malformed(&with_header("not json", 0), "a header that is not JSON");
    assert_malformed(&with_header("[1, 2]", 0), "a header that is not an object");
    assert_malformed(
        &with_header("\u{0}\u{0}\u{ff}", 0),
        "a header with control bytes",
    );
    let huge = r#"{"w":{"dtype":"F32","shape":[1000000000],"data_offsets":[0,4000000000]}}"#;
    assert_malformed(
        &with_header(huge, 16),
        "a header claiming 4 GB of data in 16 bytes",
    );
    let overlapping = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},
                          "b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#;
    assert_malformed(&with_header(overlapping, 12), "overlapping tensors");
    let wrong_size = r#"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#;
    assert_malformed(
        &with_header(wrong_size, 8),
        "a shape that does not fit its bytes",
    );
    let unknown_dtype = r#"{"w":{"dtype":"F7","shape":[2],"data_offsets":[0,8]}}"#;
    assert_malformed(&with_header(unknown_dtype, 8), "an unknown dtype");
}

#[test]
fn declared_sizes_that_overflow_when_summed_are_errors() {
    // Eight byte tensors of 2^61 - 1 elements each: their offsets are consistent with each
    // other, but their total is within 8 bytes of 2^64.
    let size: u64 = (1 << 61) - 1;
    let entries: Vec<String> = (0..8u64)
        .map(|i| {
            let (start, end) = (i * size, (i + 1) * size);
            format!(r#""t{i}":{{"dtype":"U8","shape":[{size}],"data_offsets":[{start},{end}]}}"#)
        })
        .collect();
    let header = format!("{{{}}}", entries.join(","));
    assert_malformed(&with_header(&header, 0), "declared sizes summing past 2^64");
    assert_malformed(
        &with_header(&header, 24),
        "declared sizes summing past 2^64, some data",
    );
}

#[test]
fn a_model_with_two_tensors_of_one_name_cannot_be_saved() {
    let mut rng = SeededRng::seed_from_u64(17);
    let net = Sequential::new()
        .push("a", RotatedRelu::new(2, &mut rng).unwrap())
        .push("a", RotatedRelu::new(2, &mut rng).unwrap());
    let err = checkpoint::to_bytes(&net).unwrap_err();
    assert!(
        matches!(&err, CheckpointError::DuplicateName { name, .. } if name == "a.slope"),
        "{err}"
    );
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("dup.safetensors");
    assert!(checkpoint::save(&net, &path).is_err());
    assert!(!Path::new(&path).exists(), "nothing is written");
}

#[test]
fn random_corruptions_are_errors_or_loads_never_panics() {
    let bytes = checkpoint::to_bytes(&small_net(18)).unwrap();
    let mut rng = SeededRng::seed_from_u64(19);
    let mut model = small_net(20);
    let mut rejected = 0;
    for _ in 0..3000 {
        let mut corrupt = bytes.clone();
        for _ in 0..rng.random_range(1..=3) {
            let at = rng.random_range(0..corrupt.len());
            corrupt[at] = rng.random();
        }
        // Only the outcome matters: a changed data byte still loads, anything else must
        // come back as an error rather than a panic.
        if checkpoint::from_bytes(&mut model, &corrupt).is_err() {
            rejected += 1;
        }
    }
    assert!(rejected > 0, "some corruptions hit the header");
}
