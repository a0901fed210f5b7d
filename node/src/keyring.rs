//! The keyring: the node's data key, wrapped by a key-encryption key (KEK).
//!
//! The KEK comes from a file (mode 0600 or stricter), an environment variable or a command
//! (so an agency plugs in its HSM or KMS client without this project depending on one
//! vendor); the node never writes it. The keyring file (`data_dir/keyring.json` unless
//! `[storage] keyring` says otherwise) holds the random data key sealed with AES-256-GCM
//! under the KEK. Rotating the KEK re-wraps that one key ([`rewrap`]) and re-encrypts
//! nothing else; destroying the keyring ([`destroy`]) makes both databases unreadable for
//! good (crypto-shredding), whoever holds the KEK.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use crate::config::{NodeConfig, StorageConfig};
use crate::store::encryption::{DATA_KEY_LEN, DataKeys};
use crate::{Error, store};

/// The keyring file's format tag.
pub const FORMAT: &str = "alpr-keyring-v1";

/// Where a KEK comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KekSource {
    /// A file of 64 hexadecimal characters, readable by its owner only.
    File(PathBuf),
    /// An environment variable of 64 hexadecimal characters.
    Env(String),
    /// A program and its arguments that print the KEK.
    Command(Vec<String>),
}

impl std::fmt::Display for KekSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(p) => write!(f, "KEK file {}", p.display()),
            Self::Env(v) => write!(f, "KEK environment variable {v}"),
            Self::Command(c) => write!(f, "KEK command `{}`", c.join(" ")),
        }
    }
}

impl KekSource {
    /// The source `[storage]` names, if any.
    pub fn from_config(s: &StorageConfig) -> Option<Self> {
        if let Some(p) = &s.kek_file {
            return Some(Self::File(p.clone()));
        }
        if let Some(v) = &s.kek_env {
            return Some(Self::Env(v.clone()));
        }
        s.kek_command.clone().map(Self::Command)
    }

    /// Fetch and parse the KEK.
    pub fn load(&self) -> Result<Kek, Error> {
        let text = match self {
            Self::File(p) => {
                refuse_exposed(p)?;
                std::fs::read(p).map_err(|e| Error::Keys(format!("{self}: {e}")))?
            }
            Self::Env(v) => std::env::var(v)
                .map_err(|_| Error::Keys(format!("{self} is not set")))?
                .into_bytes(),
            Self::Command(argv) => run_kek_command(self, argv)?,
        };
        Kek::parse(&text).map_err(|why| Error::Keys(format!("{self}: {why}")))
    }
}

/// How long a KEK command may take before the node gives up on it (a KMS that does not
/// answer must not hang a start forever).
const KEK_COMMAND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Run a KEK command: its standard output, or an error naming the command and its first
/// line of standard error.
fn run_kek_command(source: &KekSource, argv: &[String]) -> Result<Vec<u8>, Error> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| Error::Keys(format!("{source}: names no program")))?;
    let mut child = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| Error::Keys(format!("{source}: cannot run: {e}")))?;
    let started = std::time::Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if started.elapsed() < KEK_COMMAND_TIMEOUT => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::Keys(format!(
                    "{source} did not finish within {} s",
                    KEK_COMMAND_TIMEOUT.as_secs()
                )));
            }
            Err(e) => return Err(Error::Keys(format!("{source}: {e}"))),
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::Keys(format!("{source}: {e}")))?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        return Err(Error::Keys(format!(
            "{source} failed ({}): {}",
            out.status,
            why.lines().next().unwrap_or("").trim()
        )));
    }
    Ok(out.stdout)
}

