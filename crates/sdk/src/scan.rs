//! Checks over a column's values at memory speed.
//!
//! A request of ten million rows is checked value by value (finite numbers, timestamps within
//! years 1 to 9999, declared ranges) by the host, and a plugin may check its own rules too.
//! Arrow's `Option` iterator tests every slot's validity bit before its value: branches the
//! compiler cannot vectorize, a third of a large request's time on the server. [`first_refused`]
//! tests a block of values at a time without branching and looks at validity only inside a
//! block that holds a refused value, where the slot may be an empty one whose value means
//! nothing.

use arrow_buffer::NullBuffer;

/// Values tested together before validity is looked at: small enough to stay in L1.
const BLOCK: usize = 1024;

/// The first slot of `values` that holds a value (`nulls` says which slots are empty) and that
/// `accept` refuses; `None` when every value is accepted. `accept` must be cheap and without
/// side effects: it is called once or twice per value, on empty slots too.
pub fn first_refused<T: Copy>(
    values: &[T],
    nulls: Option<&NullBuffer>,
    accept: impl Fn(T) -> bool,
) -> Option<usize> {
    let mut start = 0;
    for block in values.chunks(BLOCK) {
        // `&` rather than `&&`: no early exit, so the loop vectorizes.
        if !block.iter().fold(true, |all, &value| all & accept(value)) {
            let refused = block.iter().enumerate().position(|(i, &value)| {
                !accept(value) && nulls.is_none_or(|nulls| nulls.is_valid(start + i))
            });
            if let Some(i) = refused {
                return Some(start + i);
            }
        }
        start += block.len();
    }
    None
}

/// How many slots from `from` on hold a value that `accept` refuses: the count an error
/// message gives after [`first_refused`] found the first.
pub fn count_refused<T: Copy>(
    values: &[T],
    nulls: Option<&NullBuffer>,
    from: usize,
    accept: impl Fn(T) -> bool,
) -> usize {
    values
        .iter()
        .enumerate()
        .skip(from)
        .filter(|&(i, &value)| !accept(value) && nulls.is_none_or(|nulls| nulls.is_valid(i)))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(values: &[i64], valid: Option<&[bool]>, expect: Option<usize>) {
        let nulls = valid.map(|v| NullBuffer::from(v.to_vec()));
        let positive = |v: i64| v > 0;
        assert_eq!(first_refused(values, nulls.as_ref(), positive), expect);
        let naive = values
            .iter()
            .enumerate()
            .position(|(i, &v)| !positive(v) && valid.is_none_or(|valid| valid[i]));
        assert_eq!(naive, expect, "the expectation disagrees with a plain scan");
    }

    #[test]
    fn finds_the_first_refused_value_with_a_value() {
        check(&[], None, None);
        check(&[1, 2, 3], None, None);
        check(&[1, 0, -1], None, Some(1));
        // An empty slot's value is not looked at, whatever it holds.
        check(&[1, 0, -1], Some(&[true, false, true]), Some(2));
        check(&[1, 0, 5], Some(&[true, false, true]), None);
    }

    #[test]
    fn finds_values_past_the_first_block_and_at_its_edges() {
        for at in [0, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 7] {
            let mut values = vec![1_i64; 4 * BLOCK];
            values[at] = -5;
            check(&values, None, Some(at));
            // The same refused value in an empty slot, and a later one in a full slot.
            let mut valid = vec![true; 4 * BLOCK];
            valid[at] = false;
            values[4 * BLOCK - 1] = 0;
            check(&values, Some(&valid), Some(4 * BLOCK - 1));
        }
    }

    #[test]
    fn counts_the_refused_values_from_a_row_on() {
        let values = [1_i64, -1, 2, -2, -3];
        let nulls = NullBuffer::from(vec![true, true, true, true, false]);
        assert_eq!(count_refused(&values, None, 0, |v| v > 0), 3);
        assert_eq!(count_refused(&values, None, 2, |v| v > 0), 2);
        assert_eq!(count_refused(&values, Some(&nulls), 2, |v| v > 0), 1);
    }
}
