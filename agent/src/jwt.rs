//! JWT validation against an issuer's JWKS, and the agent-wide JWKS cache.
//! [`validate`] checks, in this order: the token's shape, its `alg` against
//! an allow-list (never `none`, never HMAC: we hold only the issuer's public
//! keys), the signature with the key named by `kid` (refetching the JWKS
//! once when the `kid` is unknown, at most once per [`MIN_REFETCH`] per
//! JWKS), then `iss`, `aud`, `exp`/`nbf`/`iat` with clock skew, required
//! claims, `nonce` and `at_hash`. Every validation failure has class
//! `token_invalid` and says exactly what was wrong; failures to fetch the
//! JWKS keep their transport class (`connect`, `http_status`, …).
//!
//! Stable API (used by `authorization_code` and `aws_cognito`):
//! [`validate`], [`Expectations`], [`Validated`], [`at_hash`],
//! [`decode_unverified`], [`JwksCache`].
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authpulse_proto::catalog::{DEFAULT_JWT_ALGORITHMS, TlsSpec};
use authpulse_proto::v1::FailureClass;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use serde_json::{Map, Value as Json};
use sha2::Digest;
use tokio::time::Instant;
use url::Url;

use crate::http::{Request, Session, Timings};
use crate::oauth::{OAuthError, unix_now};
use crate::probes::snippet;

/// A cached JWKS is refetched after this long even if every `kid` is known.
pub const MAX_AGE: Duration = Duration::from_secs(600);
/// An unknown `kid` triggers a refetch only if the cached set is older than
/// this: a flood of tokens with bogus kids must not become a flood of
/// requests to the IdP.
pub const MIN_REFETCH: Duration = Duration::from_secs(10);

/// JWKS documents by URL, shared by every probe of the agent, parsed once
/// into verification keys.
pub struct JwksCache {
    sets: Mutex<HashMap<String, Arc<KeySet>>>,
    min_refetch: Duration,
}

impl Default for JwksCache {
    fn default() -> JwksCache {
        JwksCache::with_min_refetch(MIN_REFETCH)
    }
}

/// One fetched JWKS: its usable verification keys.
pub struct KeySet {
    keys: Vec<Key>,
    fetched: Instant,
    /// Keys in the document that can't verify signatures (encryption keys,
    /// symmetric or unparseable ones).
    skipped: usize,
}

struct Key {
    kid: Option<String>,
    /// The JWK's own `alg`, when it names one.
    alg: Option<String>,
    family: AlgorithmFamily,
    key: DecodingKey,
}

impl KeySet {
    fn kids(&self) -> String {
        let kids: Vec<&str> = self
            .keys
            .iter()
            .map(|k| k.kid.as_deref().unwrap_or("(no kid)"))
            .collect();
        if kids.is_empty() {
            "no usable keys".into()
        } else {
            kids.join(", ")
        }
    }
}

impl JwksCache {
    /// A cache that refetches for an unknown `kid` only when its copy is at
    /// least `min_refetch` old (default [`MIN_REFETCH`]).
    pub fn with_min_refetch(min_refetch: Duration) -> JwksCache {
        JwksCache {
            sets: Mutex::new(HashMap::new()),
            min_refetch,
        }
    }

    fn get(&self, url: &Url) -> Option<Arc<KeySet>> {
        self.sets.lock().ok()?.get(url.as_str()).cloned()
    }

    fn put(&self, url: &Url, set: Arc<KeySet>) {
        if let Ok(mut sets) = self.sets.lock() {
            sets.insert(url.to_string(), set);
        }
    }

    /// Drops every cached JWKS (tests, or an operator's reload).
    pub fn clear(&self) {
        if let Ok(mut sets) = self.sets.lock() {
            sets.clear();
        }
    }

    /// The cached set for `url`, fetching it when absent or older than
    /// [`MAX_AGE`]. The `bool` says whether it was fetched now.
    async fn current(
        &self,
        session: &mut Session<'_>,
        url: &Url,
        tls: &TlsSpec,
        timings: &mut Timings,
    ) -> Result<(Arc<KeySet>, bool), OAuthError> {
        if let Some(set) = self.get(url)
            && set.fetched.elapsed() < MAX_AGE
        {
            return Ok((set, false));
        }
        Ok((self.refetch(session, url, tls, timings).await?, true))
    }

