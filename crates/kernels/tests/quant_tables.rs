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
