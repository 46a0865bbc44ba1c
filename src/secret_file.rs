//! `pg_rls_auth.jwt_secret_file`: the HMAC secret read from a file, as PostgREST can, so the
//! secret itself is never a setting's value (PostgreSQL logs a setting's new value when a
//! reload changes it, and `log_statement` logs `ALTER SYSTEM`). The file is read by the server
//! process; errors name the path, never the contents.

use pg_rls_auth_core::AuthError;
use std::fs;
use std::os::unix::fs::MetadataExt;

/// More than any real secret (a base64 HS512 secret is under 100 bytes).
const MAX_SECRET_FILE_BYTES: u64 = 4096;

/// What identifies the file's contents without reading them again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    path: String,
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

impl Stamp {
    fn of(path: &str, meta: &fs::Metadata) -> Stamp {
        Stamp {
            path: path.to_string(),
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        }
    }

    /// True when the file was replaced, changed or removed since it was read.
    pub fn changed(&self) -> bool {
        fs::metadata(&self.path).map_or(true, |meta| Stamp::of(&self.path, &meta) != *self)
    }
}

fn bad(path: &str, what: &str) -> AuthError {
    AuthError::bad_config(format!("pg_rls_auth.jwt_secret_file \"{path}\": {what}"))
}

/// The contents of the regular file at `path`, at most `max_bytes`, with its metadata: one open
/// file is checked and read, so what is checked is what is read (the path may be replaced
/// meanwhile). Opened without blocking, so a FIFO is refused, not waited on.
pub fn read_regular_file(path: &str, max_bytes: u64) -> Result<(Vec<u8>, fs::Metadata), String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("cannot be read ({e})"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot be read ({e})"))?;
    if !meta.is_file() {
        return Err("is not a regular file".into());
    }
    if meta.size() > max_bytes {
        return Err(format!("is over {max_bytes} bytes"));
    }
    let mut bytes = Vec::new();
    file.take(max_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot be read ({e})"))?;
    if bytes.len() as u64 > max_bytes {
        return Err(format!("is over {max_bytes} bytes"));
    }
    Ok((bytes, meta))
}

/// Reads the secret (surrounding white space removed, as a trailing newline).
pub fn read(path: &str) -> Result<(String, Stamp), AuthError> {
    if !path.starts_with('/') {
        return Err(bad(path, "must be an absolute path"));
    }
    let (bytes, meta) = read_regular_file(path, MAX_SECRET_FILE_BYTES).map_err(|why| {
        let why = if why.starts_with("is over") {
            format!("{why}; it should hold only the secret")
        } else {
            why
        };
        bad(path, &why)
    })?;
    // As PostgreSQL insists for ssl_key_file: a secret every local user can read is no secret.
    if meta.mode() & 0o007 != 0 {
        return Err(bad(
            path,
            "is accessible to every OS user; allow at most its owner and group (chmod 640)",
        ));
    }
    let text = String::from_utf8(bytes).map_err(|_| bad(path, "is not valid UTF-8"))?;
    Ok((text.trim().to_string(), Stamp::of(path, &meta)))
}