#[cfg(unix)]
fn refuse_exposed(path: &Path) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path)
        .map_err(|e| Error::Keys(format!("KEK file {}: {e}", path.display())))?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::Keys(format!(
            "KEK file {} is readable by others (mode {mode:04o}); run `chmod 600 {}`",
            path.display(),
            path.display()
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn refuse_exposed(_path: &Path) -> Result<(), Error> {
    Ok(())
}

/// A key-encryption key.
pub struct Kek {
    key: LessSafeKey,
    id: String,
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Kek({})", self.id)
    }
}

impl Kek {
    /// Parse 64 hexadecimal characters (surrounding white space ignored).
    pub fn parse(text: &[u8]) -> Result<Self, String> {
        let text = text.trim_ascii();
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).map_err(|_| {
            format!(
                "a KEK is 64 hexadecimal characters (32 bytes); found {} characters{}",
                text.len(),
                if text.len() == 64 {
                    " that are not all hexadecimal"
                } else {
                    ""
                }
            )
        })?;
        let id = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &bytes), b"alpr.kek-id");
        let key = LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| "unusable KEK".to_string())?,
        );
        bytes.fill(0);
        Ok(Self {
            key,
            id: hex::encode(&id.as_ref()[..8]),
        })
    }

    /// A fresh random KEK, as the 64 hexadecimal characters a KEK file holds.
    pub fn generate() -> Result<String, Error> {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| Error::Keys("the system random generator failed".into()))?;
        let text = hex::encode(bytes);
        bytes.fill(0);
        Ok(text)
    }

    /// The KEK's public fingerprint, recorded in the keyring it wraps.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// The keyring file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyringFile {
    format: String,
    /// The agency whose data the key protects.
    ori: String,
    /// The data key's fingerprint (also recorded in each database it encrypts).
    data_key_id: String,
    /// The fingerprint of the KEK that wraps it.
    kek_id: String,
    /// When the data key was made, Unix seconds.
    created_at: i64,
    /// When it was last wrapped (made, or re-wrapped under a new KEK).
    wrapped_at: i64,
    /// Nonce and AES-256-GCM ciphertext of the data key, hexadecimal.
    wrapped: String,
}

fn wrap_aad(ori: &str, data_key_id: &str) -> Vec<u8> {
    format!("alpr.keyring.v1\0{ori}\0{data_key_id}").into_bytes()
}

fn wrap(kek: &Kek, ori: &str, data_key_id: &str, key: &[u8]) -> Result<String, Error> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| Error::Keys("the system random generator failed".into()))?;
    let mut body = key.to_vec();
    let _ = kek.key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(wrap_aad(ori, data_key_id)),
        &mut body,
    );
    let mut out = nonce.to_vec();
    out.extend_from_slice(&body);
    body.fill(0);
    Ok(hex::encode(out))
}

fn read_file(path: &Path) -> Result<KeyringFile, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::Keys(if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "keyring {} is missing: the databases cannot be read without it (restore it from backup; see docs/DEPLOYMENT.md, \"Keys at rest\")",
                path.display()
            )
        } else {
            format!("keyring {}: {e}", path.display())
        })
    })?;
    let file: KeyringFile = serde_json::from_str(&text)
        .map_err(|e| Error::Keys(format!("keyring {}: not a keyring: {e}", path.display())))?;
    if file.format != FORMAT {
        return Err(Error::Keys(format!(
            "keyring {}: format {:?}, this alpr-node reads {FORMAT:?}",
            path.display(),
            file.format
        )));
    }
    Ok(file)
}

/// The raw data key in `file`, unwrapped with `kek`.
fn unwrap_raw(path: &Path, file: &KeyringFile, kek: &Kek) -> Result<[u8; DATA_KEY_LEN], Error> {
    if file.kek_id != kek.id {
        return Err(Error::Keys(format!(
            "keyring {} is wrapped by KEK {}, but the configured KEK is {} (wrong key, or the config still names the KEK from before a rotation)",
            path.display(),
            file.kek_id,
            kek.id
        )));
    }
    let damaged = || {
        Error::Keys(format!(
            "keyring {}: the data key does not unwrap (the file was altered)",
            path.display()
        ))
    };
    let mut raw = hex::decode(&file.wrapped).map_err(|_| damaged())?;
    let (nonce, body) = raw.split_at_mut_checked(NONCE_LEN).ok_or_else(damaged)?;
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| damaged())?;
    let plain = kek
        .key
        .open_in_place(
            nonce,
            Aad::from(wrap_aad(&file.ori, &file.data_key_id)),
            body,
        )
        .map_err(|_| damaged())?;
    let mut key = [0u8; DATA_KEY_LEN];
    if plain.len() != DATA_KEY_LEN {
        return Err(damaged());
    }
    key.copy_from_slice(plain);
    plain.fill(0);
    if DataKeys::new(&key).key_id() != file.data_key_id {
        return Err(damaged());
    }
    Ok(key)
}

/// Open the keyring at `path` with `kek`.
pub fn open(path: &Path, kek: &Kek) -> Result<DataKeys, Error> {
    let mut key = unwrap_raw(path, &read_file(path)?, kek)?;
    let keys = DataKeys::new(&key);
    key.fill(0);
    Ok(keys)
}

