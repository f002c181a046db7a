//! Remote locations: the settings of each service resolved from [`StorageOptions::extra`] and
//! the environment (options win), and the OpenDAL operator built from them (without layers;
//! [`crate::opendal_backend`] adds those).
//!
//! Nothing here contacts the network: operators connect on first use.

use crate::object_lock::{LockSettings, Locker, LockingTransport, S3Target};
use crate::url::Location;
use crate::StorageOptions;
use coffer_core::{Error, Result};
use opendal::{HttpTransporter, OperationContext, Operator};
use std::sync::Arc;
use std::time::Duration;

/// The longest wait for a TCP connection to an HTTP endpoint (capped by
/// [`StorageOptions::timeout`]), so that a host that drops packets fails each attempt quickly
/// instead of after the whole operation timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Coffer's HTTP client: reqwest (rustls) with a connect timeout.
fn http_transport(opts: &StorageOptions) -> Result<HttpTransporter> {
    let client = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT.min(opts.timeout))
        .build()
        .map_err(|e| Error::invalid(format!("cannot set up the HTTP client: {e}")))?;
    let transport = opendal_http_transport_reqwest::ReqwestTransport::new(client);
    Ok(HttpTransporter::new(transport))
}

/// `op` with its own HTTP client (see [`http_transport`]).
fn with_http_client(op: Operator, opts: &StorageOptions) -> Result<Operator> {
    Ok(with_transport(op, http_transport(opts)?))
}

/// `op` sending its requests through `transport`.
fn with_transport(op: Operator, transport: HttpTransporter) -> Operator {
    op.with_context(OperationContext::new().with_http_transport(transport))
}

/// Reads an environment variable; empty values count as unset.
pub(crate) type EnvFn = dyn Fn(&str) -> Option<String>;

/// The process environment, as [`EnvFn`].
pub(crate) fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Which service a remote location uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    S3,
    Gcs,
    Azure,
    Sftp,
}

impl Service {
    /// The service's name for messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Service::S3 => "S3",
            Service::Gcs => "Google Cloud Storage",
            Service::Azure => "Azure Blob Storage",
            Service::Sftp => "SFTP",
        }
    }

    /// What the top-level namespace is called ("bucket", "container", "folder").
    pub(crate) fn container_word(self) -> &'static str {
        match self {
            Service::S3 | Service::Gcs => "bucket",
            Service::Azure => "container",
            Service::Sftp => "folder",
        }
    }

    /// Where the credentials of this service come from, for messages.
    pub(crate) fn credentials_hint(self) -> &'static str {
        match self {
            Service::S3 => {
                "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN / \
                 AWS_PROFILE (or the s3.access_key_id and s3.secret_access_key options) and \
                 the bucket policy"
            }
            Service::Gcs => {
                "check GOOGLE_APPLICATION_CREDENTIALS (or the gs.credentials_file and gs.token \
                 options) and the bucket's permissions"
            }
            Service::Azure => {
                "check AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT with \
                 AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN (or the az.* options)"
            }
            Service::Sftp => {
                "check the user name, the ssh key (option sftp.key_file), the ssh agent and \
                 the server's authorized_keys"
            }
        }
    }
}

/// A remote location ready to be served.
pub(crate) struct Remote {
    /// The operator, without layers.
    pub(crate) op: Operator,
    /// Which service.
    pub(crate) service: Service,
    /// The endpoint, for messages (no secret, no query string).
    pub(crate) endpoint: String,
    /// The bucket or container name (the host for SFTP), for messages.
    pub(crate) container: String,
    /// Secret values in use (keys, tokens), to scrub from messages and logs.
    pub(crate) secrets: Vec<String>,
    /// S3 Object Lock: what adds the retention to uploads and checks the bucket (`None`: no
    /// retention).
    pub(crate) locker: Option<Arc<Locker>>,
}

