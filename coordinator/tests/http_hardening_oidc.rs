//! OIDC access with locally signed JWTs (ES256) whose issuer (discovery
//! and JWKS) is a small loopback server that can be made slow: `nbf` is
//! enforced with the same leeway as `exp`; the JWKS is fetched once for
//! concurrent callers, outside any lock, with a timeout; callers whose key
//! is cached never wait for a fetch; a failed fetch keeps the last good
//! key set; unknown key ids don't refetch more than every 10 s.
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use authpulse_coordinator::api_access::{ApiAccess, ApiConfig, OidcConfig, Scope};
use axum::http::Method;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const AUDIENCE: &str = "authpulse";

/// The issuer: discovery at `/.well-known/openid-configuration`, keys at
/// `/jwks` (answered after `delay_ms`).
struct Issuer {
    url: String,
    jwks: Arc<std::sync::Mutex<String>>,
    delay_ms: Arc<AtomicU64>,
    /// JWKS requests received (counted when they arrive).
    fetches: Arc<AtomicUsize>,
}

impl Issuer {
    async fn start(keys: &[Jwk]) -> Issuer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let issuer = Issuer {
            url: url.clone(),
            jwks: Arc::new(std::sync::Mutex::new(String::new())),
            delay_ms: Arc::new(AtomicU64::new(0)),
            fetches: Arc::new(AtomicUsize::new(0)),
        };
        issuer.set_keys(keys);
        let (jwks, delay, fetches) = (
            issuer.jwks.clone(),
            issuer.delay_ms.clone(),
            issuer.fetches.clone(),
        );
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let (jwks, delay, fetches, url) =
                    (jwks.clone(), delay.clone(), fetches.clone(), url.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut n = 0;
                    while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") && n < buf.len() {
                        match s.read(&mut buf[n..]).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => n += k,
                        }
                    }
                    let head = String::from_utf8_lossy(&buf[..n]).to_string();
                    let body = if head.starts_with("GET /jwks ") {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        let d = delay.load(Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(d)).await;
                        jwks.lock().expect("lock").clone()
                    } else {
                        serde_json::json!({ "issuer": url, "jwks_uri": format!("{url}/jwks") })
                            .to_string()
                    };
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(reply.as_bytes()).await;
                });
            }
        });
        issuer
    }

    fn set_keys(&self, keys: &[Jwk]) {
        let set = JwkSet {
            keys: keys.to_vec(),
        };
        *self.jwks.lock().expect("lock") = serde_json::to_string(&set).expect("jwks json");
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

/// A signing key and its public JWK named `kid`.
fn key(kid: &str) -> (EncodingKey, Jwk) {
    let pair = rcgen::KeyPair::generate().expect("P-256 key");
    let enc = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).expect("encoding key");
    let mut jwk = Jwk::from_encoding_key(&enc, Algorithm::ES256).expect("jwk");
    jwk.common.key_id = Some(kid.to_string());
    (enc, jwk)
}

fn now() -> i64 {
    authpulse_coordinator::store::now_ms() / 1000
}

fn token(issuer: &str, kid: &str, enc: &EncodingKey, nbf: i64, exp: i64) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_string());
    let claims = serde_json::json!({
        "iss": issuer, "aud": AUDIENCE, "sub": "alice", "groups": ["ops"],
        "iat": now(), "nbf": nbf, "exp": exp,
    });
    jsonwebtoken::encode(&header, &claims, enc).expect("sign")
}

fn access(issuer: &str) -> Arc<ApiAccess> {
    let cfg = ApiConfig {
        oidc: Some(OidcConfig {
            issuer: issuer.to_string(),
            audience: AUDIENCE.into(),
            jwks_uri: None,
            groups_claim: "groups".into(),
            group_scopes: [("ops".to_string(), vec![Scope::Read])].into(),
        }),
        ..Default::default()
    };
    let listen = "127.0.0.1:0".parse().expect("addr");
    Arc::new(ApiAccess::from_config(&cfg, listen, false).expect("access"))
}

