//! A minimal PostgreSQL client that logs in with SASL OAUTHBEARER (RFC 7628), as libpq 18 does
//! with a bearer token, then runs simple queries: enough protocol for the OAuth tests, which
//! no Rust driver speaks yet.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// A logged-in connection.
#[derive(Debug)]
pub struct OAuthConn {
    stream: UnixStream,
}

/// A server error: its SQLSTATE and message.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerError {
    pub code: String,
    pub message: String,
}

fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn read_message(stream: &mut UnixStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 5];
    stream.read_exact(&mut head).expect("read a message header");
    let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    let mut body = vec![0u8; len - 4];
    stream.read_exact(&mut body).expect("read a message body");
    (head[0], body)
}

fn error_fields(body: &[u8]) -> ServerError {
    let mut error = ServerError {
        code: String::new(),
        message: String::new(),
    };
    for field in body.split(|b| *b == 0).filter(|f| !f.is_empty()) {
        let value = String::from_utf8_lossy(&field[1..]).into_owned();
        match field[0] {
            b'C' => error.code = value,
            b'M' => error.message = value,
            _ => {}
        }
    }
    error
}

impl OAuthConn {
    /// Connects to the server listening on `socket_dir`/`port` as `user` to `db`, presenting
    /// `token` through OAUTHBEARER. The server's error when it refuses.
    pub fn connect(
        socket_dir: &Path,
        port: u16,
        user: &str,
        db: &str,
        token: &str,
    ) -> Result<OAuthConn, ServerError> {
        let path = socket_dir.join(format!(".s.PGSQL.{port}"));
        let mut stream = UnixStream::connect(&path).expect("connect to the server's socket");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("set a read timeout");
        let mut startup = 196_608i32.to_be_bytes().to_vec(); // protocol 3.0
        for (k, v) in [("user", user), ("database", db)] {
            startup.extend_from_slice(k.as_bytes());
            startup.push(0);
            startup.extend_from_slice(v.as_bytes());
            startup.push(0);
        }
        startup.push(0);
        let mut packet = ((startup.len() + 4) as i32).to_be_bytes().to_vec();
        packet.extend_from_slice(&startup);
        stream.write_all(&packet).expect("send the startup packet");
        loop {
            let (kind, body) = read_message(&mut stream);
            match kind {
                b'R' => {
                    let code = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                    match code {
                        0 => {} // AuthenticationOk
                        10 => {
                            // AuthenticationSASL: the server offers OAUTHBEARER.
                            let offered = String::from_utf8_lossy(&body[4..]).into_owned();
                            assert!(offered.contains("OAUTHBEARER"), "offered {offered:?}");
                            let data = format!("n,,\x01auth=Bearer {token}\x01\x01");
                            let mut initial = b"OAUTHBEARER\0".to_vec();
                            initial.extend_from_slice(&(data.len() as i32).to_be_bytes());
                            initial.extend_from_slice(data.as_bytes());
                            stream
                                .write_all(&message(b'p', &initial))
                                .expect("send SASLInitialResponse");
                        }
                        11 => {
                            // AuthenticationSASLContinue after a refusal (RFC 7628 3.2.2):
                            // the client answers with a lone kvsep, the server then fails.
                            stream
                                .write_all(&message(b'p', b"\x01"))
                                .expect("send the kvsep response");
                        }
                        12 => {} // AuthenticationSASLFinal
                        other => panic!("unexpected authentication request {other}"),
                    }
                }
                b'E' => return Err(error_fields(&body)),
                b'Z' => return Ok(OAuthConn { stream }),
                _ => {} // ParameterStatus, BackendKeyData, NoticeResponse
            }
        }
    }

    /// Runs `sql` (simple query protocol): the rows of its last result, each column as text
    /// or NULL, or the server's error.
    pub fn query(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, ServerError> {
        let mut body = sql.as_bytes().to_vec();
        body.push(0);
        self.stream
            .write_all(&message(b'Q', &body))
            .expect("send a query");
        let mut rows = Vec::new();
        let mut error = None;
        loop {
            let (kind, body) = read_message(&mut self.stream);
            match kind {
                b'T' => rows.clear(),
                b'D' => {
                    let columns = i16::from_be_bytes([body[0], body[1]]) as usize;
                    let mut at = 2;
                    let mut row = Vec::with_capacity(columns);
                    for _ in 0..columns {
                        let len = i32::from_be_bytes([
                            body[at],
                            body[at + 1],
                            body[at + 2],
                            body[at + 3],
                        ]);
                        at += 4;
                        if len < 0 {
                            row.push(None);
                        } else {
                            let end = at + len as usize;
                            row.push(Some(String::from_utf8_lossy(&body[at..end]).into_owned()));
                            at = end;
                        }
                    }
                    rows.push(row);
                }
                b'E' => {
                    let e = error_fields(&body);
                    // A FATAL ends the connection without ReadyForQuery.
                    let fatal = body.windows(6).any(|w| w == b"FATAL\0");
                    if fatal {
                        return Err(e);
                    }
                    error = Some(e);
                }
                b'Z' => {
                    return match error {
                        Some(e) => Err(e),
                        None => Ok(rows),
                    }
                }
                _ => {}
            }
        }
    }

    /// The first column of the first row of `sql`.
    pub fn one(&mut self, sql: &str) -> Option<String> {
        self.query(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next())
            .flatten()
    }
}

impl Drop for OAuthConn {
    fn drop(&mut self) {
        let _ = self.stream.write_all(&message(b'X', &[]));
    }
}
