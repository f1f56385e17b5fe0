//! The instruction-set layer: names, the choice rules, and every vector operation of every
//! set this CPU runs against its scalar definition, on partial vectors too.

use super::vector::{Kernel, Vector, dispatch};
use super::{Isa, IsaError, active, force};

#[test]
fn names_parse_back() {
    for isa in Isa::ALL {
        assert_eq!(isa.name().parse::<Isa>(), Ok(isa));
    }
    assert_eq!(" AVX2 ".parse::<Isa>(), Ok(Isa::Avx2));
    assert!(matches!("sse9".parse::<Isa>(), Err(IsaError::Unknown(_))));
}

#[test]
fn detection_prefers_the_widest_supported_set() {
    let supported = Isa::supported();
    assert_eq!(supported[0], Isa::Portable);
    assert_eq!(Isa::detect(), *supported.last().expect("portable at least"));
    assert!(supported.iter().all(|isa| isa.is_supported()));
}

#[test]
fn forcing_keeps_the_first_choice_and_refuses_what_the_cpu_lacks() {
    let chosen = active();
    assert_eq!(force(chosen), Ok(()));
    for isa in Isa::ALL {
        let result = force(isa);
        if !isa.is_supported() {
            assert!(
                matches!(result, Err(IsaError::Unsupported { wanted, .. }) if wanted == isa),
                "{isa}: {result:?}"
            );
        } else if isa != chosen {
            assert_eq!(
                result,
                Err(IsaError::AlreadyChosen {
                    wanted: isa,
                    chosen
                })
            );
        }
    }
    assert_eq!(active(), chosen);
    assert!(super::describe().contains(chosen.name()));
}

/// Runs every vector operation on `a` and `b` (32 floats each, of which the first `n`
/// lanes are loaded masked) and returns the results lane by lane.
struct Exercise<'a> {
    a: &'a [f32; 32],
    b: &'a [f32; 32],
    n: usize,
}

/// The results of [`Exercise`], one vector of lanes each.
#[derive(Debug, PartialEq)]
struct Results {
    loaded: Vec<f32>,
    masked: Vec<f32>,
    stored: Vec<f32>,
    mul_add: Vec<f32>,
    add: Vec<f32>,
    mul: Vec<f32>,
    relu: Vec<f32>,
    max: Vec<f32>,
    pair_max: Vec<f32>,
    sum: f32,
}

impl Kernel for Exercise<'_> {
    type Output = Results;

    #[inline(always)]
    unsafe fn run<V: Vector>(self) -> Results {
        let lanes = V::LANES;
        let out = |v: V| {
            let mut buffer = [f32::NAN; 16];
            // SAFETY: 16 floats hold any vector.
            unsafe { v.store(buffer.as_mut_ptr()) };
            buffer[..lanes].to_vec()
        };
        // SAFETY: every pointer reads or writes within the 32-float arrays, and masked
        // lanes of `n` at most `lanes`.
        unsafe {
            let (a, b) = (V::load(self.a.as_ptr()), V::load(self.b.as_ptr()));
            let mask = V::first(self.n);
            let mut stored = [-7.0_f32; 16];
            a.store_masked(stored.as_mut_ptr(), mask);
            Results {
                loaded: out(a),
                masked: out(V::load_masked(self.a.as_ptr(), mask)),
                stored: stored[..lanes].to_vec(),
                mul_add: out(a.mul_add(b, V::splat(0.5))),
                add: out(a.add(b)),
                mul: out(a.mul(b)),
                relu: out(a.relu()),
                max: out(a.max(b)),
                pair_max: out(V::pair_max(a, V::load(self.a.as_ptr().add(lanes)))),
                sum: V::zero().add(a).sum(),
            }
        }
    }
}

fn larger(a: f32, b: f32) -> f32 {
    if a > b { a } else { b }
}