/// Make a new random data key for `ori`, wrapped by `kek`, in a new keyring file at
/// `path` (mode 0600). An existing file is never replaced.
pub fn create(path: &Path, ori: &str, kek: &Kek, now: i64) -> Result<DataKeys, Error> {
    let mut key = [0u8; DATA_KEY_LEN];
    SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| Error::Keys("the system random generator failed".into()))?;
    let keys = DataKeys::new(&key);
    let file = KeyringFile {
        format: FORMAT.into(),
        ori: ori.into(),
        data_key_id: keys.key_id().into(),
        kek_id: kek.id.clone(),
        created_at: now,
        wrapped_at: now,
        wrapped: wrap(kek, ori, keys.key_id(), &key)?,
    };
    key.fill(0);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    write_new(path, &file)?;
    Ok(keys)
}

fn write_new(path: &Path, file: &KeyringFile) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(file).map_err(|e| Error::Keys(e.to_string()))?;
    write_secret(path, &text, "keyring")
}

/// Write `text` and a newline into a new file of mode 0600 and flush it (and its
/// directory); `what` names it in errors. An existing file is never replaced.
fn write_secret(path: &Path, text: &str, what: &str) -> Result<(), Error> {
    let mut f = new_secret_file(path).map_err(|e| {
        Error::Keys(if e.kind() == std::io::ErrorKind::AlreadyExists {
            format!(
                "{what} {} already exists; it is never overwritten",
                path.display()
            )
        } else {
            format!("{what} {}: {e}", path.display())
        })
    })?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.write_all(b"\n"))
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(path, e))?;
    sync_dir(path);
    Ok(())
}

#[cfg(unix)]
fn new_secret_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn new_secret_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
}

/// Write a new KEK file (mode 0600) holding a fresh random KEK; an existing file is never
/// replaced. Returns the new KEK's fingerprint.
pub fn write_new_kek(path: &Path) -> Result<String, Error> {
    let text = Kek::generate()?;
    let kek = Kek::parse(text.as_bytes()).map_err(Error::Keys)?;
    write_secret(path, &text, "KEK file")?;
    Ok(kek.id)
}

/// Re-wrap the keyring at `path` from `old` to `new` without touching the data: the file
/// is replaced atomically (written beside it, then renamed). Returns the data key id.
pub fn rewrap(path: &Path, old: &Kek, new: &Kek, now: i64) -> Result<String, Error> {
    let file = read_file(path)?;
    let mut key = unwrap_raw(path, &file, old)?;
    let rewrapped = KeyringFile {
        kek_id: new.id.clone(),
        wrapped_at: now,
        wrapped: wrap(new, &file.ori, &file.data_key_id, &key)?,
        ..file
    };
    key.fill(0);
    let data_key_id = rewrapped.data_key_id.clone();
    let tmp = path.with_extension("json.new");
    let _ = std::fs::remove_file(&tmp);
    write_new(&tmp, &rewrapped)?;
    // The new wrapping must open before it replaces the old one.
    open(&tmp, new)?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    sync_dir(path);
    Ok(data_key_id)
}

/// Destroy the keyring at `path`: overwrite it with zeros, flush, and remove it. After
/// this the databases it protected cannot be opened by anyone, with or without the KEK.
pub fn destroy(path: &Path) -> Result<(), Error> {
    let len = std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .len();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    f.write_all(&vec![0u8; len as usize])
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(path, e))?;
    drop(f);
    std::fs::remove_file(path).map_err(|e| Error::io(path, e))?;
    sync_dir(path);
    Ok(())
}

/// The data keys of the node `cfg` describes: `None` when no KEK is configured. The
/// keyring is made on first use, when neither database holds data yet; a keyring missing
/// while an encrypted database exists is an error, never a new key.
pub fn data_keys(cfg: &NodeConfig) -> Result<Option<Arc<DataKeys>>, Error> {
    let Some(source) = KekSource::from_config(&cfg.storage) else {
        return Ok(None);
    };
    let kek = source.load()?;
    let path = cfg.keyring_path();
    if path.exists() {
        return open(&path, &kek).map(|k| Some(Arc::new(k)));
    }
    for db in [cfg.db_path(), cfg.audit_path()] {
        if let Some(id) = store::encryption_marker(&db)? {
            return Err(Error::Keys(format!(
                "keyring {} is missing, and {} is encrypted under data key {id}: restore the keyring from backup (see docs/DEPLOYMENT.md, \"Keys at rest\")",
                path.display(),
                db.display()
            )));
        }
    }
    create(&path, &cfg.ori, &kek, alpr_pki::now_unix()).map(|k| Some(Arc::new(k)))
}

