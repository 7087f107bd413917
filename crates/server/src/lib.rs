//! The Mittari gRPC server: everything between a socket and the engine.
//!
//! The engine computes; this crate makes it a service other teams can put in their critical
//! path, and the `mittari` binary stays a thin command line over it:
//!
//! - **Services**: `mittari.v1.MetricService` ([`metric_service`]), `mittari.v1.ModelService`
//!   (`model_service`: fitted models in the store, `models`, scored from a cache), the admin's
//!   `mittari.admin.v1.AdminService` ([`admin_service`]), `grpc.health.v1.Health` and server
//!   reflection.
//! - **The request path**, outermost first: accepted sockets with `TCP_NODELAY`, keepalive
//!   and a connection limit (`incoming`); TLS, optionally mutual (rustls via tonic); a
//!   telemetry layer that gives each call a request id and counts it (`telemetry`); bearer
//!   tokens with scopes (`auth`); then the service, which hands CPU work to the engine's
//!   bounded lanes and cancels it when the caller gives up.
//! - **Run-time state** ([`ServerState`]): the engine, the tokens and the settings are
//!   swapped whole by a reload (admin call or `SIGHUP`) or a metric switch; a request keeps
//!   the engine it started with.
//! - **Errors**: every failure becomes a gRPC status in one function (`status::to_status`).
//!
//! Configuration ([`Settings`]) is read and validated once per load, here, for the server and
//! for the CLI's embedded engine alike.

mod admin_service;
mod allocator;
mod auth;
mod budget;
pub mod convert;
mod incoming;
pub mod ipc_check;
mod metric_service;
mod model_service;
mod models;
mod serve;
mod settings;
mod state;
mod status;
mod telemetry;

pub use allocator::{HugePages, return_freed_memory};
pub use auth::{AuthSettings, Scope, TokenSettings, new_token};
pub use model_service::{model_info_of, new_model, summary_info};
pub use models::stored_fit;
pub use serve::{ServeError, bind, serve, shutdown_signal};
pub use settings::{
    ConfigError, DEFAULT_CONFIG_FILE, MetricSettings, MetricState, Overrides, PluginSettings,
    ServerSettings, Settings, TlsSettings,
};
pub use state::{ChangeError, ServerState};
pub use status::{ServiceError, to_status};
