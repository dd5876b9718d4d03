//! Shapes, strides and sizes: pure, safe, overflow-checked arithmetic.
//!
//! The C-contiguity rule is the one NumPy, PyTorch and CuPy agree on (DESIGN.md, "C-order
//! contiguity"): a tensor with zero elements is contiguous; otherwise, walking the axes from
//! last to first with `expected = 1` (in elements), an axis of size 1 may have any stride and
//! every other axis must have `stride == expected`, then `expected *= size`. The outermost
//! stride is checked like the others (Triton's Python backend skips it and so accepts
//! `x[::2]`), and zero-element tensors are accepted (Triton rejects them).

use crate::dtype::DataType;
use crate::error::{Error, Result};

/// The most dimensions a tensor may have: 64, NumPy 2's `NPY_MAXDIMS`. DLPack itself has no
/// limit; this bounds what an untrusted `ndim` can make us read and allocate.
pub const MAX_NDIM: usize = 64;

/// Fails with `ERR_SHAPE_NEGATIVE` on the first negative dimension.
fn check_non_negative(shape: &[i64]) -> Result<()> {
    match shape.iter().position(|&size| size < 0) {
        Some(axis) => Err(Error::ShapeNegative { axis, size: shape[axis] }),
        None => Ok(()),
    }
}

/// Compact row-major strides (in elements) for `shape`.
///
/// Zero-sized axes count as 1 when multiplying, as NumPy and PyTorch do, so `[2, 0, 3]` gets
/// `[3, 3, 1]` (any strides would be valid for a tensor without elements).
///
/// Only the strides themselves must fit `i64`, plus the element count when the tensor has
/// elements: a zero-element `[i64::MAX - 1, 0, 3]` gets `[3, 3, 1]`, although the product of
/// its non-zero axes overflows.
///
/// # Errors
///
/// `ERR_SHAPE_NEGATIVE` for a negative dimension, `ERR_SHAPE_OVERFLOW` when a stride (or, for a
/// tensor with elements, the element count) does not fit `i64`.
pub fn compact_strides(shape: &[i64]) -> Result<Vec<i64>> {
    check_non_negative(shape)?;
    let mut strides = vec![0_i64; shape.len()];
    // The stride of the next axis out; `None` once it no longer fits.
    let mut acc = Some(1_i64);
    for axis in (0..shape.len()).rev() {
        strides[axis] =
            acc.ok_or_else(|| Error::overflow(shape, format!("the stride of axis {axis}")))?;
        acc = strides[axis].checked_mul(shape[axis].max(1));
    }
    if acc.is_none() && !shape.contains(&0) {
        return Err(Error::overflow(shape, "the element count"));
    }
    Ok(strides)
}

/// Checks that `strides` (in elements; `None` means compact) describe a C-contiguous layout of
/// `shape`, by the rule in the [module docs](self).
///
/// # Errors
///
/// - `ERR_INVALID_ARGUMENT` when `strides` and `shape` differ in length.
/// - `ERR_SHAPE_NEGATIVE` for a negative dimension (checked first, on every axis).
/// - `ERR_SHAPE_OVERFLOW` when the element count does not fit `i64`.
/// - `ERR_DLPACK_NOT_CONTIGUOUS` naming the first offending axis from the innermost outwards,
///   with its stride and the stride C order expects there.
pub fn check_c_contiguous(shape: &[i64], strides: Option<&[i64]>) -> Result<()> {
    check_non_negative(shape)?;
    if let Some(strides) = strides {
        if strides.len() != shape.len() {
            return Err(Error::invalid_argument(format!(
                "{} strides were given for {} dimensions; pass one stride per dimension",
                strides.len(),
                shape.len()
            )));
        }
    }
    if shape.contains(&0) {
        return Ok(());
    }
    let mut expected: i64 = 1;
    for axis in (0..shape.len()).rev() {
        let size = shape[axis];
        if let Some(strides) = strides {
            if size != 1 && strides[axis] != expected {
                return Err(Error::NotContiguous { axis, stride: strides[axis], expected });
            }
        }
        expected = expected
            .checked_mul(size)
            .ok_or_else(|| Error::overflow(shape, "the element count"))?;
    }
    Ok(())
}

/// The number of elements (1 for a 0-d tensor, 0 if any axis is 0).
///
/// # Errors
///
/// `ERR_SHAPE_NEGATIVE` for a negative dimension, `ERR_SHAPE_OVERFLOW` when the count does
/// not fit `i64` (DLPack's index type) or `usize`.
pub fn element_count(shape: &[i64]) -> Result<usize> {
    check_non_negative(shape)?;
    if shape.contains(&0) {
        return Ok(0);
    }
    shape
        .iter()
        .try_fold(1_i64, |acc, &size| acc.checked_mul(size))
        .and_then(|count| usize::try_from(count).ok())
        .ok_or_else(|| Error::overflow(shape, "the element count"))
}

/// The bytes a C-contiguous tensor of `shape` and `dtype` occupies; at most `isize::MAX`, the
/// most Rust (and any allocator) can address as one object.
///
/// # Errors
///
/// `ERR_SHAPE_NEGATIVE`, `ERR_SHAPE_OVERFLOW` (count or bytes too large) and
/// `ERR_DTYPE_UNSUPPORTED` for [`DataType::Bytes`], which has no fixed element size.
pub fn byte_size(shape: &[i64], dtype: DataType) -> Result<usize> {
    let count = element_count(shape)?;
    let Some(size) = dtype.element_size() else {
        return Err(Error::DtypeUnsupported {
            dtype: "BYTES".into(),
            reason: "BYTES elements have no fixed size, so they can't be laid out as a dense \
                     tensor; serialize them with 4-byte length prefixes instead"
                .into(),
        });
    };
    count
        .checked_mul(size)
        .filter(|&bytes| isize::try_from(bytes).is_ok())
        .ok_or_else(|| Error::overflow(shape, format!("the byte size ({dtype} elements)")))
}

