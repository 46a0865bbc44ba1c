//! Fetching a managed source's keys over HTTPS: ureq (blocking, no async runtime) over rustls
//! (no OpenSSL), with every bound the managed keys promise — 5 s per document (redirects
//! included), 1 MiB per response, at most three redirects that keep the scheme, no proxies
//! from the environment — and the system's root certificates plus an administrator's PEM
//! bundle.

use crate::error::{AuthError, Result};
use crate::keys::MAX_JWKS_BYTES;
use crate::managed_keys::{
    check_url, discovery_jwks_uri, keep_signature_keys, parse_max_age, redirect_target, shown_url,
    KeptKeys, Source, SourceKind,
};
use std::time::{Duration, Instant};
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig, TlsProvider};

/// Connect, send, and read the whole response, redirects included: per document (an issuer's
/// source fetches two).
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// The longest error text kept: a server's certificate names, say, are the server's choice.
const MAX_ERROR_BYTES: usize = 200;
const MAX_REDIRECTS: usize = 3;
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// What one source's fetch found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The JWKS URL fetched (an issuer's `jwks_uri`).
    pub jwks_url: String,
    pub keys: KeptKeys,
    /// The JWKS response's `Cache-Control: max-age`, in seconds.
    pub max_age: Option<u64>,
}

/// An HTTPS client, built once per configuration: loading the system's roots reads a
/// directory of certificates.
pub struct Fetcher {
    agent: ureq::Agent,
}

impl Fetcher {
    /// A client trusting the system's roots and the certificates of `ca_pem` (the contents of
    /// `pg_rls_auth.http_ca_file`).
    pub fn new(ca_pem: Option<&[u8]>) -> Result<Fetcher> {
        let mut roots: Vec<Certificate<'static>> = rustls_native_certs::load_native_certs()
            .certs
            .into_iter()
            .map(|der| Certificate::from_der(der.as_ref()).to_owned())
            .collect();
        if let Some(pem) = ca_pem {
            let before = roots.len();
            for item in ureq::tls::parse_pem(pem) {
                match item {
                    Ok(PemItem::Certificate(cert)) => roots.push(cert),
                    Ok(_) => {}
                    Err(_) => {
                        return Err(AuthError::bad_config(
                            "pg_rls_auth.http_ca_file is not a valid PEM bundle",
                        ))
                    }
                }
            }
            if roots.len() == before {
                return Err(AuthError::bad_config(
                    "pg_rls_auth.http_ca_file holds no certificate",
                ));
            }
        }
        let tls = TlsConfig::builder()
            .provider(TlsProvider::Rustls)
            .root_certs(RootCerts::from(roots))
            .build();
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .proxy(None)
            .max_redirects(0)
            .http_status_as_error(false)
            .max_response_header_size(MAX_HEADER_BYTES)
            .user_agent(concat!("pg_rls_auth/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(Fetcher { agent })
    }

    /// Fetches a source's keys: an issuer's discovery document first, then the JWKS.
    pub fn fetch(&self, source: &Source) -> Result<Fetched> {
        let jwks_url = match source.kind {
            SourceKind::JwksUrl => source.configured.clone(),
            SourceKind::OidcIssuer => {
                let discovery_url = source.first_url();
                let (document, _) = self.get(&discovery_url)?;
                discovery_jwks_uri(&document, &source.configured, &discovery_url)?
            }
        };
        let (document, max_age) = self.get(&jwks_url)?;
        let keys = keep_signature_keys(&document)?;
        Ok(Fetched {
            jwks_url,
            keys,
            max_age,
        })
    }

    /// The body of a `200 OK` from `url`, following redirects that keep the scheme, with the
    /// response's `max-age`; all within `TIMEOUT`.
    fn get(&self, url: &str) -> Result<(Vec<u8>, Option<u64>)> {
        check_url(url).map_err(AuthError::bad_config)?;
        let deadline = Instant::now() + TIMEOUT;
        let mut url = url.to_string();
        for _ in 0..=MAX_REDIRECTS {
            let failed =
                |what: String| AuthError::bad_config(format!("GET {}: {what}", shown_url(&url)));
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(failed(timed_out()));
            }
            let mut response = self
                .agent
                .get(&url)
                .header("Accept", "application/json")
                .config()
                .timeout_global(Some(left))
                .build()
                .call()
                .map_err(|e| failed(describe(&e)))?;
            let status = response.status();
            if status.is_redirection() {
                let location = response
                    .headers()
                    .get("location")
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| failed(format!("{status} without a Location")))?;
                url = redirect_target(&url, location).map_err(failed)?;
                continue;
            }
            if status.as_u16() != 200 {
                return Err(failed(format!("the server answered {status}")));
            }
            let max_age = response
                .headers()
                .get("cache-control")
                .and_then(|v| v.to_str().ok())
                .and_then(parse_max_age);
            let body = response
                .body_mut()
                .with_config()
                .limit(MAX_JWKS_BYTES as u64)
                .read_to_vec()
                .map_err(|e| match e {
                    ureq::Error::BodyExceedsLimit(_) => failed(format!(
                        "the response is larger than {MAX_JWKS_BYTES} bytes"
                    )),
                    e => failed(describe(&e)),
                })?;
            return Ok((body, max_age));
        }
        Err(AuthError::bad_config(format!(
            "GET {}: more than {MAX_REDIRECTS} redirects",
            shown_url(&url)
        )))
    }
}

fn timed_out() -> String {
    format!("no complete answer within {} s", TIMEOUT.as_secs())
}

/// A transport error in words, without ureq's internal chains of detail, and bounded.
fn describe(e: &ureq::Error) -> String {
    let mut text = match e {
        ureq::Error::Timeout(_) => timed_out(),
        ureq::Error::Io(io) => format!("connection failed ({})", io.kind()),
        ureq::Error::HostNotFound => "the host name does not resolve".to_string(),
        other => other.to_string(),
    };
    if text.len() > MAX_ERROR_BYTES {
        let mut end = MAX_ERROR_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}
