//! The worked examples in `docs/metrics/*.md` hold, embedded and through a server.
//!
//! A metric page's examples are fenced blocks: ```` ```csv example ```` is an input file (named
//! by the `--input` of the command after it; without one, `--input` names a file of the
//! repository), ```` ```csv example FILE ```` a file named FILE (a table input's, say), each
//! ```` ```sh example ```` one `mittari
//! compute` command, and the ```` ```json example ```` after it the expected `results` (every
//! key given must match exactly, or for estimates given as `{"approx": x, "tolerance": t}`
//! within t of x, e.g. a published value to its published precision; other keys are not
//! checked).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use mittari_e2e::{Server, repo_root, run_cli};

/// (info string, body) of every fenced block.
fn fenced_blocks(text: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines() {
        match (&mut current, line.trim_start().strip_prefix("```")) {
            (None, Some(info)) => current = Some((info.trim().to_owned(), String::new())),
            (Some(_), Some(_)) => blocks.extend(current.take()),
            (Some((_, body)), None) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) => {}
        }
    }
    blocks
}

/// Runs one documented command in `dir`, embedded or on `server`, and returns its JSON.
fn run(dir: &Path, command: &str, server: Option<&str>) -> serde_json::Value {
    let mut args: Vec<&str> = command.split_whitespace().collect();
    assert_eq!(args.first(), Some(&"mittari"), "{command}");
    args.remove(0);
    if let Some(url) = server {
        args.extend(["--server", url]);
    }
    let (status, stdout, stderr) = run_cli(&args, dir, &[]);
    assert!(status.success(), "{command}: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{command}: {e}: {stdout}"))
}

#[test]
fn metric_docs_worked_examples_hold() {
    let server = Server::start();
    let url = server.url();
    let docs = repo_root().join("docs/metrics");
    let mut pages: Vec<_> = std::fs::read_dir(&docs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    pages.sort();
    let mut checked = Vec::new();
    for page in pages {
        let text = std::fs::read_to_string(&page).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut csv = None;
        let mut command = None;
        let mut examples = 0;
        for (info, body) in fenced_blocks(&text) {
            match info.as_str() {
                "csv example" => csv = Some(body),
                named if named.starts_with("csv example ") => {
                    let file = named["csv example ".len()..].trim();
                    std::fs::write(dir.path().join(file), body).unwrap();
                }
                "sh example" => {
                    let line = body.trim().to_owned();
                    let input = line
                        .split_whitespace()
                        .skip_while(|a| *a != "--input")
                        .nth(1)
                        .expect("--input FILE");
                    match csv.take() {
                        Some(csv) => std::fs::write(dir.path().join(input), csv).unwrap(),
                        // Not given inline: a file of the repository, e.g. tests/data/cdnow_summary.csv.
                        None if !dir.path().join(input).exists() => {
                            let target = dir.path().join(input);
                            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
                            std::fs::copy(repo_root().join(input), target).unwrap();
                        }
                        None => {}
                    }
                    command = Some(line);
                }
                "json example" => {
                    let command = command
                        .take()
                        .expect("a sh example before the expected json");
                    let expected: serde_json::Value = serde_json::from_str(&body).unwrap();
                    for server in [None, Some(url.as_str())] {
                        let out = run(dir.path(), &command, server);
                        for (key, want) in expected
                            .as_object()
                            .expect("expected results are an object")
                        {
                            let got = &out["results"][key];
                            let context = format!(
                                "{}: {command} (server: {server:?}): {key} = {got}",
                                page.display()
                            );
                            match (
                                want.get("approx").and_then(|v| v.as_f64()),
                                want.get("tolerance").and_then(|v| v.as_f64()),
                            ) {
                                (Some(approx), Some(tolerance)) => {
                                    let got = got
                                        .as_f64()
                                        .unwrap_or_else(|| panic!("{context}: not a number"));
                                    assert!(
                                        (got - approx).abs() <= tolerance,
                                        "{context}: expected {approx} ± {tolerance}"
                                    );
                                }
                                _ => assert_eq!(got, want, "{context}"),
                            }
                        }
                    }
                    examples += 1;
                }
                _ => {}
            }
        }
        assert!(examples > 0, "{} has no worked example", page.display());
        checked.push(page.file_stem().unwrap().to_string_lossy().into_owned());
    }
    // Every bundled metric has a page.
    assert_eq!(checked, mittari_e2e::BUNDLED_METRICS);
}
