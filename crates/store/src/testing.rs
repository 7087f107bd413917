//! One test suite for every backend: each must keep the same promises.

use crate::{ModelStore, NewModel, Reference, StoreError};

/// A model with `state`, its other fields filled as a fit would.
pub fn model(state: &[u8]) -> NewModel {
    NewModel {
        metric: "clv".into(),
        metric_version: "0.1.0".into(),
        abi_version: 5,
        library_sha256: "ab".repeat(32),
        parameters: r#"{"model":"pareto_nbd"}"#.into(),
        fingerprint: r#"{"rows":3,"customers":2}"#.into(),
        statistics: r#"{"log_likelihood":-12.5}"#.into(),
        state: state.to_vec(),
        created_by: "tester".into(),
    }
}

/// Runs every promise against stores `open` opens (each call a new handle on the same, empty
/// store, as two server replicas would have). Panics on the first broken one.
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
pub fn suite(open: &(dyn Fn() -> Box<dyn ModelStore> + Sync)) {
    let store = open();
    let v = |name: &str, version: u64| Reference::Version(name.into(), version);

    // Versions count from 1 per name; the latest is the highest.
    assert_eq!(store.put("clv-eu", &model(b"first")).unwrap(), 1);
    assert_eq!(store.put("clv-eu", &model(b"second")).unwrap(), 2);
    assert_eq!(store.put("clv-us", &model(b"other")).unwrap(), 1);
    let latest = store.get(&Reference::Latest("clv-eu".into())).unwrap();
    assert_eq!(
        (latest.version, latest.model.state.as_slice()),
        (2, &b"second"[..])
    );
    let first = store.get(&v("clv-eu", 1)).unwrap();
    assert_eq!(first.model, model(b"first"));
    assert!(first.created_at > 0 && first.created_at <= latest.created_at);

    // A model written on one handle is read on another.
    let other = open();
    assert_eq!(other.get(&v("clv-eu", 2)).unwrap().model, model(b"second"));

    // Listings: by name, then version; without the state, with its size.
    let all = store.list(None).unwrap();
    let seen: Vec<(&str, u64, u64)> = all
        .iter()
        .map(|s| (s.name.as_str(), s.version, s.state_bytes))
        .collect();
    assert_eq!(seen, [("clv-eu", 1, 5), ("clv-eu", 2, 6), ("clv-us", 1, 5)]);
    assert_eq!(store.list(Some("clv-us")).unwrap().len(), 1);
    assert!(store.list(Some("nothing")).unwrap().is_empty());

    // Aliases: set, moved (returning where it was), read through, listed.
    assert_eq!(store.set_alias("clv-eu", "production", 1).unwrap(), None);
    assert_eq!(
        store
            .get(&Reference::Alias("clv-eu".into(), "production".into()))
            .unwrap()
            .version,
        1
    );
    assert_eq!(store.set_alias("clv-eu", "production", 2).unwrap(), Some(1));
    assert_eq!(store.set_alias("clv-eu", "staging", 2).unwrap(), None);
    assert_eq!(
        store.get(&v("clv-eu", 2)).unwrap().aliases,
        ["production", "staging"]
    );
    assert_eq!(
        store.list(Some("clv-eu")).unwrap()[1].aliases,
        ["production", "staging"]
    );
    let missing = store.set_alias("clv-eu", "canary", 9).unwrap_err();
    assert_eq!(
        missing,
        StoreError::NotFound {
            reference: "clv-eu@9".into()
        }
    );
    assert!(store.set_alias("clv-eu", "42", 1).is_err());

    // An alias never points at nothing: its version cannot be deleted under it.
    let refused = store.delete("clv-eu", 2).unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("clv-eu@2 is what aliases production, staging point to"),
        "{refused}"
    );
    assert_eq!(store.remove_alias("clv-eu", "staging").unwrap(), 2);
    assert!(store.remove_alias("clv-eu", "staging").is_err());
    store.delete("clv-eu", 1).unwrap();
    assert!(matches!(
        store.get(&v("clv-eu", 1)),
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.delete("clv-eu", 1),
        Err(StoreError::NotFound { .. })
    ));
    // A deleted version's number is never given again.
    assert_eq!(store.put("clv-eu", &model(b"third")).unwrap(), 3);
    store.remove_alias("clv-eu", "production").unwrap();
    store.delete("clv-eu", 2).unwrap();
    store.delete("clv-eu", 3).unwrap();
    assert!(matches!(
        store.get(&Reference::Latest("clv-eu".into())),
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(store.put("clv-eu", &model(b"fourth")).unwrap(), 4);
    for missing in [
        Reference::Latest("nothing".into()),
        Reference::Alias("clv-eu".into(), "nowhere".into()),
        v("clv-us", 2),
    ] {
        let error = store.get(&missing).unwrap_err();
        assert_eq!(error.to_string(), format!("no model {missing}"));
    }
    assert!(store.put("Bad Name", &model(b"")).is_err());

    // A state of a few megabytes (a covariance of many coefficients) round-trips whole.
    let large: Vec<u8> = (0..4_000_000u32).map(|i| (i % 251) as u8).collect();
    let version = store.put("large", &model(&large)).unwrap();
    assert_eq!(store.get(&v("large", version)).unwrap().model.state, large);

    // Concurrent fits of one name, on separate handles, get distinct versions.
    let versions: Vec<u64> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    let store = open();
                    (0..5)
                        .map(|_| store.put("busy", &model(b"x")).unwrap())
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let mut sorted = versions.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (1..=20).collect::<Vec<u64>>(), "{versions:?}");
}
