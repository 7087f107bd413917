//! Bearer-token authentication with scopes, for every gRPC call in one place.
//!
//! Tokens are configured by name with the SHA-256 of the token, never the token itself
//! (`mittari token new NAME` makes one). A call presents `authorization: Bearer <token>`; the
//! layer hashes it and compares the hash with every configured one in constant time. A call
//! without a usable token is UNAUTHENTICATED, one whose token lacks the scope the method needs
//! PERMISSION_DENIED. The token's name travels with the request (a [`Caller`] extension) into
//! the audit log. With no tokens configured every call is anonymous, which the server allows
//! only on a loopback address unless `auth.allow_anonymous` says otherwise ([`check_exposure`]).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::Status;

use crate::incoming::{PeerInfo, Throttle};
use crate::state::ServerState;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// List, describe and compute metrics.
    Compute,
    /// Administer the server.
    Admin,
    /// Fit models, delete model versions and move aliases (ModelService's writes); scoring
    /// and reading models need `compute`.
    Models,
}

impl Scope {
    /// The name in configuration files and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Compute => "compute",
            Scope::Admin => "admin",
            Scope::Models => "models",
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Scope {
    type Err = String;

    fn from_str(text: &str) -> Result<Scope, String> {
        match text {
            "compute" => Ok(Scope::Compute),
            "admin" => Ok(Scope::Admin),
            "models" => Ok(Scope::Models),
            other => Err(format!(
                "unknown scope {other:?}; use compute, models or admin"
            )),
        }
    }
}

/// One `[[auth.tokens]]` entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSettings {
    pub name: String,
    /// SHA-256 of the token, 64 hex digits.
    pub sha256: String,
    pub scopes: Vec<Scope>,
}

/// The `[auth]` section.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    pub tokens: Vec<TokenSettings>,
    /// Serve calls without a token on an address other than loopback.
    pub allow_anonymous: bool,
    /// Require a token for the health and reflection services too (by default they are open,
    /// as load balancers and tools like grpcurl expect).
    pub protect_health_and_reflection: bool,
}

/// Who made a call: the name of the token it presented (or anonymous), and whether it may
/// administer the server, which decides what error messages may reveal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Caller {
    name: Option<String>,
    admin: bool,
}

impl Caller {
    pub(crate) fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("anonymous")
    }

    pub(crate) fn is_admin(&self) -> bool {
        self.admin
    }

    /// The name of the caller of `request`, as the auth layer recorded it.
    pub(crate) fn name_of<T>(request: &tonic::Request<T>) -> String {
        request
            .extensions()
            .get::<Caller>()
            .map_or("anonymous", Caller::name)
            .to_owned()
    }
}

#[derive(Debug)]
struct Token {
    name: String,
    sha256: [u8; 32],
    scopes: Vec<Scope>,
}

/// The configured tokens, validated.
#[derive(Debug, Clone)]
pub struct Tokens {
    tokens: Arc<Vec<Token>>,
    protect_health_and_reflection: bool,
}

