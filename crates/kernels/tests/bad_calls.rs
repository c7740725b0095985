//! Every safe kernel entry point checks what its unsafe body relies on: a bad call panics with
//! a message naming the lengths (or shapes), at every available level, and never reaches the
//! SIMD code. (Quantized row conversion returns errors instead: `quant_roundtrip.rs`.)

use std::panic::{catch_unwind, UnwindSafe};

use gguf::GgmlType;
use half::{bf16, f16};
use kernels::dot::{quantizer, ActKind};
use kernels::vec::VecFns;
use kernels::{attn, Level, QMatrix};

fn levels() -> Vec<Level> {
    Level::ALL.into_iter().filter(|l| l.available()).collect()
}

/// The message of the panic `f` raises (fails the test if it returns).
fn panic_message(what: &str, f: impl FnOnce() + UnwindSafe) -> String {
    let Err(p) = catch_unwind(f) else {
        panic!("{what}: returned instead of panicking");
    };
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

fn expect_panic(what: &str, expected: &str, f: impl FnOnce() + UnwindSafe) {
    let m = panic_message(what, f);
    assert!(
        m.contains(expected),
        "{what}: panic message {m:?} lacks {expected:?}"
    );
}

/// The call of issue 12 at the process level (`LUME_CPU` picks it; CI runs every level).
#[test]
#[should_panic(expected = "dot_f32: slices of 1 and 64 values")]
fn unequal_dot_f32_panics() {
    (VecFns::get().dot_f32)(&[0.0], &[0.0; 64]);
}

#[test]
fn unequal_vector_helpers_panic_at_every_level() {
    let (a1, b64) = ([0f32; 1], [0f32; 64]);
    let (h1, h64) = ([f16::ZERO; 1], [f16::ZERO; 64]);
    let bf1 = [bf16::ZERO; 1];
    for l in levels() {
        let v = VecFns::at(l);
        let w = |name: &str| format!("{l} {name}");
        let msg = "slices of 1 and 64 values";
        expect_panic(&w("dot_f32"), msg, || {
            (v.dot_f32)(&a1, &b64);
        });
        expect_panic(&w("dot_f32 (long a)"), "slices of 64 and 1 values", || {
            (v.dot_f32)(&b64, &a1);
        });
        expect_panic(&w("dot_f16_f32"), msg, || {
            (v.dot_f16_f32)(&h1, &b64);
        });
        expect_panic(&w("dot_bf16_f32"), msg, || {
            (v.dot_bf16_f32)(&bf1, &b64);
        });
        expect_panic(&w("axpy_f32"), msg, || {
            (v.axpy_f32)(&mut [0f32; 1], 1.0, &b64);
        });
        expect_panic(&w("axpy_f16"), msg, || {
            (v.axpy_f16)(&mut [0f32; 1], 1.0, &h64);
        });
        expect_panic(&w("f32_to_f16"), msg, || {
            (v.f32_to_f16)(&a1, &mut [f16::ZERO; 64]);
        });
        expect_panic(&w("f16_to_f32"), msg, || {
            (v.f16_to_f32)(&h1, &mut [0f32; 64]);
        });
    }
    // The process-level wrappers and the scalar twins check the same way.
    expect_panic("kernels::dot_f32", "dot_f32: slices of 1 and 64", || {
        kernels::dot_f32(&a1, &b64);
    });
    expect_panic("kernels::axpy_f16", "axpy_f16: slices of 64 and 1", || {
        kernels::axpy_f16(&mut [0f32; 64], 1.0, &h1);
    });
    expect_panic("scalar::dot_f32", "dot_f32: slices of 1 and 64", || {
        kernels::vec::scalar::dot_f32(&a1, &b64);
    });
}

#[test]
fn bad_activation_quantizer_calls_panic_at_every_level() {
    for l in levels() {
        for kind in [ActKind::A32, ActKind::A32M, ActKind::A256] {
            let q = quantizer(l, kind);
            let v = kind.values();
            let what = format!("{l} {kind:?}");
            expect_panic(&what, "bytes (", || {
                q(&vec![1.0; 2 * v], &mut vec![0u8; 2 * kind.bytes() - 1]);
            });
            expect_panic(&what, &format!("a multiple of {v} needed"), || {
                q(&vec![1.0; v + 1], &mut vec![0u8; 4 * kind.bytes()]);
            });
        }
    }
}

#[test]
fn short_interleave_buffers_panic() {
    expect_panic(
        "interleave_a32",
        "interleave_a32: 3 rows of 2 blocks",
        || {
            kernels::act::interleave_a32(&[0u8; 240], 3, 2, 8, &mut [0u8; 10]);
        },
    );
    expect_panic(
        "interleave_a256",
        "interleave_a256: 1 rows of 1 blocks",
        || {
            kernels::act::interleave_a256(&[0u8; 291], 1, 1, 16, &mut vec![0u8; 16 * 292]);
        },
    );
}

#[test]
fn bad_matmul_shapes_panic_at_every_level() {
    // One row of Q4_0 (2 blocks, 36 bytes) and of F32.
    let q = [0u8; 36];
    let f = [0u8; 256];
    for l in levels() {
        let w = QMatrix {
            ty: GgmlType::Q4_0,
            data: &q,
            rows: 1,
            cols: 64,
        };
        expect_panic(&format!("{l} short x"), "matmul: x has 63 values", || {
            kernels::matmul_at(l, &w, &[0.0; 63], 1, &mut [0.0; 1]);
        });
        expect_panic(&format!("{l} long y"), "matmul: y has 3 values", || {
            kernels::matmul_at(l, &w, &[0.0; 128], 2, &mut [0.0; 3]);
        });
        let short = QMatrix {
            data: &q[..35],
            ..w
        };
        expect_panic(
            &format!("{l} short data"),
            "need 36 bytes, the data has 35",
            || {
                kernels::matmul_at(l, &short, &[0.0; 64], 1, &mut [0.0; 1]);
            },
        );
        let partial = QMatrix { cols: 48, ..w };
        expect_panic(
            &format!("{l} partial"),
            "48 cols are not a whole number",
            || {
                kernels::matmul_at(l, &partial, &[0.0; 48], 1, &mut [0.0; 1]);
            },
        );
        // rows x row_bytes wraps to 0 in usize: must not pass as "data long enough".
        let wrap = QMatrix {
            rows: 1 << (usize::BITS - 1),
            cols: 64,
            ..w
        };
        expect_panic(&format!("{l} wrapping rows"), "overflows", || {
            kernels::matmul_at(l, &wrap, &[0.0; 128], 2, &mut []);
        });
        let wf = QMatrix {
            ty: GgmlType::F32,
            data: &f,
            rows: 1,
            cols: 64,
        };
        expect_panic(&format!("{l} f32 short data"), "need 256 bytes", || {
            let short = QMatrix {
                data: &f[..255],
                ..wf
            };
            kernels::matmul_at(l, &short, &[0.0; 64], 1, &mut [0.0; 1]);
        });
        expect_panic(&format!("{l} multi cols"), "differ in cols", || {
            let other = QMatrix { cols: 32, ..w };
            let (mut y0, mut y1) = ([0f32; 1], [0f32; 1]);
            kernels::matmul_multi_at(l, &[w, other], &[0.0; 64], 1, &mut [&mut y0, &mut y1]);
        });
        expect_panic(&format!("{l} multi outputs"), "one output each", || {
            let mut y0 = [0f32; 1];
            kernels::matmul_multi_at(l, &[w, w], &[0.0; 64], 1, &mut [&mut y0]);
        });
    }
}

#[test]
fn short_attention_tiles_panic_at_every_level() {
    let hd = 64;
    for l in levels() {
        for &n in &attn::ROW_TILES {
            let what = format!("{l} {n} rows");
            expect_panic(&what, "k has 100 values", || {
                let mut s = vec![0f32; attn::KB * n];
                attn::scores_rows_at(l, n, &[0.0; 100], &vec![0.0; hd * n], hd, &mut s);
            });
            expect_panic(&what, "o has 3 (", || {
                let p = vec![0f32; attn::KB * n];
                let v = vec![0f32; attn::KB * hd];
                attn::accumulate_rows_at(l, n, &p, &v, hd, &mut [0.0; 3]);
            });
        }
        expect_panic(&format!("{l} width"), "attention tiles of 5 rows", || {
            attn::scores_rows_at(l, 5, &[], &[], hd, &mut []);
        });
    }
}

#[test]
fn too_many_pool_tasks_panic() {
    expect_panic("parallel_for", "at most 4294967295 per call", || {
        kernels::parallel_for(u32::MAX as usize + 1, &|_| {});
    });
}
