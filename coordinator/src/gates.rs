//! Stub: filled in by the issue-6 work (gates). Its routes are merged into the
//! coordinator's router by `api::router`.
use axum::Router;

use crate::api::ApiState;

pub fn routes() -> Router<ApiState> {
    Router::new()
}
