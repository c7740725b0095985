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

use super::avx2::{KForm, Unpack32, UnpackK, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0};
use super::Region;
use crate::act::{A256x16, A32x16};

/// Weight rows per tile.
const R: usize = 4;

/// How far ahead of the one-token kernels' weight stream to prefetch (bytes).
const PREFETCH: usize = 2048;

/// Broadcasts the 4 bytes at `p` to all 16 lanes, as a load µop (`vpbroadcastd zmm, m32`).
/// Asm keeps the compiler from turning broadcasts of an unpacked block into shuffles.
///
/// # Safety
/// `p` readable for 4 bytes; the CPU has AVX-512F.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn bcast(p: *const u8) -> __m512i {
    let out: __m512i;
    // SAFETY: reads the 4 bytes at `p` (readable: the caller's guarantee), nothing else;
    // AVX-512F is the caller's guarantee too.
    unsafe {
        asm!(
            "vpbroadcastd {o}, dword ptr [{p}]",
            o = out(zmm_reg) out,
            p = in(reg) p,
            options(pure, readonly, nostack, preserves_flags)
        )
    };
    out
}

/// Stores lane `t` of `v` to `y[t0 + t, r]` for the tokens that exist.
#[inline(always)]
unsafe fn store16(g: &Region, r: usize, t0: usize, v: __m512) {
    // SAFETY: lanes `t < tokens − t0` of row `r` are outputs of the region (the caller's contract).
    unsafe {
        let mut lanes = [0f32; 16];
        _mm512_storeu_ps(lanes.as_mut_ptr(), v);
        for (t, l) in lanes.iter().enumerate().take(g.tokens - t0) {
            *g.y.add((t0 + t) * g.y_stride + r) = *l;
        }
    }
}

/// A 512-bit prompt tile: `N` weight rows × `G` groups of 16 tokens (`a[j]`); lane `t` of
/// result `[i][j]` is row `i`, token `t` of group `j`. Each weight broadcast feeds `G` products.
trait Tile16 {
    /// # Safety
    /// `w[i]` points at `nb` weight blocks, `a[j]` at `nb` interleaved activation blocks; the
    /// CPU has AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C.
    unsafe fn tile<const N: usize, const G: usize>(
        w: [*const u8; N],
        a: [*const u8; G],
        nb: usize,
    ) -> [[__m512; G]; N];
}

/// `R`-row tiles (then single rows) over `G` token groups starting at group `gi`.
#[inline(always)]
unsafe fn rows16<T: Tile16, const G: usize>(g: &Region, gi: usize) {
    // SAFETY: the caller guarantees the region (`# Safety`: `nb` weight blocks at each row pointer,
    // the activation blocks of every token, the outputs), and every offset below stays inside it;
    // the CPU has the features used.
    unsafe {
        let a: [*const u8; G] = std::array::from_fn(|j| g.a.add((gi + j) * g.a_stride));
        let mut r0 = 0;
        while r0 + R <= g.rows {
            let w: [*const u8; R] = std::array::from_fn(|i| g.w.add((r0 + i) * g.w_stride));
            let out = T::tile::<R, G>(w, a, g.nb);
            for (i, v) in out.iter().enumerate() {
                for (j, vj) in v.iter().enumerate() {
                    store16(g, r0 + i, 16 * (gi + j), *vj);
                }
            }
            r0 += R;
        }
        while r0 < g.rows {
            let out = T::tile::<1, G>([g.w.add(r0 * g.w_stride)], a, g.nb);
            for (j, vj) in out[0].iter().enumerate() {
                store16(g, r0, 16 * (gi + j), *vj);
            }
            r0 += 1;
        }
    }
}