    async fn refetch(
        &self,
        session: &mut Session<'_>,
        url: &Url,
        tls: &TlsSpec,
        timings: &mut Timings,
    ) -> Result<Arc<KeySet>, OAuthError> {
        let set = Arc::new(fetch(session, url, tls, timings).await?);
        self.put(url, set.clone());
        Ok(set)
    }
}

/// GETs and parses a JWKS; keys that can't verify signatures are skipped,
/// not fatal.
async fn fetch(
    session: &mut Session<'_>,
    url: &Url,
    tls: &TlsSpec,
    timings: &mut Timings,
) -> Result<KeySet, OAuthError> {
    let resp = match session.send(Request::get(url.clone(), tls)).await {
        Ok(r) => r,
        Err(e) => {
            timings.absorb(&e.timings);
            return Err(OAuthError::new(
                e.class,
                format!("fetching the JWKS: {}", e.message),
            ));
        }
    };
    timings.absorb(&resp.timings);
    if !resp.status.is_success() {
        return Err(OAuthError::new(
            FailureClass::HttpStatus,
            format!(
                "JWKS {url} answered {}: {}",
                resp.status,
                snippet(&resp.body)
            ),
        ));
    }
    let doc: Json = serde_json::from_slice(&resp.body).map_err(|e| {
        OAuthError::new(
            FailureClass::Protocol,
            format!("JWKS {url} is not JSON ({e}): {}", snippet(&resp.body)),
        )
    })?;
    let Some(raw_keys) = doc.get("keys").and_then(Json::as_array) else {
        return Err(OAuthError::new(
            FailureClass::Protocol,
            format!("JWKS {url} has no `keys` array"),
        ));
    };
    let mut keys = Vec::new();
    let mut skipped = 0;
    for raw in raw_keys {
        match parse_key(raw) {
            Some(k) => keys.push(k),
            None => skipped += 1,
        }
    }
    Ok(KeySet {
        keys,
        fetched: Instant::now(),
        skipped,
    })
}

fn parse_key(raw: &Json) -> Option<Key> {
    let jwk: Jwk = serde_json::from_value(raw.clone()).ok()?;
    if !matches!(
        jwk.common.public_key_use,
        None | Some(PublicKeyUse::Signature)
    ) {
        return None;
    }
    let key = DecodingKey::from_jwk(&jwk).ok()?;
    let family = key.family();
    if family == AlgorithmFamily::Hmac {
        return None;
    }
    Some(Key {
        kid: jwk.common.key_id.clone(),
        alg: raw.get("alg").and_then(Json::as_str).map(str::to_string),
        family,
        key,
    })
}

/// What a token must satisfy beyond a valid signature.
#[derive(Clone, Debug, PartialEq)]
pub struct Expectations {
    /// `iss` must equal this.
    pub issuer: Option<String>,
    /// `aud` (a string or a list) must contain this.
    pub audience: Option<String>,
    /// Allowed `alg` values; `none` and HS* are refused whatever this says.
    pub algorithms: Vec<String>,
    pub clock_skew: Duration,
    /// Claims that must be present (`exp` always is).
    pub required_claims: Vec<String>,
    /// `nonce` must equal this (ID tokens).
    pub nonce: Option<String>,
    /// `at_hash` must match this access token (ID tokens).
    pub access_token: Option<String>,
}

impl Default for Expectations {
    fn default() -> Expectations {
        Expectations {
            issuer: None,
            audience: None,
            algorithms: DEFAULT_JWT_ALGORITHMS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            clock_skew: Duration::from_secs(60),
            required_claims: Vec::new(),
            nonce: None,
            access_token: None,
        }
    }
}

/// A token that passed [`validate`].
#[derive(Clone, Debug, PartialEq)]
pub struct Validated {
    pub alg: String,
    pub kid: Option<String>,
    /// The header as sent.
    pub header: Map<String, Json>,
    pub claims: Map<String, Json>,
    /// Time until `exp` (zero when within the clock skew past it).
    pub remaining: Duration,
}

fn invalid(message: impl Into<String>) -> OAuthError {
    OAuthError::new(FailureClass::TokenInvalid, message)
}

/// Header and claims of a JWT, as JSON objects.
pub type Parts = (Map<String, Json>, Map<String, Json>);

