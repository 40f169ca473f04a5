//! The manager's guest logs: Trove's guest log API (`guest_log_list`,
//! `guest_log_action`) over [`GuestLogs`], with the caller's Swift found
//! as upstream's `clients.swift_client(context)` finds it.

use driver_api::request::GuestLogActionRequest;
use driver_api::TroveException;
use serde_json::Value;

use super::{Call, Failure, Manager};
use crate::config::GuestLogOptions;
use crate::guest_log::{Caller, GuestLogs, LogDef, LogOptions, LogType};
use crate::swift::SwiftStore;

/// The guest log API as configured.
pub(super) struct LogService {
    logs: GuestLogs,
    swift_url: Option<String>,
    service_type: String,
    endpoint_type: String,
    insecure: bool,
}

impl Manager {
    /// Serves Trove's guest log API: the agent's own log (`guest`, when
    /// it logs to a file) and the datastore's logs.
    pub fn with_guest_logs(
        mut self,
        options: &GuestLogOptions,
        guest_id: &str,
        swift_api_insecure: bool,
    ) -> Self {
        let mut defs = Vec::new();
        if let Some(file) = &options.log_file {
            defs.push(LogDef {
                name: "guest".into(),
                kind: LogType::Sys,
                file: file.clone(),
            });
        }
        defs.extend(self.datastore.guest_logs().into_iter().map(|l| LogDef {
            name: l.name,
            kind: if l.user { LogType::User } else { LogType::Sys },
            file: l.file,
        }));
        let logs = GuestLogs::new(
            LogOptions {
                guest_id: guest_id.to_owned(),
                manager: self.datastore.manager().to_owned(),
                container: options.container.clone(),
                limit: options.limit,
                expiry: options.expiry,
                exposed: options.exposed.clone(),
            },
            defs,
        );
        self.logs = Some(LogService {
            logs,
            swift_url: options.swift_url.clone(),
            service_type: options.swift_service_type.clone(),
            endpoint_type: options.swift_endpoint_type.clone(),
            insecure: swift_api_insecure,
        });
        self
    }

    fn log_service(&self) -> Result<&LogService, Failure> {
        self.logs.as_ref().ok_or_else(|| {
            Failure::Trove(TroveException::NotSupported {
                operation: "guest_log_list".into(),
                datastore: self.datastore.manager().into(),
            })
        })
    }

    /// `guest_log_list`: every log the caller may see.
    pub(super) async fn guest_log_list(&self, call: &Call) -> Result<Value, Failure> {
        let service = self.log_service()?;
        for name in service.logs.visible(call.is_admin).await {
            self.refresh(&name).await;
            self.user_log_state(service, &name).await;
        }
        let swift = service.swift_for(call)?;
        let caller = Caller {
            swift: &swift,
            is_admin: call.is_admin,
        };
        service
            .logs
            .list(&caller)
            .await
            .map_err(|e| Failure::Trove(e.to_trove()))
    }

    /// `guest_log_action`: show, publish or discard one log.
    pub(super) async fn guest_log_action(
        &self,
        req: &GuestLogActionRequest,
        call: &Call,
    ) -> Result<Value, Failure> {
        let service = self.log_service()?;
        self.refresh(&req.log_name).await;
        if service.logs.is_user(&req.log_name).await == Some(true) {
            if req.enable && req.disable {
                return Err(Failure::Trove(TroveException::BadRequest(format!(
                    "Cannot enable and disable log '{}'.",
                    req.log_name
                ))));
            }
            // As upstream: publishing a USER log turns it on, unless told
            // to turn it off.
            let on = self.user_log_state(service, &req.log_name).await;
            let want = if req.disable {
                false
            } else if req.enable || req.publish {
                true
            } else {
                on
            };
            if want != on {
                let ds = self.datastore.manager();
                self.datastore
                    .set_guest_log(&req.log_name, want)
                    .await
                    .map_err(|e| Failure::Trove(e.to_trove(ds)))?;
                service.logs.set_enabled(&req.log_name, want).await;
                self.refresh(&req.log_name).await;
            }
        }
        let swift = service.swift_for(call)?;
        let caller = Caller {
            swift: &swift,
            is_admin: call.is_admin,
        };
        let shown = service
            .logs
            .action(req, &caller)
            .await
            .map_err(|e| Failure::Trove(e.to_trove()))?;
        tracing::info!(log = %req.log_name, publish = req.publish, discard = req.discard, details = %shown, "guest log");
        Ok(shown)
    }

