//! Reading the PyTorch fixtures of `fixtures/golden/` and comparing kernel results to them.
//!
//! A fixture is `{"meta": {...}, "tensors": {"name": {"shape": [...], "data": [...]}}}`;
//! `tools/golden.py` writes them and `fixtures/golden/README.md` describes the format.

use serde_json::{Map, Value};

/// Where the fixture files live, relative to this crate.
const FIXTURE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/golden/");

/// Relative tolerance of every comparison.
pub const REL_TOL: f64 = 1e-4;

/// Fraction of a tensor's largest magnitude below which an element's error is judged
/// against that fraction instead of its own magnitude.
pub const FLOOR: f64 = 1e-2;

/// Names of all fixture files (without `.json`) whose `meta.op` is not in `skip_ops`.
///
/// # Panics
/// If the directory or a file in it cannot be read or parsed.
pub fn fixture_names_except(skip_ops: &[&str]) -> Vec<String> {
    let mut names = Vec::new();
    let entries =
        std::fs::read_dir(FIXTURE_DIR).unwrap_or_else(|e| panic!("cannot list {FIXTURE_DIR}: {e}"));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.extension().is_some_and(|ext| ext == "json") {
            let name = path
                .file_stem()
                .expect("file name")
                .to_string_lossy()
                .into_owned();
            let op = Fixture::load(&name).meta_str("op").to_owned();
            if !skip_ops.contains(&op.as_str()) {
                names.push(name);
            }
        }
    }
    names.sort();
    names
}

/// One parsed fixture file.
pub struct Fixture {
    name: String,
    meta: Map<String, Value>,
    tensors: Map<String, Value>,
}

impl Fixture {
    /// Reads `fixtures/golden/<name>.json`.
    ///
    /// # Panics
    /// If the file is missing or not a fixture.
    pub fn load(name: &str) -> Self {
        let path = format!("{FIXTURE_DIR}{name}.json");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
        let root: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"));
        let object = |key: &str| match root.get(key) {
            Some(Value::Object(map)) => map.clone(),
            _ => panic!("{path}: no object \"{key}\""),
        };
        Self {
            name: name.to_owned(),
            meta: object("meta"),
            tensors: object("tensors"),
        }
    }

    /// The names of the fixture's tensors.
    pub fn tensor_names(&self) -> Vec<String> {
        self.tensors.keys().cloned().collect()
    }

    fn meta_value(&self, key: &str) -> &Value {
        self.meta
            .get(key)
            .unwrap_or_else(|| panic!("fixture {}: no meta \"{key}\"", self.name))
    }

    /// A string of `meta`.
    ///
    /// # Panics
    /// If the key is missing or not a string.
    pub fn meta_str(&self, key: &str) -> &str {
        self.meta_value(key)
            .as_str()
            .unwrap_or_else(|| panic!("fixture {}: meta \"{key}\" is not a string", self.name))
    }

    /// A non-negative integer of `meta`.
    ///
    /// # Panics
    /// If the key is missing or not a non-negative integer.
    pub fn meta_usize(&self, key: &str) -> usize {
        let v = self.meta_value(key).as_u64();
        let v = v.unwrap_or_else(|| panic!("fixture {}: meta \"{key}\" is not a count", self.name));
        usize::try_from(v).expect("count fits usize")
    }

    /// A number of `meta`, rounded to f32.
    ///
    /// # Panics
    /// If the key is missing or not a number.
    pub fn meta_f32(&self, key: &str) -> f32 {
        let v = self.meta_value(key).as_f64();
        let v =
            v.unwrap_or_else(|| panic!("fixture {}: meta \"{key}\" is not a number", self.name));
        v as f32
    }

    fn tensor(&self, name: &str) -> (Vec<usize>, Vec<f64>) {
        let t = self
            .tensors
            .get(name)
            .unwrap_or_else(|| panic!("fixture {}: no tensor \"{name}\"", self.name));
        let numbers = |key: &str| -> Vec<f64> {
            let array = t.get(key).and_then(Value::as_array);
            let array = array
                .unwrap_or_else(|| panic!("fixture {}: tensor \"{name}\" has no {key}", self.name));
            array
                .iter()
                .map(|v| {
                    v.as_f64().unwrap_or_else(|| {
                        panic!(
                            "fixture {}: {name}.{key} holds {v}, not a number",
                            self.name
                        )
                    })
                })
                .collect()
        };
        let shape: Vec<usize> = numbers("shape").into_iter().map(|d| d as usize).collect();
        let data = numbers("data");
        assert_eq!(
            shape.iter().product::<usize>(),
            data.len(),
            "fixture {}: tensor \"{name}\" of shape {shape:?} holds {} values",
            self.name,
            data.len()
        );
        (shape, data)
    }

    /// The shape of a tensor.
    ///
    /// # Panics
    /// If the tensor is missing or malformed.
    pub fn shape(&self, name: &str) -> Vec<usize> {
        self.tensor(name).0
    }