/// A region whose `a` points at groups of 16 tokens (`a_stride` bytes apart): two groups per
/// tile, a single one at the end.
#[inline(always)]
unsafe fn region16<T: Tile16>(g: &Region) {
    // SAFETY: the caller guarantees the region (`# Safety`: `nb` weight blocks at each row pointer,
    // the activation blocks of every token, the outputs), and every offset below stays inside it;
    // the CPU has the features used.
    unsafe {
        let groups = g.tokens.div_ceil(16);
        let mut gi = 0;
        while gi + 2 <= groups {
            rows16::<T, 2>(g, gi);
            gi += 2;
        }
        if gi < groups {
            rows16::<T, 1>(g, gi);
        }
    }
}

/// Prompt kernel for the 32-value block types over [`A32x16`] activations.
pub struct X16<U>(PhantomData<U>);

impl<U: Unpack32> Tile16 for X16<U> {
    #[inline(always)]
    unsafe fn tile<const N: usize, const G: usize>(
        w: [*const u8; N],
        a: [*const u8; G],
        nb: usize,
    ) -> [[__m512; G]; N] {
        // SAFETY: `w[i]` points at `nb` weight blocks and `a[j]` at `nb` interleaved activation
        // blocks (the trait's contract): block `b < nb` lies at `b` times the block size and each
        // read stays inside its block; the CPU has AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C.
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); G]; N];
            let mut buf = [[0u8; 32]; N];
            for b in 0..nb {
                let ab: [*const u8; G] = std::array::from_fn(|j| a[j].add(b * A32x16::BYTES));
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
                let mut s = [[_mm512_setzero_si512(); G]; N];
                for k in 0..8 {
                    let av: [__m512i; G] = std::array::from_fn(|j| {
                        _mm512_loadu_si512(ab[j].add(A32x16::Q + 64 * k) as *const __m512i)
                    });
                    for i in 0..N {
                        let wv = bcast(buf[i].as_ptr().add(4 * k));
                        for j in 0..G {
                            s[i][j] = _mm512_dpbusd_epi32(s[i][j], wv, av[j]);
                        }
                    }
                }
                for j in 0..G {
                    let dav = _mm512_loadu_ps(ab[j].add(A32x16::D) as *const f32);
                    let sav = _mm512_loadu_ps(ab[j].add(A32x16::S) as *const f32);
                    for i in 0..N {
                        let scale = _mm512_mul_ps(_mm512_set1_ps(dw[i]), dav);
                        acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[i][j]), scale, acc[i][j]);
                        acc[i][j] = _mm512_fmadd_ps(_mm512_set1_ps(mw[i]), sav, acc[i][j]);
                    }
                }
            }
            acc
        }
    }
}

/// Prompt kernel for the K-quants over [`A256x16`] activations.
pub struct KX16<U>(PhantomData<U>);

