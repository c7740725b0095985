//! AVX-512 (F/BW/VL + VNNI) prompt kernels: 16 tokens per 512-bit register.
//!
//! Same scheme as the 8-token kernels of [`super::avx2`] (each weight block unpacked once to
//! bytes, its 4-byte groups broadcast and multiplied with every token's 4 activation bytes by
//! `vpdpbusd`), but one register holds 16 tokens, so every unpacked weight block, every
//! broadcast and every scale update serves twice as many tokens, and the 32 vector registers
//! hold all accumulators of a 4-row tile without spills.
//!
//! Only at the `Avx512Vnni` level: without VNNI, `vpmaddubsw` would saturate on the
//! offset Q8_0 weights, and the AVX2 kernels run instead.

use std::arch::asm;
use std::arch::x86_64::*;
use std::marker::PhantomData;

use gguf::GgmlType;

use super::avx2::{KForm, Unpack32, UnpackK, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, UQ23K, UQ4K, UQ6K};
use super::{Region, RegionFn};
use crate::act::{A256x16, A32x16};

/// Weight rows per tile.
const R: usize = 4;

/// Broadcasts the 4 bytes at `p` to all 16 lanes, as a load µop (`vpbroadcastd zmm, m32`).
/// Asm keeps the compiler from turning broadcasts of an unpacked block into shuffles.
///
/// # Safety
/// `p` readable for 4 bytes; the CPU has AVX-512F.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn bcast(p: *const u8) -> __m512i {
    let out: __m512i;
    // SAFETY: reads 4 bytes at `p` (caller's guarantee), nothing else.
    asm!(
        "vpbroadcastd {o}, dword ptr [{p}]",
        o = out(zmm_reg) out,
        p = in(reg) p,
        options(pure, readonly, nostack, preserves_flags)
    );
    out
}

/// Stores lane `t` of `v` to `y[t0 + t, r]` for the tokens that exist.
#[inline(always)]
unsafe fn store16(g: &Region, r: usize, t0: usize, v: __m512) {
    let mut lanes = [0f32; 16];
    _mm512_storeu_ps(lanes.as_mut_ptr(), v);
    for (t, l) in lanes.iter().enumerate().take(g.tokens - t0) {
        *g.y.add((t0 + t) * g.y_stride + r) = *l;
    }
}

/// Prompt kernel for the 32-value block types over [`A32x16`] activations.
pub struct X16<U>(PhantomData<U>);

impl<U: Unpack32> X16<U> {
    /// `N` rows × the 16 tokens of the group at `a`: lane `t` of result `i` is row `i`,
    /// token `t`.
    #[inline(always)]
    unsafe fn tile<const N: usize>(w: [*const u8; N], a: *const u8, nb: usize) -> [__m512; N] {
        let mut acc = [_mm512_setzero_ps(); N];
        let mut buf = [[0u8; 32]; N];
        for b in 0..nb {
            let ab = a.add(b * A32x16::BYTES);
            let dav = _mm512_loadu_ps(ab.add(A32x16::D) as *const f32);
            let sav = _mm512_loadu_ps(ab.add(A32x16::S) as *const f32);
            let mut dw = [0f32; N];
            let mut mw = [0f32; N];
            for i in 0..N {
                let (mut q, d, mut m) = U::unpack(w[i].add(b * U::WB));
                if U::SIGNED {
                    // vpdpbusd wants unsigned weights: add 128, take 128·s back in f32.
                    q = _mm256_xor_si256(q, _mm256_set1_epi8(-128));
                    m = -128.0 * d;
                }
                _mm256_storeu_si256(buf[i].as_mut_ptr() as *mut __m256i, q);
                dw[i] = d;
                mw[i] = m;
            }
            let mut s0 = [_mm512_setzero_si512(); N];
            let mut s1 = [_mm512_setzero_si512(); N];
            for k in 0..8 {
                let av = _mm512_loadu_si512(ab.add(A32x16::Q + 64 * k) as *const __m512i);
                let s = if k % 2 == 0 { &mut s0 } else { &mut s1 };
                for i in 0..N {
                    s[i] = _mm512_dpbusd_epi32(s[i], bcast(buf[i].as_ptr().add(4 * k)), av);
                }
            }
            for i in 0..N {
                let s = _mm512_add_epi32(s0[i], s1[i]);
                let scale = _mm512_mul_ps(_mm512_set1_ps(dw[i]), dav);
                acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), scale, acc[i]);
                acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(mw[i]), sav, acc[i]);
            }
        }
        acc
    }

    /// A region whose `a` points at groups of 16 tokens (`a_stride` bytes apart).
    #[inline(always)]
    unsafe fn region(g: &Region) {
        for gi in 0..g.tokens.div_ceil(16) {
            let a = g.a.add(gi * g.a_stride);
            let t0 = 16 * gi;
            let mut r0 = 0;
            while r0 + R <= g.rows {
                let w: [*const u8; R] = std::array::from_fn(|i| g.w.add((r0 + i) * g.w_stride));
                let out = Self::tile::<R>(w, a, g.nb);
                for (i, v) in out.iter().enumerate() {
                    store16(g, r0 + i, t0, *v);
                }
                r0 += R;
            }
            while r0 < g.rows {
                let out = Self::tile::<1>([g.w.add(r0 * g.w_stride)], a, g.nb);
                store16(g, r0, t0, out[0]);
                r0 += 1;
            }
        }
    }
}