/// What [`Exercise`] must return with `lanes` lanes.
fn expected(a: &[f32; 32], b: &[f32; 32], n: usize, lanes: usize) -> Results {
    let each = |f: &dyn Fn(usize) -> f32| (0..lanes).map(f).collect::<Vec<_>>();
    Results {
        loaded: a[..lanes].to_vec(),
        masked: each(&|i| if i < n { a[i] } else { 0.0 }),
        stored: each(&|i| if i < n { a[i] } else { -7.0 }),
        mul_add: each(&|i| a[i].mul_add(b[i], 0.5)),
        add: each(&|i| a[i] + b[i]),
        mul: each(&|i| a[i] * b[i]),
        relu: each(&|i| if a[i] <= 0.0 { 0.0 } else { a[i] }),
        max: each(&|i| larger(a[i], b[i])),
        pair_max: each(&|j| larger(a[2 * j], a[2 * j + 1])),
        sum: a[..lanes].iter().sum(),
    }
}

/// Small integers, halves and signs: every product and sum is exact, and NaN-free (NaN
/// compares unequal to itself; the NaN rules are checked on their own below).
fn values(seed: u32) -> [f32; 32] {
    std::array::from_fn(|i| ((i as u32 * 7 + seed * 13) % 11) as f32 * 0.5 - 2.5)
}

#[test]
fn every_vector_operation_matches_its_scalar_definition_on_every_set() {
    for isa in Isa::supported() {
        for seed in 0..4 {
            let (a, b) = (values(seed), values(seed + 5));
            for n in 0..=16 {
                // SAFETY: `Exercise` stays within its arrays.
                let got = unsafe { dispatch(isa, Exercise { a: &a, b: &b, n }) };
                let lanes = got.loaded.len();
                if n > lanes {
                    continue;
                }
                assert_eq!(got, expected(&a, &b, n, lanes), "{isa}, {n} lanes");
            }
        }
    }
}

#[test]
fn relu_and_max_treat_nan_as_the_scalar_rules_do() {
    for isa in Isa::supported() {
        let mut a = values(1);
        let b = values(2);
        a[0] = f32::NAN;
        a[1] = -1.0;
        // SAFETY: `Exercise` stays within its arrays.
        let got = unsafe { dispatch(isa, Exercise { a: &a, b: &b, n: 1 }) };
        assert!(got.relu[0].is_nan(), "{isa}: relu(NaN)");
        assert_eq!(got.max[0], b[0], "{isa}: NaN > b is false");
        assert_eq!(got.pair_max[0], -1.0, "{isa}: pair (NaN, -1)");
    }
}

/// Transposes a block of distinct values, rows taken from scattered places, into a target
/// with gaps between its rows.
struct TransposeBlock;

impl Kernel for TransposeBlock {
    type Output = (usize, Vec<f32>);

    #[inline(always)]
    unsafe fn run<V: Vector>(self) -> (usize, Vec<f32>) {
        let lanes = V::LANES;
        let source: Vec<f32> = (0..lanes * 40).map(|x| x as f32).collect();
        // Row `i` starts at `37 * i + 3`: not a multiple of any vector's width.
        let rows: Vec<*const f32> = (0..lanes).map(|i| source[37 * i + 3..].as_ptr()).collect();
        let stride = lanes + 5;
        let mut target = vec![-1.0; lanes * stride];
        // SAFETY: every row holds `lanes` floats, every target row `stride >= lanes`.
        unsafe { V::transpose(&rows, target.as_mut_ptr(), stride) };
        (lanes, target)
    }
}

#[test]
fn transpose_moves_every_lane_and_nothing_else_on_every_set() {
    for isa in Isa::supported() {
        // SAFETY: `TransposeBlock` stays within its buffers.
        let (lanes, target) = unsafe { dispatch(isa, TransposeBlock) };
        let stride = lanes + 5;
        for j in 0..lanes {
            for k in 0..stride {
                let expected = if k < lanes {
                    (37 * k + 3 + j) as f32
                } else {
                    -1.0
                };
                assert_eq!(target[j * stride + k], expected, "{isa}: row {j}, lane {k}");
            }
        }
    }
}
