//! A person at a node's web console without a browser, for tests and benchmarks that drive
//! the console over HTTP: one kept HTTPS connection (HTTP/1.1) that trusts the state root,
//! and a P-256 key standing for the browser's WebCrypto key (the node never holds it).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::{Federation, admin_of, supervisor_of};

/// The DER prefix of a P-256 SubjectPublicKeyInfo (the 65-byte point follows).
const SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// One reply.
#[derive(Debug)]
pub struct WebReply {
    /// HTTP status.
    pub status: u16,
    /// `Location`, on a redirect.
    pub location: Option<String>,
    /// The cookie set, if any (`name=value`).
    pub cookie: Option<String>,
    /// The body.
    pub body: String,
}

/// An HTTPS client over one kept connection, keeping the session cookie as a browser does.
pub struct WebClient {
    io: BufReader<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
    cookie: String,
    set_cookie: String,
}

impl WebClient {
    /// Connect to `addr`, verifying its certificate against the state root at `root`.
    pub async fn connect(addr: std::net::SocketAddr, root: &Path) -> Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        for c in alpr_pki::read_cert_chain(root)? {
            roots.add(c)?;
        }
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect("localhost".try_into()?, tcp)
            .await?;
        Ok(Self {
            io: BufReader::new(tls),
            cookie: String::new(),
            set_cookie: String::new(),
        })
    }

    /// The whole `Set-Cookie` header of the last reply that set one (with its attributes).
    pub fn last_set_cookie(&self) -> &str {
        &self.set_cookie
    }

    /// Forget the session cookie (a browser whose cookie was cleared).
    pub fn forget_cookie(&mut self) {
        self.cookie.clear();
    }

    /// Send a request (a form body for POST) and read the reply.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        form: &[(&str, &str)],
    ) -> Result<WebReply> {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nSec-Fetch-Site: same-origin\r\n"
        );
        if !self.cookie.is_empty() {
            req.push_str(&format!("Cookie: {}\r\n", self.cookie));
        }
        if method == "POST" {
            req.push_str(&format!(
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        req.push_str("\r\n");
        req.push_str(&body);
        self.io.get_mut().write_all(req.as_bytes()).await?;
        let mut line = String::new();
        self.io.read_line(&mut line).await?;
        let status: u16 = line.split(' ').nth(1).context("no status line")?.parse()?;
        let (mut len, mut location, mut cookie) = (0usize, None, None);
        loop {
            line.clear();
            self.io.read_line(&mut line).await?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(": ").context("bad header line")?;
            match k.to_ascii_lowercase().as_str() {
                "content-length" => len = v.parse()?,
                "location" => location = Some(v.to_owned()),
                "set-cookie" => {
                    self.set_cookie = v.to_owned();
                    cookie = v.split(';').next().map(str::to_owned);
                }
                _ => {}
            }
        }
        let mut b = vec![0u8; len];
        self.io.read_exact(&mut b).await?;
        if let Some(c) = &cookie {
            self.cookie = c.clone();
        }
        Ok(WebReply {
            status,
            location,
            cookie,
            body: String::from_utf8(b)?,
        })
    }
}

/// The value of `attr="…"` after `marker` in `html`.
pub fn attr(html: &str, marker: &str, attr: &str) -> Result<String> {
    let at = html
        .find(marker)
        .with_context(|| format!("{marker} not in the page"))?;
    let rest = &html[at..];
    let start = rest
        .find(&format!("{attr}=\""))
        .with_context(|| format!("no {attr} after {marker}"))?
        + attr.len()
        + 2;
    let end = rest[start..].find('"').context("unterminated attribute")?;
    Ok(rest[start..start + end].to_owned())
}

/// The key a browser would make (WebCrypto ECDSA P-256): signs as WebCrypto does (r ‖ s).
pub struct BrowserKey {
    key: EcdsaKeyPair,
    rng: ring::rand::SystemRandom,
}

impl BrowserKey {
    /// A new key.
    pub fn new() -> Result<Self> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| anyhow::anyhow!("no key"))?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|_| anyhow::anyhow!("no key"))?;
        Ok(Self { key, rng })
    }

    /// Its SubjectPublicKeyInfo, hex.
    pub fn spki_hex(&self) -> String {
        let mut spki = SPKI_PREFIX.to_vec();
        spki.extend_from_slice(self.key.public_key().as_ref());
        hex::encode(spki)
    }

    /// A signature over `msg`, hex.
    pub fn sign(&self, msg: &[u8]) -> Result<String> {
        Ok(hex::encode(
            self.key
                .sign(&self.rng, msg)
                .map_err(|_| anyhow::anyhow!("signing failed"))?,
        ))
    }
}