/// Fails with `ERR_INVALID_ARGUMENT` when `ndim` exceeds [`MAX_NDIM`].
pub(crate) fn check_ndim_argument(ndim: usize) -> Result<()> {
    if ndim > MAX_NDIM {
        return Err(Error::invalid_argument(format!(
            "a tensor may have at most {MAX_NDIM} dimensions, not {ndim}; reshape it"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_strides_are_row_major_products() {
        assert_eq!(compact_strides(&[2, 3, 4]).unwrap(), [12, 4, 1]);
        assert_eq!(compact_strides(&[]).unwrap(), Vec::<i64>::new());
        assert_eq!(compact_strides(&[2, 0, 3]).unwrap(), [3, 3, 1]);
    }

    #[test]
    fn compact_strides_pass_the_contiguity_check() {
        for shape in [&[2_i64, 3, 4][..], &[1, 1], &[5], &[], &[2, 0, 3]] {
            let strides = compact_strides(shape).unwrap();
            check_c_contiguous(shape, Some(&strides)).unwrap();
        }
    }

    #[test]
    fn outermost_stride_is_checked_so_every_other_row_is_refused() {
        // x = arange(8).reshape(4, 2)[::2]  ->  shape [2, 2], strides [4, 1]
        let err = check_c_contiguous(&[2, 2], Some(&[4, 1])).unwrap_err();
        assert_eq!(err, Error::NotContiguous { axis: 0, stride: 4, expected: 2 });
        // x = arange(8)[::2]  ->  shape [4], strides [2]
        let err = check_c_contiguous(&[4], Some(&[2])).unwrap_err();
        assert_eq!(err.code(), "ERR_DLPACK_NOT_CONTIGUOUS");
    }

    #[test]
    fn zero_element_tensors_are_contiguous_whatever_their_strides() {
        check_c_contiguous(&[0], Some(&[7])).unwrap();
        check_c_contiguous(&[3, 0, 2], Some(&[-1, 99, 5])).unwrap();
    }

    #[test]
    fn size_one_axes_may_have_any_stride() {
        check_c_contiguous(&[1, 3], Some(&[1, 1])).unwrap();
        check_c_contiguous(&[3, 1], Some(&[1, 0])).unwrap();
        check_c_contiguous(&[1, 1, 1], Some(&[-5, 0, 123])).unwrap();
    }

    #[test]
    fn transposes_and_broadcasts_are_refused_naming_the_axis() {
        let err = check_c_contiguous(&[3, 2], Some(&[1, 3])).unwrap_err();
        assert_eq!(err, Error::NotContiguous { axis: 1, stride: 3, expected: 1 });
        let err = check_c_contiguous(&[4, 3], Some(&[0, 1])).unwrap_err();
        assert_eq!(err, Error::NotContiguous { axis: 0, stride: 0, expected: 3 });
    }

    #[test]
    fn negative_sizes_are_reported_before_anything_else() {
        let err = check_c_contiguous(&[0, -2], Some(&[1, 1])).unwrap_err();
        assert_eq!(err, Error::ShapeNegative { axis: 1, size: -2 });
        assert_eq!(element_count(&[3, -1]).unwrap_err().code(), "ERR_SHAPE_NEGATIVE");
        assert_eq!(compact_strides(&[-1]).unwrap_err().code(), "ERR_SHAPE_NEGATIVE");
    }

    #[test]
    fn overflowing_products_are_shape_overflow_errors() {
        let huge = [i64::MAX, 2];
        assert_eq!(check_c_contiguous(&huge, None).unwrap_err().code(), "ERR_SHAPE_OVERFLOW");
        assert_eq!(element_count(&huge).unwrap_err().code(), "ERR_SHAPE_OVERFLOW");
        assert_eq!(compact_strides(&[2, i64::MAX]).unwrap_err().code(), "ERR_SHAPE_OVERFLOW");
        // The element count fits but the byte size does not fit isize.
        let big = [1_i64 << 61];
        assert_eq!(element_count(&big).unwrap(), 1 << 61);
        assert_eq!(byte_size(&big, DataType::F64).unwrap_err().code(), "ERR_SHAPE_OVERFLOW");
        assert_eq!(byte_size(&big, DataType::U8).unwrap(), 1 << 61);
    }

    #[test]
    fn zero_sized_axes_make_zero_elements_even_beside_huge_ones() {
        assert_eq!(element_count(&[i64::MAX, i64::MAX, 0]).unwrap(), 0);
        check_c_contiguous(&[i64::MAX, i64::MAX, 0], None).unwrap();
        assert_eq!(element_count(&[]).unwrap(), 1);
    }

    #[test]
    fn byte_size_multiplies_by_the_element_size_and_refuses_bytes() {
        assert_eq!(byte_size(&[2, 3], DataType::F32).unwrap(), 24);
        assert_eq!(byte_size(&[], DataType::F64).unwrap(), 8);
        assert_eq!(byte_size(&[2], DataType::Bytes).unwrap_err().code(), "ERR_DTYPE_UNSUPPORTED");
    }

    #[test]
    fn mismatched_stride_count_is_an_invalid_argument() {
        let err = check_c_contiguous(&[2, 2], Some(&[1])).unwrap_err();
        assert_eq!(err.code(), "ERR_INVALID_ARGUMENT");
    }

    #[test]
    fn ndim_limit_is_enforced() {
        check_ndim_argument(MAX_NDIM).unwrap();
        assert_eq!(check_ndim_argument(MAX_NDIM + 1).unwrap_err().code(), "ERR_INVALID_ARGUMENT");
    }
}