    /// Whether USER log `name` is on, as the datastore says now (false
    /// for a SYS log or when the datastore cannot tell).
    async fn user_log_state(&self, service: &LogService, name: &str) -> bool {
        if service.logs.is_user(name).await != Some(true) {
            return false;
        }
        let on = match self.datastore.guest_log_enabled(name).await {
            Ok(on) => on,
            Err(e) => {
                tracing::warn!(log = name, error = %e, "cannot tell whether the log is on");
                false
            }
        };
        service.logs.set_enabled(name, on).await;
        on
    }

    /// The datastore's copy of a log brought up to date; a failure leaves
    /// the copy as it was (shown and published as it is).
    async fn refresh(&self, name: &str) {
        if let Err(e) = self.datastore.refresh_guest_log(name).await {
            tracing::warn!(log = name, error = %e, "could not bring the log up to date");
        }
    }
}

impl LogService {
    /// The caller's Swift: `swift_url` with their project, else the
    /// catalog's endpoint.
    fn swift_for(&self, call: &Call) -> Result<SwiftStore, Failure> {
        let refuse = |why: String| Failure::Trove(TroveException::Error(why));
        let token = call.auth_token.clone().ok_or_else(|| {
            refuse("the request carries no token to publish guest logs with".into())
        })?;
        let url = match (&self.swift_url, &call.project_id) {
            (Some(base), Some(project)) => format!("{base}{project}"),
            (Some(_), None) => {
                return Err(refuse(
                    "swift_url is set but the request names no project".into(),
                ))
            }
            (None, _) => endpoint(
                call.service_catalog.as_ref(),
                &self.service_type,
                &self.endpoint_type,
            )
            .ok_or_else(|| {
                refuse(format!(
                    "the request's service catalog has no {} endpoint ({}): set swift_url",
                    self.service_type, self.endpoint_type
                ))
            })?,
        };
        SwiftStore::new(&url, token, self.insecure).map_err(|e| refuse(e.to_string()))
    }
}

/// The URL of `service_type`'s endpoint of `endpoint_type` in a catalog:
/// Keystone v2's shape (what Trove's context carries: `publicURL` keys)
/// or v3's (`interface: public`, `url`).
pub(crate) fn endpoint(
    catalog: Option<&Value>,
    service_type: &str,
    endpoint_type: &str,
) -> Option<String> {
    let interface = endpoint_type.trim_end_matches("URL");
    catalog?
        .as_array()?
        .iter()
        .filter(|s| s["type"].as_str() == Some(service_type))
        .flat_map(|s| s["endpoints"].as_array().into_iter().flatten())
        .find_map(|e| {
            e[endpoint_type]
                .as_str()
                .or_else(|| {
                    (e["interface"].as_str() == Some(interface))
                        .then(|| e["url"].as_str())
                        .flatten()
                })
                .map(str::to_owned)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_swift_endpoint_comes_from_either_catalog_shape() {
        let v2 = json!([
            {"type": "identity", "endpoints": [{"publicURL": "http://ks"}]},
            {"type": "object-store", "endpoints": [
                {"region": "RegionOne", "publicURL": "http://swift/v1/AUTH_p", "internalURL": "http://in/v1/AUTH_p"}
            ]}
        ]);
        assert_eq!(
            endpoint(Some(&v2), "object-store", "publicURL").as_deref(),
            Some("http://swift/v1/AUTH_p")
        );
        assert_eq!(
            endpoint(Some(&v2), "object-store", "internalURL").as_deref(),
            Some("http://in/v1/AUTH_p")
        );
        let v3 = json!([
            {"type": "object-store", "endpoints": [
                {"interface": "admin", "url": "http://adm"},
                {"interface": "public", "region": "RegionOne", "url": "http://pub/v1/AUTH_p"}
            ]}
        ]);
        assert_eq!(
            endpoint(Some(&v3), "object-store", "publicURL").as_deref(),
            Some("http://pub/v1/AUTH_p")
        );
        assert_eq!(endpoint(Some(&v3), "volumev3", "publicURL"), None);
        assert_eq!(endpoint(None, "object-store", "publicURL"), None);
    }
}
