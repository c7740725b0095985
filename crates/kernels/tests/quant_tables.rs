//! Spot checks of the format tables.

use kernels::quants::{KSIGNS, KVALUES_IQ4NL, KVALUES_MXFP4};

#[test]
fn ksigns_have_even_parity_and_keep_the_low_bits() {
    for (i, &s) in KSIGNS.iter().enumerate() {
        assert_eq!(s & 0x7F, i as u8);
        assert_eq!(s.count_ones() % 2, 0, "index {i}");
    }
    assert_eq!(&KSIGNS[..8], &[0, 129, 130, 3, 132, 5, 6, 135]);
    assert_eq!(KSIGNS[127], 255);
}

#[test]
fn nonlinear_levels_are_sorted_and_symmetric_where_expected() {
    assert!(KVALUES_IQ4NL.windows(2).all(|w| w[0] < w[1]));
    for k in 0..8 {
        assert_eq!(KVALUES_MXFP4[k + 8], -KVALUES_MXFP4[k]);
    }
}

#[test]
fn f16_conversion_matches_half_for_every_bit_pattern() {
    for h in 0..=u16::MAX {
        let want = half::f16::from_bits(h).to_f32();
        let got = kernels::quants::f16_bits_to_f32(h);
        if want.is_nan() {
            assert!(got.is_nan(), "{h:#06x}");
            assert_eq!(got.is_sign_negative(), want.is_sign_negative(), "{h:#06x}");
        } else {
            assert_eq!(got.to_bits(), want.to_bits(), "{h:#06x}");
        }
    }
}

#[test]
fn cast_blocks_views_whole_blocks_at_any_address() {
    use kernels::quants::{cast_blocks, BlockQ4K, BlockQ8_0};
    let bytes = [7u8; 3 * 34 + 5];
    let blocks = cast_blocks::<BlockQ8_0>(&bytes[1..]);
    assert_eq!(blocks.len(), 3);
    assert_eq!(blocks[2].qs[31], 7);
    assert!(cast_blocks::<BlockQ4K>(&bytes[..100]).is_empty());
}
