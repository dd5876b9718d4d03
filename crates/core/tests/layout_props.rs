//! Property tests: `check_c_contiguous`, `compact_strides`, `element_count` and `byte_size`
//! against straightforward reference implementations in 128-bit arithmetic, over random
//! shapes and the stride patterns that occur in practice: compact, `x[::k]` slices,
//! transposes, broadcasts (stride 0), size-1 axes with odd strides, zero-size axes, and
//! overflowing sizes.
//!
//! The case count is proptest's default (256) unless `PROPTEST_CASES` says otherwise (the
//! valgrind script runs a handful).

use proptest::prelude::*;
use tensorbridge_core::layout::{byte_size, check_c_contiguous, compact_strides, element_count};
use tensorbridge_core::{DataType, Error};

/// What the reference says about a (shape, strides) pair.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Contiguous,
    Negative(usize),
    Overflow,
    NotContiguous(usize),
}

/// DESIGN.md's rule, written as plainly as possible (products in saturating 128-bit
/// arithmetic, so "above i64::MAX" is exact): for each axis from the innermost out, the
/// stride must equal the product of the sizes after it, unless the axis has size 1; tensors
/// with no elements are contiguous; sizes are non-negative and the element count fits i64.
fn reference(shape: &[i64], strides: Option<&[i64]>) -> Verdict {
    if let Some(axis) = shape.iter().position(|&s| s < 0) {
        return Verdict::Negative(axis);
    }
    if shape.contains(&0) {
        return Verdict::Contiguous;
    }
    for axis in (0..shape.len()).rev() {
        let inner: i128 =
            shape[axis + 1..].iter().fold(1_i128, |acc, &s| acc.saturating_mul(i128::from(s)));
        if inner > i128::from(i64::MAX) {
            return Verdict::Overflow;
        }
        if let Some(strides) = strides {
            if shape[axis] != 1 && i128::from(strides[axis]) != inner {
                return Verdict::NotContiguous(axis);
            }
        }
    }
    let total: i128 = shape.iter().fold(1_i128, |acc, &s| acc.saturating_mul(i128::from(s)));
    if total > i128::from(i64::MAX) {
        return Verdict::Overflow;
    }
    Verdict::Contiguous
}

fn verdict_of(result: Result<(), Error>) -> Verdict {
    match result {
        Ok(()) => Verdict::Contiguous,
        Err(Error::ShapeNegative { axis, .. }) => Verdict::Negative(axis),
        Err(Error::ShapeOverflow { .. }) => Verdict::Overflow,
        Err(Error::NotContiguous { axis, .. }) => Verdict::NotContiguous(axis),
        Err(other) => panic!("unexpected error {other:?}"),
    }
}

fn compact_i128(shape: &[i64]) -> Vec<i128> {
    (0..shape.len())
        .map(|axis| {
            shape[axis + 1..]
                .iter()
                .fold(1_i128, |acc, &s| acc.saturating_mul(i128::from(s.max(1))))
        })
        .collect()
}

/// Small shapes: 0 to 5 axes of size 0 to 5 (1 and 0 well represented).
fn small_shape() -> impl Strategy<Value = Vec<i64>> {
    prop::collection::vec(prop_oneof![2 => Just(1_i64), 1 => Just(0_i64), 5 => 2_i64..6], 0..6)
}

/// How to derive strides from the compact ones.
#[derive(Debug, Clone)]
enum Twist {
    Compact,
    Null,
    /// `x[::k]` on one axis: multiply that axis's stride by `k`.
    Step(usize, i64),
    /// Swap two axes' strides (a transpose view of the same memory).
    Swap(usize, usize),
    /// Broadcast one axis: stride 0.
    Broadcast(usize),
    /// Any stride on one axis (meaningful on size-1 axes).
    Odd(usize, i64),
    /// Fully random strides.
    Random(Vec<i64>),
}

fn twist() -> impl Strategy<Value = Twist> {
    prop_oneof![
        2 => Just(Twist::Compact),
        1 => Just(Twist::Null),
        2 => (0_usize..6, 2_i64..4).prop_map(|(a, k)| Twist::Step(a, k)),
        2 => (0_usize..6, 0_usize..6).prop_map(|(a, b)| Twist::Swap(a, b)),
        2 => (0_usize..6).prop_map(Twist::Broadcast),
        2 => (0_usize..6, -100_i64..100).prop_map(|(a, s)| Twist::Odd(a, s)),
        1 => prop::collection::vec(-20_i64..40, 6).prop_map(Twist::Random),
    ]
}

