//! Version-1 C functions written by hand, for the few entry points that must raise a custom
//! SQLSTATE (PT429) or hide the statement, and for the hot claim accessors that return a cached
//! datum without a conversion layer. pgrx still guards the body: a Rust panic or a PostgreSQL
//! error inside becomes an ordinary ERROR.

use crate::errors::{raise, Raise, OUT_OF_MEMORY};
use pgrx::pg_sys;

pub type Body = unsafe fn(pg_sys::FunctionCallInfo) -> Result<Option<pg_sys::Datum>, Raise>;

/// Runs `body` under pgrx's guard and turns its result into a return value, NULL or ERROR.
///
/// # Safety
/// Called only from a V1 entry point (`v1_function!`) that PostgreSQL's function manager
/// called, on the main thread, with a valid `fcinfo` whose arguments have the SQL types `body`
/// reads; the caller's frame must hold nothing that needs dropping.
pub unsafe fn call(
    fcinfo: pg_sys::FunctionCallInfo,
    body: Body,
    hide_statement: bool,
) -> pg_sys::Datum {
    // SAFETY: pgrx_extern_c_guard needs only trivially dropped frames above it: this one
    // holds a pointer, a fn pointer and a bool, the entry point the same (caller's
    // obligation). `body`'s own obligations (valid `fcinfo`, argument types) are ours. Inside,
    // a Rust panic, or an ERROR that a guarded pg_sys call turned into one, unwinds the
    // body's values and is raised again as an ERROR from within the guard, over these frames.
    // Unguarded raw calls inside the body (the memory store's LWLockAcquire) longjmp past
    // the guard instead: see there.
    let result = unsafe { pg_sys::panic::pgrx_extern_c_guard(|| body(fcinfo)) };
    match result {
        Ok(Some(datum)) => datum,
        // SAFETY: `fcinfo` is the valid, writable FunctionCallInfo PostgreSQL passed in
        // (caller's obligation); isnull = true with a zero datum is a V1 function's NULL
        // result. A plain write: nothing can raise.
        Ok(None) => unsafe {
            (*fcinfo).isnull = true;
            pg_sys::Datum::from(0)
        },
        // SAFETY: main thread, and the guard above has returned, so no pgrx guard is active
        // in this call, as `raise` requires. The frames its longjmp skips are this one (`r`
        // is moved into `raise`; the rest is Copy) and the entry point's (Copy only).
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
        /// Called only by PostgreSQL's function manager, on the main thread, with a valid
        /// `fcinfo` for the SQL declaration of this symbol.
        pub unsafe extern "C-unwind" fn $symbol(
            fcinfo: ::pgrx::pg_sys::FunctionCallInfo,
        ) -> ::pgrx::pg_sys::Datum {
            let body: $crate::fmgr::Body = $body;
            let hide_statement: bool = $hide;
            // SAFETY: PostgreSQL's function manager calls this symbol (LANGUAGE c in this
            // extension's SQL, which declares the argument types `$body` reads) on the main
            // thread with a valid `fcinfo`. This frame holds only Copy values, so `call`'s
            // guard and `raise`'s longjmp skip nothing that needs dropping.
            unsafe { $crate::fmgr::call(fcinfo, body, hide_statement) }
        }
    };
}

/// Argument `n` as `T`, or None when NULL.
///
/// # Safety
/// `fcinfo` must be valid and argument `n` of SQL type matching `T`; main thread, inside a
/// pgrx guard (conversion may raise, as a Rust panic). A borrowed `T` (`&str`) must not be
/// kept past the current call: it points into the argument or the call's memory context.
pub unsafe fn arg<T: pgrx::FromDatum>(fcinfo: pg_sys::FunctionCallInfo, n: usize) -> Option<T> {
    // SAFETY: the caller's obligations are exactly pg_getarg's (valid `fcinfo`, `T` matching
    // the argument's type); an out-of-range `n` panics (bounds-checked against nargs). Any
    // detoasting or conversion goes through guarded pg_sys calls, so an ERROR there becomes
    // a panic for the caller's pgrx guard, unwinding normally.
    unsafe { pgrx::fcinfo::pg_getarg::<T>(fcinfo, n) }
}

