//! Handing mails to the SMTP server over a few reused connections.
//!
//! lettre speaks SMTP; this keeps a pool of its connections, opened here so that they can
//! run with `TCP_NODELAY`: lettre writes a message's end (`\r\n.\r\n`) apart from its body,
//! and with Nagle's algorithm on that write waits for the server's delayed ACK, 40 ms per
//! mail (lettre's own pool, 0.11.23, leaves Nagle on; the fix is merged upstream but not
//! released). `smtp://` (plain, or STARTTLS with `?tls=required` / `?tls=opportunistic`) goes
//! through this pool; `smtps://` (implicit TLS) through lettre's own pool.
//!
//! At most `connections` are open; an idle one is tested with `NOOP` before reuse (a server
//! may have closed it) and closed after [`IDLE`]; one that saw an error is not reused.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::response::Response;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use tokio::sync::Semaphore;

/// An idle connection is closed after this long (servers drop idle clients after a few
/// minutes; RFC 5321 asks them to wait at least 5).
const IDLE: Duration = Duration::from_secs(60);

/// Why a mail was not accepted: the message, and the server's reply code if it sent one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpError {
    pub message: String,
    pub code: Option<u16>,
    pub timed_out: bool,
}

impl std::fmt::Display for SmtpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<lettre::transport::smtp::Error> for SmtpError {
    fn from(e: lettre::transport::smtp::Error) -> Self {
        SmtpError { code: e.status().map(u16::from), timed_out: e.is_timeout(), message: e.to_string() }
    }
}

fn timed_out(what: &str, after: Duration) -> SmtpError {
    SmtpError { message: format!("{what} took longer than {} s", after.as_secs()), code: None, timed_out: true }
}

/// The SMTP side of the sender.
pub enum Smtp {
    Pooled(Box<Pool>),
    /// Implicit TLS: lettre's transport, with its own pool.
    Lettre(AsyncSmtpTransport<Tokio1Executor>),
}

impl Smtp {
    /// From `INCIDENTD_SMTP_URL` (lettre's URL forms).
    pub fn from_url(url: &str, connections: u32, timeout: Duration) -> anyhow::Result<Smtp> {
        let parsed = url::Url::parse(url).map_err(|e| anyhow::anyhow!("INCIDENTD_SMTP_URL: {e}"))?;
        if parsed.scheme() == "smtps" {
            let pool = lettre::transport::smtp::PoolConfig::new().max_size(connections.max(1));
            let transport =
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url)?.timeout(Some(timeout)).pool_config(pool).build();
            return Ok(Smtp::Lettre(transport));
        }
        // Validates the URL the way lettre reads it (scheme, `tls`, credentials).
        AsyncSmtpTransport::<Tokio1Executor>::from_url(url)?;
        let host = parsed.host_str().ok_or_else(|| anyhow::anyhow!("INCIDENTD_SMTP_URL has no host"))?.to_string();
        let tls = parsed.query_pairs().find(|(k, _)| k == "tls").map(|(_, v)| v.into_owned());
        let starttls = match tls.as_deref() {
            None => None,
            Some(mode) => Some((TlsParameters::new(host.clone())?, mode == "required")),
        };
        let port = parsed.port().unwrap_or(if starttls.is_some() { 587 } else { 25 });
        let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8().map(|s| s.into_owned());
        let credentials = match parsed.password() {
            Some(password) => Some(Credentials::new(decode(parsed.username())?, decode(password)?)),
            None => None,
        };
        let hello = match parsed.path().trim_matches('/') {
            "" => ClientId::default(),
            name => ClientId::Domain(name.to_string()),
        };
        Ok(Smtp::Pooled(Box::new(Pool {
            host,
            port,
            starttls,
            credentials,
            hello,
            timeout,
            idle: Mutex::new(Vec::new()),
            slots: Semaphore::new(connections.max(1) as usize),
        })))
    }

    /// Hands one message to the server.
    pub async fn send(&self, message: lettre::Message) -> Result<Response, SmtpError> {
        match self {
            Smtp::Pooled(pool) => pool.send(message).await,
            Smtp::Lettre(transport) => transport.send(message).await.map_err(SmtpError::from),
        }
    }
}

/// Reused connections to one server, opened with `TCP_NODELAY`.
pub struct Pool {
    host: String,
    port: u16,
    /// STARTTLS, and whether it is required.
    starttls: Option<(TlsParameters, bool)>,
    credentials: Option<Credentials>,
    hello: ClientId,
    /// Each step (connecting, a command) may take this long.
    timeout: Duration,
    idle: Mutex<Vec<(AsyncSmtpConnection, Instant)>>,
    /// One per connection in use.
    slots: Semaphore,
}

impl Pool {
    async fn send(&self, message: lettre::Message) -> Result<Response, SmtpError> {
        let _slot = self.slots.acquire().await.map_err(|e| SmtpError {
            message: e.to_string(),
            code: None,
            timed_out: false,
        })?;
        let mut conn = match self.reusable().await {
            Some(conn) => conn,
            None => self.connect().await?,
        };
        let formatted = message.formatted();
        let exchange = conn.send(message.envelope(), &formatted);
        let result = match tokio::time::timeout(self.timeout * 4, exchange).await {
            Ok(result) => result.map_err(SmtpError::from),
            Err(_) => Err(timed_out("sending the mail", self.timeout * 4)),
        };
        // lettre closes a connection that saw an error; only a sound one goes back.
        if result.is_ok() && !conn.has_broken() {
            self.idle.lock().expect("pool lock").push((conn, Instant::now()));
        }
        result
    }

    /// An idle connection that still answers, if there is one.
    async fn reusable(&self) -> Option<AsyncSmtpConnection> {
        loop {
            let (mut conn, since) = self.idle.lock().expect("pool lock").pop()?;
            if since.elapsed() < IDLE
                && tokio::time::timeout(self.timeout, conn.test_connected()).await.unwrap_or(false)
            {
                return Some(conn);
            }
            conn.abort().await;
        }
    }

    /// A new connection: TCP with `TCP_NODELAY`, EHLO, STARTTLS when asked, AUTH when
    /// credentials are given.
    async fn connect(&self) -> Result<AsyncSmtpConnection, SmtpError> {
        let io = |e: std::io::Error| SmtpError {
            message: format!("connecting to {}:{}: {e}", self.host, self.port),
            code: None,
            timed_out: false,
        };
        let step = self.timeout;
        let tcp = tokio::time::timeout(step, tokio::net::TcpStream::connect((self.host.as_str(), self.port)))
            .await
            .map_err(|_| timed_out("connecting to the SMTP server", step))?
            .map_err(io)?;
        tcp.set_nodelay(true).map_err(io)?;
        let mut conn =
            tokio::time::timeout(step, AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello))
                .await
                .map_err(|_| timed_out("the SMTP greeting", step))??;
        if let Some((params, required)) = &self.starttls {
            if conn.can_starttls() {
                tokio::time::timeout(step, conn.starttls(params.clone(), &self.hello))
                    .await
                    .map_err(|_| timed_out("STARTTLS", step))??;
            } else if *required {
                conn.abort().await;
                return Err(SmtpError {
                    message: "the SMTP server does not offer STARTTLS (INCIDENTD_SMTP_URL has tls=required)".into(),
                    code: None,
                    timed_out: false,
                });
            }
        }
        if let Some(credentials) = &self.credentials {
            tokio::time::timeout(step, conn.auth(DEFAULT_MECHANISMS, credentials))
                .await
                .map_err(|_| timed_out("SMTP authentication", step))??;
        }
        Ok(conn)
    }
}
