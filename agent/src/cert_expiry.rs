//! Certificate expiry as blackbox_exporter users know it
//! (`probe_ssl_earliest_cert_expiry`): every TLS handshake a probe run
//! completes — the `tls` kind's own, and each HTTPS connection of the HTTP
//! client, so `http`, the OIDC/OAuth kinds, SCIM, SAML and journeys alike —
//! reports the certificates the server presented, and the run keeps the
//! earliest `notAfter` among them. After the run it becomes the gauge
//! [`crate::telemetry::CERT_EXPIRY`] for that probe.
//!
//! What "presented" means: the chain the server sent (leaf and
//! intermediates), not the trust anchor the agent's store completed it with,
//! which the server never sends. An HTTPS handshake only completes when the
//! chain verifies (or `insecure_skip_verify` is set), so for the HTTP kinds
//! this is the verified chain; the `tls` kind completes every handshake and
//! reports an expired certificate too, which is the point of that kind. A
//! run that completes no handshake leaves the gauge at its previous value.
use std::sync::atomic::{AtomicI64, Ordering};

use rustls::pki_types::CertificateDer;

/// No certificate seen yet (i64::MAX is not a time any certificate carries).
const NONE: i64 = i64::MAX;

/// The earliest `notAfter` seen during one probe run.
#[derive(Debug)]
pub struct EarliestExpiry(AtomicI64);

impl Default for EarliestExpiry {
    fn default() -> Self {
        EarliestExpiry(AtomicI64::new(NONE))
    }
}

impl EarliestExpiry {
    /// Takes the certificates one handshake presented into account. A
    /// certificate that does not parse is skipped: the handshake code
    /// reports broken certificates itself, this only measures.
    pub fn saw(&self, chain: &[CertificateDer<'_>]) {
        if let Some(t) = earliest_not_after(chain) {
            self.0.fetch_min(t, Ordering::Relaxed);
        }
    }

    /// Unix seconds of the earliest `notAfter` seen, if any handshake completed.
    pub fn get(&self) -> Option<i64> {
        match self.0.load(Ordering::Relaxed) {
            NONE => None,
            t => Some(t),
        }
    }

    /// Publishes the gauge for `probe` when this run saw a certificate.
    pub fn publish(&self, probe: &str) {
        if let Some(t) = self.get() {
            metrics::gauge!(crate::telemetry::CERT_EXPIRY, "probe" => probe.to_string())
                .set(t as f64);
        }
    }
}

/// Unix seconds of the earliest `notAfter` in `chain` (None when empty or
/// when no certificate parses).
pub fn earliest_not_after(chain: &[CertificateDer<'_>]) -> Option<i64> {
    chain
        .iter()
        .filter_map(|c| x509_parser::parse_x509_certificate(c.as_ref()).ok())
        .map(|(_, cert)| cert.validity().not_after.timestamp())
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(not_after_unix: i64) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(vec!["a.test".to_string()]).expect("params");
        params.not_after = rcgen::date_time_ymd(1970, 1, 1)
            + std::time::Duration::from_secs(u64::try_from(not_after_unix).expect("after 1970"));
        let c = params.self_signed(&key).expect("cert");
        CertificateDer::from(c.der().to_vec())
    }

    #[test]
    fn keeps_the_earliest_not_after_over_several_handshakes() {
        let e = EarliestExpiry::default();
        assert_eq!(e.get(), None);
        e.saw(&[]);
        assert_eq!(e.get(), None, "an empty chain is no certificate");
        // A chain whose intermediate expires before its leaf.
        e.saw(&[cert(2_000_000_000), cert(1_900_000_000)]);
        assert_eq!(e.get(), Some(1_900_000_000));
        // A later handshake (another host) with a later expiry changes nothing …
        e.saw(&[cert(1_950_000_000)]);
        assert_eq!(e.get(), Some(1_900_000_000));
        // … an earlier one wins, and garbage is skipped.
        e.saw(&[CertificateDer::from(vec![1, 2, 3]), cert(1_800_000_000)]);
        assert_eq!(e.get(), Some(1_800_000_000));
    }
}