/// Splits a compact JWS and decodes header and claims WITHOUT verifying
/// anything: for looking at a token (is it a JWT? which `kid`?), never for
/// trusting it. Errors are one-line reasons.
pub fn decode_unverified(token: &str) -> Result<Parts, String> {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return Err(if parts.len() == 5 {
            "an encrypted JWT (JWE), not a signed one".into()
        } else {
            format!("not a JWT: {} dot-separated part(s), need 3", parts.len())
        });
    }
    let part = |i: usize, what: &str| -> Result<Map<String, Json>, String> {
        let bytes = URL_SAFE_NO_PAD
            .decode(parts[i].trim_end_matches('='))
            .map_err(|e| format!("JWT {what} is not base64url: {e}"))?;
        match serde_json::from_slice(&bytes) {
            Ok(Json::Object(m)) => Ok(m),
            _ => Err(format!("JWT {what} is not a JSON object")),
        }
    };
    Ok((part(0, "header")?, part(1, "payload")?))
}

/// Validates `token` against the JWKS at `jwks_uri` (through the agent-wide
/// `cache`, fetching with the run's session) and `rules`. The timings are
/// those of any JWKS fetch this needed.
pub async fn validate(
    session: &mut Session<'_>,
    cache: &JwksCache,
    jwks_uri: &Url,
    tls: &TlsSpec,
    token: &str,
    rules: &Expectations,
) -> Result<(Validated, Timings), OAuthError> {
    let mut timings = Timings::default();
    let result = validate_inner(session, cache, jwks_uri, tls, token, rules, &mut timings).await;
    match result {
        Ok(v) => Ok((v, timings)),
        Err(mut e) => {
            e.timings = timings;
            Err(e)
        }
    }
}

async fn validate_inner(
    session: &mut Session<'_>,
    cache: &JwksCache,
    jwks_uri: &Url,
    tls: &TlsSpec,
    token: &str,
    rules: &Expectations,
    timings: &mut Timings,
) -> Result<Validated, OAuthError> {
    let token = token.trim();
    let (header, claims) = decode_unverified(token).map_err(invalid)?;
    let alg_name = header
        .get("alg")
        .and_then(Json::as_str)
        .ok_or_else(|| invalid("JWT header has no `alg`"))?
        .to_string();
    let alg = allowed_alg(&alg_name, &rules.algorithms)?;
    let kid = header.get("kid").and_then(Json::as_str).map(str::to_string);
    if header.get("crit").is_some() {
        // RFC 7515 §4.1.11: we understand no extensions, so must reject.
        return Err(invalid("JWT header has `crit` extensions we don't support"));
    }

    // The signature: find the key, refetching the set once for an unknown kid.
    let (mut set, fresh) = cache.current(session, jwks_uri, tls, timings).await?;
    let mut refreshed = fresh;
    if candidates(&set, kid.as_deref(), &alg_name, alg)
        .next()
        .is_none()
        && !fresh
        && set.fetched.elapsed() >= cache.min_refetch
    {
        set = cache.refetch(session, jwks_uri, tls, timings).await?;
        refreshed = true;
    }
    let keys: Vec<&Key> = candidates(&set, kid.as_deref(), &alg_name, alg).collect();
    if keys.is_empty() {
        let when = if refreshed {
            "after JWKS refresh".to_string()
        } else {
            format!(
                "(JWKS fetched {} ago; refetch at most every {})",
                humantime::format_duration(Duration::from_secs(set.fetched.elapsed().as_secs())),
                humantime::format_duration(cache.min_refetch)
            )
        };
        return Err(invalid(match &kid {
            Some(k) => format!(
                "unknown kid `{k}` {when}: {jwks_uri} has {} ({} unusable key(s) skipped)",
                set.kids(),
                set.skipped
            ),
            None => format!(
                "no kid and no {alg_name} key {when} in {jwks_uri} ({})",
                set.kids()
            ),
        }));
    }
    let (message, signature) = token.rsplit_once('.').ok_or_else(|| invalid("not a JWT"))?;
    let verified = keys.iter().any(|k| {
        jsonwebtoken::crypto::verify(signature, message.as_bytes(), &k.key, alg).unwrap_or(false)
    });
    if !verified {
        return Err(invalid(format!(
            "bad signature: {alg_name} signature does not verify with {} from {jwks_uri}",
            match &kid {
                Some(k) => format!("key `{k}`"),
                None => format!("any of {} key(s)", keys.len()),
            }
        )));
    }

    check_claims(&claims, &alg_name, rules)?;
    let remaining = claims
        .get("exp")
        .and_then(Json::as_u64)
        .map(|exp| Duration::from_secs(exp.saturating_sub(unix_now())))
        .unwrap_or_default();
    Ok(Validated {
        alg: alg_name,
        kid,
        header,
        claims,
        remaining,
    })
}

