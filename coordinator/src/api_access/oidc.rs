//! People's JWTs from the organisation's OIDC issuer: `api.oidc`
//! ([`OidcConfig`]), and [`OidcVerifier`], which checks a token's signature
//! against the issuer's JWKS (kept in a cache refreshed outside any lock
//! callers wait on), its issuer, audience, expiry and not-before, and maps
//! its group claim to scopes.
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::Scope;

/// `api.oidc`: which JWTs are accepted and what their groups may do.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// Must equal the tokens' `iss`; the JWKS comes from its discovery
    /// document unless `jwks_uri` is given.
    pub issuer: String,
    pub audience: String,
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// Claim holding the groups (a list, or a space-separated string).
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Group → scopes.
    pub group_scopes: std::collections::BTreeMap<String, Vec<Scope>>,
}

fn default_groups_claim() -> String {
    "groups".into()
}

/// Keys of the issuer, refetched when a token names an unknown `kid` (at
/// most every [`JWKS_MIN_REFETCH`]) and in the background once the set is
/// [`JWKS_MAX_AGE`] old. A fetch runs in its own task, outside any lock:
/// callers whose `kid` is in the cached set never wait for it, callers with
/// an unknown `kid` wait for the one fetch in flight (single flight), and a
/// fetch that fails or times out leaves the last good set in place.
pub(super) struct OidcVerifier {
    pub(super) cfg: OidcConfig,
    pub(super) client: reqwest::Client,
    pub(super) jwks: Arc<std::sync::Mutex<JwksState>>,
}

#[derive(Default)]
pub(super) struct JwksState {
    /// The last set fetched successfully.
    set: Option<Arc<jsonwebtoken::jwk::JwkSet>>,
    fetched_at: Option<Instant>,
    /// When the last fetch started, successful or not (the rate limit).
    attempted_at: Option<Instant>,
    /// Turns true when the fetch in flight has finished.
    inflight: Option<tokio::sync::watch::Receiver<bool>>,
}

const JWKS_MAX_AGE: Duration = Duration::from_secs(600);
const JWKS_MIN_REFETCH: Duration = Duration::from_secs(10);
/// Discovery and JWKS together; a slower IdP counts as failed.
const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// What [`OidcVerifier::key`] does next, decided under the lock.
enum KeyStep {
    Found(Box<jsonwebtoken::jwk::Jwk>),
    Wait(tokio::sync::watch::Receiver<bool>),
    Refuse(String),
}

async fn fetch_jwks(
    cfg: &OidcConfig,
    client: &reqwest::Client,
) -> Result<jsonwebtoken::jwk::JwkSet, String> {
    let uri = match &cfg.jwks_uri {
        Some(u) => u.clone(),
        None => {
            let url = format!(
                "{}/.well-known/openid-configuration",
                cfg.issuer.trim_end_matches('/')
            );
            let doc: serde_json::Value = client
                .get(&url)
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .map_err(|e| format!("OIDC discovery {url}: {}", e.without_url()))?
                .json()
                .await
                .map_err(|e| format!("OIDC discovery {url}: {e}"))?;
            doc["jwks_uri"]
                .as_str()
                .ok_or_else(|| format!("OIDC discovery {url}: no jwks_uri"))?
                .to_string()
        }
    };
    client
        .get(&uri)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| format!("JWKS {uri}: {}", e.without_url()))?
        .json()
        .await
        .map_err(|e| format!("JWKS {uri}: {e}"))
}