/// Builds the operator for a remote `location`. `env` reads the environment.
pub(crate) fn build(location: &Location, opts: &StorageOptions, env: &EnvFn) -> Result<Remote> {
    // The process-wide HTTP transport (reqwest with rustls); idempotent, first install wins.
    opendal::install_default();
    let get = |key: &str, vars: &[&str]| -> Option<String> {
        opts.extra
            .get(key)
            .filter(|v| !v.is_empty())
            .cloned()
            .or_else(|| vars.iter().find_map(|v| env(v)))
    };
    let flag = |key: &str| -> Result<Option<bool>> {
        match opts.extra.get(key).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(None),
            Some(v) => match v.as_str() {
                "true" | "1" | "yes" | "on" => Ok(Some(true)),
                "false" | "0" | "no" | "off" => Ok(Some(false)),
                _ => Err(Error::invalid(format!(
                    "storage option {key} must be true or false, not {v:?}"
                ))),
            },
        }
    };
    let config_error = |what: &str, e: opendal::Error| {
        // The message only: a source could quote a secret setting back.
        Error::invalid(format!(
            "invalid {what} settings for {location}: {}",
            e.message()
        ))
    };

    match location {
        Location::S3 { bucket, prefix } => {
            let endpoint = get("s3.endpoint", &["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]);
            let region = get("s3.region", &["AWS_REGION", "AWS_DEFAULT_REGION"])
                .unwrap_or_else(|| "us-east-1".to_string());
            let path_style = flag("s3.path_style")?.unwrap_or(endpoint.is_some());
            let mut b = opendal::services::S3::default()
                .bucket(bucket)
                .root(&format!("/{prefix}"))
                .region(&region);
            if let Some(ep) = &endpoint {
                b = b.endpoint(ep);
            }
            if !path_style {
                b = b.enable_virtual_host_style();
            }
            let key_from_option = opts.extra.contains_key("s3.access_key_id");
            let key_id = get("s3.access_key_id", &["AWS_ACCESS_KEY_ID"]);
            let secret = if key_from_option {
                opts.extra.get("s3.secret_access_key").cloned()
            } else {
                get("s3.secret_access_key", &["AWS_SECRET_ACCESS_KEY"])
            };
            let token = if key_from_option {
                opts.extra.get("s3.session_token").cloned()
            } else {
                get("s3.session_token", &["AWS_SESSION_TOKEN"])
            };
            let mut secrets: Vec<String> = secret.iter().chain(&token).cloned().collect();
            match (&key_id, &secret) {
                (Some(id), Some(secret)) => {
                    b = b.access_key_id(id).secret_access_key(secret);
                    if let Some(token) = &token {
                        b = b.session_token(token);
                    }
                }
                (None, None) => {}
                _ => {
                    return Err(Error::invalid(format!(
                        "{location}: set both the access key id and the secret access key \
                         (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or the options \
                         s3.access_key_id and s3.secret_access_key)"
                    )))
                }
            }
            let profile = get("s3.profile", &["AWS_PROFILE"]);
            if let Some(profile) = &profile {
                b = b.profile(profile);
            }
            let anonymous = flag("s3.anonymous")?.unwrap_or(false);
            if anonymous {
                b = b.skip_signature();
            }
            let shown = endpoint
                .as_deref()
                .map(strip_query)
                .unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));
            let lock = LockSettings::from_options(opts)?;
            if lock.is_some() {
                // S3 refuses locked uploads without a checksum.
                b = b.checksum_algorithm("crc32c");
            }
            let op = Operator::new(b).map_err(|e| config_error("S3", e))?;
            let transport = http_transport(opts)?;
            let (op, locker) = match lock {
                None => (with_transport(op, transport), None),
                Some(settings) => {
                    let target = S3Target {
                        bucket: bucket.clone(),
                        prefix: prefix.clone(),
                        endpoint: endpoint.clone(),
                        region: region.clone(),
                        path_style,
                        keys: key_id
                            .clone()
                            .zip(secret.clone())
                            .map(|(id, s)| (id, s, token.clone())),
                        profile,
                        anonymous,
                    };
                    let locker = Arc::new(Locker::new(
                        settings,
                        &target,
                        transport.clone(),
                        shown.clone(),
                    )?);
                    let locking = LockingTransport {
                        inner: transport,
                        locker: locker.clone(),
                    };
                    (
                        with_transport(op, HttpTransporter::new(locking)),
                        Some(locker),
                    )
                }
            };
            secrets.extend(env("AWS_SECRET_ACCESS_KEY"));
            secrets.extend(env("AWS_SESSION_TOKEN"));
            Ok(Remote {
                op,
                service: Service::S3,
                endpoint: shown,
                container: bucket.clone(),
                secrets,
                locker,
            })
        }
        Location::Gcs { bucket, prefix } => {
            let emulator = env("STORAGE_EMULATOR_HOST").map(|h| {
                if h.starts_with("http://") || h.starts_with("https://") {
                    h
                } else {
                    format!("http://{h}")
                }
            });
            let endpoint = opts
                .extra
                .get("gs.endpoint")
                .filter(|v| !v.is_empty())
                .cloned()
                .or(emulator);
            let credentials = get("gs.credentials_file", &["GOOGLE_APPLICATION_CREDENTIALS"]);
            let token = opts
                .extra
                .get("gs.token")
                .filter(|v| !v.is_empty())
                .cloned();
            let anonymous = flag("gs.anonymous")?
                .unwrap_or(endpoint.is_some() && credentials.is_none() && token.is_none());
            let mut b = opendal::services::Gcs::default()
                .bucket(bucket)
                .root(&format!("/{prefix}"));
            if let Some(ep) = &endpoint {
                b = b.endpoint(ep);
            }
            if let Some(path) = &credentials {
                b = b.credential_path(path);
            }
            let secrets: Vec<String> = token.iter().cloned().collect();
            if let Some(token) = token {
                b = b.token(token);
            }
            if anonymous {
                b = b
                    .skip_signature()
                    .disable_vm_metadata()
                    .disable_config_load();
            }
            let shown = endpoint
                .as_deref()
                .map(strip_query)
                .unwrap_or_else(|| "https://storage.googleapis.com".to_string());
            let op = Operator::new(b).map_err(|e| config_error("Google Cloud Storage", e))?;
            let op = with_http_client(op, opts)?;
            Ok(Remote {
                op,
                service: Service::Gcs,
                endpoint: shown,
                container: bucket.clone(),
                secrets,
                locker: None,
            })
        }
        Location::Azure { container, prefix } => {
            let endpoint_opt = get("az.endpoint", &["AZURE_STORAGE_ENDPOINT"]);
            let mut secrets = Vec::new();
            let (mut b, shown) =
                match get("az.connection_string", &["AZURE_STORAGE_CONNECTION_STRING"]) {
                    Some(conn) => {
                        secrets.extend(connection_string_secrets(&conn));
                        secrets.push(conn.clone());
                        let b = opendal::services::Azblob::from_connection_string(&conn)
                            .map_err(|e| config_error("Azure connection string", e))?;
                        let shown = endpoint_opt
                            .clone()
                            .or_else(|| endpoint_from_connection_string(&conn))
                            .unwrap_or_else(|| "(from the connection string)".to_string());
                        (b, shown)
                    }
                    None => {
                        let account = get("az.account", &["AZURE_STORAGE_ACCOUNT"]);
                        let endpoint = endpoint_opt.clone().or_else(|| {
                            account
                                .as_ref()
                                .map(|a| format!("https://{a}.blob.core.windows.net"))
                        });
                        let Some(endpoint) = endpoint else {
                            return Err(Error::invalid(format!(
                                "{location}: no Azure storage account: set \
                                 AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT with \
                                 AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN (or the az.* \
                                 options)"
                            )));
                        };
                        let mut b = opendal::services::Azblob::default().endpoint(&endpoint);
                        if let Some(account) = &account {
                            b = b.account_name(account);
                        }
                        if let Some(key) = get("az.key", &["AZURE_STORAGE_KEY"]) {
                            b = b.account_key(&key);
                            secrets.push(key);
                        }
                        if let Some(sas) = get("az.sas_token", &["AZURE_STORAGE_SAS_TOKEN"]) {
                            let sas = sas.trim_start_matches('?').to_string();
                            b = b.sas_token(&sas);
                            secrets.extend(sas_signature(&sas));
                            secrets.push(sas);
                        }
                        (b, endpoint)
                    }
                };
            if let Some(ep) = &endpoint_opt {
                b = b.endpoint(ep);
            }
            b = b.container(container).root(&format!("/{prefix}"));
            let op = Operator::new(b).map_err(|e| config_error("Azure Blob Storage", e))?;
            let op = with_http_client(op, opts)?;
            Ok(Remote {
                op,
                service: Service::Azure,
                endpoint: strip_query(&shown),
                container: container.clone(),
                secrets,
                locker: None,
            })
        }
        Location::Sftp {
            user,
            host,
            port,
            path,
        } => {
            let host_part = if host.contains(':') {
                format!("[{host}]")
            } else {
                host.clone()
            };
            let mut endpoint = format!("ssh://{host_part}");
            if let Some(port) = port {
                endpoint.push_str(&format!(":{port}"));
            }
            let mut b = opendal::services::Sftp::default()
                .endpoint(&endpoint)
                .root(path);
            if let Some(user) = user {
                b = b.user(user);
            }
            if let Some(key) = opts.extra.get("sftp.key_file").filter(|v| !v.is_empty()) {
                let key = expand_home(key, env);
                if !std::path::Path::new(&key).is_file() {
                    return Err(Error::invalid(format!(
                        "{location}: the ssh key file {key} (option sftp.key_file) does not exist"
                    )));
                }
                b = b.key(&key);
            }
            let strategy = opts
                .extra
                .get("sftp.known_hosts")
                .map(|v| v.trim().to_ascii_lowercase())
                .unwrap_or_else(|| "strict".to_string());
            if !matches!(strategy.as_str(), "strict" | "add" | "accept") {
                return Err(Error::invalid(format!(
                    "storage option sftp.known_hosts must be strict, add or accept, not \
                     {strategy:?}"
                )));
            }
            b = b.known_hosts_strategy(&strategy);
            let op = Operator::new(b).map_err(|e| config_error("SFTP", e))?;
            let mut shown = String::from("sftp://");
            if let Some(user) = user {
                shown.push_str(&format!("{user}@"));
            }
            shown.push_str(&host_part);
            if let Some(port) = port {
                shown.push_str(&format!(":{port}"));
            }
            Ok(Remote {
                op,
                service: Service::Sftp,
                endpoint: shown,
                container: host.clone(),
                secrets: Vec::new(),
                locker: None,
            })
        }
        Location::Local(_) => Err(Error::invalid(
            "internal error: a local folder is not a remote location",
        )),
    }
}