impl Federation {
    /// Make `user` (an account of `role` at `ori`, with training recorded) a person at
    /// `ori`'s console as a browser would: invited by the admin, enrolled with a new key,
    /// approved by the supervisor, signed in with the key and a first code. Returns the
    /// signed-in client, the key and the code secret (base32).
    pub async fn console_person(
        &self,
        ori: &str,
        user: &str,
        role: &str,
    ) -> Result<(WebClient, BrowserKey, String)> {
        let console = self
            .nodes
            .get(ori)
            .and_then(|n| n.console_addr)
            .context("no console at this node")?;
        let (admin, sup) = (admin_of(ori), supervisor_of(ori));
        self.admin(
            ori,
            &admin,
            alpr_node::client::user_cmd("add", user, role, 0, ""),
        )
        .await?;
        let reply = self
            .admin(
                ori,
                &admin,
                alpr_node::client::user_cmd("invite", user, "", 0, ""),
            )
            .await?;
        let code = reply
            .lines()
            .find_map(|l| l.strip_prefix("enrollment code: "))
            .context("no enrollment code")?
            .to_owned();
        let key = BrowserKey::new()?;
        let mut b = WebClient::connect(console, &self.pki.root_cert()).await?;
        let proof =
            key.sign(format!("alpr-console/v1 enroll\0{ori}\0{user}\0{code}").as_bytes())?;
        let r = b
            .request(
                "POST",
                "/enroll",
                &[
                    ("user", user),
                    ("code", &code),
                    ("spki", &key.spki_hex()),
                    ("proof", &proof),
                ],
            )
            .await?;
        if r.status != 200 {
            bail!("enrollment refused: {}", r.body);
        }
        self.admin(
            ori,
            &sup,
            alpr_node::client::user_cmd("approve-key", user, "", 0, ""),
        )
        .await?;
        let trained = alpr_pki::now_unix() - 86_400;
        self.admin(
            ori,
            &sup,
            alpr_node::client::user_cmd("training", user, "", trained, ""),
        )
        .await?;
        let r = b
            .request("POST", "/signin/start", &[("user", user)])
            .await?;
        let challenge = attr(&r.body, "signin-form", "data-challenge")?;
        let sig =
            key.sign(format!("alpr-console/v1 sign-in\0{ori}\0{user}\0{challenge}").as_bytes())?;
        let r = b
            .request(
                "POST",
                "/signin/finish",
                &[
                    ("user", user),
                    ("challenge", &challenge),
                    ("sig", &sig),
                    ("code", ""),
                ],
            )
            .await?;
        let token = attr(&r.body, "name=\"token\"", "value")?;
        let marker = "id=\"totp-secret\">";
        let at = r.body.find(marker).context("no secret shown")? + marker.len();
        let secret = r.body[at..at + r.body[at..].find('<').context("secret")?].to_owned();
        let totp = totp_rs::Builder::new()
            .with_secret(totp_rs::Secret::try_from_base32(&secret)?)
            .build()?;
        let code = totp.generate_current().to_string();
        let r = b
            .request(
                "POST",
                "/signin/setup",
                &[("token", &token), ("code", &code)],
            )
            .await?;
        if r.cookie.is_none() {
            bail!("not signed in: {}", r.body);
        }
        Ok((b, key, secret))
    }
}
