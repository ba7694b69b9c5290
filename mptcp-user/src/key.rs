//! The secret both ends share: read only from a file only its owner may
//! read, at least 128 bits, and never printed.
//!
//! A key file holds the key in hex on one line, as `mptcp-user genkey`
//! writes it (256 bits). A key on the command line shows in `ps` and the
//! shell's history, and one inline in a config file travels wherever the
//! config does: neither is accepted.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use anyhow::{bail, Context, Result};
use zeroize::Zeroizing;

/// The shortest key accepted, in bytes (128 bits).
pub const MIN_KEY_BYTES: usize = 16;
/// What `genkey` draws, in bytes (256 bits).
pub const GENERATED_KEY_BYTES: usize = 32;

/// A shared key. Its bytes are wiped when it is dropped, and neither `Debug`
/// nor anything else here shows them.
#[derive(Clone, PartialEq, Eq)]
pub struct Key(Zeroizing<Vec<u8>>);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key(<{} bits, redacted>)", self.0.len() * 8)
    }
}

impl Key {
    /// The key's bytes, to key a MAC with.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// A key from its bytes (at least [`MIN_KEY_BYTES`]).
    pub fn from_bytes(b: &[u8]) -> Result<Key> {
        if b.len() < MIN_KEY_BYTES {
            bail!(
                "the key has {} bits; use at least {} (`mptcp-user genkey` makes one)",
                b.len() * 8,
                MIN_KEY_BYTES * 8
            );
        }
        Ok(Key(Zeroizing::new(b.to_vec())))
    }

    /// A fresh random key of [`GENERATED_KEY_BYTES`].
    pub fn generate() -> Key {
        let mut b = Zeroizing::new(vec![0u8; GENERATED_KEY_BYTES]);
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
        Key(b)
    }

    /// The key as a key file holds it: hex, one line.
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(&*self.0))
    }

    /// Parse a key file's text: hex digits, surrounding whitespace ignored.
    pub fn from_hex(text: &str) -> Result<Key> {
        let mut b = Zeroizing::new(Vec::new());
        *b = hex::decode(text.trim()).map_err(|e| anyhow::anyhow!("not a hex key ({e})"))?;
        Key::from_bytes(&b)
    }

    /// Read a key file, refusing one that anyone but its owner may read or
    /// write (as ssh refuses such a private key) or that is not a regular
    /// file.
    pub fn from_file(path: &Path) -> Result<Key> {
        let shown = path.display();
        let meta = std::fs::metadata(path).with_context(|| format!("cannot read key file {shown}"))?;
        if !meta.is_file() {
            bail!("key file {shown} is not a regular file");
        }
        let owner = meta.uid();
        let me = nix::unistd::geteuid().as_raw();
        if owner != me && owner != 0 {
            bail!("key file {shown} belongs to user {owner}, who could change it: it must be this user's ({me}) or root's");
        }
        let mode = meta.mode() & 0o777;
        if mode & 0o077 != 0 {
            bail!(
                "key file {shown} may be read or written by others than its owner (mode {mode:04o}): \
                 run `chmod 600 {shown}`"
            );
        }
        let text =
            Zeroizing::new(std::fs::read_to_string(path).with_context(|| format!("cannot read key file {shown}"))?);
        Key::from_hex(&text).with_context(|| format!("key file {shown}"))
    }

    /// Write the key to a new file only its owner may read (never over an
    /// existing one).
    pub fn write_new_file(&self, path: &Path) -> Result<()> {
        let shown = path.display();
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("cannot create key file {shown} (an existing file is never overwritten)"))?;
        let mut line = self.to_hex();
        line.push('\n');
        f.write_all(line.as_bytes()).with_context(|| format!("cannot write key file {shown}"))?;
        f.sync_all().with_context(|| format!("cannot write key file {shown}"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn temp(name: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("mptcp-key-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&p);
        p
    }

    #[test]
    fn a_generated_key_file_reads_back_and_is_never_overwritten() {
        let p = temp("gen");
        let k = Key::generate();
        k.write_new_file(&p).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        assert_eq!(Key::from_file(&p).unwrap(), k);
        assert_eq!(k.bytes().len(), GENERATED_KEY_BYTES);
        assert_ne!(Key::generate(), k);
        let again = Key::generate().write_new_file(&p).unwrap_err();
        assert!(format!("{again:#}").contains("never overwritten"), "{again:#}");
        assert_eq!(Key::from_file(&p).unwrap(), k);
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn bad_key_files_are_refused_naming_the_cause() {
        let p = temp("bad");
        let table: [(&str, u32, &str); 5] = [
            ("00112233445566778899aabbccddeeff", 0o644, "chmod 600"),
            ("00112233445566778899aabbccddeeff", 0o640, "chmod 600"),
            ("00112233445566778899aabbccddee", 0o600, "has 120 bits"),
            ("not hex at all, not at all!!", 0o600, "not a hex key"),
            ("", 0o600, "has 0 bits"),
        ];
        for (text, mode, want) in table {
            let _ = std::fs::remove_file(&p);
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = format!("{:#}", Key::from_file(&p).unwrap_err());
            assert!(e.contains(want) && e.contains(&*p.to_string_lossy()), "{text:?} {mode:o}: {e}");
        }
        std::fs::write(&p, "  00112233445566778899AABBCCDDEEFF\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(Key::from_file(&p).unwrap().bytes().len(), MIN_KEY_BYTES);
        std::fs::remove_file(&p).unwrap();
        let dir = std::env::temp_dir();
        assert!(format!("{:#}", Key::from_file(&dir).unwrap_err()).contains("not a regular file"));
    }

    #[test]
    fn a_key_is_never_printed() {
        let k = Key::from_hex("00112233445566778899aabbccddeeff").unwrap();
        let shown = format!("{k:?} {:?}", Some(&k));
        assert!(!shown.contains("0011") && !shown.contains("[0, 17"), "{shown}");
        assert!(shown.contains("128 bits"));
    }
}
