//! Version-1 C functions written by hand, for the few entry points that must raise a custom
//! SQLSTATE (PT429) or hide the statement, and for the hot claim accessors that return a cached
//! datum without a conversion layer. pgrx still guards the body: a Rust panic or a PostgreSQL
//! error inside becomes an ordinary ERROR.

use crate::errors::{raise, Raise};
use pgrx::pg_sys;

pub type Body = unsafe fn(pg_sys::FunctionCallInfo) -> Result<Option<pg_sys::Datum>, Raise>;

/// Runs `body` under pgrx's guard and turns its result into a return value, NULL or ERROR.
///
/// # Safety
/// Called only by PostgreSQL's function manager with a valid `fcinfo`.
pub unsafe fn call(
    fcinfo: pg_sys::FunctionCallInfo,
    body: Body,
    hide_statement: bool,
) -> pg_sys::Datum {
    let result = unsafe { pg_sys::panic::pgrx_extern_c_guard(|| body(fcinfo)) };
    match result {
        Ok(Some(datum)) => datum,
        Ok(None) => unsafe {
            (*fcinfo).isnull = true;
            pg_sys::Datum::from(0)
        },
        Err(r) => unsafe { raise(r, hide_statement) },
    }
}

pub static V1_RECORD: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };

/// Declares `extern "C"` entry point `$symbol` and its `pg_finfo_$symbol`, running `$body`.
#[macro_export]
macro_rules! v1_function {
    ($symbol:ident, $finfo:ident, $body:path, hide_statement = $hide:expr) => {
        #[no_mangle]
        #[doc(hidden)]
        pub extern "C" fn $finfo() -> &'static ::pgrx::pg_sys::Pg_finfo_record {
            &$crate::fmgr::V1_RECORD
        }

        #[no_mangle]
        #[doc(hidden)]
        /// # Safety
        /// Called by PostgreSQL's function manager.
        pub unsafe extern "C-unwind" fn $symbol(
            fcinfo: ::pgrx::pg_sys::FunctionCallInfo,
        ) -> ::pgrx::pg_sys::Datum {
            let body: $crate::fmgr::Body = $body;
            let hide_statement: bool = $hide;
            unsafe { $crate::fmgr::call(fcinfo, body, hide_statement) }
        }
    };
}

/// Argument `n` as `T`, or None when NULL.
///
/// # Safety
/// `fcinfo` must be valid and argument `n` of SQL type matching `T`.
pub unsafe fn arg<T: pgrx::FromDatum>(fcinfo: pg_sys::FunctionCallInfo, n: usize) -> Option<T> {
    unsafe { pgrx::fcinfo::pg_getarg::<T>(fcinfo, n) }
}

/// A `text` argument as `&str`, or None when NULL. Plain (not toasted) UTF-8 values, the usual
/// case for keys computed per row, are read in place; anything else goes through pgrx's
/// conversion, which detoasts and converts from the database encoding.
///
/// # Safety
/// `fcinfo` must be valid and argument `n` of type text.
pub unsafe fn text_arg<'a>(fcinfo: pg_sys::FunctionCallInfo, n: usize) -> Option<&'a str> {
    let datum = unsafe { pgrx::fcinfo::pg_getarg_datum(fcinfo, n) }?;
    let ptr = datum.cast_mut_ptr::<pg_sys::varlena>() as *const pg_sys::varlena;
    unsafe {
        let toasted = pgrx::varlena::varatt_is_1b_e(ptr) || pgrx::varlena::varatt_is_4b_c(ptr);
        if !toasted {
            let bytes = std::slice::from_raw_parts(
                pgrx::varlena::vardata_any(ptr) as *const u8,
                pgrx::varlena::varsize_any_exhdr(ptr),
            );
            if let Ok(text) = std::str::from_utf8(bytes) {
                return Some(text);
            }
        }
        arg::<&str>(fcinfo, n)
    }
}

// palloc called directly rather than through pgrx's guarded wrapper (a longjmp catch per
// call, a measurable share of a per-row accessor). It raises only when out of memory; that
// longjmp skips the calling frames, which hold at most a reference count (then leaked).
unsafe extern "C-unwind" {
    #[link_name = "palloc"]
    fn raw_palloc(size: usize) -> *mut std::ffi::c_void;
}

/// A `text` datum copied from `s` into the current memory context.
pub fn text_datum(s: &str) -> pg_sys::Datum {
    let size = pg_sys::VARHDRSZ + s.len();
    unsafe {
        let p = raw_palloc(size) as *mut u8;
        pgrx::set_varsize_4b(p as *mut pg_sys::varlena, size as i32);
        std::ptr::copy_nonoverlapping(s.as_ptr(), p.add(pg_sys::VARHDRSZ), s.len());
        pg_sys::Datum::from(p)
    }
}

/// A copy of a cached varlena (e.g. jsonb) in the current memory context.
pub fn varlena_datum(bytes: &[u8]) -> pg_sys::Datum {
    unsafe {
        let p = raw_palloc(bytes.len()) as *mut u8;
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len());
        pg_sys::Datum::from(p)
    }
}
