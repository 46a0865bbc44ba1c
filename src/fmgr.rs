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
    // Unguarded raw calls inside the body (`text_datum`'s palloc, the memory store's
    // LWLockAcquire, get_guc_variables on 16+) longjmp past the guard instead: see there.
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

// palloc called directly rather than through pgrx's guarded wrapper (a longjmp catch per
// call, a measurable share of a per-row accessor). It raises only when out of memory (or for
// a request over 1 GB); that longjmp skips the calling frames without unwinding them, and
// skips `fmgr::call`'s guard. Callers are meant to hold at most a reference count (then
// leaked); `claim_path` and `sign_jwt` hold a String, which would leak too.
unsafe extern "C-unwind" {
    #[link_name = "palloc"]
    pub(crate) fn raw_palloc(size: usize) -> *mut std::ffi::c_void;
}

/// A `text` datum copied from `s` into the current memory context.
pub fn text_datum(s: &str) -> pg_sys::Datum {
    let size = pg_sys::VARHDRSZ + s.len();
    // SAFETY: main thread, inside a V1 call, so CurrentMemoryContext is the one the result
    // must live in. palloc returns a MAXALIGNed (so 4-byte aligned) block of `size` bytes, or
    // raises for a request over MaxAllocSize (1 GB - 1), so `size` fits set_varsize_4b's
    // limit when it returns. The copy writes s.len() bytes after the 4-byte header: in
    // bounds, and `s` cannot overlap a fresh block. An ERROR from the raw palloc longjmps
    // past this frame (only a borrow and integers) and its callers, which must hold nothing
    // that needs dropping (see above: two callers hold a String, which then leaks).
    unsafe {
        let p = raw_palloc(size) as *mut u8;
        pgrx::set_varsize_4b(p as *mut pg_sys::varlena, size as i32);
        std::ptr::copy_nonoverlapping(s.as_ptr(), p.add(pg_sys::VARHDRSZ), s.len());
        pg_sys::Datum::from(p)
    }
}

/// A copy of a cached varlena (e.g. jsonb) in the current memory context.
pub fn varlena_datum(bytes: &[u8]) -> pg_sys::Datum {
    // SAFETY: as in `text_datum`: main thread, inside a V1 call; palloc returns a MAXALIGNed
    // block of bytes.len() bytes (enough alignment for jsonb and uuid) or raises, and the copy
    // fills exactly that block from a non-overlapping slice. `bytes` is a complete datum
    // image (a 4-byte-header jsonb from `jsonb_in`, or a 16-byte uuid). An ERROR from the raw
    // palloc longjmps past this frame and the callers, which hold at most an Rc<Session>
    // (its count then leaks) or a 'static slice.
    unsafe {
        let p = raw_palloc(bytes.len()) as *mut u8;
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len());
        pg_sys::Datum::from(p)
    }
}
