//! TLS and mutual TLS against the real server, with certificates the test makes (`rcgen`):
//! the CLI reaches an https:// server that its --ca-cert vouches for, and nothing else; a
//! server that requires client certificates admits only clients with one its CA signed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use mittari_e2e::{Server, borrowed, bundled_plugins, run_cli};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

/// A certificate authority that writes PEM files into a directory.
struct Authority {
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
    name: &'static str,
}

impl Authority {
    fn new(dir: &Path, name: &'static str) -> Authority {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), issuer.pem()).unwrap();
        Authority {
            issuer,
            dir: dir.to_owned(),
            name,
        }
    }

    fn cert_file(&self) -> PathBuf {
        self.dir.join(format!("{}.pem", self.name))
    }

    /// Issues a certificate for `names`, returning the (certificate, key) files.
    fn issue(&self, file: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, file);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (cert_path, key_path) = (
            self.dir.join(format!("{file}.pem")),
            self.dir.join(format!("{file}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }
}

fn start_with_config(config: &str) -> Server {
    Server::start_with_config(&borrowed(&bundled_plugins()), config)
}

fn tls_config(cert: &Path, key: &Path, client_ca: Option<&Path>) -> String {
    let mut config = format!(
        "[server.tls]\ncert = {:?}\nkey = {:?}\n",
        cert.display().to_string(),
        key.display().to_string()
    );
    if let Some(ca) = client_ca {
        config.push_str(&format!("client_ca = {:?}\n", ca.display().to_string()));
    }
    config
}

/// `mittari metrics` against `url` with extra flags: Ok(stdout) or Err(stderr).
fn list_metrics(url: &str, flags: &[&str]) -> Result<String, String> {
    let mut args = vec!["metrics", "--server", url];
    args.extend_from_slice(flags);
    let (status, stdout, stderr) = run_cli(&args, Path::new("."), &[]);
    if status.success() {
        Ok(stdout)
    } else {
        Err(stderr)
    }
}

#[test]
fn tls_serves_clients_that_trust_its_authority() {
    let files = tempfile::tempdir().unwrap();
    let ca = Authority::new(files.path(), "ca");
    let (cert, key) = ca.issue("server", &["localhost", "127.0.0.1"]);
    let server = start_with_config(&tls_config(&cert, &key, None));
    let url = format!("https://127.0.0.1:{}", server.addr.port());
    let ca_file = ca.cert_file();
    let ca_flag = ca_file.to_str().unwrap();

    let listed = list_metrics(&url, &["--ca-cert", ca_flag]).unwrap();
    assert!(listed.contains("nps"), "{listed}");
    // Without the CA, the server's certificate is not trusted (the system roots do not
    // know this test's authority).
    let error = list_metrics(&url, &[]).unwrap_err();
    assert!(
        error.contains("does not trust") && error.contains("pass --ca-cert FILE"),
        "{error}"
    );
    // Another authority does not vouch for it either.
    let other = Authority::new(files.path(), "other");
    let other_file = other.cert_file();
    let error = list_metrics(&url, &["--ca-cert", other_file.to_str().unwrap()]).unwrap_err();
    assert!(error.contains("pass --ca-cert FILE"), "{error}");
    // A key where the CA certificate belongs is named as such, not as an unknown issuer.
    let error = list_metrics(&url, &["--ca-cert", key.to_str().unwrap()]).unwrap_err();
    assert!(
        error.contains("--ca-cert") && error.contains("holds no PEM CERTIFICATE block"),
        "{error}"
    );
    // Plain text to a TLS port is no conversation, and the error says what to use.
    let plain = format!("http://127.0.0.1:{}", server.addr.port());
    let error = list_metrics(&plain, &[]).unwrap_err();
    assert!(
        error.contains("if the server uses TLS (server.tls), use https://"),
        "{error}"
    );
}

#[test]
fn mutual_tls_admits_only_clients_with_a_certificate_its_authority_signed() {
    let files = tempfile::tempdir().unwrap();
    let ca = Authority::new(files.path(), "ca");
    let (cert, key) = ca.issue("server", &["localhost", "127.0.0.1"]);
    let clients = Authority::new(files.path(), "clients");
    let (client_cert, client_key) = clients.issue("client", &["reports"]);
    let stranger_ca = Authority::new(files.path(), "stranger-ca");
    let (stranger_cert, stranger_key) = stranger_ca.issue("stranger", &["stranger"]);
    let server = start_with_config(&tls_config(&cert, &key, Some(&clients.cert_file())));
    let url = format!("https://127.0.0.1:{}", server.addr.port());
    let ca_file = ca.cert_file();
    let ca_flag = ca_file.to_str().unwrap();
    let identity = |cert: &Path, key: &Path| {
        vec![
            "--ca-cert".to_owned(),
            ca_flag.to_owned(),
            "--client-cert".to_owned(),
            cert.to_str().unwrap().to_owned(),
            "--client-key".to_owned(),
            key.to_str().unwrap().to_owned(),
        ]
    };

    let flags = identity(&client_cert, &client_key);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let listed = list_metrics(&url, &flags).unwrap();
    assert!(listed.contains("nps"), "{listed}");
    // The CLI computes over mutual TLS too.
    let input = mittari_e2e::repo_root().join("examples/data/nps.csv");
    let mut args = vec![
        "compute",
        "nps",
        "--input",
        input.to_str().unwrap(),
        "--server",
        &url,
    ];
    args.extend_from_slice(&flags);
    let (status, stdout, stderr) = run_cli(&args, Path::new("."), &[]);
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("nps"), "{stdout}");

    // The audit line names the caller by its certificate's subject, not "anonymous".
    server.wait_for_log("certificate CN=client");

    // A missing or refused client certificate is named as the likely cause, with what to pass
    // (not the bare "transport error" the transport reports).
    let error = list_metrics(&url, &["--ca-cert", ca_flag]).unwrap_err();
    assert!(
        error.contains("server.tls.client_ca") && error.contains("--client-cert"),
        "{error}"
    );
    let flags = identity(&stranger_cert, &stranger_key);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let error = list_metrics(&url, &flags).unwrap_err();
    assert!(
        error.contains("server.tls.client_ca") && error.contains("--client-cert"),
        "{error}"
    );
    assert!(server.logs().iter().all(|l| !l.contains("panic")));
}

#[test]
fn unusable_tls_files_stop_the_start_naming_the_key() {
    let files = tempfile::tempdir().unwrap();
    let ca = Authority::new(files.path(), "ca");
    let (cert, _key) = ca.issue("server", &["localhost"]);
    let (_other_cert, other_key) = ca.issue("other", &["localhost"]);
    let not_a_key = files.path().join("not-a-key.pem");
    std::fs::write(&not_a_key, "hello").unwrap();
    let missing = files.path().join("missing.pem");
    for (config, expect) in [
        (tls_config(&cert, &not_a_key, None), "server.tls.key: "),
        (tls_config(&cert, &missing, None), "server.tls.key: file"),
        (tls_config(&cert, &cert, Some(&not_a_key)), "server.tls."),
        // A key of another certificate: refused at start, not at the first handshake.
        (
            tls_config(&cert, &other_key, None),
            "does not belong to the certificate",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("mittari.toml"), &config).unwrap();
        let (status, _, stderr) = run_cli(
            &["serve", "--listen", "127.0.0.1:0"],
            dir.path(),
            &[(
                "MITTARI__PLUGINS__DIR",
                mittari_e2e::target_dir().to_str().unwrap(),
            )],
        );
        assert!(!status.success(), "{config}");
        assert!(stderr.contains(expect), "{config}: {stderr}");
    }
}

/// 512 sockets that each send the first byte of a TLS handshake and idle keep no client out for
/// longer than the handshake timeout: the whole TLS handshake is bounded by it.
#[test]
fn idle_tls_handshakes_keep_no_client_out_beyond_the_handshake_timeout() {
    let files = tempfile::tempdir().unwrap();
    let ca = Authority::new(files.path(), "ca");
    let (cert, key) = ca.issue("server", &["localhost", "127.0.0.1"]);
    let config = format!(
        "[server]\nhandshake_timeout_seconds = 2\n\n{}",
        tls_config(&cert, &key, None)
    );
    let server = Server::start_with_config_limited(
        &borrowed(&bundled_plugins()),
        &config,
        Some(3 << 30),
        None,
    );
    let url = format!("https://127.0.0.1:{}", server.addr.port());
    let ca_file = ca.cert_file();
    let mut idle = Vec::new();
    for _ in 0..512 {
        if let Ok(mut socket) = std::net::TcpStream::connect(server.addr) {
            let _ = std::io::Write::write_all(&mut socket, &[0x16]);
            idle.push(socket);
        }
    }
    let started = std::time::Instant::now();
    loop {
        match list_metrics(&url, &["--ca-cert", ca_file.to_str().unwrap()]) {
            Ok(listed) => {
                assert!(listed.contains("nps"), "{listed}");
                break;
            }
            Err(error) => assert!(
                started.elapsed() < std::time::Duration::from_secs(6),
                "no client got in for {:?}: {error}",
                started.elapsed()
            ),
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    eprintln!(
        "a TLS client got in {:.2} s after 512 idle handshakes",
        started.elapsed().as_secs_f64()
    );
    drop(idle);
}
