//! Test fixture: an ordinary shared library with no Mittari symbols. The host must refuse it.

/// An export that has nothing to do with Mittari.
// SAFETY: a plain C function.
#[unsafe(no_mangle)]
pub extern "C" fn add_numbers(a: i32, b: i32) -> i32 {
    a.wrapping_add(b)
}