impl<U: UnpackK> Tile16 for KX16<U> {
    #[inline(always)]
    unsafe fn tile<const N: usize, const G: usize>(
        w: [*const u8; N],
        a: [*const u8; G],
        nb: usize,
    ) -> [[__m512; G]; N] {
        // SAFETY: `w[i]` points at `nb` weight blocks and `a[j]` at `nb` interleaved activation
        // blocks (the trait's contract): block `b < nb` lies at `b` times the block size and each
        // read stays inside its block; the CPU has AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C.
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); G]; N];
            let mut buf = [[0u8; 256]; N];
            for b in 0..nb {
                let ab: [*const u8; G] = std::array::from_fn(|j| a[j].add(b * A256x16::BYTES));
                // A loop, not `array::from_fn`: a closure would not inherit the target features,
                // and the unpack intrinsics would be called instead of inlined.
                let mut kf = [KForm::default(); N];
                for i in 0..N {
                    kf[i] = U::unpack(w[i].add(b * U::WB), buf[i].as_mut_ptr());
                }
                let mut total = [[_mm512_setzero_si512(); G]; N];
                for s in 0..16 {
                    let mut part = [[_mm512_setzero_si512(); G]; N];
                    for q in 0..4 {
                        let k = 4 * s + q;
                        let av: [__m512i; G] = std::array::from_fn(|j| {
                            _mm512_loadu_si512(ab[j].add(A256x16::Q + 64 * k) as *const __m512i)
                        });
                        for i in 0..N {
                            let wv = bcast(buf[i].as_ptr().add(4 * k));
                            for j in 0..G {
                                part[i][j] = _mm512_dpbusd_epi32(part[i][j], wv, av[j]);
                            }
                        }
                    }
                    for i in 0..N {
                        let sc = _mm512_set1_epi32(kf[i].sc[s]);
                        for j in 0..G {
                            total[i][j] =
                                _mm512_add_epi32(total[i][j], _mm512_mullo_epi32(part[i][j], sc));
                        }
                    }
                }
                for j in 0..G {
                    let dav = _mm512_loadu_ps(ab[j].add(A256x16::D) as *const f32);
                    for i in 0..N {
                        let mut msum = _mm512_setzero_si512();
                        for p in 0..8 {
                            let bs = _mm512_loadu_si512(
                                ab[j].add(A256x16::BSUMS + 64 * p) as *const __m512i
                            );
                            let mv = _mm512_set1_epi32(kf[i].mp[p]);
                            msum = _mm512_add_epi32(msum, _mm512_madd_epi16(bs, mv));
                        }
                        let dd = _mm512_mul_ps(_mm512_set1_ps(kf[i].d), dav);
                        if U::SAME_D {
                            let s = _mm512_sub_epi32(total[i][j], msum);
                            acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), dd, acc[i][j]);
                        } else {
                            let dm = _mm512_mul_ps(_mm512_set1_ps(kf[i].dmin), dav);
                            acc[i][j] =
                                _mm512_fmadd_ps(_mm512_cvtepi32_ps(total[i][j]), dd, acc[i][j]);
                            acc[i][j] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(msum), dm, acc[i][j]);
                        }
                    }
                }
            }
            acc
        }
    }
}

/// The 16-token prompt kernel of a 32-value type over [`A32x16`] activations.
///
/// # Safety
/// As [`super::RegionFn`] with [`A32x16`] activations; needs AVX-512 F/BW/VL/VNNI, AVX2,
/// FMA, F16C.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) unsafe fn x16<U: Unpack32>(g: &Region) {
    // SAFETY: the callee's contract is this function's (see `# Safety`), and the CPU features it
    // needs are the caller's guarantee and enabled here.
    unsafe { region16::<X16<U>>(g) }
}

/// The 16-token prompt kernel of a K-quant over [`A256x16`] activations.
///
/// # Safety
/// As [`super::RegionFn`] with [`A256x16`] activations; needs AVX-512 F/BW/VL/VNNI, AVX2,
/// FMA, F16C.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) unsafe fn kx16<U: UnpackK>(g: &Region) {
    // SAFETY: the callee's contract is this function's (see `# Safety`), and the CPU features it
    // needs are the caller's guarantee and enabled here.
    unsafe { region16::<KX16<U>>(g) }
}

/// Two consecutive 32-value weight blocks in one 512-bit register (one-token kernels).
pub trait Pair32 {
    /// Bytes per block.
    const WB: usize;
    /// 64 unsigned bytes: the 32 values of block 0, then of block 1 (Q8_0: `q + 128`).
    ///
    /// # Safety
    /// `p` points at two whole blocks; AVX-512 F/BW/VL, F16C.
    unsafe fn q(p: *const u8) -> __m512i;
    /// `[d0, m0, d1, m1]` with `w = d·q + m` for the unsigned `q` above.
    ///
    /// # Safety
    /// As [`Pair32::q`].
    unsafe fn dm(p: *const u8) -> __m128;
}

