//! What a search from the web console costs the requesting node, against the same search
//! from the CLI (issue 17: at most 10% more CPU).
//!
//! A broker and three nodes run in this process over real mutual TLS on loopback. The
//! requesting agency's node (Sacramento) is restarted on a tokio runtime of its own whose
//! threads (workers and blocking pool) are named `sac-node`, so its CPU time is read
//! apart from everything else's (`/proc/self/task/*/stat`: user + system time of those
//! threads). Both paths search one target (Ventura, 7 reads answered) for the same plate:
//!
//! * **CLI**: what `alpr-node query` does: the investigator's key signs the query; a new
//!   mTLS connection to the node (a CLI run is one process, one handshake); `Search`.
//! * **Console**: what a browser does, with the browser's key (a P-256 key the node never
//!   sees): over one kept HTTPS connection, `GET /search` (the form), `POST
//!   /search/prepare` (the node builds and checks the query, renders the review), the
//!   signature over the bytes it shows, `POST /search/send` (the node's `search`, as for
//!   the CLI) and `GET` of the results page it redirects to.
//!
//! * **CLI, kept connection**: the cheapest a command-line client could be: one mTLS
//!   connection kept for every search (no handshake per search), the same signed queries.
//!
//! Rounds alternate between the paths so drift cancels. Knobs: `ALPR_BENCH_SEARCHES`
//! (per path per round, default 50), `ALPR_BENCH_ROUNDS` (default 4).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use alpr_federation::{
    Federation, admin_of, demo_agencies, open_policy, params, supervisor_of, synthetic_csv,
};
use alpr_node::client::user_cmd;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const VENTURA: &str = "CA0560100";
const SACRAMENTO: &str = "CA0340000";
const SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// User + system CPU of this process's threads whose name starts with `prefix`.
fn thread_cpu(prefix: &str) -> Duration {
    let tick = 100.0; // USER_HZ on Linux
    let mut ticks = 0u64;
    for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if !comm.starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        // Fields after the ")" that closes the name: state is field 3; utime 14, stime 15.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split(' ').collect();
        ticks += f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    }
    Duration::from_secs_f64(ticks as f64 / tick)
}

/// A minimal HTTP/1.1 client over one kept TLS connection, as a browser keeps one.
struct Browser {
    io: BufReader<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
    cookie: String,
}

struct Reply {
    status: u16,
    location: Option<String>,
    cookie: Option<String>,
    body: String,
}

impl Browser {
    async fn connect(addr: std::net::SocketAddr) -> Self {
        #[derive(Debug)]
        struct AnyCert;
        impl rustls::client::danger::ServerCertVerifier for AnyCert {
            fn verify_server_cert(
                &self,
                _: &rustls::pki_types::CertificateDer<'_>,
                _: &[rustls::pki_types::CertificateDer<'_>],
                _: &rustls::pki_types::ServerName<'_>,
                _: &[u8],
                _: rustls::pki_types::UnixTime,
            ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
                Ok(rustls::client::danger::ServerCertVerified::assertion())
            }
            fn verify_tls12_signature(
                &self,
                _: &[u8],
                _: &rustls::pki_types::CertificateDer<'_>,
                _: &rustls::DigitallySignedStruct,
            ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error>
            {
                Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
            }
            fn verify_tls13_signature(
                &self,
                _: &[u8],
                _: &rustls::pki_types::CertificateDer<'_>,
                _: &rustls::DigitallySignedStruct,
            ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error>
            {
                Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
            }
            fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
                rustls::crypto::ring::default_provider()
                    .signature_verification_algorithms
                    .supported_schemes()
            }
        }
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert))
        .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect("127.0.0.1".try_into().unwrap(), tcp)
            .await
            .unwrap();
        Self {
            io: BufReader::new(tls),
            cookie: String::new(),
        }
    }

    async fn request(&mut self, method: &str, path: &str, form: &[(&str, &str)]) -> Reply {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nSec-Fetch-Site: same-origin\r\n"
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
        self.io.get_mut().write_all(req.as_bytes()).await.unwrap();
        let mut line = String::new();
        self.io.read_line(&mut line).await.unwrap();
        let status: u16 = line.split(' ').nth(1).unwrap().parse().unwrap();
        let (mut len, mut location, mut cookie) = (0usize, None, None);
        loop {
            line.clear();
            self.io.read_line(&mut line).await.unwrap();
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(": ").unwrap();
            match k.to_ascii_lowercase().as_str() {
                "content-length" => len = v.parse().unwrap(),
                "location" => location = Some(v.to_owned()),
                "set-cookie" => cookie = v.split(';').next().map(str::to_owned),
                _ => {}
            }
        }
        let mut b = vec![0u8; len];
        self.io.read_exact(&mut b).await.unwrap();
        if let Some(c) = &cookie {
            self.cookie = c.clone();
        }
        Reply {
            status,
            location,
            cookie,
            body: String::from_utf8(b).unwrap(),
        }
    }
}

