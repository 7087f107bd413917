//! Bearer tokens against the real server: tokens made by `mittari token new` and configured by
//! their hash admit exactly their scopes on every RPC; health and reflection stay open; the CLI
//! sends MITTARI_TOKEN; and a server without tokens refuses to listen beyond loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use mittari_e2e::{
    Server, borrowed, nps_request, plugin_dir, repo_root, run_cli, standard_plugins,
};
use mittari_proto::admin::v1 as admin_pb;
use mittari_proto::admin::v1::admin_service_client::AdminServiceClient;
use mittari_proto::v1 as pb;
use tonic::Code;
use tonic::metadata::MetadataValue;

/// `mittari token new NAME --scope SCOPE…`: the token and the configuration block it printed.
fn new_token(name: &str, scopes: &[&str]) -> (String, String) {
    let mut args = vec!["token", "new", name];
    for scope in scopes {
        args.extend(["--scope", scope]);
    }
    let (status, stdout, stderr) = run_cli(&args, &repo_root(), &[]);
    assert!(status.success(), "{stderr}");
    // The secret goes to standard error, the configuration to standard output: `>> mittari.toml`
    // appends a valid block and never the token.
    let token = stderr
        .lines()
        .find(|l| l.starts_with("mittari_"))
        .expect("a token line on standard error")
        .to_owned();
    assert!(
        !stdout.contains(&token),
        "standard output holds the token itself"
    );
    assert!(
        stdout
            .lines()
            .all(|l| l.is_empty() || l.starts_with('#') || !l.contains("mittari_")),
        "{stdout}"
    );
    assert!(stdout.contains("[[auth.tokens]]"), "{stdout}");
    (token, stdout)
}

fn start_with_tokens(config: &str) -> Server {
    Server::start_with_config(&borrowed(&standard_plugins()), config)
}

fn with_token<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token {
        let value: MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
        request.metadata_mut().insert("authorization", value);
    }
    request
}

#[tokio::test]
async fn tokens_admit_their_scopes_on_every_rpc() {
    let (compute_token, compute_config) = new_token("reports", &["compute"]);
    let (admin_token, admin_config) = new_token("ops", &["admin"]);
    let (root_token, root_config) = new_token("root", &["compute", "admin"]);
    let server = start_with_tokens(&format!("{compute_config}\n{admin_config}\n{root_config}"));
    let mut client = server.client().await;
    let nps = || nps_request(vec![10, 9, 3]);
    let cases: [(Option<&str>, Result<(), Code>); 4] = [
        (None, Err(Code::Unauthenticated)),
        (Some("mittari_not-a-token"), Err(Code::Unauthenticated)),
        (Some(admin_token.as_str()), Err(Code::PermissionDenied)),
        (Some(compute_token.as_str()), Ok(())),
    ];
    for (token, expect) in cases {
        let outcomes = [
            client
                .list_metrics(with_token(pb::ListMetricsRequest::default(), token))
                .await
                .map(|_| ()),
            client
                .describe_metric(with_token(
                    pb::DescribeMetricRequest { name: "nps".into() },
                    token,
                ))
                .await
                .map(|_| ()),
            client.compute(with_token(nps(), token)).await.map(|_| ()),
            client
                .compute_stream(with_token(
                    tokio_stream::iter(vec![pb::ComputeStreamRequest {
                        message: Some(pb::compute_stream_request::Message::Header(
                            pb::ComputeStreamHeader {
                                metric: "nps".into(),
                                ..Default::default()
                            },
                        )),
                    }]),
                    token,
                ))
                .await
                .map(|_| ()),
        ];
        for (rpc, outcome) in ["ListMetrics", "DescribeMetric", "Compute", "ComputeStream"]
            .iter()
            .zip(outcomes)
        {
            match (&expect, outcome) {
                (Ok(()), Ok(())) => {}
                // A stream of only a header is refused by the metric, past authentication.
                (Ok(()), Err(status)) if *rpc == "ComputeStream" => {
                    assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
                }
                (Err(code), Err(status)) => {
                    assert_eq!(
                        status.code(),
                        *code,
                        "{rpc} {token:?}: {}",
                        status.message()
                    );
                }
                (expect, outcome) => panic!("{rpc} {token:?}: {outcome:?}, expected {expect:?}"),
            }
        }
    }
    // The admin service admits only the admin scope.
    let mut admin = AdminServiceClient::new(server.channel().await);
    let cases: [(Option<&str>, Result<(), Code>); 4] = [
        (None, Err(Code::Unauthenticated)),
        (Some("mittari_not-a-token"), Err(Code::Unauthenticated)),
        (Some(compute_token.as_str()), Err(Code::PermissionDenied)),
        (Some(admin_token.as_str()), Ok(())),
    ];
    for (token, expect) in cases {
        let outcomes = [
            admin
                .list_plugins(with_token(admin_pb::ListPluginsRequest {}, token))
                .await
                .map(|_| ()),
            admin
                .reload(with_token(admin_pb::ReloadRequest {}, token))
                .await
                .map(|_| ()),
            admin
                .set_metric_enabled(with_token(
                    admin_pb::SetMetricEnabledRequest {
                        name: "nps".into(),
                        enabled: true,
                        reset: false,
                    },
                    token,
                ))
                .await
                .map(|_| ()),
            admin
                .get_config(with_token(admin_pb::GetConfigRequest {}, token))
                .await
                .map(|_| ()),
        ];
        for (rpc, outcome) in ["ListPlugins", "Reload", "SetMetricEnabled", "GetConfig"]
            .iter()
            .zip(outcomes)
        {
            assert_eq!(
                outcome.as_ref().map(|_| ()).map_err(|s| s.code()),
                expect,
                "{rpc} {token:?}: {outcome:?}"
            );
        }
    }
    // The configuration shown to admins holds no token hash.
    let config = admin
        .get_config(with_token(
            admin_pb::GetConfigRequest {},
            Some(&admin_token),
        ))
        .await
        .unwrap()
        .into_inner()
        .toml;
    assert!(
        config.contains("<redacted>") && config.contains("name = \"reports\""),
        "{config}"
    );
    for block in [&compute_config, &admin_config, &root_config] {
        let hash = block.split('"').nth(3).unwrap();
        assert_eq!(hash.len(), 64, "{block}");
        assert!(!config.contains(hash), "{config}");
    }

    // A server's file paths reach only admins.
    let leak = |token: &str| {
        let mut client = client.clone();
        let token = token.to_owned();
        async move {
            let mut request = nps();
            request.metric = "test_leaks_path".into();
            request.input.as_mut().unwrap().columns[0].name = "value".into();
            let status = client
                .compute(with_token(request, Some(&token)))
                .await
                .unwrap_err();
            assert_eq!(status.code(), Code::Internal, "{}", status.message());
            status.message().to_owned()
        }
    };
    let hidden = leak(&compute_token).await;
    assert!(
        hidden.contains("cannot open <path>: no such file") && !hidden.contains("/srv"),
        "{hidden}"
    );
    let shown = leak(&root_token).await;
    assert!(shown.contains("/srv/mittari/secret/lookup.csv"), "{shown}");

    // Health stays open without a token.
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel().await);
    health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("health without a token");
    // The audit line names the token, never the token itself.
    let logs = server.logs().join("\n");
    assert!(logs.contains("\"caller\":\"reports\""), "{logs}");
    // Every call of the metric and admin services has its line, naming the caller.
    for (rpc, caller) in [
        ("ListMetrics", "reports"),
        ("DescribeMetric", "reports"),
        ("ListPlugins", "ops"),
        ("GetConfig", "ops"),
    ] {
        let line = format!("\"rpc\":\"{rpc}\",\"caller\":\"{caller}\"");
        assert!(logs.contains(&line), "no {line} in {logs}");
    }
    assert!(!logs.contains(&compute_token) && !logs.contains(&admin_token));

    // The CLI sends MITTARI_TOKEN.
    let url = server.url();
    let args = ["metrics", "--server", url.as_str()];
    let (status, _, stderr) = run_cli(&args, &repo_root(), &[]);
    assert!(!status.success());
    assert!(
        stderr.contains("requires a token") && stderr.contains("set MITTARI_TOKEN"),
        "{stderr}"
    );
    // The start line says what protects the listener.
    assert!(
        server.logs().iter().any(|l| l.contains("\"listening\"")
            && l.contains("\"tls\":\"off\"")
            && l.contains("\"tokens\":3")),
        "{}",
        server.logs().join("\n")
    );
    let (status, stdout, stderr) =
        run_cli(&args, &repo_root(), &[("MITTARI_TOKEN", &compute_token)]);
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("nps"), "{stdout}");
}