/// A poisoned lock only means a panic elsewhere; the cache itself is
/// always consistent (every update is one assignment).
fn lock(m: &std::sync::Mutex<JwksState>) -> std::sync::MutexGuard<'_, JwksState> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl OidcVerifier {
    /// Starts a fetch unless one is in flight; returns its completion.
    /// Called with the state locked; the fetch itself runs in a task.
    fn start_fetch(&self, st: &mut JwksState) -> tokio::sync::watch::Receiver<bool> {
        if let Some(rx) = &st.inflight {
            return rx.clone();
        }
        let (tx, rx) = tokio::sync::watch::channel(false);
        st.attempted_at = Some(Instant::now());
        st.inflight = Some(rx.clone());
        let (cfg, client, state) = (self.cfg.clone(), self.client.clone(), self.jwks.clone());
        tokio::spawn(async move {
            let fetched = tokio::time::timeout(JWKS_FETCH_TIMEOUT, fetch_jwks(&cfg, &client))
                .await
                .unwrap_or_else(|_| {
                    Err(format!(
                        "no answer within {}",
                        humantime::format_duration(JWKS_FETCH_TIMEOUT)
                    ))
                });
            {
                let mut st = lock(&state);
                match fetched {
                    Ok(set) => {
                        st.set = Some(Arc::new(set));
                        st.fetched_at = Some(Instant::now());
                    }
                    Err(e) => {
                        metrics::counter!("authpulse_coordinator_oidc_jwks_errors_total")
                            .increment(1);
                        tracing::warn!(error = %e, issuer = %cfg.issuer,
                            "fetching the OIDC signing keys failed; keeping the last good key set");
                    }
                }
                st.inflight = None;
            }
            let _ = tx.send(true);
        });
        rx
    }

    async fn key(&self, kid: Option<&str>) -> Result<jsonwebtoken::DecodingKey, String> {
        let find = |set: &jsonwebtoken::jwk::JwkSet| match kid {
            Some(k) => set.find(k).cloned(),
            None => set.keys.first().cloned(),
        };
        let mut waited = false;
        loop {
            let step = {
                let mut st = lock(&self.jwks);
                let found = st.set.as_deref().and_then(find);
                let recently = st
                    .attempted_at
                    .is_some_and(|t| t.elapsed() < JWKS_MIN_REFETCH);
                match found {
                    Some(k) => {
                        // Old: refresh in the background, answer now.
                        let old = st.fetched_at.is_none_or(|t| t.elapsed() >= JWKS_MAX_AGE);
                        if old && !recently {
                            self.start_fetch(&mut st);
                        }
                        KeyStep::Found(Box::new(k))
                    }
                    None if waited => KeyStep::Refuse(format!("unknown key id {kid:?}")),
                    None => match &st.inflight {
                        Some(rx) => KeyStep::Wait(rx.clone()),
                        None if recently => KeyStep::Refuse(format!(
                            "unknown key id {kid:?} (the issuer's keys were fetched less than {}s ago)",
                            JWKS_MIN_REFETCH.as_secs()
                        )),
                        None => KeyStep::Wait(self.start_fetch(&mut st)),
                    },
                }
            };
            match step {
                KeyStep::Found(k) => {
                    return jsonwebtoken::DecodingKey::from_jwk(&k).map_err(|e| e.to_string());
                }
                KeyStep::Refuse(why) => return Err(why),
                KeyStep::Wait(mut rx) => {
                    // A dropped sender (the task ended) counts as done.
                    let _ = tokio::time::timeout(
                        JWKS_FETCH_TIMEOUT + Duration::from_secs(1),
                        rx.wait_for(|done| *done),
                    )
                    .await;
                    waited = true;
                }
            }
        }
    }

    /// (caller, scopes) of a valid token.
    pub(super) async fn verify(&self, token: &str) -> Result<(String, Vec<Scope>), String> {
        use jsonwebtoken::Algorithm as A;
        let header = jsonwebtoken::decode_header(token).map_err(|e| format!("not a JWT: {e}"))?;
        if !matches!(
            header.alg,
            A::RS256
                | A::RS384
                | A::RS512
                | A::PS256
                | A::PS384
                | A::PS512
                | A::ES256
                | A::ES384
                | A::EdDSA
        ) {
            return Err(format!("algorithm {:?} not accepted", header.alg));
        }
        let key = self.key(header.kid.as_deref()).await?;
        let mut v = jsonwebtoken::Validation::new(header.alg);
        v.set_issuer(&[self.cfg.issuer.as_str()]);
        v.set_audience(&[self.cfg.audience.as_str()]);
        // `nbf` too: Validation leaves it unchecked by default, and a token
        // valid only from tomorrow must not work today.
        v.leeway = 60;
        v.validate_nbf = true;
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &key, &v)
            .map_err(|e| format!("invalid token: {e}"))?;
        let claims = data.claims;
        let groups: Vec<String> = match &claims[&self.cfg.groups_claim] {
            serde_json::Value::Array(a) => a
                .iter()
                .filter_map(|g| g.as_str().map(String::from))
                .collect(),
            serde_json::Value::String(s) => s.split_whitespace().map(String::from).collect(),
            _ => Vec::new(),
        };
        let mut scopes = Vec::new();
        for g in &groups {
            for s in self.cfg.group_scopes.get(g).into_iter().flatten() {
                if !scopes.contains(s) {
                    scopes.push(*s);
                }
            }
        }
        let who = claims["email"]
            .as_str()
            .or(claims["sub"].as_str())
            .unwrap_or("?")
            // Shown in logs and the audit log (`by`): bounded.
            .chars()
            .take(MAX_CALLER_CHARS)
            .collect::<String>();
        Ok((format!("oidc:{who}"), scopes))
    }
}

/// Longest caller name taken from a token's claims.
const MAX_CALLER_CHARS: usize = 200;
