//! How a process connects to NATS: the server's URL, and the credentials and TLS settings that
//! let a deployment give the relay and the projector their own NATS users (docs/operations.md,
//! "NATS accounts and TLS").
//!
//! The URL may come from the command line (`--nats-url`) or `NATS_URL`; every secret comes from
//! the environment or from a file it names — never from the command line, where `ps` shows it:
//!
//! | variable | what |
//! |---|---|
//! | `NATS_USER`, `NATS_PASSWORD` (or `NATS_PASSWORD_FILE`) | user and password, both or neither |
//! | `NATS_TOKEN` (or `NATS_TOKEN_FILE`) | a token |
//! | `NATS_NKEY_SEED_FILE` (or `NATS_NKEY`) | an NKey user seed (`SU…`) |
//! | `NATS_CREDS_FILE` | a `.creds` file (JWT and NKey seed, decentralised auth) |
//! | `NATS_TLS_CA_FILE` | PEM roots to verify the server with |
//! | `NATS_TLS_CERT_FILE`, `NATS_TLS_KEY_FILE` | a client certificate and its key, both or neither |
//! | `NATS_REQUIRE_TLS` | `true`: refuse a connection without TLS |
//!
//! At most one way to authenticate is taken; an empty variable counts as unset. A URL carrying
//! `user:password@` (or `token@`) is accepted as another way to give them, but the credentials
//! are taken out of it: async-nats does not authenticate with a URL's userinfo (it would send
//! nothing), and logs the URL it connects to. Whatever is logged or shown of the URL is
//! [`redact`]ed.

use anyhow::{bail, Context};
use std::path::PathBuf;

/// Where NATS is. The rest of the settings are read from the environment (see the module).
#[derive(Debug, Clone, clap::Args)]
pub struct NatsArgs {
    /// NATS URL (`nats://host:4222`, or `tls://host:4222` to require TLS). Credentials come
    /// from NATS_USER and NATS_PASSWORD, NATS_TOKEN, NATS_NKEY_SEED_FILE or NATS_CREDS_FILE,
    /// and TLS from NATS_TLS_CA_FILE, NATS_TLS_CERT_FILE, NATS_TLS_KEY_FILE and
    /// NATS_REQUIRE_TLS — environment only, so they never show in `ps`.
    #[arg(
        long = "nats-url",
        env = "NATS_URL",
        default_value = "nats://127.0.0.1:4222",
        hide_env_values = true
    )]
    pub nats_url: String,
}

/// How to authenticate to NATS.
#[derive(Clone, PartialEq, Eq)]
pub enum NatsAuth {
    /// No credentials.
    None,
    /// A user and a password.
    UserPassword {
        /// The user.
        user: String,
        /// The password.
        password: String,
    },
    /// A token.
    Token(String),
    /// An NKey user seed.
    NKey(String),
    /// The contents of a `.creds` file.
    Creds(String),
}

impl std::fmt::Debug for NatsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::None => "None",
            Self::UserPassword { .. } => "UserPassword(***)",
            Self::Token(_) => "Token(***)",
            Self::NKey(_) => "NKey(***)",
            Self::Creds(_) => "Creds(***)",
        })
    }
}

/// Every NATS connection setting, checked: what [`NatsSettings::options`] builds the client
/// from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsSettings {
    /// The server's URL without any credentials.
    pub url: String,
    /// How to authenticate.
    pub auth: NatsAuth,
    /// PEM roots to verify the server with.
    pub tls_ca: Option<PathBuf>,
    /// A client certificate and its key.
    pub tls_client: Option<(PathBuf, PathBuf)>,
    /// Refuse a connection without TLS.
    pub require_tls: bool,
}

impl NatsArgs {
    /// The settings from these arguments and the process's environment.
    pub fn settings(&self) -> anyhow::Result<NatsSettings> {
        NatsSettings::from_lookup(&self.nats_url, |name| std::env::var(name).ok())
    }

