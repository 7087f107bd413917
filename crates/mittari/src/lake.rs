//! Parquet patterns (`'orders/*.parquet'`), read by DataFusion when this build has it.
//!
//! DataFusion is half of what a build compiles, and a first `cargo build` should give a
//! newcomer a working `mittari` in a few minutes: the binary takes it only with the `lake`
//! feature, which the workspace build (`cargo build --workspace`, the tests, the release build)
//! turns on through the end-to-end tests' dependency, and the quick start's `cargo build` (the
//! default members) leaves off. Without it a pattern is refused with how to build it in.

#[cfg(feature = "lake")]
pub(crate) use mittari_lake::Lake;

#[cfg(not(feature = "lake"))]
pub(crate) use without::Lake;

#[cfg(not(feature = "lake"))]
mod without {
    use mittari_engine::MetricDescriptor;
    use mittari_io::{ReadOptions, RfmPeriods, Table};

    /// No lake in this build: `open` refuses every pattern, so no value exists.
    pub(crate) enum Lake {}

    impl Lake {
        pub(crate) async fn open(pattern: &str, _: Option<usize>) -> anyhow::Result<Lake> {
            anyhow::bail!(
                "--input {pattern}: this mittari was built without DataFusion, which reads patterns of Parquet files; build it with `cargo build --workspace` (or `cargo build -p mittari --features lake`), or read one file"
            )
        }

        pub(crate) async fn read(
            &self,
            _: &MetricDescriptor,
            _: &[String],
            _: &ReadOptions,
        ) -> anyhow::Result<Table> {
            match *self {}
        }

        pub(crate) async fn read_rfm_summary(
            &self,
            _: &MetricDescriptor,
            _: &ReadOptions,
            _: RfmPeriods,
        ) -> anyhow::Result<Option<Table>> {
            match *self {}
        }
    }
}
