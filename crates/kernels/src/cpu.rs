//! CPU feature detection and the dispatch level, decided once per process.
//!
//! [`features`] reports what the CPU has; [`level`] is the kernel family actually used: the
//! best one detected, lowered (never raised) by the environment variable
//! `LUME_CPU=scalar|avx2|avx512|avx512vnni`.
//!
//! Levels on x86-64:
//! - `Scalar`: portable Rust, the reference twins.
//! - `Avx2`: AVX2 + FMA + F16C, integer dots with `vpmaddubsw`/`vpmaddwd`.
//! - `Avx512`: AVX-512F/BW/VL present, no VNNI: the AVX2 kernels run.
//! - `Avx512Vnni`: prompt kernels on 512-bit registers (16 tokens per register, `vpdpbusd`,
//!   see `dot::avx512`); one-token kernels are the AVX2 ones with 256-bit `vpdpbusd` (they are
//!   bound by memory bandwidth, not arithmetic).
//!
//! On aarch64 NEON and dotprod are detected and reported, but the kernels run the scalar level.

use std::sync::OnceLock;

/// A kernel family, ordered from the most portable to the most specialised.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    #[default]
    Scalar,
    Avx2,
    Avx512,
    Avx512Vnni,
}

impl Level {
    /// Every level, lowest first.
    pub const ALL: [Level; 4] = [Level::Scalar, Level::Avx2, Level::Avx512, Level::Avx512Vnni];

    /// The `LUME_CPU` spelling.
    pub fn name(self) -> &'static str {
        match self {
            Level::Scalar => "scalar",
            Level::Avx2 => "avx2",
            Level::Avx512 => "avx512",
            Level::Avx512Vnni => "avx512vnni",
        }
    }

    /// Parses a `LUME_CPU` value.
    pub fn from_name(s: &str) -> Option<Level> {
        Level::ALL
            .into_iter()
            .find(|l| l.name().eq_ignore_ascii_case(s.trim()))
    }

    /// Whether this machine can run kernels of this level.
    pub fn available(self) -> bool {
        self <= features().best
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the CPU (and OS) supports.
#[derive(Clone, Copy, Debug, Default)]
pub struct Features {
    pub avx2: bool,
    pub fma: bool,
    pub f16c: bool,
    pub avx512f: bool,
    pub avx512bw: bool,
    pub avx512vl: bool,
    pub avx512vnni: bool,
    pub avx_vnni: bool,
    pub avx512bf16: bool,
    pub neon: bool,
    pub dotprod: bool,
    /// The best level these features allow.
    pub best: Level,
}

/// The detected features (computed once).
pub fn features() -> &'static Features {
    static F: OnceLock<Features> = OnceLock::new();
    F.get_or_init(detect)
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Features {
    use std::arch::x86_64::__cpuid_count;
    let mut f = Features {
        avx2: is_x86_feature_detected!("avx2"),
        fma: is_x86_feature_detected!("fma"),
        f16c: is_x86_feature_detected!("f16c"),
        // These also check that the OS saves the AVX-512 state (XCR0).
        avx512f: is_x86_feature_detected!("avx512f"),
        avx512bw: is_x86_feature_detected!("avx512bw"),
        avx512vl: is_x86_feature_detected!("avx512vl"),
        ..Features::default()
    };
    // Leaf 7 is valid when leaf 0 reports it; its sub-leaf 1 reads as zeros where unsupported.
    let max_leaf = __cpuid_count(0, 0).eax;
    if max_leaf >= 7 {
        let l7 = __cpuid_count(7, 0);
        let l7s1 = __cpuid_count(7, 1);
        let os_avx512 = f.avx512f;
        let os_avx = f.avx2;
        f.avx512vnni = os_avx512 && (l7.ecx >> 11) & 1 == 1;
        f.avx512bf16 = os_avx512 && (l7s1.eax >> 5) & 1 == 1;
        f.avx_vnni = os_avx && (l7s1.eax >> 4) & 1 == 1;
    }
    f.best = if f.avx2 && f.fma && f.f16c {
        if f.avx512f && f.avx512bw && f.avx512vl {
            if f.avx512vnni {
                Level::Avx512Vnni
            } else {
                Level::Avx512
            }
        } else {
            Level::Avx2
        }
    } else {
        Level::Scalar
    };
    f
}

#[cfg(target_arch = "aarch64")]
fn detect() -> Features {
    Features {
        neon: std::arch::is_aarch64_feature_detected!("neon"),
        dotprod: std::arch::is_aarch64_feature_detected!("dotprod"),
        ..Features::default()
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn detect() -> Features {
    Features::default()
}

/// The CPU's model name (the CPUID brand string on x86-64, `model name` of `/proc/cpuinfo`
/// elsewhere), or `"unknown CPU"`; read once.
pub fn name() -> &'static str {
    static N: OnceLock<String> = OnceLock::new();
    N.get_or_init(|| {
        let raw = brand_string().unwrap_or_default();
        let name = raw.split_whitespace().collect::<Vec<_>>().join(" ");
        if name.is_empty() {
            "unknown CPU".to_string()
        } else {
            name
        }
    })
}

/// The 48-byte brand string of CPUID leaves 0x8000_0002..=0x8000_0004.
#[cfg(target_arch = "x86_64")]
fn brand_string() -> Option<String> {
    use std::arch::x86_64::__cpuid;
    if __cpuid(0x8000_0000).eax < 0x8000_0004 {
        return None;
    }
    let mut bytes = Vec::with_capacity(48);
    for leaf in 0x8000_0002..=0x8000_0004u32 {
        let r = __cpuid(leaf);
        for w in [r.eax, r.ebx, r.ecx, r.edx] {
            bytes.extend_from_slice(&w.to_le_bytes());
        }
    }
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    Some(String::from_utf8_lossy(&bytes[..end]).into_owned())
}

#[cfg(not(target_arch = "x86_64"))]
fn brand_string() -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        matches!(k.trim(), "model name" | "Hardware" | "cpu model").then(|| v.trim().to_string())
    })
}

/// The dispatch level in use, the CPU and a thread count in one line, e.g.
/// `avx512vnni (AMD EPYC 9454P, 2 threads)`: what `lume bench` and `lume inspect` print.
pub fn describe(threads: usize) -> String {
    let s = if threads == 1 { "" } else { "s" };
    format!("{} ({}, {threads} thread{s})", level(), name())
}

/// The level every kernel call uses: the best detected, or lower if `LUME_CPU` asks for it.
/// An unknown `LUME_CPU` value, or one above what the CPU has, is ignored with a warning on
/// stderr (once).
pub fn level() -> Level {
    static L: OnceLock<Level> = OnceLock::new();
    *L.get_or_init(|| {
        let best = features().best;
        match std::env::var("LUME_CPU") {
            Ok(v) if !v.trim().is_empty() => match Level::from_name(&v) {
                Some(l) if l <= best => l,
                Some(l) => {
                    eprintln!("lume: LUME_CPU={l} is not available on this CPU, using {best}");
                    best
                }
                None => {
                    eprintln!(
                        "lume: unknown LUME_CPU={v:?} (scalar|avx2|avx512|avx512vnni), using {best}"
                    );
                    best
                }
            },
            _ => best,
        }
    })
}
