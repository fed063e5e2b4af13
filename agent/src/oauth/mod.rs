//! OAuth 2.0 / OpenID Connect client plumbing shared by every token probe
//! (and by `authorization_code`'s code exchange): discovery of a provider's
//! endpoints from its issuer, client authentication at the token,
//! introspection and revocation endpoints (`client_secret_basic`,
//! `client_secret_post`, `private_key_jwt`, `none`), and the token request
//! with its error mapping. Everything goes through the run's
//! `crate::http::Session` so phase timings stay real.
//!
//! Stable API (other probe kinds build on it): [`discover`],
//! [`discover_cached`], [`ClientConfig`], [`ClientAuth::resolve`],
//! [`ClientAuth::apply`], [`post_form`], [`token_request`],
//! [`TokenResponse`], [`error_from_response`], [`introspect`],
//! [`OAuthError`], [`unix_now`]; and the probe step helpers [`Endpoints`],
//! [`token_step`], [`validate_step`], [`step`], [`finish`],
//! [`crate::client_config!`].
//!
//! Error classes of a token request: 5xx → `http_status`; an OAuth error
//! `invalid_client`, `invalid_grant`, `unauthorized_client` or
//! `access_denied` with status 400/401 → `auth_rejected`; any other OAuth
//! error → `protocol`; 401 without an OAuth error body → `auth_rejected`;
//! other non-2xx statuses without one → `http_status`; a 2xx answer that
//! is not a JSON token response → `protocol`.
mod client_auth;
mod discovery;
mod requests;
mod steps;

use std::time::{SystemTime, UNIX_EPOCH};

use authpulse_proto::v1::FailureClass;

use crate::http::{HttpError, Timings};
use crate::probes::Failure;

pub use client_auth::{ClientAuth, ClientConfig};
pub use discovery::{
    DISCOVERY_TTL, Metadata, discover, discover_cached, discovery_url, forget_discovery,
};
pub use requests::{
    TokenResponse, error_from_response, introspect, post_form, scope_param, token_request,
};
pub use steps::{
    Endpoints, check_token_response, finish, publish_tokens, step, token_step, validate_step,
    validate_user_tokens,
};

/// A failed OAuth exchange: the class, a detail for an SRE (never a secret
/// or token) and the phases completed before it failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct OAuthError {
    pub class: FailureClass,
    pub message: String,
    pub timings: Timings,
}

impl OAuthError {
    pub fn new(class: FailureClass, message: impl Into<String>) -> OAuthError {
        OAuthError {
            class,
            message: message.into(),
            timings: Timings::default(),
        }
    }

    fn at(mut self, timings: Timings) -> OAuthError {
        self.timings = timings;
        self
    }
}

impl From<HttpError> for OAuthError {
    fn from(e: HttpError) -> OAuthError {
        OAuthError {
            class: e.class,
            message: e.message,
            timings: e.timings,
        }
    }
}

impl From<OAuthError> for Failure {
    fn from(e: OAuthError) -> Failure {
        Failure::new(e.class, e.message)
    }
}

/// Seconds since the Unix epoch (JWT NumericDate), 0 if the clock is before it.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}