impl Tokens {
    /// Validates `[auth]`: names present, unique and printable; hashes 64 hex digits; scopes
    /// given.
    pub fn from_settings(settings: &AuthSettings) -> Result<Tokens, String> {
        let mut tokens = Vec::with_capacity(settings.tokens.len());
        for (index, token) in settings.tokens.iter().enumerate() {
            let at = format!("auth.tokens[{index}]");
            let name_ok = !token.name.is_empty()
                && token.name.len() <= 64
                && token
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !name_ok {
                return Err(format!(
                    "{at}.name must be 1 to 64 letters, digits, '-', '_' or '.'"
                ));
            }
            if tokens.iter().any(|t: &Token| t.name == token.name) {
                return Err(format!("{at}.name {:?} is used twice", token.name));
            }
            let sha256 = decode_sha256(&token.sha256).ok_or_else(|| {
                format!(
                    "{at}.sha256 must be the 64 hex digits of the token's SHA-256 (as `mittari token new` prints), not the token"
                )
            })?;
            if token.scopes.is_empty() {
                return Err(format!(
                    "{at}.scopes is empty; give \"compute\", \"models\", \"admin\" or several"
                ));
            }
            tokens.push(Token {
                name: token.name.clone(),
                sha256,
                scopes: token.scopes.clone(),
            });
        }
        Ok(Tokens {
            tokens: Arc::new(tokens),
            protect_health_and_reflection: settings.protect_health_and_reflection,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Who presents `authorization` (the header's value, if any) for a call that needs
    /// `scope` (`None`: an open service).
    fn authorize(
        &self,
        authorization: Option<&[u8]>,
        scope: Option<Scope>,
    ) -> Result<Caller, Status> {
        // Without tokens every caller may do everything (the server then listens on loopback
        // only, or the admin allowed anonymous calls).
        if self.tokens.is_empty() {
            return Ok(Caller {
                name: None,
                admin: true,
            });
        }
        let Some(scope) = scope else {
            return Ok(Caller {
                name: None,
                admin: false,
            });
        };
        let Some(header) = authorization else {
            return Err(Status::unauthenticated(
                "this server requires a token: send the metadata `authorization: Bearer <token>`",
            ));
        };
        let presented = header
            .strip_prefix(b"Bearer ")
            .or_else(|| header.strip_prefix(b"bearer "))
            .ok_or_else(|| {
                Status::unauthenticated("the authorization metadata must be `Bearer <token>`")
            })?;
        let digest: [u8; 32] = Sha256::digest(presented.trim_ascii()).into();
        // Every configured hash is compared, whether or not one matched before.
        let mut found: Option<&Token> = None;
        for token in self.tokens.iter() {
            if bool::from(token.sha256.ct_eq(&digest)) {
                found = Some(token);
            }
        }
        let Some(token) = found else {
            return Err(Status::unauthenticated(
                "the token is not valid for this server",
            ));
        };
        if !token.scopes.contains(&scope) {
            return Err(Status::permission_denied(format!(
                "token {:?} lacks the {} scope this call needs",
                token.name,
                scope.as_str()
            )));
        }
        Ok(Caller {
            name: Some(token.name.clone()),
            admin: token.scopes.contains(&Scope::Admin),
        })
    }

    /// The scope a gRPC method path needs; `None` for open services.
    fn scope_of(&self, path: &str) -> Option<Scope> {
        let open = path.starts_with("/grpc.health.") || path.starts_with("/grpc.reflection.");
        if open && !self.protect_health_and_reflection {
            None
        } else if path.starts_with("/mittari.admin.") {
            Some(Scope::Admin)
        } else if MODEL_WRITES.contains(&path) {
            Some(Scope::Models)
        } else {
            Some(Scope::Compute)
        }
    }
}

/// The ModelService methods that change the store: they need the `models` scope.
const MODEL_WRITES: &[&str] = &[
    "/mittari.v1.ModelService/Fit",
    "/mittari.v1.ModelService/DeleteModel",
    "/mittari.v1.ModelService/SetAlias",
];

fn decode_sha256(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(hex.chunks(2)) {
        let digit = |c: u8| (c as char).to_digit(16);
        *byte = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Some(out)
}

/// Refuses to serve anonymous calls beyond loopback unless the admin said so.
pub(crate) fn check_exposure(
    listen: SocketAddr,
    tokens: &Tokens,
    mutual_tls: bool,
    allow_anonymous: bool,
) -> Result<(), String> {
    // Client certificates authenticate callers as tokens do.
    if !tokens.is_empty() || mutual_tls || listen.ip().is_loopback() {
        return Ok(());
    }
    if allow_anonymous {
        tracing::warn!(
            %listen,
            "serving calls without tokens beyond loopback (auth.allow_anonymous = true): anyone who reaches this address can compute"
        );
        return Ok(());
    }
    Err(format!(
        "server.listen {listen} is not a loopback address and no auth.tokens are configured, so anyone reaching it could compute: add a token (`mittari token new NAME` prints one and its configuration), require client certificates (server.tls.client_ca), listen on 127.0.0.1, or set auth.allow_anonymous = true"
    ))
}

/// A fresh token and the configuration block that admits it.
pub fn new_token(name: &str, scopes: &[Scope]) -> Result<(String, String), String> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| format!("cannot get random bytes: {e}"))?;
    let token: String = std::iter::once("mittari_".to_owned())
        .chain(secret.iter().map(|b| format!("{b:02x}")))
        .collect();
    let settings = AuthSettings {
        tokens: vec![TokenSettings {
            name: name.to_owned(),
            sha256: Sha256::digest(token.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
            scopes: scopes.to_vec(),
        }],
        ..AuthSettings::default()
    };
    // Validated as the server will: a name it would refuse is refused now.
    Tokens::from_settings(&settings)?;
    let token_settings = &settings.tokens[0];
    let scopes = scopes
        .iter()
        .map(|s| format!("\"{}\"", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    let config = format!(
        "[[auth.tokens]]\nname = \"{}\"\nsha256 = \"{}\"\nscopes = [{scopes}]\n",
        token_settings.name, token_settings.sha256
    );
    Ok((token, config))
}

/// The tower layer that authorizes every call before it reaches a service, with the tokens of
/// the moment (a reload swaps them). Callers without the admin scope get error messages with
/// file-system paths hidden.
#[derive(Debug, Clone)]
pub(crate) struct AuthLayer {
    state: Arc<ServerState>,
    refusals: Arc<std::sync::Mutex<Throttle>>,
}

impl AuthLayer {
    pub(crate) fn new(state: Arc<ServerState>) -> Self {
        AuthLayer {
            state,
            refusals: Arc::default(),
        }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Authorize<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authorize {
            inner,
            state: Arc::clone(&self.state),
            refusals: Arc::clone(&self.refusals),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Authorize<S> {
    inner: S,
    state: Arc<ServerState>,
    refusals: Arc<std::sync::Mutex<Throttle>>,
}

impl<S, B> tower::Service<http::Request<B>> for Authorize<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let tokens = self.state.tokens();
        let scope = tokens.scope_of(request.uri().path());
        let authorization = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .map(http::HeaderValue::as_bytes);
        match tokens.authorize(authorization, scope) {
            Ok(mut caller) => {
                // A caller with a client certificate (mutual TLS) and no token is named by the
                // certificate's subject in audit lines.
                if caller.name.is_none()
                    && let Some(subject) = request
                        .extensions()
                        .get::<PeerInfo>()
                        .and_then(|peer| peer.certificate_subject.as_deref())
                {
                    caller.name = Some(format!("certificate {subject}"));
                }
                // The token is not needed past this point; it is not kept with the request.
                request.headers_mut().remove(http::header::AUTHORIZATION);
                let admin = caller.is_admin();
                request.extensions_mut().insert(caller);
                let response = self.inner.call(request);
                Box::pin(async move {
                    let response = response.await?;
                    Ok(if admin {
                        response
                    } else {
                        crate::status::hide_paths_in_response(response)
                    })
                })
            }
            Err(status) => {
                // Refusals are logged at most once per interval with a count, so an attacker
                // does not decide the log's volume; the path is not logged (it is the client's
                // text), only its scope.
                let logged = self
                    .refusals
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .hit();
                if let Some(count) = logged {
                    tracing::info!(
                        scope = scope.map_or("open", Scope::as_str),
                        code = ?status.code(),
                        refused_since_last_line = count,
                        "refused a call: {}",
                        status.message()
                    );
                }
                Box::pin(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(entries: &[(&str, &str, &[Scope])]) -> Result<Tokens, String> {
        Tokens::from_settings(&AuthSettings {
            tokens: entries
                .iter()
                .map(|(name, token, scopes)| TokenSettings {
                    name: (*name).to_owned(),
                    sha256: Sha256::digest(token.as_bytes())
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect(),
                    scopes: scopes.to_vec(),
                })
                .collect(),
            ..AuthSettings::default()
        })
    }

    #[test]
    fn calls_are_authorized_by_token_and_scope() {
        let tokens = tokens(&[
            ("reports", "secret-a", &[Scope::Compute]),
            ("ops", "secret-b", &[Scope::Admin]),
        ])
        .unwrap();
        let check = |header: Option<&str>, path: &str, expect: Result<&str, tonic::Code>| {
            let got = tokens
                .authorize(header.map(str::as_bytes), tokens.scope_of(path))
                .map(|caller| caller.name().to_owned())
                .map_err(|status| status.code());
            assert_eq!(got, expect.map(str::to_owned), "{header:?} {path}");
        };
        let compute = "/mittari.v1.MetricService/Compute";
        check(Some("Bearer secret-a"), compute, Ok("reports"));
        check(None, compute, Err(tonic::Code::Unauthenticated));
        check(
            Some("Bearer nope"),
            compute,
            Err(tonic::Code::Unauthenticated),
        );
        check(Some("secret-a"), compute, Err(tonic::Code::Unauthenticated));
        check(
            Some("Bearer secret-b"),
            compute,
            Err(tonic::Code::PermissionDenied),
        );
        let reload = "/mittari.admin.v1.AdminService/Reload";
        check(Some("Bearer secret-b"), reload, Ok("ops"));
        check(
            Some("Bearer secret-a"),
            reload,
            Err(tonic::Code::PermissionDenied),
        );
        check(None, reload, Err(tonic::Code::Unauthenticated));
        check(None, "/grpc.health.v1.Health/Check", Ok("anonymous"));
        check(
            None,
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            Ok("anonymous"),
        );
    }

    #[test]
    fn configuration_mistakes_are_named() {
        let check = |result: Result<Tokens, String>, expect: &str| {
            let error = result.unwrap_err();
            assert!(error.contains(expect), "{error}");
        };
        check(
            tokens(&[("a", "x", &[Scope::Compute]), ("a", "y", &[Scope::Compute])]),
            "auth.tokens[1].name \"a\" is used twice",
        );
        check(
            tokens(&[("a b", "x", &[Scope::Compute])]),
            "auth.tokens[0].name",
        );
        check(tokens(&[("a", "x", &[])]), "auth.tokens[0].scopes is empty");
        let mut settings = AuthSettings::default();
        settings.tokens.push(TokenSettings {
            name: "a".into(),
            sha256: "mittari_0123".into(),
            scopes: vec![Scope::Compute],
        });
        check(
            Tokens::from_settings(&settings),
            "auth.tokens[0].sha256 must be",
        );
    }

    #[test]
    fn anonymous_service_is_confined_to_loopback_unless_allowed() {
        let none = tokens(&[]).unwrap();
        let some = tokens(&[("a", "x", &[Scope::Compute])]).unwrap();
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        let check = |listen: &str, tokens: &Tokens, mutual_tls, allow_anonymous, expect_ok| {
            let got = check_exposure(addr(listen), tokens, mutual_tls, allow_anonymous);
            assert_eq!(got.is_ok(), expect_ok, "{listen} {got:?}");
        };
        check("127.0.0.1:1", &none, false, false, true);
        check("[::1]:1", &none, false, false, true);
        check("0.0.0.0:1", &none, false, false, false);
        check("10.1.2.3:1", &none, false, false, false);
        check("0.0.0.0:1", &none, false, true, true);
        check("0.0.0.0:1", &none, true, false, true);
        check("0.0.0.0:1", &some, false, false, true);
    }

    #[test]
    fn new_tokens_are_admitted_by_the_configuration_printed_with_them() {
        let (token, config) = new_token("reports", &[Scope::Compute]).unwrap();
        assert!(
            token.starts_with("mittari_") && token.len() == 8 + 64,
            "{token}"
        );
        let parsed: toml_block::Config = toml_block::parse(&config);
        let tokens = Tokens::from_settings(&parsed.auth).unwrap();
        let header = format!("Bearer {token}");
        let caller = tokens
            .authorize(Some(header.as_bytes()), Some(Scope::Compute))
            .unwrap();
        assert_eq!(caller.name(), "reports");
        assert!(!caller.is_admin());
        assert!(new_token("two words", &[Scope::Compute]).is_err());
    }

    mod toml_block {
        #[derive(serde::Deserialize)]
        pub(super) struct Config {
            pub(super) auth: super::AuthSettings,
        }

        pub(super) fn parse(text: &str) -> Config {
            config::Config::builder()
                .add_source(config::File::from_str(text, config::FileFormat::Toml))
                .build()
                .unwrap()
                .try_deserialize()
                .unwrap()
        }
    }
}