/// The value of `attr="…"` after `marker` in `html`.
fn attr(html: &str, marker: &str, attr: &str) -> String {
    let at = html
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} not in {html}"));
    let rest = &html[at..];
    let start = rest.find(&format!("{attr}=\"")).unwrap() + attr.len() + 2;
    let end = rest[start..].find('"').unwrap();
    rest[start..start + end].to_owned()
}

struct Person {
    key: EcdsaKeyPair,
    rng: ring::rand::SystemRandom,
}

impl Person {
    fn sign(&self, msg: &[u8]) -> String {
        hex::encode(self.key.sign(&self.rng, msg).unwrap())
    }
}

async fn sign_in(fed: &Federation, console: std::net::SocketAddr) -> (Browser, Person) {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let key =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let me = Person { key, rng };
    let user = "det-bench";
    let (admin, sup) = (admin_of(SACRAMENTO), supervisor_of(SACRAMENTO));
    fed.admin(
        SACRAMENTO,
        &admin,
        user_cmd("add", user, "investigator", 0, ""),
    )
    .await
    .unwrap();
    let reply = fed
        .admin(SACRAMENTO, &admin, user_cmd("invite", user, "", 0, ""))
        .await
        .unwrap();
    let code = reply
        .lines()
        .find_map(|l| l.strip_prefix("enrollment code: "))
        .unwrap()
        .to_owned();
    let mut b = Browser::connect(console).await;
    let mut spki = SPKI_PREFIX.to_vec();
    spki.extend_from_slice(me.key.public_key().as_ref());
    let proof = me.sign(format!("alpr-console/v1 enroll\0{SACRAMENTO}\0{user}\0{code}").as_bytes());
    let r = b
        .request(
            "POST",
            "/enroll",
            &[
                ("user", user),
                ("code", &code),
                ("spki", &hex::encode(&spki)),
                ("proof", &proof),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    fed.admin(SACRAMENTO, &sup, user_cmd("approve-key", user, "", 0, ""))
        .await
        .unwrap();
    fed.admin(
        SACRAMENTO,
        &sup,
        user_cmd("training", user, "", alpr_pki::now_unix() - 86_400, ""),
    )
    .await
    .unwrap();
    let r = b.request("POST", "/signin/start", &[("user", user)]).await;
    let challenge = attr(&r.body, "signin-form", "data-challenge");
    let sig =
        me.sign(format!("alpr-console/v1 sign-in\0{SACRAMENTO}\0{user}\0{challenge}").as_bytes());
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
        .await;
    let token = attr(&r.body, "name=\"token\"", "value");
    let at = r.body.find("id=\"totp-secret\">").unwrap() + "id=\"totp-secret\">".len();
    let secret = &r.body[at..at + r.body[at..].find('<').unwrap()];
    let totp = totp_rs::Builder::new()
        .with_secret(totp_rs::Secret::try_from_base32(secret).unwrap())
        .build()
        .unwrap();
    let code = totp.generate_current().to_string();
    let r = b
        .request(
            "POST",
            "/signin/setup",
            &[("token", &token), ("code", &code)],
        )
        .await;
    assert!(r.cookie.is_some(), "signed in: {}", r.body);
    (b, me)
}

async fn console_search(b: &mut Browser, me: &Person) -> usize {
    let form = b.request("GET", "/search", &[]).await;
    assert_eq!(form.status, 200);
    let csrf = attr(&form.body, "search-form", "value");
    let now = alpr_pki::now_unix();
    let fmt = |t: i64| {
        time::OffsetDateTime::from_unix_timestamp(t)
            .unwrap()
            .format(time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]"
            ))
            .unwrap()
    };
    let (from, to) = (fmt(now - 7 * 86_400), fmt(now));
    let review = b
        .request(
            "POST",
            "/search/prepare",
            &[
                ("csrf", &csrf),
                ("purpose", "240"),
                ("case_number", "24-001234"),
                (
                    "reason",
                    "Stolen Honda seen leaving the burglary at 12 Main St",
                ),
                ("plate", "8ABC123"),
                ("plate_state", "ANY"),
                ("from", &from),
                ("to", &to),
                ("target", VENTURA),
            ],
        )
        .await;
    assert_eq!(review.status, 200, "{}", review.body);
    let input = hex::decode(attr(&review.body, "sign-form", "data-signing-input")).unwrap();
    let pending = attr(&review.body, "name=\"pending\"", "value");
    let sent = b
        .request(
            "POST",
            "/search/send",
            &[
                ("csrf", &csrf),
                ("pending", &pending),
                ("sig", &me.sign(&input)),
            ],
        )
        .await;
    assert_eq!(sent.status, 303, "{}", sent.body);
    let page = b.request("GET", &sent.location.unwrap(), &[]).await;
    assert!(page.body.contains("Answered with 7 reads"), "{}", page.body);
    page.body.len()
}

