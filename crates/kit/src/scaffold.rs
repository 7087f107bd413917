//! `mittari plugin new`: a complete plugin crate, outside the workspace, that builds, passes
//! its tests, passes `plugin check` and loads in a server with no edit.

use std::path::{Path, PathBuf};

/// Where the generated crate gets `mittari-sdk` from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SdkSource {
    /// A checkout's `crates/sdk`, by path.
    Path(PathBuf),
    /// crates.io, once the SDK is published there.
    Version(String),
}

/// Why a plugin crate could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error(
        "{name:?} is not a metric name: use lowercase letters, digits and underscores, starting with a letter (e.g. repeat_rate)"
    )]
    BadName { name: String },
    #[error("{} already exists and is not empty; choose another --path", .0.display())]
    NotEmpty(PathBuf),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The package name of metric `name`'s plugin crate, which makes cargo name its library
/// `mittari_plugin_<name>`, the prefix a server loads.
pub fn crate_name(name: &str) -> String {
    format!("mittari-plugin-{}", name.replace('_', "-"))
}

/// Writes the crate for metric `name` into `dir` (created; it must not exist or be empty).
/// `lockfile`, a checkout's `Cargo.lock`, pins the generated crate to the versions the SDK
/// was tested with. Returns the files written.
pub fn new_plugin(
    name: &str,
    dir: &Path,
    sdk: &SdkSource,
    lockfile: Option<&Path>,
) -> Result<Vec<PathBuf>, ScaffoldError> {
    if !mittari_sdk::is_snake_case(name) {
        return Err(ScaffoldError::BadName {
            name: name.to_owned(),
        });
    }
    if std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(ScaffoldError::NotEmpty(dir.to_owned()));
    }
    let crate_name = crate_name(name);
    let library = format!(
        "{}mittari_plugin_{name}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    let type_name: String = name
        .split('_')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or(String::new(), |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect();
    let (dependency, sdk_note) = match sdk {
        SdkSource::Path(path) => (
            format!(
                "mittari-sdk = {{ path = {:?} }}",
                path.display().to_string()
            ),
            format!(
                "`Cargo.toml` takes `mittari-sdk` by path from the Mittari checkout at `{}`, \
                 and `Cargo.lock` pins the versions that checkout was tested with. Once \
                 `mittari-sdk` is published, replace the path with the server's version: \
                 `mittari-sdk = \"{}\"`.",
                path.display(),
                env!("CARGO_PKG_VERSION")
            ),
        ),
        SdkSource::Version(version) => (
            format!("mittari-sdk = \"{version}\""),
            format!(
                "`Cargo.toml` takes `mittari-sdk` {version} from crates.io, the version of the \
                 server this crate was made by. If it is not published (yet), point it at a \
                 Mittari checkout instead: `mittari-sdk = {{ path = \"…/crates/sdk\" }}`."
            ),
        ),
    };
    let files = [
        (
            "Cargo.toml",
            CARGO_TOML
                .replace("{crate_name}", &crate_name)
                .replace("{dependency}", &dependency),
        ),
        (
            "src/lib.rs",
            LIB_RS.replace("{name}", name).replace("{Type}", &type_name),
        ),
        (
            "README.md",
            README
                .replace("{name}", name)
                .replace("{crate_name}", &crate_name)
                .replace("{library}", &library)
                .replace("{sdk_note}", &sdk_note)
                .replace("{mittari}", &mittari_command()),
        ),
        (".gitignore", "/target\n".to_owned()),
    ];
    let mut written = Vec::new();
    let write = |path: PathBuf, text: &[u8]| -> Result<PathBuf, ScaffoldError> {
        let fail = |source| ScaffoldError::Write {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(fail)?;
        }
        std::fs::write(&path, text).map_err(fail)?;
        Ok(path)
    };
    for (file, text) in files {
        written.push(write(dir.join(file), text.as_bytes())?);
    }
    if let Some(lockfile) = lockfile
        && let Ok(lock) = std::fs::read(lockfile)
    {
        // Cargo drops the workspace's other packages from it at the first build.
        written.push(write(dir.join("Cargo.lock"), &lock)?);
    }
    Ok(written)
}

const CARGO_TOML: &str = r#"[package]
name = "{crate_name}"
version = "0.1.0"
edition = "2024"
publish = false

# A cdylib is what the server loads; the rlib lets tests and other crates use the metric.
[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
{dependency}

# Not a member of any enclosing workspace.
[workspace]
"#;

const LIB_RS: &str = r#"//! The `{name}` metric: the share of orders whose amount reaches a threshold.
//!
//! Made by `mittari plugin new` as a starting point that works: change the descriptor (what
//! the metric reads, takes and returns) and `compute`, and keep the tests in step.
#![forbid(unsafe_code)]

use mittari_sdk::prelude::*;

pub struct {Type};

impl Metric for {Type} {
    fn descriptor(&self) -> MetricDescriptor {
        MetricDescriptor::new(
            "{name}",
            env!("CARGO_PKG_VERSION"),
            "share of orders at or above a threshold",
        )
        .description(concat!(
            "One row per order. share = orders whose amount is at least threshold / orders * ",
            "100; undefined without orders.",
        ))
        .input(ColumnSpec::quantity("amount", "the order's value").required())
        .parameter(
            ParameterSpec::double("threshold", 100.0, "the amount an order must reach")
                .range(0.0, MAX_QUANTITY),
        )
        .output(OutputSpec::new(
            "share",
            "%",
            "orders at or above the threshold, as a percentage of all orders",
        ))
    }

    fn compute(&self, input: &Input<'_>, params: &Params) -> Result<Output, MetricError> {
        // The engine has checked the request against the descriptor: amount is present, has
        // no nulls and is within 0..=MAX_QUANTITY; threshold has a value within its range.
        let threshold = params.f64("threshold")?;
        let amounts = input.double("amount")?.values();
        let reached = amounts.iter().filter(|&&amount| amount >= threshold).count();
        Ok(Output::new().scalar(Scalar::percent(
            "share",
            reached as f64,
            amounts.len() as f64,
            "no orders",
        )))
    }
}

mittari_sdk::export_plugin!({Type});

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use mittari_sdk::arrow_array::Float64Array;
    use mittari_sdk::arrow_schema::{DataType, Field, Schema};

    use super::*;

    /// Computes over `amounts` with `threshold` and compares the share with `expect` (`None`:
    /// undefined), worked out by hand.
    fn check(amounts: &[f64], threshold: f64, expect: Option<f64>) {
        let schema = Schema::new(vec![Field::new("amount", DataType::Float64, false)]);
        let batch = RecordBatch::try_new(
            Arc::new(schema),
            vec![Arc::new(Float64Array::from(amounts.to_vec()))],
        )
        .unwrap();
        let mut params = Params::new();
        params.insert("threshold", ParamValue::Double(threshold));
        let output = {Type}.compute(&Input::new(&batch), &params).unwrap();
        assert_eq!(output.scalars.len(), 1);
        assert_eq!(output.scalars[0].value, expect, "{amounts:?} at {threshold}");
    }

    #[test]
    fn share_of_orders_at_or_above_the_threshold() {
        check(&[50.0, 100.0, 150.0, 20.0], 100.0, Some(50.0));
        check(&[50.0, 100.0, 150.0, 20.0], 0.0, Some(100.0));
        check(&[50.0, 100.0, 150.0, 20.0], 151.0, Some(0.0));
        check(&[99.99, 100.0, 100.01], 100.0, Some(200.0 / 3.0));
        check(&[], 100.0, None);
    }

    #[test]
    fn the_descriptor_has_no_problem() {
        assert_eq!({Type}.descriptor().lint(), Vec::<String>::new());
    }
}
"#;

const README: &str = r#"# {crate_name}

The `{name}` metric for Mittari, as a plugin: a shared library the server loads at run time.
It computes the share of orders whose amount reaches a threshold; make it yours in
`src/lib.rs` (the descriptor says what it reads, takes and returns; `compute` computes).

{sdk_note}

## Build, check, install

```sh
cargo build --release && cargo test --release
{mittari} plugin check target/release/{library}
cp target/release/{library} PLUGIN_DIR/ && {mittari} admin reload --server URL
```

(`{mittari}` is the `mittari` that wrote this crate; with `mittari` on your `PATH`, e.g. after
`cargo install --path crates/mittari` in the Mittari checkout, `mittari` does the same.)

`mittari plugin check` loads the library in a child process and sends it what a server's
clients may send (no rows, one row, 1 000 000 rows, a few hundred generated extreme requests);
it fails on a panic, an abort, NaN, an undeclared output, a wrong row index, a hang or two
different results for the same request, and on descriptor problems. `PLUGIN_DIR` is a
directory of your own plugins that the server's configuration lists in `plugins.extra_dirs`
(not the build output of the Mittari checkout, the default `plugins.dir`, where builds and the
checkout's own tests expect only the bundled plugins); a server not yet running loads the
library when it starts. Then:

```sh
{mittari} metrics {name} --server URL
{mittari} compute {name} --input orders.csv --param threshold=50 --server URL
```

Without `--server`, `mittari compute` runs the engine in its own process and loads the plugins
from the same directories (`--config FILE` for the configuration that lists yours). The guide to the SDK and the binary interface is `docs/plugin-abi.md`
in the Mittari repository.

## A metric with a stored model

A metric that learns something from data (a baseline, a model's parameters) can be fitted once
and scored again and again, as Mittari's CLV models are: `mittari model fit {name} --name NAME
--input FILE` stores the fit, `mittari model score NAME --input FILE` scores other data with
it, and the server's ModelService does both over gRPC. Three steps in `src/lib.rs`:

1. declare it: `.fitted(&["a_parameter_the_fit_fixes"], "what the state holds")` on the
   descriptor;
2. give the state a type, `#[derive(serde::Serialize, serde::Deserialize)]` with
   `impl mittari_sdk::state::Fitted for MyState { const FORMAT: u32 = 1; }` (raise `FORMAT`
   when the state's meaning changes: a server then refuses old models with a clear error
   instead of misreading them);
3. implement `Metric::fit` (return `FittedModel::new(&state, output)`, the output being what
   `compute` returns for the same request) and `Metric::score` (`state.decode::<MyState>()`,
   then compute from it).

`examples/stateful_plugin` in the Mittari repository is a complete, tested example, and
`{mittari} plugin check target/release/{library} --fit-input FILE` checks that scoring the fit's
own data gives the fit's results.
"#;

/// How the generated README calls `mittari`: the executable running now, by its absolute path
/// (quoted for the shell when it needs to be), so its commands run as written from the new
/// crate's directory, where a checkout's `cargo run --` does not reach; `mittari` when the
/// running executable cannot be found.
fn mittari_command() -> String {
    let Ok(exe) = std::env::current_exe() else {
        return "mittari".to_owned();
    };
    let path = exe.display().to_string();
    let plain = path
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+".contains(c));
    if plain {
        path
    } else {
        format!("'{}'", path.replace('\'', "'\\''"))
    }
}

/// The SDK crate at `sdk` (a checkout's `crates/sdk`), by its canonical path, and the
/// checkout's `Cargo.lock` if it has one.
pub fn sdk_in_checkout(sdk: &Path) -> std::io::Result<(SdkSource, Option<PathBuf>)> {
    let sdk = sdk.canonicalize()?;
    if !sdk.join("Cargo.toml").is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no Cargo.toml there: give the checkout's crates/sdk",
        ));
    }
    let lockfile = sdk.join("../../Cargo.lock");
    Ok((SdkSource::Path(sdk), lockfile.is_file().then_some(lockfile)))
}