    /// A tensor's shape and values as written (float64).
    ///
    /// # Panics
    /// If the tensor is missing or malformed.
    pub fn f64s(&self, name: &str) -> (Vec<usize>, Vec<f64>) {
        self.tensor(name)
    }

    /// A tensor's values rounded to f32: the inputs, which the fixtures hold as float32.
    ///
    /// # Panics
    /// If the tensor is missing or malformed.
    pub fn f32s(&self, name: &str) -> Vec<f32> {
        self.tensor(name).1.into_iter().map(|v| v as f32).collect()
    }

    /// A scalar tensor (shape `[]`) rounded to f32.
    ///
    /// # Panics
    /// If the tensor is missing, malformed or not a scalar.
    pub fn scalar_f32(&self, name: &str) -> f32 {
        let (shape, data) = self.tensor(name);
        assert!(
            shape.is_empty(),
            "fixture {}: \"{name}\" is not a scalar",
            self.name
        );
        data[0] as f32
    }

    /// An integer tensor (targets, argmax positions).
    ///
    /// # Panics
    /// If the tensor is missing, malformed or holds anything but integers in `u32` range.
    pub fn u32s(&self, name: &str) -> Vec<u32> {
        let data = self.tensor(name).1;
        data.into_iter()
            .map(|v| {
                assert!(
                    v.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&v),
                    "fixture {}: \"{name}\" holds {v}, not a u32",
                    self.name
                );
                v as u32
            })
            .collect()
    }

    /// Compares `got` with the fixture tensor `name`: element `i` passes when
    /// `|got[i] - want[i]| <= REL_TOL * max(|want[i]|, FLOOR * max_j |want[j]|)`.
    ///
    /// # Panics
    /// If the lengths differ or any element fails (NaN always fails), naming the fixture,
    /// the tensor, the index of the first failures and both values.
    pub fn check(&self, name: &str, got: &[f32]) {
        let (shape, want) = self.tensor(name);
        self.check_values(name, &shape, &want, got);
    }

    /// As [`Fixture::check`], against values derived from the fixture (`label` names
    /// them in the failure message).
    ///
    /// # Panics
    /// As [`Fixture::check`].
    pub fn check_values(&self, label: &str, shape: &[usize], want: &[f64], got: &[f32]) {
        assert_eq!(
            got.len(),
            want.len(),
            "fixture {}, tensor {label}: got {} values, want {}",
            self.name,
            got.len(),
            want.len()
        );
        let scale = want.iter().fold(0.0f64, |m, w| m.max(w.abs())) * FLOOR;
        let failures: Vec<String> = want
            .iter()
            .zip(got)
            .enumerate()
            .filter_map(|(i, (&w, &g))| {
                let bound = REL_TOL * w.abs().max(scale);
                let diff = (f64::from(g) - w).abs();
                // NOTE: a NaN compares false, so a NaN result never passes.
                let passes = diff <= bound;
                (!passes).then(|| {
                    format!(
                        "  {label}[{i}] (index {:?}): got {g:e}, want {w:e}, |diff| {diff:.3e} > {bound:.3e}",
                        unravel(i, shape)
                    )
                })
            })
            .collect();
        assert!(
            failures.is_empty(),
            "fixture {}, tensor {label}: {} of {} elements differ beyond tolerance \
             (|got - want| <= {REL_TOL:e} * max(|want|, {FLOOR:e} * max|want| = {scale:.3e})); \
             the first ones:\n{}",
            self.name,
            failures.len(),
            want.len(),
            failures[..failures.len().min(8)].join("\n")
        );
    }

    /// Exact comparison of an integer tensor.
    ///
    /// # Panics
    /// If the lengths or any element differ, naming the fixture, the tensor, the index and
    /// both values.
    pub fn check_u32(&self, name: &str, got: &[u32]) {
        let shape = self.shape(name);
        let want = self.u32s(name);
        assert_eq!(
            got.len(),
            want.len(),
            "fixture {}, tensor {name}: length",
            self.name
        );
        let failures: Vec<String> = want
            .iter()
            .zip(got)
            .enumerate()
            .filter(|(_, (w, g))| w != g)
            .map(|(i, (w, g))| {
                format!(
                    "  {name}[{i}] (index {:?}): got {g}, want {w}",
                    unravel(i, &shape)
                )
            })
            .collect();
        assert!(
            failures.is_empty(),
            "fixture {}, tensor {name}: {} of {} elements differ; the first ones:\n{}",
            self.name,
            failures.len(),
            want.len(),
            failures[..failures.len().min(8)].join("\n")
        );
    }
}

/// The multi-index of flat position `i` in a row-major array of `shape`.
fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut index = vec![0; shape.len()];
    for (slot, &dim) in index.iter_mut().zip(shape).rev() {
        *slot = i % dim;
        i /= dim;
    }
    index
}
