//! Times the model store's writes and reads: `cargo bench -p mittari-store --bench store --
//! URL [STATE_BYTES] [ROUNDS]`, for example `sqlite:///tmp/models.db` or
//! `postgres://user:password@127.0.0.1:5432/db`. Each round stores one model of STATE_BYTES
//! (default 4 096: a Pareto/NBD and Gamma-Gamma fit's parameters and covariances with room to
//! spare) as a new version of one name, then reads it back by version and by alias; it prints
//! the median and the 99th percentile of each.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::time::Instant;

use mittari_store::{NewModel, Reference};

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let url = args
        .first()
        .expect("usage: store URL [STATE_BYTES] [ROUNDS]");
    let bytes: usize = args.get(1).map_or(4096, |a| a.parse().unwrap());
    let rounds: usize = args.get(2).map_or(200, |a| a.parse().unwrap());
    let store = mittari_store::open(url).unwrap();
    let state: Vec<u8> = (0..bytes).map(|i| (i * 31 % 251) as u8).collect();
    let model = NewModel {
        metric: "clv".into(),
        metric_version: "0.1.0".into(),
        abi_version: 5,
        library_sha256: "ab".repeat(32),
        parameters: r#"{"model":"pareto_nbd","spend_model":"gamma_gamma","time_unit":"week"}"#
            .into(),
        fingerprint:
            r#"{"rows":3445799,"customers":1000000,"first":"2024-01-01","last":"2027-12-31"}"#
                .into(),
        statistics: r#"{"log_likelihood":-8123456.7,"iterations":23}"#.into(),
        state,
        created_by: "bench".into(),
    };
    let name = format!("bench-{}", std::process::id());
    let (mut puts, mut by_version, mut by_alias) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let start = Instant::now();
        let version = store.put(&name, &model).unwrap();
        puts.push(start.elapsed().as_secs_f64());
        store.set_alias(&name, "production", version).unwrap();
        let start = Instant::now();
        store
            .get(&Reference::Version(name.clone(), version))
            .unwrap();
        by_version.push(start.elapsed().as_secs_f64());
        let start = Instant::now();
        store
            .get(&Reference::Alias(name.clone(), "production".into()))
            .unwrap();
        by_alias.push(start.elapsed().as_secs_f64());
    }
    println!(
        "{} ({bytes} bytes of state, {rounds} rounds)",
        store.describe()
    );
    for (what, times) in [
        ("put (one transaction, durable)", &mut puts),
        ("get by version", &mut by_version),
        ("get by alias", &mut by_alias),
    ] {
        times.sort_by(f64::total_cmp);
        let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize] * 1e3;
        println!(
            "{what:<32} median {:.3} ms  p99 {:.3} ms",
            at(0.5),
            at(0.99)
        );
    }
}
