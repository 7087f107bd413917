//! `mittari.admin.v1.AdminService`: what an admin changes while the server runs. The auth
//! layer admits only tokens with the admin scope; every change is logged with the caller.

use std::sync::Arc;

use mittari_engine::{Engine, LibraryStatus};
use mittari_proto::admin::v1 as pb;
use mittari_proto::admin::v1::admin_service_server::AdminService;
use tonic::{Request, Response, Status};

use crate::auth::Caller;
use crate::state::ServerState;
use crate::status::ServiceError;

#[derive(Debug)]
pub(crate) struct AdminServer {
    state: Arc<ServerState>,
}

impl AdminServer {
    pub(crate) fn new(state: Arc<ServerState>) -> Self {
        AdminServer { state }
    }
}

/// Every library the engine considered, with its metrics and whether each is served.
pub(crate) fn libraries_to_proto(engine: &Engine) -> Vec<pb::PluginLibrary> {
    let metrics: std::collections::HashMap<&str, (&str, bool)> = engine
        .all_metrics()
        .map(|(d, enabled)| (d.name.as_str(), (d.version.as_str(), enabled)))
        .collect();
    engine
        .libraries()
        .iter()
        .map(|record| {
            let loaded_at = prost_types::Timestamp::from(record.loaded_at);
            match &record.status {
                LibraryStatus::Loaded {
                    metrics: names,
                    sha256,
                    abi_version,
                } => pb::PluginLibrary {
                    path: record.path.display().to_string(),
                    sha256: sha256.clone(),
                    abi_version: *abi_version,
                    metrics: names
                        .iter()
                        .map(|name| {
                            let (version, enabled) =
                                metrics.get(name.as_str()).copied().unwrap_or(("", false));
                            pb::PluginMetric {
                                name: name.clone(),
                                version: version.to_owned(),
                                enabled,
                            }
                        })
                        .collect(),
                    loaded_at: Some(loaded_at),
                    refused_reason: String::new(),
                },
                LibraryStatus::Refused { reason } => pb::PluginLibrary {
                    path: record.path.display().to_string(),
                    loaded_at: Some(loaded_at),
                    refused_reason: reason.clone(),
                    ..pb::PluginLibrary::default()
                },
            }
        })
        .collect()
}

#[tonic::async_trait]
impl AdminService for AdminServer {
    async fn list_plugins(
        &self,
        request: Request<pb::ListPluginsRequest>,
    ) -> Result<Response<pb::ListPluginsResponse>, Status> {
        tracing::info!(
            rpc = "ListPlugins",
            caller = Caller::name_of(&request),
            "listed plugins"
        );
        Ok(Response::new(pb::ListPluginsResponse {
            libraries: libraries_to_proto(&self.state.engine()),
        }))
    }

    async fn reload(
        &self,
        request: Request<pb::ReloadRequest>,
    ) -> Result<Response<pb::ReloadResponse>, Status> {
        let caller = Caller::name_of(&request);
        match self.state.reload().await {
            Ok(reloaded) => {
                let engine = self.state.engine();
                let metrics: Vec<&str> = engine.metrics().map(|d| d.name.as_str()).collect();
                tracing::info!(%caller, trigger = "admin", ?metrics, restart_required = ?reloaded.restart_required, "reloaded the configuration and plugins");
                Ok(Response::new(pb::ReloadResponse {
                    libraries: libraries_to_proto(&engine),
                    restart_required: reloaded.restart_required,
                }))
            }
            Err(error) => {
                tracing::warn!(%caller, trigger = "admin", %error, "reload refused; the running state is unchanged");
                Err(ServiceError::from(error).into())
            }
        }
    }

    async fn set_metric_enabled(
        &self,
        request: Request<pb::SetMetricEnabledRequest>,
    ) -> Result<Response<pb::SetMetricEnabledResponse>, Status> {
        let caller = Caller::name_of(&request);
        let request = request.into_inner();
        crate::convert::check_name("metric", || mittari_engine::Field::Input, &request.name)?;
        let choice = (!request.reset).then_some(request.enabled);
        match self.state.set_metric_enabled(&request.name, choice).await {
            Ok((file, enabled)) => {
                tracing::info!(%caller, metric = %request.name, enabled, reset = request.reset, state_file = %file.display(), "metric switched");
                Ok(Response::new(pb::SetMetricEnabledResponse {
                    state_file: file.display().to_string(),
                    enabled,
                }))
            }
            Err(error) => {
                tracing::warn!(%caller, %error, "metric switch refused");
                Err(ServiceError::from(error).into())
            }
        }
    }

    async fn get_config(
        &self,
        request: Request<pb::GetConfigRequest>,
    ) -> Result<Response<pb::GetConfigResponse>, Status> {
        tracing::info!(
            rpc = "GetConfig",
            caller = Caller::name_of(&request),
            "showed the configuration"
        );
        let settings = self.state.settings();
        let toml = settings
            .redacted_toml()
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(pb::GetConfigResponse {
            toml,
            file: settings
                .file
                .as_ref()
                .map(|f| f.display().to_string())
                .unwrap_or_default(),
            state_file: settings.state_file().display().to_string(),
        }))
    }
}
