//! What `--db` / `FOGBOOK_DB` may hold: a SQLite file or a PostgreSQL URL.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Where the state lives, parsed from `--db` / `FOGBOOK_DB`.
///
/// Accepted forms:
/// - a plain path (`fogbook.db`, `/var/lib/fogbook/state.db`): a SQLite file;
/// - `sqlite:PATH` (also `sqlite://PATH`): a SQLite file;
/// - `postgres://USER:PASSWORD@HOST:PORT/DATABASE?sslmode=…` (also `postgresql://`): a
///   PostgreSQL database. `sslmode` is `disable`, `prefer` (the default, as in libpq) or
///   `require`; `verify-ca` and `verify-full` are taken as `require`, which always verifies
///   the server's certificate chain and host name. `sslrootcert=PATH` adds a PEM file of
///   trusted roots to the system's.
///
/// `Display` and `Debug` never show a password.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// A SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL database.
    Postgres(PgUrl),
}

/// A PostgreSQL URL, checked by the client's own parser; see [`StoreUrl`].
#[derive(Clone, PartialEq, Eq)]
pub struct PgUrl {
    /// The URL as given (it may hold a password: never print it).
    raw: String,
    /// The URL handed to the client: `raw` without the parameters fogbook reads itself.
    client: String,
    tls: TlsMode,
    root_cert: Option<PathBuf>,
}

/// Whether the connection is encrypted (`sslmode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain TCP (`sslmode=disable`): for loopback and trusted networks only.
    Disable,
    /// TLS when the server offers it, plain TCP otherwise (`sslmode=prefer`, the default).
    Prefer,
    /// TLS or no connection, the server's certificate verified (`sslmode=require`,
    /// `verify-ca`, `verify-full`).
    Require,
}

/// Why a `--db` value was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreUrlError {
    /// Nothing was given.
    #[error("the store location is empty: {ACCEPTED}")]
    Empty,
    /// A URL scheme other than `sqlite:` and `postgres://`.
    #[error("unknown store URL scheme `{scheme}`: {ACCEPTED}")]
    UnknownScheme {
        /// The scheme given.
        scheme: String,
    },
    /// `sqlite:` with no path after it.
    #[error("`sqlite:` names no file: write `sqlite:PATH`, e.g. `sqlite:fogbook.db`")]
    EmptySqlitePath,
    /// A libpq `key=value` connection string.
    #[error(
        "key=value connection strings are not accepted: write the PostgreSQL connection as a URL, \
         postgres://USER:PASSWORD@HOST:PORT/DATABASE?sslmode=require"
    )]
    KeyValue,
    /// A PostgreSQL URL the client cannot use.
    #[error("invalid PostgreSQL URL {url}: {reason}")]
    Postgres {
        /// The URL with its password masked.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
}

const ACCEPTED: &str = "--db (FOGBOOK_DB) takes a SQLite file path, `sqlite:PATH`, or \
                        `postgres://USER:PASSWORD@HOST:PORT/DATABASE?sslmode=require`";

impl FromStr for StoreUrl {
    type Err = StoreUrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().is_empty() {
            return Err(StoreUrlError::Empty);
        }
        if let Some(rest) = s.strip_prefix("sqlite:") {
            // `sqlite://PATH` is the form other tools write; `sqlite:///abs` is `/abs`.
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(StoreUrlError::EmptySqlitePath);
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if let Some(scheme) = url_scheme(s) {
            return match scheme.to_ascii_lowercase().as_str() {
                "postgres" | "postgresql" => PgUrl::parse(s).map(Self::Postgres),
                _ => Err(StoreUrlError::UnknownScheme {
                    scheme: scheme.to_owned(),
                }),
            };
        }
        let keyword = ["host=", "hostaddr=", "dbname=", "user=", "port=", "password="];
        if s.split_whitespace().count() > 1 && s.split_whitespace().all(|w| w.contains('='))
            || keyword.iter().any(|k| s.starts_with(k))
        {
            return Err(StoreUrlError::KeyValue);
        }
        Ok(Self::Sqlite(PathBuf::from(s)))
    }
}

/// The scheme of `scheme://…`, when `s` has that form.
fn url_scheme(s: &str) -> Option<&str> {
    let (scheme, _) = s.split_once("://")?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic() && chars.all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))).then_some(scheme)
}