#[test]
fn without_tokens_the_server_stays_on_loopback() {
    let plugins = standard_plugins();
    let plugins: Vec<(&str, &str)> = plugins
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let dir = plugin_dir(&plugins);
    let plugin_dir = dir.path().to_str().unwrap();
    // Refused before it binds: nothing listens beyond loopback during the test.
    let (status, _, stderr) = run_cli(
        &["serve", "--listen", "0.0.0.0:0"],
        dir.path(),
        &[("MITTARI__PLUGINS__DIR", plugin_dir)],
    );
    assert!(!status.success());
    assert!(
        stderr.contains("not a loopback address and no auth.tokens are configured")
            && stderr.contains("auth.allow_anonymous"),
        "{stderr}"
    );
}

/// ModelService's writes (Fit, DeleteModel, SetAlias) need the `models` scope; reading and
/// scoring need `compute`. A scope check comes before any store work, and every write's audit
/// line names the token that made it.
#[tokio::test]
async fn model_writes_need_the_models_scope() {
    use pb::model_service_client::ModelServiceClient;
    let (compute_token, compute_config) = new_token("crm", &["compute"]);
    let (models_token, models_config) = new_token("analysts", &["models"]);
    let server = start_with_tokens(&format!("{compute_config}\n{models_config}"));
    let mut models = ModelServiceClient::new(server.channel().await);
    let alias = || pb::SetAliasRequest {
        name: "clv-eu".into(),
        alias: "production".into(),
        version: 1,
    };
    let delete = || pb::DeleteModelRequest {
        reference: "clv-eu@1".into(),
    };
    let list = || pb::ListModelsRequest::default();
    // With the compute scope: reads pass (an empty store), writes are denied.
    let token = Some(compute_token.as_str());
    models.list_models(with_token(list(), token)).await.unwrap();
    for status in [
        models
            .set_alias(with_token(alias(), token))
            .await
            .unwrap_err(),
        models
            .delete_model(with_token(delete(), token))
            .await
            .unwrap_err(),
    ] {
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert!(
            status.message().contains("lacks the models scope"),
            "{status:?}"
        );
    }
    // With the models scope: writes pass authentication (and find no model), reads are denied.
    let token = Some(models_token.as_str());
    let status = models
        .set_alias(with_token(alias(), token))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let status = models
        .list_models(with_token(list(), token))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    server.wait_for_log("model store change refused or failed");
    let logs = server.logs().join("\n");
    assert!(logs.contains("\"caller\":\"analysts\""), "{logs}");
}
