//! Instruction sets: which one the kernels run, chosen once per process, and the vector
//! types their micro-kernels are written against.
//!
//! The set is detected at run time ([`Isa::detect`]); a program can force another one that
//! the CPU has, with [`force`] or the environment variable `ROTOR_ISA`
//! (`portable`, `avx2`, `avx512`, `neon`), before the first kernel runs. Every kernel
//! family that has micro-kernels of its own (implicit convolution, packed and
//! channel-skipping linear layers, dot products) runs the chosen set's implementation;
//! [`describe`] says which set and which paths a binary runs.
//!
//! `vector` defines the one vector interface the micro-kernels are generic over; each
//! instruction set implements it in one file (`avx512.rs`, `avx2.rs`, `neon.rs`,
//! `portable.rs`).

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

pub(crate) mod vector;

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;
#[cfg(target_arch = "aarch64")]
pub(crate) mod neon;
pub(crate) mod portable;

/// The environment variable that forces an instruction set (see [`force`]).
pub const ISA_VARIABLE: &str = "ROTOR_ISA";

/// An instruction set the kernels have an implementation for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Isa {
    /// Plain Rust that the compiler vectorises for the target it was built for; runs on
    /// every CPU, and is what the other sets are tested against.
    Portable,
    /// x86-64 with AVX2 and FMA: 16 registers of 8 floats.
    Avx2,
    /// x86-64 with AVX-512F (plus AVX2 and FMA): 32 registers of 16 floats.
    Avx512,
    /// AArch64 with NEON (Advanced SIMD): 32 registers of 4 floats.
    Neon,
}

impl Isa {
    /// Every instruction set, in the order [`detect`](Self::detect) prefers them, best last.
    pub const ALL: [Isa; 4] = [Isa::Portable, Isa::Neon, Isa::Avx2, Isa::Avx512];

    /// The set's name as `ROTOR_ISA` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Neon => "neon",
        }
    }

    /// Whether this CPU (and this build's target architecture) runs the set.
    pub fn is_supported(self) -> bool {
        match self {
            Isa::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                std::is_x86_feature_detected!("avx512f")
                    && std::is_x86_feature_detected!("avx2")
                    && std::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// The sets this CPU runs, the portable one first.
    pub fn supported() -> Vec<Isa> {
        Self::ALL
            .into_iter()
            .filter(|isa| isa.is_supported())
            .collect()
    }

    /// The best set this CPU runs.
    pub fn detect() -> Isa {
        Self::supported()
            .pop()
            .expect("internal: the portable set is always supported")
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Isa {
    type Err = IsaError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|isa| isa.name().eq_ignore_ascii_case(name.trim()))
            .ok_or_else(|| IsaError::Unknown(name.to_owned()))
    }
}

/// Why an instruction set cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IsaError {
    /// The name is none of `portable`, `avx2`, `avx512`, `neon`.
    Unknown(String),
    /// The CPU (or the build's target architecture) lacks the set.
    Unsupported {
        /// The set asked for.
        wanted: Isa,
        /// The sets the CPU has.
        supported: Vec<Isa>,
    },
    /// Another set was already chosen: kernels ran, or [`force`] was called, before.
    AlreadyChosen {
        /// The set asked for.
        wanted: Isa,
        /// The set in use.
        chosen: Isa,
    },
}

impl fmt::Display for IsaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IsaError::Unknown(name) => write!(
                f,
                "unknown instruction set {name:?}: expected one of portable, avx2, avx512, neon"
            ),
            IsaError::Unsupported { wanted, supported } => {
                let names: Vec<&str> = supported.iter().map(|isa| isa.name()).collect();
                write!(
                    f,
                    "this CPU cannot run the {wanted} kernels (it runs: {})",
                    names.join(", ")
                )
            }
            IsaError::AlreadyChosen { wanted, chosen } => write!(
                f,
                "cannot switch the kernels to {wanted}: {chosen} was already chosen for this process"
            ),
        }
    }
}

impl std::error::Error for IsaError {}

/// The set chosen for this process, fixed at the first kernel call or [`force`].
static CHOSEN: OnceLock<Isa> = OnceLock::new();

/// Checks that the CPU runs `isa`.
fn check_supported(isa: Isa) -> Result<Isa, IsaError> {
    if isa.is_supported() {
        Ok(isa)
    } else {
        Err(IsaError::Unsupported {
            wanted: isa,
            supported: Isa::supported(),
        })
    }
}

/// The set `ROTOR_ISA` asks for, if it is set: an error if it names no set or one this CPU
/// lacks.
pub fn from_env() -> Result<Option<Isa>, IsaError> {
    match std::env::var(ISA_VARIABLE) {
        Ok(name) if !name.trim().is_empty() => check_supported(name.parse()?).map(Some),
        _ => Ok(None),
    }
}

/// Makes the kernels of this process run `isa`. Call it before the first kernel runs:
/// once a set is chosen (by a kernel call, which takes `ROTOR_ISA` or the detected set, or
/// by an earlier call of this function) only the same set is accepted, so that weights
/// packed for one set never meet another set's micro-kernel.
///
/// # Errors
/// If the CPU lacks `isa`, or another set was chosen already.
pub fn force(isa: Isa) -> Result<(), IsaError> {
    let isa = check_supported(isa)?;
    let chosen = *CHOSEN.get_or_init(|| isa);
    if chosen == isa {
        Ok(())
    } else {
        Err(IsaError::AlreadyChosen {
            wanted: isa,
            chosen,
        })
    }
}

/// The set the kernels run: the one [`force`]d, else the one `ROTOR_ISA` names, else
/// [`Isa::detect`]'s. Fixed at the first call.
///
/// # Panics
/// If `ROTOR_ISA` names no set or one this CPU lacks: the variable asks for a path the
/// process cannot run, and running another one silently would mislabel every measurement.
/// A program that wants an error instead calls [`from_env`] first.
pub fn active() -> Isa {
    *CHOSEN.get_or_init(|| match from_env() {
        Ok(chosen) => chosen.unwrap_or_else(Isa::detect),
        Err(e) => panic!("{ISA_VARIABLE}: {e}"),
    })
}

/// A one-line description of the paths in use, for benchmark and example output: the
/// instruction set of Rotor's own kernels (micro-kernels and the memory-bound kernels'
/// loops alike) and how it was chosen, and the path of the GEMM (matrixmultiply chooses its
/// own micro-kernel at run time).
pub fn describe() -> String {
    let isa = active();
    let how = if std::env::var_os(ISA_VARIABLE).is_some() {
        "forced by ROTOR_ISA"
    } else if isa == Isa::detect() {
        "detected"
    } else {
        "forced"
    };
    let supported: Vec<&str> = Isa::supported().iter().map(|isa| isa.name()).collect();
    format!(
        "kernels: {isa} ({how}; this CPU runs {}); gemm: {}",
        supported.join(", "),
        gemm_path(),
    )
}

fn gemm_path() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        // matrixmultiply's own dispatch order: its AVX-512 kernel first, then FMA+AVX2.
        if std::is_x86_feature_detected!("avx512f") {
            return "matrixmultiply avx512 (its own run-time choice)";
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            return "matrixmultiply avx2+fma (its own run-time choice)";
        }
        if std::is_x86_feature_detected!("avx") {
            return "matrixmultiply avx (its own run-time choice)";
        }
        "matrixmultiply sse2"
    }
    #[cfg(target_arch = "aarch64")]
    {
        "matrixmultiply neon (its own run-time choice)"
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        "matrixmultiply portable"
    }
}

#[cfg(test)]
mod tests;