impl PgUrl {
    fn parse(raw: &str) -> Result<Self, StoreUrlError> {
        let invalid = |reason: String| StoreUrlError::Postgres { url: mask(raw), reason };
        // An `@` left in a password ends the user info early for the client, which would then
        // look up the rest as a host name, wait for it, and never say why.
        let authority = raw.split_once("://").map_or("", |(_, rest)| {
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            &rest[..end]
        });
        if authority.matches('@').count() > 1 {
            return Err(invalid(
                "its user info holds an `@` that is not percent-encoded: write it as `%40` (`a@b` as `a%40b`; \
                 `:` is `%3A`, `/` is `%2F`, `%` is `%25`)"
                    .to_owned(),
            ));
        }
        let (base, query) = match raw.split_once('?') {
            Some((base, query)) => (base, Some(query)),
            None => (raw, None),
        };
        let mut tls = TlsMode::Prefer;
        let mut root_cert = None;
        let mut passed = Vec::new();
        for pair in query.into_iter().flat_map(|q| q.split('&')).filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "sslmode" => {
                    tls = match value {
                        "disable" => TlsMode::Disable,
                        "prefer" => TlsMode::Prefer,
                        "require" | "verify-ca" | "verify-full" => TlsMode::Require,
                        other => {
                            return Err(invalid(format!(
                                "sslmode `{other}` is not one of disable, prefer, require, verify-ca, verify-full"
                            )));
                        }
                    };
                }
                "sslrootcert" => {
                    let path = percent_decode(value).map_err(invalid)?;
                    if path.is_empty() {
                        return Err(invalid("sslrootcert names no file".to_owned()));
                    }
                    root_cert = Some(PathBuf::from(path));
                }
                _ => passed.push(pair),
            }
        }
        // The client reads sslmode itself too; it is given the mode fogbook settled on.
        let mode = match tls {
            TlsMode::Disable => "disable",
            TlsMode::Prefer => "prefer",
            TlsMode::Require => "require",
        };
        let sslmode = format!("sslmode={mode}");
        passed.push(&sslmode);
        // Schemes are case-insensitive; the client's parser knows the lowercase ones only.
        let base = match base.split_once("://") {
            Some((scheme, rest)) => format!("{}://{rest}", scheme.to_ascii_lowercase()),
            None => base.to_owned(),
        };
        let client = format!("{base}?{}", passed.join("&"));
        let config: postgres::Config = client.parse().map_err(|e: postgres::Error| invalid(e.to_string()))?;
        if config.get_hosts().is_empty() {
            return Err(invalid(
                "it names no host: write postgres://USER:PASSWORD@HOST:PORT/DATABASE".to_owned(),
            ));
        }
        Ok(Self {
            raw: raw.to_owned(),
            client,
            tls,
            root_cert,
        })
    }

    /// The client's configuration (its parser accepted this URL when it was parsed).
    pub(crate) fn config(&self) -> Result<postgres::Config, postgres::Error> {
        self.client.parse()
    }

    /// The async client's configuration (the same URL, for the store's own connections).
    pub(crate) fn session_config(&self) -> Result<tokio_postgres::Config, tokio_postgres::Error> {
        self.client.parse()
    }

    /// How the connection is encrypted.
    pub fn tls(&self) -> TlsMode {
        self.tls
    }

    /// The PEM file of extra trusted roots (`sslrootcert`), if any.
    pub fn root_cert(&self) -> Option<&std::path::Path> {
        self.root_cert.as_deref()
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "{}", path.display()),
            Self::Postgres(url) => url.fmt(f),
        }
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            Self::Postgres(url) => f.debug_tuple("Postgres").field(url).finish(),
        }
    }
}

impl fmt::Display for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&mask(&self.raw))
    }
}

impl fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PgUrl({})", mask(&self.raw))
    }
}

/// `url` with the password of its user info and of a `password=` parameter replaced by `***`.
pub(crate) fn mask(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{hosts}"),
            None => format!("{userinfo}@{hosts}"),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// `%XX` sequences decoded (a URL parameter's value).
fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent-encoding in `{s}`"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("`{s}` does not decode to UTF-8"))
}
