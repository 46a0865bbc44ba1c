//! Errors: every failure leaves as an `ereport(ERROR)` with a specific SQLSTATE. Functions that
//! may carry a token raise with `errhidestmt`, so the statement (and the token in it) is not
//! written to the server log either.

use crate::pg_raw;
use pg_rls_auth_core::{AuthError, ErrorKind};
use pgrx::pg_sys;
use std::ffi::{c_char, c_int};
use std::panic::Location;

/// An error on its way out of a C-callable function: raised only after every Rust value on
/// the stack is gone, because `errfinish` longjmps.
#[derive(Debug, Clone)]
pub struct Raise {
    pub sqlstate: [u8; 5],
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    /// No key the token names is known: a refresh of the managed keys may change that.
    pub unknown_key: bool,
    /// Raised as FATAL: the connection ends (a revoked login, its identity).
    pub fatal: bool,
    /// Where the error was made, for the report's LOCATION line.
    location: &'static Location<'static>,
}

pub const INVALID_AUTHORIZATION: [u8; 5] = *b"28000";
pub const INVALID_PARAMETER_VALUE: [u8; 5] = *b"22023";
pub const OBJECT_NOT_IN_PREREQUISITE_STATE: [u8; 5] = *b"55000";
pub const INSUFFICIENT_PRIVILEGE: [u8; 5] = *b"42501";
pub const READ_ONLY_SQL_TRANSACTION: [u8; 5] = *b"25006";
pub const OUT_OF_MEMORY: [u8; 5] = *b"53200";
/// PostgREST maps SQLSTATE `PTxyz` to HTTP status xyz.
pub const TOO_MANY_REQUESTS: [u8; 5] = *b"PT429";

impl Raise {
    #[track_caller]
    pub fn new(sqlstate: [u8; 5], message: impl Into<String>) -> Self {
        Self {
            sqlstate,
            message: message.into(),
            detail: None,
            hint: None,
            unknown_key: false,
            fatal: false,
            location: Location::caller(),
        }
    }

    pub fn fatal(mut self) -> Self {
        self.fatal = true;
        self
    }

    fn level(&self) -> pgrx::PgLogLevel {
        if self.fatal {
            pgrx::PgLogLevel::FATAL
        } else {
            pgrx::PgLogLevel::ERROR
        }
    }