/// Two blocks' 16 packed nibble bytes (at `p + off` and `p + wb + off`) as 64 values.
#[inline(always)]
unsafe fn nibbles2(p: *const u8, off: usize, wb: usize) -> __m512i {
    // SAFETY: callers pass `p` pointing at two whole blocks of `wb` bytes whose nibbles start at
    // `off`, on a CPU with AVX-512 F/BW.
    unsafe {
        let x0 = _mm_loadu_si128(p.add(off) as *const __m128i);
        let x1 = _mm_loadu_si128(p.add(wb + off) as *const __m128i);
        let x = _mm512_castsi256_si512(_mm256_inserti128_si256(_mm256_castsi128_si256(x0), x1, 1));
        // [x0, x0, x1, x1] by 128-bit lanes; lanes 1 and 3 take the high nibbles.
        let y = _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 1, 0, 1, 2, 3, 2, 3), x);
        let sh = _mm512_setr_epi64(
            0,
            0,
            0x0004_0004_0004_0004,
            0x0004_0004_0004_0004,
            0,
            0,
            0x0004_0004_0004_0004,
            0x0004_0004_0004_0004,
        );
        _mm512_and_si512(_mm512_srlv_epi16(y, sh), _mm512_set1_epi8(0x0F))
    }
}

/// Adds 16 to the values whose bit is set in the two blocks' `qh` words.
#[inline(always)]
unsafe fn fifth2(v: __m512i, p: *const u8, off: usize, wb: usize) -> __m512i {
    // SAFETY: callers pass `p` pointing at two whole blocks of `wb` bytes whose `qh` starts at
    // `off`, on a CPU with AVX-512 BW.
    unsafe {
        let k =
            (super::rd_u32(p.add(off)) as u64) | ((super::rd_u32(p.add(wb + off)) as u64) << 32);
        _mm512_mask_add_epi8(v, k, v, _mm512_set1_epi8(0x10))
    }
}

/// Two f16 at `p` and `p + wb` as `[a, b, 0, 0]`.
#[inline(always)]
unsafe fn f16x2(p: *const u8, wb: usize) -> __m128 {
    // SAFETY: callers pass `p` readable for 2 bytes at `p` and at `p + wb`, on a CPU with F16C.
    unsafe {
        let a = u16::from_le_bytes(std::ptr::read_unaligned(p as *const [u8; 2])) as i32;
        let b = u16::from_le_bytes(std::ptr::read_unaligned(p.add(wb) as *const [u8; 2])) as i32;
        _mm_cvtph_ps(_mm_cvtsi32_si128(a | (b << 16)))
    }
}

/// `[d0, k·d0, d1, k·d1]` for blocks whose min is `k` times their scale.
#[inline(always)]
unsafe fn dm_k(p: *const u8, wb: usize, k: f32) -> __m128 {
    // SAFETY: callers pass `p` readable for 2 bytes at `p` and at `p + wb`, on a CPU with F16C.
    unsafe {
        let d = f16x2(p, wb);
        _mm_mul_ps(_mm_unpacklo_ps(d, d), _mm_setr_ps(1.0, k, 1.0, k))
    }
}

/// `[d0, m0, d1, m1]` from the f16 pairs at `p` and `p + wb`.
#[inline(always)]
unsafe fn dm_pairs(p: *const u8, wb: usize) -> __m128 {
    // SAFETY: callers pass `p` readable for 4 bytes at `p` and at `p + wb`, on a CPU with F16C.
    unsafe {
        let lo = super::rd_u32(p) as i64;
        let hi = super::rd_u32(p.add(wb)) as i64;
        _mm_cvtph_ps(_mm_cvtsi64_si128(lo | (hi << 32)))
    }
}

impl Pair32 for Q4_0 {
    const WB: usize = 18;
    #[inline(always)]
    unsafe fn q(p: *const u8) -> __m512i {
        // SAFETY: `p` points at two whole blocks (the trait's contract) and every offset read is
        // inside them; the CPU has AVX-512 F/BW/VL.
        unsafe { nibbles2(p, 2, 18) }
    }
    #[inline(always)]
    unsafe fn dm(p: *const u8) -> __m128 {
        // SAFETY: `p` points at two whole blocks (the trait's contract), each starting with its f16
        // `d` (and `m`); the CPU has F16C.
        unsafe { dm_k(p, 18, -8.0) }
    }
}

