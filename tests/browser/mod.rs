//! Driving Debian's Chromium over WebDriver (ChromeDriver, through fantoccini) for the
//! browser tests: start a driver and a headless browser with a fresh profile, wait for
//! pages and elements, fill and click, keep screenshots when asked.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

pub struct Driver(std::process::Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub async fn browser(profile: &std::path::Path) -> (Driver, Client) {
    browser_with(profile, &[]).await
}

/// [`browser`] with `env` set for the driver and the browser it starts (e.g. `TZ`).
pub async fn browser_with(profile: &std::path::Path, env: &[(&str, &str)]) -> (Driver, Client) {
    let bin = "/usr/bin/chromedriver";
    assert!(
        std::path::Path::new(bin).exists() && std::path::Path::new("/usr/bin/chromium").exists(),
        "the console's browser tests need Debian's chromium and chromium-driver (installed by .ci/run)"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let driver = Driver(
        std::process::Command::new(bin)
            .arg(format!("--port={port}"))
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut caps = serde_json::Map::new();
    caps.insert("acceptInsecureCerts".into(), json!(true));
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1280,1000",
                format!("--user-data-dir={}", profile.display()),
            ]
        }),
    );
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        if let Ok(c) = ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&url)
            .await
        {
            return (driver, c);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not start");
}

/// Wait until the page's heading is `h1` and its text holds `needle`; return the text.
/// (Several pages keep their heading after a form is sent: the text tells them apart.)
pub async fn wait_text(c: &Client, h1: &str, needle: &str) -> String {
    for _ in 0..150 {
        if let Ok(e) = c.find(Locator::Css("h1")).await
            && e.text().await.is_ok_and(|t| t == h1)
            && let Ok(body) = c.find(Locator::Css("body")).await
            && let Ok(text) = body.text().await
            && text.contains(needle)
        {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body = c.source().await.unwrap_or_default();
    panic!("page {h1:?} with {needle:?} did not come; the browser shows:\n{body}");
}

/// Wait until the page's heading is `h1`; return the page's text.
pub async fn wait_page(c: &Client, h1: &str) -> String {
    wait_text(c, h1, "").await
}

/// The element `css` once it is on the page.
pub async fn element(c: &Client, css: &str) -> fantoccini::elements::Element {
    for _ in 0..150 {
        if let Ok(e) = c.find(Locator::Css(css)).await {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no {css} on the page");
}

pub async fn fill(c: &Client, id: &str, value: &str) {
    let e = element(c, &format!("#{id}")).await;
    e.clear().await.unwrap();
    e.send_keys(value).await.unwrap();
}

pub async fn click(c: &Client, css: &str) {
    element(c, css).await.click().await.unwrap();
}

pub async fn shot(c: &Client, name: &str) {
    if let Ok(dir) = std::env::var("ALPR_CONSOLE_SCREENSHOTS") {
        let png = c.screenshot().await.unwrap();
        std::fs::write(std::path::Path::new(&dir).join(format!("{name}.png")), png).unwrap();
    }
}
