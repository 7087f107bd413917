//! Test fixture: a library that claims to be a Mittari plugin of a future ABI version. The
//! host must refuse it after reading the version, without calling anything else.

/// An ABI version no server speaks.
// SAFETY: a plain C function with the documented signature of the version symbol.
#[unsafe(no_mangle)]
pub extern "C" fn mittari_plugin_abi_version() -> u32 {
    9999
}

/// Must never be called: the host checks the version first.
// SAFETY: as above; it aborts to make a wrong call impossible to miss.
#[unsafe(no_mangle)]
pub extern "C" fn mittari_plugin_entry() -> *const u8 {
    std::process::abort()
}
