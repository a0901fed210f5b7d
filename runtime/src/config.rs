//! The configuration pieces node and broker share: the `[tls]` section, relative paths,
//! and TOML errors in one line.

use std::path::Path;

/// A daemon's certificate files (the `[tls]` section of `node.toml` and `broker.toml`).
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The state root certificate (the only trust anchor).
    pub root: std::path::PathBuf,
    /// This daemon's certificate chain (a node's: leaf, agency CA).
    pub cert: std::path::PathBuf,
    /// This daemon's private key.
    pub key: std::path::PathBuf,
    /// CRL files to enforce (the root's and every agency CA's).
    #[serde(default)]
    pub crls: Vec<std::path::PathBuf>,
    /// How often to re-read the CRL files, seconds; a changed CRL takes effect without a
    /// restart, for new TLS handshakes and for signature checks.
    #[serde(default = "default_crl_reload")]
    pub crl_reload_secs: u64,
}

fn default_crl_reload() -> u64 {
    30
}

impl TlsConfig {
    /// Resolve every relative path against `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        for p in [&mut self.root, &mut self.cert, &mut self.key]
            .into_iter()
            .chain(self.crls.iter_mut())
        {
            resolve_path(p, base);
        }
    }
}

/// Make a relative path relative to `base` (the config file's directory).
pub fn resolve_path(p: &mut std::path::PathBuf, base: &Path) {
    if p.is_relative() {
        *p = base.join(&*p);
    }
}

/// A TOML error as one line: where (line and column, and the line's text, which names
/// the key) and what (`invalid type: string "ten", expected u32`).
pub fn describe_toml_error(text: &str, e: &toml::de::Error) -> String {
    let Some(span) = e.span() else {
        return e.message().to_owned();
    };
    let before = text.get(..span.start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    let source = text.lines().nth(line - 1).unwrap_or("").trim();
    format!(
        "line {line}, column {column}: {} (in `{source}`)",
        e.message()
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn toml_errors_name_the_line_column_and_key() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct C {
            name: String,
            days: u32,
        }
        let text = "name = \"x\"\ndays = \"ten\"\n";
        let e = toml::from_str::<C>(text).unwrap_err();
        let m = super::describe_toml_error(text, &e);
        assert!(m.starts_with("line 2, column 8:"), "{m}");
        assert!(m.contains("(in `days = \"ten\"`)"), "{m}");
        let text = "name = \"x\ndays = 1\n";
        let e = toml::from_str::<C>(text).unwrap_err();
        assert!(super::describe_toml_error(text, &e).starts_with("line 1,"));
    }
}