/// The allow-list check, with `none` and HMAC refused whatever the list says.
fn allowed_alg(name: &str, allowed: &[String]) -> Result<Algorithm, OAuthError> {
    if name.eq_ignore_ascii_case("none") {
        return Err(invalid("alg none refused: the token is unsigned"));
    }
    if name.to_ascii_uppercase().starts_with("HS") {
        return Err(invalid(format!(
            "alg {name} refused: a shared-secret (HMAC) token can't be verified against the issuer's public JWKS"
        )));
    }
    if !allowed.iter().any(|a| a == name) {
        return Err(invalid(format!(
            "alg {name} not allowed (allowed: {})",
            allowed.join(", ")
        )));
    }
    name.parse()
        .map_err(|_| invalid(format!("alg {name} is not supported")))
}

fn alg_family(alg: Algorithm) -> AlgorithmFamily {
    match alg {
        Algorithm::ES256 | Algorithm::ES384 => AlgorithmFamily::Ec,
        Algorithm::EdDSA => AlgorithmFamily::Ed,
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => AlgorithmFamily::Hmac,
        _ => AlgorithmFamily::Rsa,
    }
}

/// Keys that may have signed a token with this `kid` and `alg`: same kid
/// (or any, when the token names none), a matching family, and the JWK's
/// own `alg` (if it has one) equal to the token's.
fn candidates<'s>(
    set: &'s KeySet,
    kid: Option<&'s str>,
    alg_name: &'s str,
    alg: Algorithm,
) -> impl Iterator<Item = &'s Key> {
    let family = alg_family(alg);
    set.keys.iter().filter(move |k| {
        kid.is_none_or(|kid| k.kid.as_deref() == Some(kid))
            && k.family == family
            && k.alg.as_deref().is_none_or(|a| a == alg_name)
    })
}

fn ago(secs: u64) -> String {
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

fn check_claims(
    claims: &Map<String, Json>,
    alg_name: &str,
    rules: &Expectations,
) -> Result<(), OAuthError> {
    if let Some(want) = &rules.issuer {
        match claims.get("iss") {
            Some(Json::String(got)) if got == want => {}
            Some(got) => return Err(invalid(format!("iss mismatch: got {got} want {want:?}"))),
            None => return Err(invalid(format!("no iss claim (want {want:?})"))),
        }
    }
    if let Some(want) = &rules.audience {
        let got: Vec<&str> = match claims.get("aud") {
            Some(Json::String(s)) => vec![s.as_str()],
            Some(Json::Array(a)) => a.iter().filter_map(Json::as_str).collect(),
            _ => Vec::new(),
        };
        if !got.contains(&want.as_str()) {
            return Err(invalid(format!(
                "aud mismatch: got [{}] want {want}",
                got.join(", ")
            )));
        }
    }
    let now = unix_now();
    let skew = rules.clock_skew.as_secs();
    let time = |name: &str| -> Result<Option<u64>, OAuthError> {
        match claims.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .filter(|f| *f >= 0.0)
                .map(|f| Some(f as u64))
                .ok_or_else(|| invalid(format!("`{name}` is not a NumericDate: {v}"))),
        }
    };
    match time("exp")? {
        None => return Err(invalid("no exp claim: the token never expires")),
        Some(exp) if now > exp + skew => {
            return Err(invalid(format!(
                "expired {} ago (clock skew allowed {})",
                ago(now - exp),
                ago(skew)
            )));
        }
        Some(_) => {}
    }
    if let Some(nbf) = time("nbf")?
        && nbf > now + skew
    {
        return Err(invalid(format!(
            "not valid yet: nbf is {} in the future (clock skew allowed {})",
            ago(nbf - now),
            ago(skew)
        )));
    }
    if let Some(iat) = time("iat")?
        && iat > now + skew
    {
        return Err(invalid(format!(
            "issued in the future: iat is {} ahead (clock skew allowed {}); check the clocks",
            ago(iat - now),
            ago(skew)
        )));
    }
    let missing: Vec<&str> = rules
        .required_claims
        .iter()
        .filter(|c| !claims.contains_key(c.as_str()))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(invalid(format!(
            "missing required claim(s): {}",
            missing.join(", ")
        )));
    }
    if let Some(want) = &rules.nonce {
        match claims.get("nonce").and_then(Json::as_str) {
            Some(got) if got == want => {}
            Some(_) => return Err(invalid("nonce mismatch: not the nonce of this login")),
            None => return Err(invalid("no nonce claim, but the login sent one")),
        }
    }
    if let Some(access_token) = &rules.access_token {
        let want = at_hash(access_token, alg_name)
            .ok_or_else(|| invalid(format!("can't compute at_hash for alg {alg_name}")))?;
        match claims.get("at_hash").and_then(Json::as_str) {
            Some(got) if got == want => {}
            Some(_) => return Err(invalid("at_hash does not match the access token")),
            None => return Err(invalid("no at_hash claim to bind the access token")),
        }
    }
    Ok(())
}