impl Pair32 for Q4_1 {
    const WB: usize = 20;
    #[inline(always)]
    unsafe fn q(p: *const u8) -> __m512i {
        // SAFETY: `p` points at two whole blocks (the trait's contract) and every offset read is
        // inside them; the CPU has AVX-512 F/BW/VL.
        unsafe { nibbles2(p, 4, 20) }
    }
    #[inline(always)]
    unsafe fn dm(p: *const u8) -> __m128 {
        // SAFETY: `p` points at two whole blocks (the trait's contract), each starting with its f16
        // `d` (and `m`); the CPU has F16C.
        unsafe { dm_pairs(p, 20) }
    }
}

impl Pair32 for Q5_0 {
    const WB: usize = 22;
    #[inline(always)]
    unsafe fn q(p: *const u8) -> __m512i {
        // SAFETY: `p` points at two whole blocks (the trait's contract) and every offset read is
        // inside them; the CPU has AVX-512 F/BW/VL.
        unsafe { fifth2(nibbles2(p, 6, 22), p, 2, 22) }
    }
    #[inline(always)]
    unsafe fn dm(p: *const u8) -> __m128 {
        // SAFETY: `p` points at two whole blocks (the trait's contract), each starting with its f16
        // `d` (and `m`); the CPU has F16C.
        unsafe { dm_k(p, 22, -16.0) }
    }
}

impl Pair32 for Q5_1 {
    const WB: usize = 24;
    #[inline(always)]
    unsafe fn q(p: *const u8) -> __m512i {
        // SAFETY: `p` points at two whole blocks (the trait's contract) and every offset read is
        // inside them; the CPU has AVX-512 F/BW/VL.
        unsafe { fifth2(nibbles2(p, 8, 24), p, 4, 24) }
    }
    #[inline(always)]
    unsafe fn dm(p: *const u8) -> __m128 {
        // SAFETY: `p` points at two whole blocks (the trait's contract), each starting with its f16
        // `d` (and `m`); the CPU has F16C.
        unsafe { dm_pairs(p, 24) }
    }
}

impl Pair32 for Q8_0 {
    const WB: usize = 34;
    #[inline(always)]
    unsafe fn q(p: *const u8) -> __m512i {
        // SAFETY: `p` points at two whole blocks (the trait's contract) and every offset read is
        // inside them; the CPU has AVX-512 F/BW/VL.
        unsafe {
            let lo = _mm256_loadu_si256(p.add(2) as *const __m256i);
            let hi = _mm256_loadu_si256(p.add(36) as *const __m256i);
            let v = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
            // Signed to unsigned (+128); the offset comes back through the block sums.
            _mm512_xor_si512(v, _mm512_set1_epi8(-128))
        }
    }
    #[inline(always)]
    unsafe fn dm(p: *const u8) -> __m128 {
        // SAFETY: `p` points at two whole blocks (the trait's contract), each starting with its f16
        // `d` (and `m`); the CPU has F16C.
        unsafe { dm_k(p, 34, -128.0) }
    }
}

/// One-token kernel for the 32-value block types: two blocks per 512-bit register, rows one
/// after another (one linear stream through the weights).
pub struct One<U>(PhantomData<U>);