impl NodeConfig {
    /// Open `node.db` with this node's data keys.
    pub fn open_db(&self) -> Result<store::Db, Error> {
        store::open_at(&self.db_path(), data_keys(self)?, self.postgres_reads()?)
    }

    /// Connect to the PostgreSQL database that keeps this node's reads, if it has one.
    pub fn postgres_reads(&self) -> Result<Option<Arc<store::PgReads>>, Error> {
        match &self.storage.postgres {
            Some(url) => Ok(Some(Arc::new(store::PgReads::open(
                url,
                self.storage.postgres_ca.as_deref(),
                &self.ori,
            )?))),
            None => Ok(None),
        }
    }

    /// Open `audit.db` with this node's data keys, for reading.
    pub fn open_audit(&self) -> Result<store::AuditDb, Error> {
        store::AuditDb::open_with(&self.audit_path(), data_keys(self)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keyring_opens_only_with_its_kek_and_survives_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyring.json");
        let a = Kek::parse(Kek::generate().unwrap().as_bytes()).unwrap();
        let b = Kek::parse(Kek::generate().unwrap().as_bytes()).unwrap();
        let made = create(&path, "CA0560100", &a, 1).unwrap();
        assert_eq!(open(&path, &a).unwrap().key_id(), made.key_id());
        let e = open(&path, &b).unwrap_err().to_string();
        assert!(e.contains("wrapped by KEK") && e.contains(a.id()), "{e}");
        let e = create(&path, "CA0560100", &a, 2).unwrap_err().to_string();
        assert!(e.contains("never overwritten"), "{e}");
        // Rotation: the same data key, now under b only.
        assert_eq!(rewrap(&path, &a, &b, 3).unwrap(), made.key_id());
        assert_eq!(open(&path, &b).unwrap().key_id(), made.key_id());
        assert!(open(&path, &a).is_err());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        // An altered wrapping is refused, named as such.
        let text = std::fs::read_to_string(&path).unwrap();
        let mut file: KeyringFile = serde_json::from_str(&text).unwrap();
        let mut w = file.wrapped.into_bytes();
        w[30] = if w[30] == b'0' { b'1' } else { b'0' };
        file.wrapped = String::from_utf8(w).unwrap();
        std::fs::write(&path, serde_json::to_string(&file).unwrap()).unwrap();
        let e = open(&path, &b).unwrap_err().to_string();
        assert!(e.contains("does not unwrap"), "{e}");
        destroy(&path).unwrap();
        let e = open(&path, &b).unwrap_err().to_string();
        assert!(e.contains("is missing"), "{e}");
    }

    #[test]
    fn kek_sources_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let short = Kek::parse(b"abcd").unwrap_err();
        assert!(short.contains("found 4 characters"), "{short}");
        let bad = Kek::parse("zz".repeat(32).as_bytes()).unwrap_err();
        assert!(bad.contains("not all hexadecimal"), "{bad}");
        let file = dir.path().join("kek");
        let id = write_new_kek(&file).unwrap();
        assert_eq!(KekSource::File(file.clone()).load().unwrap().id(), id);
        let e = write_new_kek(&file).unwrap_err().to_string();
        assert!(e.contains("never overwritten"), "{e}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = KekSource::File(file.clone())
                .load()
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("readable by others (mode 0644)") && e.contains("chmod 600"),
                "{e}"
            );
        }
        let e = KekSource::Env("ALPR_TEST_KEK_THAT_IS_UNSET".into())
            .load()
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not set"), "{e}");
        let kek = Kek::generate().unwrap();
        let cmd = KekSource::Command(vec!["echo".into(), kek.clone()]);
        assert_eq!(
            cmd.load().unwrap().id(),
            Kek::parse(kek.as_bytes()).unwrap().id()
        );
        let e = KekSource::Command(vec!["false".into()])
            .load()
            .unwrap_err()
            .to_string();
        assert!(e.contains("failed"), "{e}");
        let e = KekSource::Command(vec!["/nonexistent/kms".into()])
            .load()
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot run"), "{e}");
        let e = KekSource::Command(vec![]).load().unwrap_err().to_string();
        assert!(e.contains("names no program"), "{e}");
    }
}
