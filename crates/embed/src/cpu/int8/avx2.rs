//! The AVX2 tile: four quantised rows times one 16-column panel, in assembly.
//!
//! Per two `k` quads and row: the row's two 4-byte quads broadcast, two `vpmaddubsw` against
//! the panel (memory operands, from L1), one 16-bit add, one `vpmaddwd` against ones, one
//! 32-bit add: eight multiply-adds per lane, exact (see the bound in [`super`]). Per block
//! the eight `i32` accumulators (4 rows x 16 columns) start at the weight's offsets and end
//! converted, scaled by row scale x column scale, and added into the `f32` totals.
//!
//! Why assembly: written with intrinsics, LLVM unrolls the block over all rows, loads the
//! panel's vectors once, spills them to the stack and reads the copies back, which took a
//! third of the kernel's time. Here the schedule is the one above: 13 of the 16 registers,
//! no spills, every weight byte read from L1 once per row.

use std::arch::asm;

use super::{BLOCK, BlockMeta, GROUP, LEVEL, NR, OFFSET};

/// Bytes of one group's block: 4 rows x 32.
const X_BLOCK: usize = GROUP * super::BLOCK;
/// Bytes of one panel's block: 32 `k` x 16 columns.
const W_BLOCK: usize = super::BLOCK * NR;

/// One row's share of a quad pair: `$x` is the row's byte offset in the group's block,
/// `$lo`/`$hi` its accumulators for columns 0-7 and 8-15.
macro_rules! row {
    ($x:literal, $lo:literal, $hi:literal) => {
        concat!(
            "vpbroadcastd ymm8, dword ptr [{x} + ",
            $x,
            "]\n",
            "vpbroadcastd ymm9, dword ptr [{x} + ",
            $x,
            " + 4]\n",
            "vpmaddubsw ymm10, ymm8, ymmword ptr [{w}]\n",
            "vpmaddubsw ymm11, ymm9, ymmword ptr [{w} + 64]\n",
            "vpaddw ymm10, ymm10, ymm11\n",
            "vpmaddwd ymm10, ymm10, ymm15\n",
            "vpaddd ",
            $lo,
            ", ",
            $lo,
            ", ymm10\n",
            "vpmaddubsw ymm12, ymm8, ymmword ptr [{w} + 32]\n",
            "vpmaddubsw ymm13, ymm9, ymmword ptr [{w} + 96]\n",
            "vpaddw ymm12, ymm12, ymm13\n",
            "vpmaddwd ymm12, ymm12, ymm15\n",
            "vpaddd ",
            $hi,
            ", ",
            $hi,
            ", ymm12\n",
        )
    };
}

/// One row's block epilogue: `$s` is the byte offset of its scale, `$o` of its totals.
macro_rules! scale {
    ($s:literal, $lo:literal, $hi:literal, $o:literal) => {
        concat!(
            "vbroadcastss ymm8, dword ptr [{s} + ",
            $s,
            "]\n",
            "vmulps ymm9, ymm8, ymmword ptr [{m}]\n",
            "vmulps ymm10, ymm8, ymmword ptr [{m} + 32]\n",
            "vcvtdq2ps ",
            $lo,
            ", ",
            $lo,
            "\n",
            "vcvtdq2ps ",
            $hi,
            ", ",
            $hi,
            "\n",
            "vmovups ymm11, ymmword ptr [{o} + ",
            $o,
            "]\n",
            "vfmadd231ps ymm11, ",
            $lo,
            ", ymm9\n",
            "vmovups ymmword ptr [{o} + ",
            $o,
            "], ymm11\n",
            "vmovups ymm12, ymmword ptr [{o} + ",
            $o,
            " + 32]\n",
            "vfmadd231ps ymm12, ",
            $hi,
            ", ymm10\n",
            "vmovups ymmword ptr [{o} + ",
            $o,
            " + 32], ymm12\n",
        )
    };
}

