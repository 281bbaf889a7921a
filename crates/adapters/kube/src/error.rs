//! How Kubernetes API failures become [`PortError`]s, so that the failover shell decides
//! on the kind of failure (retry, skip, stop) and never on kube's error type.

use kube::Error as KubeError;
use sre_core::PortError;
use sre_failover::ports::LayerError;

/// The backend name in every [`PortError`] this crate produces.
pub(crate) const BACKEND: &str = "kubernetes";

/// Maps a kube error about `what` (`kind namespace/name`) to a port error.
///
/// The API server's status code decides: 404 is `NotFound`, 409 (our `resourceVersion`
/// precondition lost to a concurrent writer) is `PreconditionFailed`, 401/403 and
/// admission refusals (400/422, e.g. the CNPG webhook) are `Rejected`, and 429/5xx are
/// `Unavailable`. Transport failures (connect, TLS, timeouts) are `Unavailable` too,
/// because the same call may succeed once the API server is reachable again.
pub(crate) fn port_error(err: KubeError, what: &str) -> PortError {
    match err {
        KubeError::Api(status) => match status.code {
            404 => PortError::NotFound { what: what.into() },
            409 => PortError::PreconditionFailed { what: what.into() },
            429 | 500..=599 => PortError::Unavailable {
                backend: BACKEND,
                message: format!("{what}: {} ({})", status.message, status.code),
            },
            code => PortError::Rejected {
                backend: BACKEND,
                message: format!("{what}: {} ({code} {})", status.message, status.reason),
            },
        },
        KubeError::SerdeError(e) => PortError::Malformed {
            backend: BACKEND,
            what: what.into(),
            message: e.to_string(),
        },
        KubeError::Auth(e) => PortError::Rejected {
            backend: BACKEND,
            message: format!("{what}: {e}"),
        },
        other => PortError::Unavailable {
            backend: BACKEND,
            message: format!("{what}: {other}"),
        },
    }
}

/// The same mapping, wrapped for the layer ports.
pub(crate) fn layer_error(err: KubeError, what: &str) -> LayerError {
    LayerError::Port(port_error(err, what))
}

/// For the peer region's API server: an unreachable peer is not a failure of the
/// promotion but a fact (there is nothing to fence from here), so `Unavailable` becomes
/// [`LayerError::Unreachable`]; every other error stays what it was.
pub(crate) fn peer_error(err: LayerError) -> LayerError {
    match err {
        LayerError::Port(PortError::Unavailable { message, .. }) => {
            LayerError::Unreachable(message)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn api(code: u16) -> KubeError {
        KubeError::Api(Status::failure("boom", "Reason").with_code(code).boxed())
    }

    fn check(code: u16, expect: &str) {
        let got = port_error(api(code), "Service ns/a");
        let kind = match got {
            PortError::NotFound { .. } => "not-found",
            PortError::PreconditionFailed { .. } => "precondition",
            PortError::Unavailable { .. } => "unavailable",
            PortError::Rejected { .. } => "rejected",
            PortError::Malformed { .. } => "malformed",
            _ => "other",
        };
        assert_eq!(kind, expect, "status {code}");
    }

    #[test]
    fn status_codes_map_to_port_error_kinds() {
        for (code, kind) in [
            (404, "not-found"),
            (409, "precondition"),
            (401, "rejected"),
            (403, "rejected"),
            (422, "rejected"),
            (429, "unavailable"),
            (503, "unavailable"),
        ] {
            check(code, kind);
        }
    }

    #[test]
    fn an_unavailable_peer_is_unreachable_but_a_forbidden_one_is_not() {
        assert!(matches!(
            peer_error(layer_error(api(503), "peer")),
            LayerError::Unreachable(_)
        ));
        assert!(matches!(
            peer_error(layer_error(api(403), "peer")),
            LayerError::Port(PortError::Rejected { .. })
        ));
    }
}