/// OIDC Core §3.1.3.6: base64url of the left half of the hash of the
/// access token, the hash being that of the ID token's `alg` (SHA-512 for
/// EdDSA/Ed25519). `None` for an unknown alg.
pub fn at_hash(access_token: &str, alg: &str) -> Option<String> {
    let digest: Vec<u8> = match alg {
        "RS256" | "PS256" | "ES256" | "HS256" => {
            sha2::Sha256::digest(access_token.as_bytes()).to_vec()
        }
        "RS384" | "PS384" | "ES384" | "HS384" => {
            sha2::Sha384::digest(access_token.as_bytes()).to_vec()
        }
        "RS512" | "PS512" | "HS512" | "EdDSA" => {
            sha2::Sha512::digest(access_token.as_bytes()).to_vec()
        }
        _ => return None,
    };
    Some(URL_SAFE_NO_PAD.encode(&digest[..digest.len() / 2]))
}

/// Remaining lifetime for details: `59m 58s`.
pub fn lifetime(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_hash_is_the_left_half_of_the_hash() {
        // Reference computed independently with Python's hashlib:
        // urlsafe_b64encode(sha256(token)[:16]).
        assert_eq!(
            at_hash("dNZX1hEZ9wBCzNL40Upu646bdzQA", "RS256").as_deref(),
            Some("wfgvmE9VxjAudsl9lc6TqA")
        );
        assert_eq!(at_hash("x", "none"), None);
    }

    #[test]
    fn alg_allow_list_refuses_none_and_hmac() {
        let all = Expectations::default().algorithms;
        assert!(
            allowed_alg("none", &all)
                .expect_err("must fail")
                .message
                .contains("alg none refused")
        );
        assert!(
            allowed_alg("HS256", &["HS256".to_string()])
                .expect_err("must fail")
                .message
                .contains("refused")
        );
        assert!(
            allowed_alg("RS256", &["ES256".to_string()])
                .expect_err("must fail")
                .message
                .contains("not allowed")
        );
        assert_eq!(allowed_alg("ES256", &all).expect("ok"), Algorithm::ES256);
    }

    #[test]
    fn claim_checks_are_precise() {
        let now = unix_now();
        let claims = |v: Json| match v {
            Json::Object(m) => m,
            _ => unreachable!(),
        };
        let rules = Expectations {
            issuer: Some("https://i".into()),
            audience: Some("api".into()),
            ..Expectations::default()
        };
        let ok = claims(serde_json::json!({"iss":"https://i","aud":["x","api"],"exp":now+100}));
        assert!(check_claims(&ok, "RS256", &rules).is_ok());
        let aud = claims(serde_json::json!({"iss":"https://i","aud":["x"],"exp":now+100}));
        assert_eq!(
            check_claims(&aud, "RS256", &rules)
                .expect_err("must fail")
                .message,
            "aud mismatch: got [x] want api"
        );
        let expired = claims(serde_json::json!({"iss":"https://i","aud":"api","exp":now-180}));
        let m = check_claims(&expired, "RS256", &rules)
            .expect_err("must fail")
            .message;
        assert!(m.starts_with("expired 3m"), "{m}");
        let nbf =
            claims(serde_json::json!({"iss":"https://i","aud":"api","exp":now+900,"nbf":now+600}));
        assert!(
            check_claims(&nbf, "RS256", &rules)
                .expect_err("must fail")
                .message
                .contains("not valid yet")
        );
    }
}