fn apply(shape: &[i64], twist: &Twist) -> Option<Vec<i64>> {
    let n = shape.len();
    let mut strides: Vec<i64> = compact_i128(shape).iter().map(|&s| s as i64).collect();
    match twist {
        Twist::Compact => {}
        Twist::Null => return None,
        Twist::Step(a, k) if n > 0 => strides[a % n] *= k,
        Twist::Swap(a, b) if n > 0 => strides.swap(a % n, b % n),
        Twist::Broadcast(a) if n > 0 => strides[a % n] = 0,
        Twist::Odd(a, s) if n > 0 => strides[a % n] = *s,
        Twist::Random(r) => strides.copy_from_slice(&r[..n]),
        _ => {}
    }
    Some(strides)
}

proptest! {
    #[test]
    fn check_c_contiguous_agrees_with_the_reference(shape in small_shape(), twist in twist()) {
        let strides = apply(&shape, &twist);
        prop_assert_eq!(
            verdict_of(check_c_contiguous(&shape, strides.as_deref())),
            reference(&shape, strides.as_deref())
        );
    }

    #[test]
    fn reported_stride_and_expected_value_are_the_offending_ones(
        shape in small_shape(),
        twist in twist(),
    ) {
        let strides = apply(&shape, &twist);
        if let Err(Error::NotContiguous { axis, stride, expected }) =
            check_c_contiguous(&shape, strides.as_deref())
        {
            let strides = strides.expect("NULL strides are always contiguous");
            prop_assert_eq!(stride, strides[axis]);
            prop_assert_eq!(i128::from(expected), compact_i128(&shape)[axis]);
            prop_assert_ne!(shape[axis], 1);
        }
    }

    #[test]
    fn negative_sizes_are_found_on_any_axis(
        mut shape in small_shape(),
        pos in 0_usize..6,
        neg in i64::MIN..0,
        twist in twist(),
    ) {
        if !shape.is_empty() {
            let axis = pos % shape.len();
            shape[axis] = neg;
            let strides = apply(&shape, &twist);
            prop_assert_eq!(
                verdict_of(check_c_contiguous(&shape, strides.as_deref())),
                reference(&shape, strides.as_deref())
            );
            let code = element_count(&shape).unwrap_err().code();
            prop_assert_eq!(code, "ERR_SHAPE_NEGATIVE");
        }
    }

    #[test]
    fn huge_sizes_overflow_like_the_reference(
        shape in prop::collection::vec(
            prop_oneof![1 => Just(0_i64), 2 => Just(1_i64), 3 => 1_i64..i64::MAX],
            0..5
        ),
        twist in twist(),
    ) {
        let strides = apply_saturating(&shape, &twist);
        prop_assert_eq!(
            verdict_of(check_c_contiguous(&shape, strides.as_deref())),
            reference(&shape, strides.as_deref())
        );
        let total: i128 = if shape.contains(&0) {
            0
        } else {
            shape.iter().fold(1_i128, |acc, &s| acc.saturating_mul(i128::from(s)))
        };
        match element_count(&shape) {
            Ok(n) => prop_assert_eq!(n as i128, total),
            Err(e) => {
                prop_assert_eq!(e.code(), "ERR_SHAPE_OVERFLOW");
                prop_assert!(total > i128::from(i64::MAX));
            }
        }
    }

    #[test]
    fn compact_strides_are_contiguous_and_match_the_reference(shape in small_shape()) {
        let strides = compact_strides(&shape).unwrap();
        prop_assert_eq!(
            strides.iter().map(|&s| i128::from(s)).collect::<Vec<_>>(),
            compact_i128(&shape)
        );
        prop_assert!(check_c_contiguous(&shape, Some(&strides)).is_ok());
    }

    #[test]
    fn byte_size_is_count_times_element_size(shape in small_shape(), which in 0_usize..13) {
        let dtype = DataType::ALL[which];
        let count: usize = shape.iter().map(|&s| s as usize).product();
        prop_assert_eq!(byte_size(&shape, dtype).unwrap(), count * dtype.element_size().unwrap());
    }
}

/// Like `apply`, but compact strides that don't fit i64 saturate (the shape overflows anyway).
fn apply_saturating(shape: &[i64], twist: &Twist) -> Option<Vec<i64>> {
    let compact: Vec<i64> =
        compact_i128(shape).iter().map(|&s| s.min(i128::from(i64::MAX)) as i64).collect();
    let mut strides = compact;
    let n = shape.len();
    match twist {
        Twist::Null => return None,
        Twist::Broadcast(a) if n > 0 => strides[a % n] = 0,
        Twist::Odd(a, s) if n > 0 => strides[a % n] = *s,
        _ => {}
    }
    Some(strides)
}

#[test]
fn numpy_every_other_element_is_refused_on_the_outermost_axis() {
    // numpy: np.arange(10, dtype=np.float32)[::2] exports shape [5], strides [2].
    assert_eq!(verdict_of(check_c_contiguous(&[5], Some(&[2]))), Verdict::NotContiguous(0));
    // np.zeros((4, 3))[::2] exports shape [2, 3], strides [6, 1].
    assert_eq!(verdict_of(check_c_contiguous(&[2, 3], Some(&[6, 1]))), Verdict::NotContiguous(0));
}