/// Ok(caller) or Err(status).
async fn ask(access: &ApiAccess, jwt: &str) -> Result<Option<String>, u16> {
    access
        .check(&Method::GET, "/api/v1/slos", Some(&format!("Bearer {jwt}")))
        .await
        .map_err(|r| r.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_before_is_enforced_with_the_expiry_leeway() {
    let (enc, jwk) = key("k1");
    let issuer = Issuer::start(&[jwk]).await;
    let access = access(&issuer.url);
    let t = now();
    let ok = token(&issuer.url, "k1", &enc, t - 5, t + 600);
    assert_eq!(ask(&access, &ok).await, Ok(Some("oidc:alice".into())));
    let tomorrow = token(&issuer.url, "k1", &enc, t + 86_400, t + 2 * 86_400);
    assert_eq!(ask(&access, &tomorrow).await, Err(401), "nbf a day ahead");
    // Within the 60 s leeway (clock skew between IdP and coordinator).
    let soon = token(&issuer.url, "k1", &enc, t + 30, t + 600);
    assert_eq!(ask(&access, &soon).await, Ok(Some("oidc:alice".into())));
    let expired = token(&issuer.url, "k1", &enc, t - 900, t - 300);
    assert_eq!(ask(&access, &expired).await, Err(401));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_or_failing_jwks_never_stalls_callers_with_a_cached_key() {
    let (enc1, jwk1) = key("k1");
    let (enc2, jwk2) = key("k2");
    let issuer = Issuer::start(std::slice::from_ref(&jwk1)).await;
    let access = access(&issuer.url);
    let t = now();
    let known = token(&issuer.url, "k1", &enc1, t - 5, t + 600);
    let unknown = token(&issuer.url, "k2", &enc2, t - 5, t + 600);

    // Nothing cached yet: concurrent callers share one (slow) fetch.
    issuer.delay_ms.store(1_000, Ordering::SeqCst);
    let first_fetch = Instant::now();
    let callers: Vec<_> = (0..5)
        .map(|_| {
            let (a, jwt) = (access.clone(), known.clone());
            tokio::spawn(async move { ask(&a, &jwt).await })
        })
        .collect();
    for c in callers {
        assert_eq!(c.await.expect("task"), Ok(Some("oidc:alice".into())));
    }
    assert_eq!(issuer.fetches(), 1, "one fetch for five callers");

    // An unknown kid right after: refused without a fetch (rate limit).
    assert_eq!(ask(&access, &unknown).await, Err(401));
    assert_eq!(issuer.fetches(), 1);

    // The IdP turns slow, past the fetch timeout; the new key is there but
    // the answer never arrives in time.
    issuer.delay_ms.store(8_000, Ordering::SeqCst);
    issuer.set_keys(&[jwk1.clone(), jwk2.clone()]);
    // Once the rate limit (10 s since the last fetch started) has passed,
    // an unknown kid starts a fetch; until then it is refused at once.
    let slow = loop {
        assert!(
            first_fetch.elapsed() < Duration::from_secs(30),
            "no refetch for an unknown kid"
        );
        let (a, jwt) = (access.clone(), unknown.clone());
        let before = issuer.fetches();
        let started = Instant::now();
        let task = tokio::spawn(async move { ask(&a, &jwt).await });
        // Either refused at once (rate-limited) or a fetch starts.
        let deadline = Instant::now() + Duration::from_secs(2);
        while !task.is_finished() && issuer.fetches() == before {
            assert!(Instant::now() < deadline, "neither refused nor fetching");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if issuer.fetches() > before {
            break (task, started);
        }
        assert_eq!(task.await.expect("task"), Err(401));
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // While that fetch hangs: more unknown-kid callers join it (no second
    // fetch), and callers with the cached key are answered at once.
    let joined: Vec<_> = (0..3)
        .map(|_| {
            let (a, jwt) = (access.clone(), unknown.clone());
            tokio::spawn(async move { ask(&a, &jwt).await })
        })
        .collect();
    for _ in 0..5 {
        let asked = Instant::now();
        assert_eq!(ask(&access, &known).await, Ok(Some("oidc:alice".into())));
        assert!(
            asked.elapsed() < Duration::from_millis(500),
            "a cached key waited {:?} for the JWKS fetch",
            asked.elapsed()
        );
    }
    assert!(!slow.0.is_finished(), "the slow fetch is still running");
    // The fetch gives up after its timeout (5 s), not the IdP's 8 s.
    assert_eq!(slow.0.await.expect("task"), Err(401));
    let waited = slow.1.elapsed();
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_millis(7_500),
        "the unknown kid waited {waited:?}"
    );
    for j in joined {
        assert_eq!(j.await.expect("task"), Err(401));
    }
    assert_eq!(
        issuer.fetches(),
        2,
        "one fetch for every unknown-kid caller"
    );
    // The failed fetch left the last good key set in place.
    assert_eq!(ask(&access, &known).await, Ok(Some("oidc:alice".into())));
}
