//! The `mittari` package is the CLI binary (`src/main.rs`). This library target holds nothing:
//! it exists so that another package of the workspace can depend on this one and turn its
//! features on. The end-to-end tests (`tests/`) turn on `lake`, so every workspace build
//! (`cargo build --workspace`, the tests, the release build) has DataFusion's Parquet patterns,
//! while the quick start's `cargo build` of the default members leaves them out and builds in
//! half the time.