/// The SDK this build of Mittari was made with: by path when the checkout is still where it
/// was built, else by version.
pub fn sdk_of_this_build() -> (SdkSource, Option<PathBuf>) {
    sdk_in_checkout(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk")).unwrap_or_else(|_| {
        (
            SdkSource::Version(env!("CARGO_PKG_VERSION").to_owned()),
            None,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_directories_are_checked_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let sdk = SdkSource::Version("0.1.0".to_owned());
        for bad in ["Orders", "2nd_rate", "order-share", "share_", "a__b", ""] {
            let error = new_plugin(bad, &dir.path().join("x"), &sdk, None).unwrap_err();
            assert!(
                matches!(error, ScaffoldError::BadName { .. }),
                "{bad}: {error}"
            );
        }
        assert!(!dir.path().join("x").exists());
        std::fs::write(dir.path().join("taken"), "").unwrap();
        let error = new_plugin("order_share", dir.path(), &sdk, None).unwrap_err();
        assert!(matches!(error, ScaffoldError::NotEmpty(_)), "{error}");
    }

    #[test]
    fn the_crate_is_named_after_the_metric() {
        let dir = tempfile::tempdir().unwrap();
        let crate_dir = dir.path().join("orders");
        let sdk = SdkSource::Version("0.1.0".to_owned());
        let written = new_plugin("order_share", &crate_dir, &sdk, None).unwrap();
        assert_eq!(written.len(), 4);
        let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap();
        assert!(
            manifest.contains("name = \"mittari-plugin-order-share\""),
            "{manifest}"
        );
        assert!(manifest.contains("mittari-sdk = \"0.1.0\""), "{manifest}");
        let lib = std::fs::read_to_string(crate_dir.join("src/lib.rs")).unwrap();
        assert!(lib.contains("pub struct OrderShare;"), "{lib}");
        assert!(lib.contains("\"order_share\","), "{lib}");
        assert!(!lib.contains("{name}") && !lib.contains("{Type}"), "{lib}");
    }
}