fn main() {
    let main_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("bench")
        .build()
        .unwrap();
    let sac_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .thread_name("sac-node")
        .thread_keep_alive(Duration::from_secs(3600))
        .build()
        .unwrap();
    let per: usize = std::env::var("ALPR_BENCH_SEARCHES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let rounds: usize = std::env::var("ALPR_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    main_rt.block_on(async {
        let mut fed = Federation::start(None, &demo_agencies()[..3], |_| {
            let mut p = open_policy();
            p.max_queries_per_minute = 1_000_000;
            p
        })
        .await
        .unwrap();
        fed.ingest_csv(VENTURA, &synthetic_csv(VENTURA, &["8ABC123", "5XYZ987"], 10))
            .unwrap();
        fed.agree(Federation::terms(VENTURA, SACRAMENTO, &["240"], 30, 86_400))
            .await
            .unwrap();
        // Sacramento's node again, on its own runtime (same config, same address).
        let cfg = fed.node_configs[SACRAMENTO].clone();
        fed.nodes.remove(SACRAMENTO).unwrap().stop().await.unwrap();
        let running = sac_rt
            .spawn(async move { alpr_node::start(&cfg).await.unwrap() })
            .await
            .unwrap();
        let console = running.console_addr.unwrap();
        fed.nodes.insert(SACRAMENTO.into(), running);

        let (mut browser, me) = sign_in(&fed, console).await;
        let p = params("8ABC123", &[VENTURA], "240", 7);
        // Warm both paths (chains cached, connections open, pages compiled in).
        for _ in 0..10 {
            let (_, r) = fed.search(SACRAMENTO, &p).await.unwrap();
            assert_eq!(r.results[0].status, 1);
            console_search(&mut browser, &me).await;
        }
        let (_, tls) = fed
            .person(SACRAMENTO, &alpr_federation::investigator_of(SACRAMENTO))
            .unwrap();
        let target = alpr_runtime::client::Target {
            addr: fed.nodes[SACRAMENTO].addr.to_string(),
            server_name: "localhost".into(),
        };
        let mut kept =
            alpr_node::client::node_client(&target, &fed.trust, &tls, Duration::from_secs(10))
                .unwrap();
        let (mut cli_cpu, mut web_cpu, mut kept_cpu) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        let (mut cli_wall, mut web_wall, mut kept_wall) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        let mut page_bytes = 0;
        for _ in 0..rounds {
            let (c0, t0) = (thread_cpu("sac-node"), Instant::now());
            for _ in 0..per {
                let (_, r) = fed.search(SACRAMENTO, &p).await.unwrap();
                assert_eq!(r.results[0].status, 1, "answered");
            }
            cli_wall += t0.elapsed();
            cli_cpu += thread_cpu("sac-node") - c0;
            let (c0, t0) = (thread_cpu("sac-node"), Instant::now());
            for _ in 0..per {
                page_bytes = console_search(&mut browser, &me).await;
            }
            web_wall += t0.elapsed();
            web_cpu += thread_cpu("sac-node") - c0;
            let (c0, t0) = (thread_cpu("sac-node"), Instant::now());
            for _ in 0..per {
                let (_, signed) = fed.sign_query(SACRAMENTO, &p).unwrap();
                let r = alpr_node::client::search(&mut kept, &signed).await.unwrap();
                assert_eq!(r.results[0].status, 1, "answered");
            }
            kept_wall += t0.elapsed();
            kept_cpu += thread_cpu("sac-node") - c0;
        }
        let n = (per * rounds) as f64;
        let ms = |d: Duration| d.as_secs_f64() * 1000.0 / n;
        println!("console vs CLI: {} searches each, one target answering 7 reads", n);
        println!(
            "  CLI (a connection per search, as one command run)  node CPU {:.3} ms/search   wall {:.2} ms/search",
            ms(cli_cpu),
            ms(cli_wall)
        );
        println!(
            "  CLI, kept connection  node CPU {:.3} ms/search   wall {:.2} ms/search",
            ms(kept_cpu),
            ms(kept_wall)
        );
        println!(
            "  console  node CPU {:.3} ms/search   wall {:.2} ms/search   (4 requests; results page {} bytes)",
            ms(web_cpu),
            ms(web_wall),
            page_bytes
        );
        println!(
            "  console / CLI node CPU: {:.3} (budget <= 1.10); console / CLI with a kept connection: {:.3}",
            web_cpu.as_secs_f64() / cli_cpu.as_secs_f64(),
            web_cpu.as_secs_f64() / kept_cpu.as_secs_f64()
        );
        fed.stop().await.unwrap();
    });
}
