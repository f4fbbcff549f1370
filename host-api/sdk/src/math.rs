//! Integer helpers for token arithmetic, exact over 256-bit intermediates so
//! that `amount * reserve / total` does not overflow for realistic amounts.

/// The full 256-bit product of `a` and `b` as `(high, low)`.
pub const fn mul_wide(a: u128, b: u128) -> (u128, u128) {
    const MASK: u128 = u64::MAX as u128;
    let (a_hi, a_lo) = (a >> 64, a & MASK);
    let (b_hi, b_lo) = (b >> 64, b & MASK);
    let lo_lo = a_lo * b_lo;
    let hi_lo = a_hi * b_lo;
    let lo_hi = a_lo * b_hi;
    let hi_hi = a_hi * b_hi;
    let cross = (lo_lo >> 64) + (hi_lo & MASK) + (lo_hi & MASK);
    let low = (lo_lo & MASK) | (cross << 64);
    let high = hi_hi + (hi_lo >> 64) + (lo_hi >> 64) + (cross >> 64);
    (high, low)
}

/// `floor(a * b / d)`, or `None` if `d` is 0 or the result exceeds `u128`.
pub const fn mul_div(a: u128, b: u128, d: u128) -> Option<u128> {
    if d == 0 {
        return None;
    }
    let (high, low) = mul_wide(a, b);
    if high == 0 {
        return Some(low / d);
    }
    if high >= d {
        return None;
    }
    // Long division of (high, low) by d, one bit of `low` at a time; the
    // remainder stays below d, so its doubling may carry out of 128 bits.
    let mut rem = high;
    let mut quotient = 0u128;
    let mut bit = 128;
    while bit > 0 {
        bit -= 1;
        let carry = rem >> 127;
        rem = (rem << 1) | ((low >> bit) & 1);
        quotient <<= 1;
        if carry == 1 || rem >= d {
            rem = rem.wrapping_sub(d);
            quotient |= 1;
        }
    }
    Some(quotient)
}

/// `floor(sqrt(a * b))`, exact over the 256-bit product.
pub const fn sqrt_mul(a: u128, b: u128) -> u128 {
    let target = mul_wide(a, b);
    let mut root = 0u128;
    let mut bit = 128;
    while bit > 0 {
        bit -= 1;
        let candidate = root | (1u128 << bit);
        let square = mul_wide(candidate, candidate);
        if square.0 < target.0 || (square.0 == target.0 && square.1 <= target.1) {
            root = candidate;
        }
    }
    root
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_values() {
        assert_eq!(mul_wide(u128::MAX, u128::MAX), (u128::MAX - 1, 1));
        assert_eq!(mul_div(1 << 127, 4, 8), Some(1 << 126));
        assert_eq!(mul_div(u128::MAX, u128::MAX, u128::MAX), Some(u128::MAX));
        assert_eq!(mul_div(u128::MAX, 2, 1), None);
        assert_eq!(mul_div(5, 5, 0), None);
        assert_eq!(sqrt_mul(u128::MAX, u128::MAX), u128::MAX);
        assert_eq!(sqrt_mul(10, 10), 10);
        assert_eq!(sqrt_mul(2, 1), 1);
        assert_eq!(sqrt_mul(0, 99), 0);
    }

    proptest! {
        #[test]
        fn mul_div_matches_narrow_arithmetic(a in any::<u64>(), b in any::<u64>(), d in 1..u128::MAX) {
            prop_assert_eq!(mul_div(a as u128, b as u128, d), Some((a as u128 * b as u128) / d));
        }

        #[test]
        fn mul_div_inverts_multiplication(a in any::<u128>(), b in 1..u128::MAX) {
            // (a * b) / b == a for every a, b: exercises the 256-bit path.
            prop_assert_eq!(mul_div(a, b, b), Some(a));
        }

        #[test]
        fn sqrt_mul_is_the_floor_root(a in any::<u128>(), b in any::<u128>()) {
            let r = sqrt_mul(a, b);
            let sq = mul_wide(r, r);
            let target = mul_wide(a, b);
            prop_assert!(sq <= target);
            if r < u128::MAX {
                prop_assert!(mul_wide(r + 1, r + 1) > target);
            }
        }
    }
}