/// Prompt kernel for the K-quants over [`A256x16`] activations.
pub struct KX16<U>(PhantomData<U>);

impl<U: UnpackK> KX16<U> {
    #[inline(always)]
    unsafe fn tile<const N: usize>(w: [*const u8; N], a: *const u8, nb: usize) -> [__m512; N] {
        let mut acc = [_mm512_setzero_ps(); N];
        let mut buf = [[0u8; 256]; N];
        for b in 0..nb {
            let ab = a.add(b * A256x16::BYTES);
            let dav = _mm512_loadu_ps(ab.add(A256x16::D) as *const f32);
            // A loop, not `array::from_fn`: a closure would not inherit the target features,
            // and the unpack intrinsics would be called instead of inlined.
            let mut kf = [KForm::default(); N];
            for i in 0..N {
                kf[i] = U::unpack(w[i].add(b * U::WB), buf[i].as_mut_ptr());
            }
            let mut total = [_mm512_setzero_si512(); N];
            for s in 0..16 {
                let mut part = [_mm512_setzero_si512(); N];
                for j in 0..4 {
                    let k = 4 * s + j;
                    let av = _mm512_loadu_si512(ab.add(A256x16::Q + 64 * k) as *const __m512i);
                    for i in 0..N {
                        part[i] =
                            _mm512_dpbusd_epi32(part[i], bcast(buf[i].as_ptr().add(4 * k)), av);
                    }
                }
                for i in 0..N {
                    let sc = _mm512_set1_epi32(kf[i].sc[s]);
                    total[i] = _mm512_add_epi32(total[i], _mm512_mullo_epi32(part[i], sc));
                }
            }
            for i in 0..N {
                let mut msum = _mm512_setzero_si512();
                for p in 0..8 {
                    let bs = _mm512_loadu_si512(ab.add(A256x16::BSUMS + 64 * p) as *const __m512i);
                    let mv = _mm512_set1_epi32(kf[i].mp[p]);
                    msum = _mm512_add_epi32(msum, _mm512_madd_epi16(bs, mv));
                }
                let dd = _mm512_mul_ps(_mm512_set1_ps(kf[i].d), dav);
                if U::SAME_D {
                    let s = _mm512_sub_epi32(total[i], msum);
                    acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), dd, acc[i]);
                } else {
                    let dm = _mm512_mul_ps(_mm512_set1_ps(kf[i].dmin), dav);
                    acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(total[i]), dd, acc[i]);
                    acc[i] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(msum), dm, acc[i]);
                }
            }
        }
        acc
    }

    #[inline(always)]
    unsafe fn region(g: &Region) {
        for gi in 0..g.tokens.div_ceil(16) {
            let a = g.a.add(gi * g.a_stride);
            let t0 = 16 * gi;
            let mut r0 = 0;
            while r0 + R <= g.rows {
                let w: [*const u8; R] = std::array::from_fn(|i| g.w.add((r0 + i) * g.w_stride));
                let out = Self::tile::<R>(w, a, g.nb);
                for (i, v) in out.iter().enumerate() {
                    store16(g, r0 + i, t0, *v);
                }
                r0 += R;
            }
            while r0 < g.rows {
                let out = Self::tile::<1>([g.w.add(r0 * g.w_stride)], a, g.nb);
                store16(g, r0, t0, out[0]);
                r0 += 1;
            }
        }
    }
}

macro_rules! region16 {
    ($name:ident, $kern:ty) => {
        /// # Safety
        /// As [`RegionFn`] with 16-token interleaved activations; needs AVX-512 F/BW/VL/VNNI,
        /// AVX2, FMA, F16C.
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
        unsafe fn $name(g: &Region) {
            <$kern>::region(g)
        }
    };
}

region16!(x16_q4_0, X16<Q4_0>);
region16!(x16_q4_1, X16<Q4_1>);
region16!(x16_q5_0, X16<Q5_0>);
region16!(x16_q5_1, X16<Q5_1>);
region16!(x16_q8_0, X16<Q8_0>);
region16!(x16_q2_k, KX16<UQ23K<false>>);
region16!(x16_q3_k, KX16<UQ23K<true>>);
region16!(x16_q4_k, KX16<UQ4K<false>>);
region16!(x16_q5_k, KX16<UQ4K<true>>);
region16!(x16_q6_k, KX16<UQ6K>);

/// The 16-token prompt kernel of `ty` (activations interleaved 16 per group: [`A32x16`] for
/// the 32-value types, [`A256x16`] for the K-quants).
pub fn region_x16_fn(ty: GgmlType) -> Option<RegionFn> {
    Some(match ty {
        GgmlType::Q4_0 => x16_q4_0,
        GgmlType::Q4_1 => x16_q4_1,
        GgmlType::Q5_0 => x16_q5_0,
        GgmlType::Q5_1 => x16_q5_1,
        GgmlType::Q8_0 => x16_q8_0,
        GgmlType::Q2_K => x16_q2_k,
        GgmlType::Q3_K => x16_q3_k,
        GgmlType::Q4_K => x16_q4_k,
        GgmlType::Q5_K => x16_q5_k,
        GgmlType::Q6_K => x16_q6_k,
        _ => return None,
    })
}