    /// An error caught while our hook worked (ours, PostgreSQL's or a panic), to raise again
    /// from outside the guard with the statement hidden.
    #[track_caller]
    pub fn from_caught(caught: pg_sys::panic::CaughtError) -> Self {
        use pg_sys::panic::CaughtError::*;
        let (PostgresError(report)
        | ErrorReport(report)
        | RustPanic {
            ereport: report, ..
        }) = caught;
        let code = report.sql_error_code() as c_int;
        let sqlstate = std::array::from_fn(|i| ((code >> (6 * i)) & 0x3F) as u8 + b'0');
        let mut raise = Raise::new(sqlstate, report.message());
        raise.detail = report.detail().map(str::to_string);
        raise.hint = report.hint().map(str::to_string);
        raise
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl From<AuthError> for Raise {
    #[track_caller]
    fn from(e: AuthError) -> Self {
        let sqlstate = match e.kind {
            ErrorKind::InvalidToken => INVALID_AUTHORIZATION,
            ErrorKind::BadConfig | ErrorKind::InvalidArgument => INVALID_PARAMETER_VALUE,
            ErrorKind::NotConfigured => OBJECT_NOT_IN_PREREQUISITE_STATE,
        };
        let mut raise = Raise::new(sqlstate, e.message);
        raise.unknown_key = e.unknown_key;
        raise
    }
}

fn make_sqlstate(code: [u8; 5]) -> c_int {
    code.iter()
        .map(|c| (c_int::from(*c) - c_int::from(b'0')) & 0x3F)
        .enumerate()
        .fold(0, |acc, (i, v)| acc | (v << (6 * i)))
}

/// A palloc'd C string (NUL bytes replaced), freed by PostgreSQL with the memory context; a
/// fixed text when the memory is not there.
fn pstr(s: &str) -> *const c_char {
    let len = s.len();
    let Some(p) = crate::fmgr::palloc_no_raise(len + 1) else {
        return c"(pg_rls_auth: out of memory for the message)".as_ptr();
    };
    let p = p.as_ptr();
    // SAFETY: `p` is a fresh writable block of `len + 1` bytes; the loop writes `len` bytes
    // and the NUL the last one: in bounds, and `s` cannot overlap the new block.
    unsafe {
        for (i, b) in s.bytes().enumerate() {
            *p.add(i) = if b == 0 { b'?' } else { b };
        }
        *p.add(len) = 0;
    }
    p as *const c_char
}

/// Raises `r` as an ERROR (FATAL when `r.fatal`). Call only from a frame that owns no other
/// Rust values.
///
/// # Safety
/// Must run on the backend's main thread, outside any pgrx guard (errfinish longjmps straight
/// to PostgreSQL's handler), and every frame between this call and that handler must hold
/// nothing that needs dropping (plain old frames): they are skipped, not unwound.
pub unsafe fn raise(r: Raise, hide_statement: bool) -> ! {
    let code = make_sqlstate(r.sqlstate);
    let level = r.level();
    let message = pstr(&r.message);
    let detail = r.detail.as_deref().map(pstr);
    let hint = r.hint.as_deref().map(pstr);
    let file = pstr(r.location.file());
    let line = r.location.line() as c_int;
    drop(r);
    // SAFETY: this is elog.h's ereport(ERROR or FATAL, ...) sequence, on the main thread
    // (caller's obligation). Every string is NUL-terminated (palloc'd by `pstr`, or a C
    // literal) and goes through a "%s" format, so no message text is read as a format.
    // pg_raw::errstart at ERROR or FATAL returns true; errhidestmt/errhidecontext (guarded
    // wrappers) only set fields of the error being built and cannot raise. errfinish then
    // longjmps to PostgreSQL's handler (ERROR) or ends the process (FATAL) and never returns
    // (an ERROR inside errcode/errmsg would longjmp the same way). That skips this frame, which
    // holds only raw pointers and integers (`r` was dropped above), and the caller's frames,
    // which hold only Copy values (caller's obligation: `fmgr::call` and the v1 entry point,
    // `hooks::before_statement_checked`).
    unsafe {
        if pg_raw::errstart(level as c_int, std::ptr::null()) {
            pg_raw::errcode(code);
            pg_raw::errmsg(c"%s".as_ptr(), message);
            if let Some(d) = detail {
                pg_raw::errdetail(c"%s".as_ptr(), d);
            }
            if let Some(h) = hint {
                pg_raw::errhint(c"%s".as_ptr(), h);
            }
            if hide_statement {
                // Neither the statement nor a CONTEXT line quoting it (as PL/pgSQL's would).
                pg_sys::errhidestmt(true);
                pg_sys::errhidecontext(true);
            }
            pg_raw::errfinish(file, line, c"pg_rls_auth".as_ptr());
        }
    }
    unreachable!("ereport(ERROR) returned")
}

/// Raises through pgrx's error machinery (for `#[pg_extern]` functions). Standard SQLSTATEs only.
pub fn report(r: Raise) -> ! {
    let level = r.level();
    let code = pg_sys::errcodes::PgSqlErrorCode::from(make_sqlstate(r.sqlstate));
    let mut report = pg_sys::panic::ErrorReport::new(code, r.message, "pg_rls_auth");
    if let Some(d) = r.detail {
        report = report.set_detail(d);
    }
    if let Some(h) = r.hint {
        report = report.set_hint(h);
    }
    report.report(level);
    unreachable!("ereport({level:?}) returned")
}

pub trait OrReport<T> {
    /// Unwraps, or raises the error through pgrx (`#[pg_extern]` functions).
    fn or_report(self) -> T;
}

impl<T, E: Into<Raise>> OrReport<T> for Result<T, E> {
    fn or_report(self) -> T {
        match self {
            Ok(v) => v,
            Err(e) => report(e.into()),
        }
    }
}