    /// The URL as it may be logged or shown.
    pub fn redacted_url(&self) -> String {
        redact(&self.nats_url)
    }
}

impl NatsSettings {
    /// The settings from `url` and the variables `lookup` returns (the environment, or a test's
    /// map). Files named by `…_FILE` variables are read here, so a missing or unreadable one
    /// is an error at start, naming the variable.
    pub fn from_lookup(url: &str, lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let var = |name: &str| lookup(name).filter(|value| !value.is_empty());
        let file = |name: &str| -> anyhow::Result<Option<String>> {
            let Some(path) = var(name) else {
                return Ok(None);
            };
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("{name}: cannot read {path}"))?;
            Ok(Some(text))
        };
        let (url, from_url) = split_credentials(url)?;
        let mut ways = Vec::new();
        if let Some(auth) = from_url {
            ways.push(("the URL's user:password@", auth));
        }
        let password = match var("NATS_PASSWORD") {
            Some(password) => Some(password),
            None => file("NATS_PASSWORD_FILE")?.map(|text| text.trim_end().to_string()),
        };
        match (var("NATS_USER"), password) {
            (Some(user), Some(password)) => ways.push((
                "NATS_USER and NATS_PASSWORD",
                NatsAuth::UserPassword { user, password },
            )),
            (Some(_), None) => {
                bail!("NATS_USER is set without NATS_PASSWORD (or NATS_PASSWORD_FILE)")
            }
            (None, Some(_)) => bail!("NATS_PASSWORD is set without NATS_USER"),
            (None, None) => {}
        }
        let token = match var("NATS_TOKEN") {
            Some(token) => Some(token),
            None => file("NATS_TOKEN_FILE")?.map(|text| text.trim().to_string()),
        };
        if let Some(token) = token {
            ways.push(("NATS_TOKEN", NatsAuth::Token(token)));
        }
        let seed = match file("NATS_NKEY_SEED_FILE")? {
            Some(text) => Some(text.trim().to_string()),
            None => var("NATS_NKEY"),
        };
        if let Some(seed) = seed {
            // A user seed is base32 and starts with "SU"; anything else fails only at
            // connect time, with a reconnect loop and no word of why.
            if !seed.starts_with("SU") {
                bail!("the NKey seed (NATS_NKEY_SEED_FILE or NATS_NKEY) is not a user seed (SU…)");
            }
            ways.push(("an NKey seed", NatsAuth::NKey(seed)));
        }
        if let Some(creds) = file("NATS_CREDS_FILE")? {
            // Checked now, as the client would check it when connecting.
            async_nats::ConnectOptions::with_credentials(&creds)
                .map_err(|_| anyhow::anyhow!("NATS_CREDS_FILE is not a NATS credentials file"))?;
            ways.push(("NATS_CREDS_FILE", NatsAuth::Creds(creds)));
        }
        let auth = match ways.len() {
            0 => NatsAuth::None,
            1 => ways.remove(0).1,
            _ => bail!(
                "NATS credentials are given more than one way ({}): give one",
                ways.iter()
                    .map(|(name, _)| *name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let existing = |name: &str| -> anyhow::Result<Option<PathBuf>> {
            let Some(path) = var(name) else {
                return Ok(None);
            };
            std::fs::metadata(&path).with_context(|| format!("{name}: cannot read {path}"))?;
            Ok(Some(PathBuf::from(path)))
        };
        let tls_ca = existing("NATS_TLS_CA_FILE")?;
        let tls_client = match (
            existing("NATS_TLS_CERT_FILE")?,
            existing("NATS_TLS_KEY_FILE")?,
        ) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => {
                bail!("NATS_TLS_CERT_FILE and NATS_TLS_KEY_FILE go together: give both or neither")
            }
        };
        let require_tls = match var("NATS_REQUIRE_TLS").as_deref() {
            None | Some("false" | "0" | "no") => false,
            Some("true" | "1" | "yes") => true,
            Some(other) => bail!("NATS_REQUIRE_TLS must be true or false, not {other:?}"),
        };
        Ok(Self {
            url,
            auth,
            tls_ca,
            tls_client,
            require_tls,
        })
    }

    /// The client's options: credentials, TLS, and reconnection from the first attempt on.
    pub fn options(&self) -> anyhow::Result<async_nats::ConnectOptions> {
        let mut options = match &self.auth {
            NatsAuth::None => async_nats::ConnectOptions::new(),
            NatsAuth::UserPassword { user, password } => {
                async_nats::ConnectOptions::with_user_and_password(user.clone(), password.clone())
            }
            NatsAuth::Token(token) => async_nats::ConnectOptions::with_token(token.clone()),
            NatsAuth::NKey(seed) => async_nats::ConnectOptions::with_nkey(seed.clone()),
            NatsAuth::Creds(creds) => async_nats::ConnectOptions::with_credentials(creds)
                .map_err(|_| anyhow::anyhow!("NATS_CREDS_FILE is not a NATS credentials file"))?,
        };
        if let Some(ca) = &self.tls_ca {
            options = options.add_root_certificates(ca.clone());
        }
        if let Some((cert, key)) = &self.tls_client {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        if self.require_tls {
            options = options.require_tls(true);
        }
        // async-nats logs every connection event at info; a server's error (an authorization
        // or permissions violation: a user set up wrong, or a publish it may not make) is
        // worth a warning of its own.
        Ok(options.event_callback(|event| async move {
            if let async_nats::Event::ServerError(err) = event {
                tracing::warn!(error = %err, "NATS server error");
            }
        }))
    }

    /// Connects in the background: the client keeps trying (and reconnecting) by itself, so a
    /// service can start while NATS is still down. An error only when the URL is not usable.
    pub async fn connect_in_background(&self) -> anyhow::Result<async_nats::Client> {
        self.options()?
            .retry_on_initial_connect()
            .connect(self.url.as_str())
            .await
            .with_context(|| format!("the NATS URL {} is not usable", self.url))
    }

    /// Connects once, for a one-shot command: an unreachable server or refused credentials
    /// are an error.
    pub async fn connect(&self) -> anyhow::Result<async_nats::Client> {
        self.options()?
            .connect(self.url.as_str())
            .await
            .with_context(|| format!("cannot connect to NATS at {}", self.url))
    }
}

/// `url` with the credentials of its `user:password@` (or `token@`) part replaced by `***`,
/// for logs and messages; each of a comma-separated list of URLs alike.
pub fn redact(url: &str) -> String {
    url.split(',')
        .map(|one| {
            let (scheme, rest) = match one.find("://") {
                Some(at) => one.split_at(at + 3),
                None => ("", one),
            };
            let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}***@{}", &rest[at + 1..]),
                None => one.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// `url` without its userinfo, and the credentials it carried: `user:password@` is a user and
/// password, `token@` a token (the NATS convention).
fn split_credentials(url: &str) -> anyhow::Result<(String, Option<NatsAuth>)> {
    if !url.contains('@') {
        return Ok((url.to_string(), None));
    }
    let with_scheme = if url.contains("://") {
        url.to_string()
    } else {
        format!("nats://{url}")
    };
    let mut parsed = url::Url::parse(&with_scheme)
        .map_err(|_| anyhow::anyhow!("the NATS URL {} is not a URL", redact(url)))?;
    let decode = |text: &str| {
        url::form_urlencoded::parse(format!("x={}", text.replace('+', "%2B")).as_bytes())
            .next()
            .map(|(_, value)| value.into_owned())
            .unwrap_or_default()
    };
    let user = decode(parsed.username());
    let auth = match parsed.password() {
        Some(password) => NatsAuth::UserPassword {
            user,
            password: decode(password),
        },
        None if !user.is_empty() => NatsAuth::Token(user),
        None => return Ok((url.to_string(), None)),
    };
    parsed
        .set_username("")
        .and_then(|()| parsed.set_password(None))
        .map_err(|()| anyhow::anyhow!("the NATS URL {} is not usable", redact(url)))?;
    Ok((parsed.to_string(), Some(auth)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        }
    }

    const URL: &str = "nats://127.0.0.1:4222";

    #[test]
    fn redaction_hides_userinfo_and_nothing_else() {
        assert_eq!(redact(URL), URL);
        assert_eq!(
            redact("nats://relay:s3cr3t@nats.internal:4222"),
            "nats://***@nats.internal:4222"
        );
        assert_eq!(redact("tls://t0ken@host:4222/x"), "tls://***@host:4222/x");
        assert_eq!(redact("user:p@ss@host:4222"), "***@host:4222");
        assert_eq!(
            redact("nats://a:b@one:4222,nats://two:4222,nats://c:d@three"),
            "nats://***@one:4222,nats://two:4222,nats://***@three"
        );
        for url in [
            "nats://relay:s3cr3t@nats.internal:4222",
            "nats://relay:s3cr3t@x,nats://t0ken@y",
        ] {
            let shown = redact(url);
            assert!(
                !shown.contains("s3cr3t") && !shown.contains("t0ken"),
                "{shown}"
            );
        }
    }

    #[test]
    fn no_settings_means_no_credentials_and_no_tls() {
        let settings = NatsSettings::from_lookup(URL, env(&[])).unwrap();
        assert_eq!(
            settings,
            NatsSettings {
                url: URL.into(),
                auth: NatsAuth::None,
                tls_ca: None,
                tls_client: None,
                require_tls: false,
            }
        );
        settings.options().unwrap();
    }

    #[test]
    fn user_and_password_go_together() {
        let both =
            NatsSettings::from_lookup(URL, env(&[("NATS_USER", "relay"), ("NATS_PASSWORD", "pw")]))
                .unwrap();
        assert_eq!(
            both.auth,
            NatsAuth::UserPassword {
                user: "relay".into(),
                password: "pw".into()
            }
        );
        both.options().unwrap();
        let err = NatsSettings::from_lookup(URL, env(&[("NATS_USER", "relay")])).unwrap_err();
        assert!(err.to_string().contains("without NATS_PASSWORD"), "{err}");
        let err = NatsSettings::from_lookup(URL, env(&[("NATS_PASSWORD", "pw")])).unwrap_err();
        assert!(err.to_string().contains("without NATS_USER"), "{err}");
        // An empty variable is unset.
        let err =
            NatsSettings::from_lookup(URL, env(&[("NATS_USER", "relay"), ("NATS_PASSWORD", "")]))
                .unwrap_err();
        assert!(err.to_string().contains("without NATS_PASSWORD"), "{err}");
    }

    #[test]
    fn secrets_may_come_from_files_named_in_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path.to_str().unwrap().to_string()
        };
        let password = write("password", "from-a-file\n");
        let settings = NatsSettings::from_lookup(
            URL,
            env(&[("NATS_USER", "relay"), ("NATS_PASSWORD_FILE", &password)]),
        )
        .unwrap();
        assert_eq!(
            settings.auth,
            NatsAuth::UserPassword {
                user: "relay".into(),
                password: "from-a-file".into()
            }
        );
        let token = write("token", "t0ken\n");
        let settings = NatsSettings::from_lookup(URL, env(&[("NATS_TOKEN_FILE", &token)])).unwrap();
        assert_eq!(settings.auth, NatsAuth::Token("t0ken".into()));
        let seed = "SUACSSL3UAHUDXKFSNVUZRF5UHPMWZ6BFDTJ7M6USDXIEDNPPQYYYCU3VY";
        let seed_file = write("seed", &format!("{seed}\n"));
        let settings =
            NatsSettings::from_lookup(URL, env(&[("NATS_NKEY_SEED_FILE", &seed_file)])).unwrap();
        assert_eq!(settings.auth, NatsAuth::NKey(seed.into()));
        settings.options().unwrap();
        let not_a_seed = write("not-a-seed", "hello");
        let err = NatsSettings::from_lookup(URL, env(&[("NATS_NKEY_SEED_FILE", &not_a_seed)]))
            .unwrap_err();
        assert!(err.to_string().contains("not a user seed"), "{err}");
        let not_creds = write("creds", "hello");
        let err =
            NatsSettings::from_lookup(URL, env(&[("NATS_CREDS_FILE", &not_creds)])).unwrap_err();
        assert!(
            err.to_string().contains("not a NATS credentials file"),
            "{err}"
        );
        let err =
            NatsSettings::from_lookup(URL, env(&[("NATS_TOKEN_FILE", "/nonexistent/nats-token")]))
                .unwrap_err();
        assert!(err.to_string().contains("NATS_TOKEN_FILE"), "{err}");
    }

    #[test]
    fn only_one_way_to_authenticate() {
        let err = NatsSettings::from_lookup(
            URL,
            env(&[
                ("NATS_USER", "relay"),
                ("NATS_PASSWORD", "pw"),
                ("NATS_TOKEN", "t"),
            ]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("more than one way"), "{err}");
        let err =
            NatsSettings::from_lookup("nats://a:b@127.0.0.1:4222", env(&[("NATS_TOKEN", "t")]))
                .unwrap_err();
        assert!(err.to_string().contains("more than one way"), "{err}");
    }

    #[test]
    fn credentials_in_the_url_are_taken_out_of_it() {
        let settings =
            NatsSettings::from_lookup("nats://relay:p%40ss@127.0.0.1:4222", env(&[])).unwrap();
        assert_eq!(settings.url, "nats://127.0.0.1:4222");
        assert_eq!(
            settings.auth,
            NatsAuth::UserPassword {
                user: "relay".into(),
                password: "p@ss".into()
            }
        );
        let settings = NatsSettings::from_lookup("tls://t0ken@host:4222", env(&[])).unwrap();
        assert_eq!(settings.url, "tls://host:4222");
        assert_eq!(settings.auth, NatsAuth::Token("t0ken".into()));
        // The settings, as debug-printed into a log, show no secret.
        let shown = format!("{settings:?}");
        assert!(!shown.contains("t0ken"), "{shown}");
    }

    #[test]
    fn tls_settings_are_checked_and_paired() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "x").unwrap();
        let ca = ca.to_str().unwrap();
        let settings = NatsSettings::from_lookup(
            URL,
            env(&[
                ("NATS_TLS_CA_FILE", ca),
                ("NATS_TLS_CERT_FILE", ca),
                ("NATS_TLS_KEY_FILE", ca),
                ("NATS_REQUIRE_TLS", "true"),
            ]),
        )
        .unwrap();
        assert_eq!(settings.tls_ca.as_deref(), Some(std::path::Path::new(ca)));
        assert!(settings.tls_client.is_some() && settings.require_tls);
        settings.options().unwrap();
        let err = NatsSettings::from_lookup(URL, env(&[("NATS_TLS_CERT_FILE", ca)])).unwrap_err();
        assert!(err.to_string().contains("give both"), "{err}");
        let err = NatsSettings::from_lookup(URL, env(&[("NATS_TLS_CA_FILE", "/nonexistent/ca")]))
            .unwrap_err();
        assert!(err.to_string().contains("NATS_TLS_CA_FILE"), "{err}");
        let err =
            NatsSettings::from_lookup(URL, env(&[("NATS_REQUIRE_TLS", "maybe")])).unwrap_err();
        assert!(err.to_string().contains("NATS_REQUIRE_TLS"), "{err}");
    }
}