/// `url` without its query string (which may hold a SAS token) or user info.
fn strip_query(url: &str) -> String {
    let base = url.split(['?', '#']).next().unwrap_or("");
    match base.find("://") {
        Some(i) => {
            let rest = &base[i + 3..];
            let end = rest.find('/').unwrap_or(rest.len());
            match rest[..end].rfind('@') {
                Some(at) => format!("{}{}", &base[..i + 3], &rest[at + 1..]),
                None => base.to_string(),
            }
        }
        None => base.to_string(),
    }
}

/// The blob endpoint named by an Azure connection string (`BlobEndpoint=`, or built from
/// `DefaultEndpointsProtocol`, `AccountName` and `EndpointSuffix`), for messages.
fn endpoint_from_connection_string(conn: &str) -> Option<String> {
    let mut fields = std::collections::HashMap::new();
    for part in conn.split(';') {
        if let Some((k, v)) = part.split_once('=') {
            fields.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    if let Some(ep) = fields.get("blobendpoint") {
        return Some(ep.clone());
    }
    if fields.get("usedevelopmentstorage").map(String::as_str) == Some("true") {
        return Some("http://127.0.0.1:10000/devstoreaccount1".to_string());
    }
    let account = fields.get("accountname")?;
    let protocol = fields
        .get("defaultendpointsprotocol")
        .map(String::as_str)
        .unwrap_or("https");
    let suffix = fields
        .get("endpointsuffix")
        .map(String::as_str)
        .unwrap_or("core.windows.net");
    Some(format!("{protocol}://{account}.blob.{suffix}"))
}

/// The secret fields of an Azure connection string (`AccountKey`, `SharedAccessSignature` and
/// its `sig`).
fn connection_string_secrets(conn: &str) -> Vec<String> {
    let mut out = Vec::new();
    for part in conn.split(';') {
        if let Some((k, v)) = part.split_once('=') {
            let k = k.trim().to_ascii_lowercase();
            if k == "accountkey" || k == "sharedaccesssignature" {
                out.push(v.trim().to_string());
                out.extend(sas_signature(v.trim()));
            }
        }
    }
    out
}

/// The `sig` value of a SAS token (raw and as it appears percent-encoded).
fn sas_signature(sas: &str) -> Vec<String> {
    sas.trim_start_matches('?')
        .split('&')
        .filter_map(|p| p.strip_prefix("sig="))
        .map(str::to_string)
        .collect()
}

/// Expands a leading `~/` with `HOME`.
fn expand_home(path: &str, env: &EnvFn) -> String {
    match (path.strip_prefix("~/"), env("HOME")) {
        (Some(rest), Some(home)) => format!("{}/{rest}", home.trim_end_matches('/')),
        _ => path.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name: &str| map.get(name).cloned()
    }

    fn remote(url: &str, opts: &StorageOptions, vars: &[(&str, &str)]) -> Result<Remote> {
        build(&Location::parse(url).unwrap(), opts, &env_of(vars))
    }

    #[test]
    fn s3_settings_from_env_and_options() {
        let r = remote(
            "s3://b/p",
            &StorageOptions::default(),
            &[
                ("AWS_ENDPOINT_URL", "http://generic:1"),
                ("AWS_ENDPOINT_URL_S3", "http://s3-specific:2"),
                ("AWS_REGION", "eu-west-3"),
            ],
        )
        .unwrap();
        assert_eq!(r.service, Service::S3);
        assert_eq!(r.endpoint, "http://s3-specific:2");
        assert_eq!(r.container, "b");

        let r = remote("s3://b/p", &StorageOptions::default(), &[]).unwrap();
        assert_eq!(r.endpoint, "https://s3.us-east-1.amazonaws.com");
        let r = remote(
            "s3://b/p",
            &StorageOptions::default(),
            &[("AWS_DEFAULT_REGION", "ap-south-1")],
        )
        .unwrap();
        assert_eq!(r.endpoint, "https://s3.ap-south-1.amazonaws.com");

        let opts = StorageOptions::default()
            .with("s3.endpoint", "http://minio:9000/?x=secret")
            .unwrap();
        let r = remote("s3://b", &opts, &[("AWS_ENDPOINT_URL", "http://env:1")]).unwrap();
        assert_eq!(r.endpoint, "http://minio:9000/");

        let opts = StorageOptions::default()
            .with("s3.access_key_id", "AKID")
            .unwrap();
        let err = remote("s3://b", &opts, &[("AWS_SECRET_ACCESS_KEY", "from-env")])
            .err()
            .unwrap();
        assert!(err.to_string().contains("set both"), "{err}");

        let opts = StorageOptions::default()
            .with("s3.path_style", "maybe")
            .unwrap();
        assert!(remote("s3://b", &opts, &[]).is_err());
    }

    #[test]
    fn gcs_settings() {
        let r = remote(
            "gs://b/p",
            &StorageOptions::default(),
            &[("STORAGE_EMULATOR_HOST", "127.0.0.1:9023")],
        )
        .unwrap();
        assert_eq!(r.service, Service::Gcs);
        assert_eq!(r.endpoint, "http://127.0.0.1:9023");
        let r = remote("gs://b/p", &StorageOptions::default(), &[]).unwrap();
        assert_eq!(r.endpoint, "https://storage.googleapis.com");
    }

    #[test]
    fn azure_settings() {
        let err = remote("az://c/p", &StorageOptions::default(), &[])
            .err()
            .unwrap();
        assert!(err.to_string().contains("AZURE_STORAGE_ACCOUNT"), "{err}");

        let r = remote(
            "az://c/p",
            &StorageOptions::default(),
            &[
                ("AZURE_STORAGE_ACCOUNT", "acct"),
                ("AZURE_STORAGE_KEY", "a2V5"),
            ],
        )
        .unwrap();
        assert_eq!(r.endpoint, "https://acct.blob.core.windows.net");
        assert_eq!(r.container, "c");

        let conn = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;\
                    AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;";
        let r = remote(
            "az://c",
            &StorageOptions::default(),
            &[("AZURE_STORAGE_CONNECTION_STRING", conn)],
        )
        .unwrap();
        assert_eq!(r.endpoint, "http://127.0.0.1:10000/devstoreaccount1");

        let opts = StorageOptions::default()
            .with("az.account", "acct")
            .unwrap()
            .with("az.sas_token", "?sv=2020&sig=secret")
            .unwrap()
            .with("az.endpoint", "https://acct.example/?sig=secret")
            .unwrap();
        let r = remote("az://c", &opts, &[]).unwrap();
        assert_eq!(r.endpoint, "https://acct.example/");
    }

    #[test]
    fn sftp_settings() {
        let r = remote(
            "sftp://alice@[::1]:2222/srv/repo",
            &StorageOptions::default(),
            &[],
        )
        .unwrap();
        assert_eq!(r.service, Service::Sftp);
        assert_eq!(r.endpoint, "sftp://alice@[::1]:2222");
        let opts = StorageOptions::default()
            .with("sftp.known_hosts", "sometimes")
            .unwrap();
        assert!(remote("sftp://h/r", &opts, &[]).is_err());
        let opts = StorageOptions::default()
            .with("sftp.key_file", "/nonexistent/key")
            .unwrap();
        let err = remote("sftp://h/r", &opts, &[]).err().unwrap();
        assert!(err.to_string().contains("/nonexistent/key"), "{err}");
    }

    #[test]
    fn helpers() {
        assert_eq!(strip_query("http://u:p@h:1/a?sig=x#f"), "http://h:1/a");
        assert_eq!(strip_query("h:1"), "h:1");
        assert_eq!(
            endpoint_from_connection_string(
                "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=k;\
                 EndpointSuffix=core.chinacloudapi.cn"
            )
            .as_deref(),
            Some("https://a.blob.core.chinacloudapi.cn")
        );
        let env = env_of(&[("HOME", "/home/u/")]);
        assert_eq!(expand_home("~/.ssh/id", &env), "/home/u/.ssh/id");
        assert_eq!(expand_home("/k", &env), "/k");
    }
}