/// A `text` argument as `&str`, or None when NULL. Plain (not toasted) UTF-8 values, the usual
/// case for keys computed per row, are read in place; anything else goes through pgrx's
/// conversion, which detoasts and converts from the database encoding.
///
/// # Safety
/// `fcinfo` must be valid and argument `n` of type text; main thread, inside a pgrx guard.
/// The caller picks `'a`: the result must not be kept past the current call.
pub unsafe fn text_arg<'a>(fcinfo: pg_sys::FunctionCallInfo, n: usize) -> Option<&'a str> {
    // SAFETY: valid `fcinfo` (caller's obligation); reads the argument slot only (an
    // out-of-range `n` panics), nothing can raise.
    let datum = unsafe { pgrx::fcinfo::pg_getarg_datum(fcinfo, n) }?;
    let ptr = datum.cast_mut_ptr::<pg_sys::varlena>() as *const pg_sys::varlena;
    // SAFETY: a non-NULL text argument is a pointer to a varlena that stays valid for the
    // whole call (the caller must not keep the result longer). Its first header byte is
    // readable; when it is neither external (1B_E) nor compressed (4B_C), the value is
    // inline with a 1- or 4-byte header, and vardata_any/varsize_any_exhdr give its payload,
    // so the slice is in bounds (u8 needs no alignment). Anything else goes through `arg`
    // (same obligations as ours), which detoasts with guarded calls: an ERROR there is a
    // panic, and only Copy values are live here.
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

// palloc_extended called directly rather than through pgrx's guarded wrapper (a longjmp catch
// per call, a measurable share of a per-row accessor). Only `palloc_no_raise` calls it, in the
// one way that cannot raise, so no caller ever has frames skipped by a longjmp.
unsafe extern "C-unwind" {
    #[link_name = "palloc_extended"]
    fn raw_palloc_extended(size: usize, flags: std::ffi::c_int) -> *mut std::ffi::c_void;
}

/// PostgreSQL's MaxAllocSize: palloc raises for anything larger, whatever the flags.
const MAX_ALLOC_SIZE: usize = 0x3fff_ffff;

/// A block of `size` bytes in CurrentMemoryContext, MAXALIGNed, or None when it is over
/// MaxAllocSize or the memory is not there. Never raises.
pub(crate) fn palloc_no_raise(size: usize) -> Option<std::ptr::NonNull<u8>> {
    if size > MAX_ALLOC_SIZE {
        return None;
    }
    // SAFETY: main thread (the only one this extension runs on), where CurrentMemoryContext
    // is valid. palloc_extended raises only for a size over MaxAllocSize (excluded above) or,
    // without MCXT_ALLOC_NO_OOM, when out of memory; with it, it returns NULL instead. So
    // this call returns normally and the Rust frames above it are never skipped.
    let p = unsafe { raw_palloc_extended(size, pg_sys::MCXT_ALLOC_NO_OOM as std::ffi::c_int) };
    std::ptr::NonNull::new(p.cast::<u8>())
}

fn out_of_memory(size: usize) -> Raise {
    Raise::new(
        OUT_OF_MEMORY,
        format!("pg_rls_auth: cannot allocate a result of {size} bytes"),
    )
}

/// A `text` datum copied from `s` into the current memory context.
pub fn text_datum(s: &str) -> Result<pg_sys::Datum, Raise> {
    let size = pg_sys::VARHDRSZ + s.len();
    let p = palloc_no_raise(size)
        .ok_or_else(|| out_of_memory(size))?
        .as_ptr();
    // SAFETY: `p` is a fresh MAXALIGNed (so 4-byte aligned) block of `size` bytes, and `size`
    // is at most MaxAllocSize, within set_varsize_4b's limit. The copy writes s.len() bytes
    // after the 4-byte header: in bounds, and `s` cannot overlap a fresh block. Plain writes:
    // nothing can raise.
    unsafe {
        pgrx::set_varsize_4b(p as *mut pg_sys::varlena, size as i32);
        std::ptr::copy_nonoverlapping(s.as_ptr(), p.add(pg_sys::VARHDRSZ), s.len());
    }
    Ok(pg_sys::Datum::from(p))
}

/// A copy of a cached varlena (e.g. jsonb) in the current memory context.
pub fn varlena_datum(bytes: &[u8]) -> Result<pg_sys::Datum, Raise> {
    let p = palloc_no_raise(bytes.len())
        .ok_or_else(|| out_of_memory(bytes.len()))?
        .as_ptr();
    // SAFETY: `p` is a fresh MAXALIGNed block (enough alignment for jsonb and uuid) of
    // bytes.len() bytes, filled exactly from a non-overlapping slice. `bytes` is a complete
    // datum image (a 4-byte-header jsonb from `jsonb_in`, or a 16-byte uuid). Plain writes.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len()) };
    Ok(pg_sys::Datum::from(p))
}