impl<U: Pair32 + Unpack32> One<U> {
    /// Blocks `b`, `b + 1` of one row into `acc` (and `[·, m0·s0, ·, m1·s1]` into `macc`).
    #[inline(always)]
    unsafe fn pair(w: *const u8, a: *const u8, b: usize, acc: &mut __m512, macc: &mut __m128) {
        // SAFETY: `w` and `a` point at a row's weight blocks and a token's activation blocks, and
        // `b + 1` is below their count (the caller's loop); the prefetch is a hint that never
        // faults; the CPU has the features used.
        unsafe {
            let wb = w.add(b * <U as Pair32>::WB);
            // The weights are one linear stream (rows back to back): ask for what comes next
            // early, since a token's matrices are small and each starts cold.
            _mm_prefetch(wb.wrapping_add(PREFETCH) as *const i8, _MM_HINT_T0);
            let ab = a.add(b * crate::act::A32::BYTES);
            // [da0, sa0, da1, sa1]
            let ds = _mm_castpd_ps(_mm_loadh_pd(
                _mm_load_sd(ab as *const f64),
                ab.add(crate::act::A32::BYTES) as *const f64,
            ));
            let prod = _mm_mul_ps(<U as Pair32>::dm(wb), ds);
            *macc = _mm_add_ps(*macc, prod);
            let qa = _mm512_inserti64x4(
                _mm512_castsi256_si512(_mm256_loadu_si256(ab.add(8) as *const __m256i)),
                _mm256_loadu_si256(ab.add(48) as *const __m256i),
                1,
            );
            let p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), U::q(wb), qa);
            let scale = _mm512_permutexvar_ps(
                _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2),
                _mm512_castps128_ps512(prod),
            );
            *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), scale, *acc);
        }
    }

    #[inline(always)]
    unsafe fn region(g: &Region) {
        // SAFETY: the caller guarantees the region (`# Safety`: `nb` weight blocks at each row
        // pointer, the activation blocks of every token, the outputs), and every offset below stays
        // inside it; the CPU has the features used.
        unsafe {
            for r in 0..g.rows {
                let w = g.w.add(r * g.w_stride);
                let (mut a0, mut a1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
                let (mut m0, mut m1) = (_mm_setzero_ps(), _mm_setzero_ps());
                let mut b = 0;
                while b + 4 <= g.nb {
                    Self::pair(w, g.a, b, &mut a0, &mut m0);
                    Self::pair(w, g.a, b + 2, &mut a1, &mut m1);
                    b += 4;
                }
                if b + 2 <= g.nb {
                    Self::pair(w, g.a, b, &mut a0, &mut m0);
                    b += 2;
                }
                let m = _mm_add_ps(m0, m1);
                // Lanes 1 and 3 hold the min terms.
                let mut sum = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1))
                    + _mm_cvtss_f32(_mm_shuffle_ps(m, m, 1))
                    + _mm_cvtss_f32(_mm_shuffle_ps(m, m, 3));
                if b < g.nb {
                    // An odd last block, 256 bits wide.
                    let (mut q, dw, mut mw) = U::unpack(w.add(b * <U as Pair32>::WB));
                    if U::SIGNED {
                        q = _mm256_xor_si256(q, _mm256_set1_epi8(-128));
                        mw = -128.0 * dw;
                    }
                    let ab = g.a.add(b * crate::act::A32::BYTES);
                    let qa = _mm256_loadu_si256(ab.add(8) as *const __m256i);
                    let p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), q, qa);
                    let v = hsum8(p);
                    sum += v as f32 * dw * super::rd_f32(ab) + mw * super::rd_f32(ab.add(4));
                }
                *g.y.add(r) = sum;
            }
        }
    }
}

/// Sum of the 8 i32 lanes.
#[inline(always)]
unsafe fn hsum8(v: __m256i) -> i32 {
    // SAFETY: register-only intrinsics; the caller runs on a CPU with the features they need (this
    // is inlined into `#[target_feature]` kernels).
    unsafe {
        let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
        _mm_cvtsi128_si32(s)
    }
}

/// The region kernel of a 32-value type at the AVX-512 VNNI level: one token runs [`One`],
/// a few tokens the 256-bit tiles (VNNI variant, [`super::avx2::b32`]).
///
/// # Safety
/// As [`super::RegionFn`]; needs AVX-512 F/BW/VL/VNNI, AVX2, FMA, F16C.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) unsafe fn one<U: Pair32 + Unpack32>(g: &Region) {
    // SAFETY: the callee's contract is this function's (see `# Safety`), and the CPU features it
    // needs are the caller's guarantee and enabled here.
    unsafe {
        if g.tokens == 1 {
            One::<U>::region(g)
        } else {
            super::avx2::b32::<U, true>(g)
        }
    }
}