/// The tile for one group of rows (`x`: `[block][4][32]` bytes, `scales`: `[block][4]`)
/// and one panel (`w`: `[block][512]` bytes, `meta`: `[block]`).
pub(super) fn tile(
    _avx2: pulp::x86::V3,
    x: &[u8],
    scales: &[f32],
    w: &[i8],
    meta: &[BlockMeta],
) -> [[f32; NR]; GROUP] {
    let blocks = meta.len();
    assert!(blocks > 0, "at least one block");
    assert_eq!(x.len(), blocks * X_BLOCK, "the group's bytes");
    assert_eq!(scales.len(), blocks * GROUP, "the group's scales");
    assert_eq!(w.len(), blocks * W_BLOCK, "the panel's bytes");
    let mut out = [[0f32; NR]; GROUP];
    #[allow(unsafe_code)]
    // SAFETY: the `V3` token proves AVX2 and FMA at run time. The loop runs `blocks` times
    // and per block reads 128 bytes from `x` (4 pairs x 8 bytes, then 96 more skipped past
    // the rows 1-3 it also read at +32/+64/+96), 512 from `w`, 16 from `scales`, 128 from
    // `meta` (`BlockMeta` is `repr(C)`: 16 f32 then 16 i32), and reads and writes the 256
    // bytes of `out`: exactly the lengths asserted above. It touches no stack and restores
    // no state beyond the registers declared clobbered.
    unsafe {
        asm!(
            "vpcmpeqw ymm15, ymm15, ymm15",
            "vpsrlw ymm15, ymm15, 15",
            "2:",
            "vmovdqu ymm0, ymmword ptr [{m} + 64]",
            "vmovdqu ymm1, ymmword ptr [{m} + 96]",
            "vmovdqa ymm2, ymm0",
            "vmovdqa ymm3, ymm1",
            "vmovdqa ymm4, ymm0",
            "vmovdqa ymm5, ymm1",
            "vmovdqa ymm6, ymm0",
            "vmovdqa ymm7, ymm1",
            "mov {p:e}, 4",
            "3:",
            row!(0, "ymm0", "ymm1"),
            row!(32, "ymm2", "ymm3"),
            row!(64, "ymm4", "ymm5"),
            row!(96, "ymm6", "ymm7"),
            "add {x}, 8",
            "add {w}, 128",
            "dec {p:e}",
            "jnz 3b",
            "add {x}, 96",
            scale!(0, "ymm0", "ymm1", 0),
            scale!(4, "ymm2", "ymm3", 64),
            scale!(8, "ymm4", "ymm5", 128),
            scale!(12, "ymm6", "ymm7", 192),
            "add {s}, 16",
            "add {m}, 128",
            "dec {n}",
            "jnz 2b",
            "vzeroupper",
            x = inout(reg) x.as_ptr() => _,
            w = inout(reg) w.as_ptr() => _,
            s = inout(reg) scales.as_ptr() => _,
            m = inout(reg) meta.as_ptr() => _,
            n = inout(reg) blocks => _,
            o = in(reg) out.as_mut_ptr(),
            p = out(reg) _,
            out("ymm0") _, out("ymm1") _, out("ymm2") _, out("ymm3") _,
            out("ymm4") _, out("ymm5") _, out("ymm6") _, out("ymm7") _,
            out("ymm8") _, out("ymm9") _, out("ymm10") _, out("ymm11") _,
            out("ymm12") _, out("ymm13") _, out("ymm14") _, out("ymm15") _,
            options(nostack),
        );
    }
    out
}

/// [`super::quantize_block`] for an input block (`q + OFFSET` bytes) in AVX2: the same `f32`
/// operations in the same order, so the same bytes and scale.
#[inline(always)]
pub(super) fn quantize_block(
    simd: pulp::x86::V3,
    values: &[f32; BLOCK],
    out: &mut [u8; BLOCK],
) -> f32 {
    use std::arch::x86_64::__m256;
    let v: [__m256; 4] = pulp::cast(*values);
    let abs_mask = simd
        .avx
        ._mm256_castsi256_ps(simd.avx._mm256_set1_epi32(0x7fff_ffff));
    // Plain loops, no closures: see `super::Quantizer`.
    let mut m = simd.avx._mm256_setzero_ps();
    let mut bad = simd.avx._mm256_setzero_ps();
    let infinity = simd.avx._mm256_set1_ps(f32::INFINITY);
    for x in v {
        let a = simd.avx._mm256_and_ps(x, abs_mask);
        m = simd.avx._mm256_max_ps(m, a);
        // |x| < inf is false for infinities and NaN.
        bad = simd
            .avx
            ._mm256_or_ps(bad, simd.avx._mm256_cmp_ps::<0x1d>(a, infinity)); // _CMP_GE_OQ
        bad = simd
            .avx
            ._mm256_or_ps(bad, simd.avx._mm256_cmp_ps::<0x03>(x, x)); // _CMP_UNORD_Q
    }
    let lanes: [f32; 8] = pulp::cast(m);
    let finite = simd.avx._mm256_movemask_ps(bad) == 0;
    let max = lanes.iter().fold(0f32, |m, &x| m.max(x));
    if max < super::TINY || !finite {
        *out = [OFFSET as u8; BLOCK];
        return if finite { 0.0 } else { f32::NAN };
    }
    let inv = simd.avx._mm256_set1_ps(LEVEL as f32 / max);
    let magic = simd.avx._mm256_set1_ps(12_582_912.0);
    let (lo, hi) = (
        simd.avx._mm256_set1_epi32(-LEVEL),
        simd.avx._mm256_set1_epi32(LEVEL),
    );
    let offset = simd.avx._mm256_set1_epi32(OFFSET);
    let mut q = [simd.avx._mm256_setzero_si256(); 4];
    for (q, x) in q.iter_mut().zip(v) {
        let r = simd.avx._mm256_mul_ps(x, inv);
        let r = simd
            .avx
            ._mm256_sub_ps(simd.avx._mm256_add_ps(r, magic), magic);
        let i = simd.avx._mm256_cvttps_epi32(r);
        let i = simd
            .avx2
            ._mm256_min_epi32(simd.avx2._mm256_max_epi32(i, lo), hi);
        *q = simd.avx2._mm256_add_epi32(i, offset);
    }
    // Packing works within 128-bit lanes: the bytes come out as 4-byte units
    // q0[0..4] q1[0..4] q2[0..4] q3[0..4] | q0[4..8] q1[4..8] q2[4..8] q3[4..8].
    let words01 = simd.avx2._mm256_packs_epi32(q[0], q[1]);
    let words23 = simd.avx2._mm256_packs_epi32(q[2], q[3]);
    let bytes = simd.avx2._mm256_packus_epi16(words01, words23);
    let order = simd.avx._mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    *out = pulp::cast(simd.avx2._mm256_permutevar8x32_epi32(bytes, order));
    max / LEVEL as f32
}
