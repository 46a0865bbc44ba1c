//! Version-1 C functions written by hand, for the few entry points that must raise a custom
//! SQLSTATE (PT429) or hide the statement, and for the hot claim accessors that return a cached
//! datum without a conversion layer. pgrx still guards the body: a Rust panic or a PostgreSQL
//! error inside becomes an ordinary ERROR.
//!
//! One source for each function: `sql_function!` takes the Rust signature in SQL types
//! (`Text`, `Jsonb`, ...) and the function's `CREATE FUNCTION` text, checks at compile time
//! that the two agree (argument types in order, return type, C symbol), installs the SQL, and
//! reads the arguments with the declared types. Bodies are safe functions: they get typed
//! values and return a `Datum<T>` of the declared return type, which only this module makes.

use crate::errors::{raise, Raise, OUT_OF_MEMORY};
use pgrx::pg_sys;
use std::marker::PhantomData;

pub type Body = unsafe fn(pg_sys::FunctionCallInfo) -> Result<Option<pg_sys::Datum>, Raise>;

/// SQL types of hand-written functions' arguments and results.
pub trait SqlType {
    /// The type's name as the function's SQL declaration spells it.
    const NAME: &'static str;
}

/// An argument type: how argument `n` of a call is read.
pub trait ArgType: SqlType {
    type Value<'a>;

    /// Argument `n`, or None when NULL.
    ///
    /// # Safety
    /// `fcinfo` must be valid and its argument `n` of SQL type `Self::NAME`; main thread,
    /// inside a pgrx guard. The value must not be kept past the current call.
    unsafe fn read<'a>(fcinfo: pg_sys::FunctionCallInfo, n: usize) -> Option<Self::Value<'a>>;
}

/// Declares marker types for SQL types by their SQL names.
macro_rules! sql_types {
    ($($ty:ident = $name:literal),* $(,)?) => {
        $(
            pub struct $ty;
            impl SqlType for $ty {
                const NAME: &'static str = $name;
            }
        )*
    };
}
sql_types!(
    Text = "text",
    Boolean = "boolean",
    Integer = "integer",
    Uuid = "uuid",
    Jsonb = "jsonb",
    Void = "void"
);

/// Argument types read through pgrx's `FromDatum` for the Rust type that matches the SQL one.
macro_rules! from_datum_arg_types {
    ($($ty:ident => $value:ty),* $(,)?) => {
        $(
            impl ArgType for $ty {
                type Value<'a> = $value;
                unsafe fn read<'a>(
                    fcinfo: pg_sys::FunctionCallInfo,
                    n: usize,
                ) -> Option<Self::Value<'a>> {
                    // SAFETY: our obligations are arg's, with T the Rust type pgrx maps this
                    // SQL type to.
                    unsafe { arg::<$value>(fcinfo, n) }
                }
            }
        )*
    };
}
from_datum_arg_types!(Boolean => bool, Integer => i32, Uuid => pgrx::Uuid, Jsonb => pgrx::JsonB);

impl ArgType for Text {
    type Value<'a> = &'a str;
    unsafe fn read<'a>(fcinfo: pg_sys::FunctionCallInfo, n: usize) -> Option<Self::Value<'a>> {
        // SAFETY: our obligations are text_arg's.
        unsafe { text_arg(fcinfo, n) }
    }
}

/// A datum of SQL type `T` in the current memory context, made only by the constructors
/// below, so a function declared to return `T` can return nothing else.
pub struct Datum<T>(pg_sys::Datum, PhantomData<T>);

impl<T> Datum<T> {
    fn new(datum: pg_sys::Datum) -> Self {
        Self(datum, PhantomData)
    }

    pub fn into_raw(self) -> pg_sys::Datum {
        self.0
    }
}

impl Datum<Text> {
    /// `s` as text in the database's encoding (an ERROR when it has no equivalent there).
    pub fn text(s: &str) -> Result<Self, Raise> {
        if utf8_database() || s.is_ascii() {
            return text_datum(s).map(Self::new);
        }
        let len = i32::try_from(s.len()).map_err(|_| out_of_memory(s.len()))?;
        // SAFETY: main thread, inside the V1 call's pgrx guard. pg_any_to_server reads `len`
        // bytes of `s` (valid UTF-8, as PG_UTF8 says) and returns either `s` itself (when no
        // conversion applies, as in a SQL_ASCII database: then `len` bytes, no NUL) or the
        // converted text, NUL-terminated, in a new palloc'd string. cstring_to_text_with_len
        // copies exactly the length given. Both are pgrx's guarded wrappers: a conversion
        // ERROR becomes a panic that unwinds normally.
        let datum = unsafe {
            let converted =
                pg_sys::pg_any_to_server(s.as_ptr().cast(), len, pg_sys::pg_enc::PG_UTF8 as i32);
            let converted_len = if std::ptr::eq(converted.cast_const(), s.as_ptr().cast()) {
                s.len()
            } else {
                std::ffi::CStr::from_ptr(converted).to_bytes().len()
            };
            pg_sys::cstring_to_text_with_len(converted, converted_len as i32)
        };
        Ok(Self::new(pg_sys::Datum::from(datum)))
    }
}

impl Datum<Uuid> {
    pub fn uuid(bytes: [u8; 16]) -> Result<Self, Raise> {
        // A uuid is 16 bytes passed by reference.
        varlena_datum(&bytes).map(Self::new)
    }
}

impl Datum<Jsonb> {
    /// A copy of a jsonb value built earlier (see `JsonbImage`).
    pub fn copy_of(image: &JsonbImage) -> Result<Self, Raise> {
        varlena_datum(&image.0).map(Self::new)
    }

    /// A new jsonb value (through jsonb_in; guarded).
    pub fn from_json(value: serde_json::Value) -> Self {
        use pgrx::IntoDatum;
        Self::new(
            pgrx::JsonB(value)
                .into_datum()
                .expect("a jsonb value is never NULL"),
        )
    }
}

impl Datum<Boolean> {
    pub fn boolean(value: bool) -> Self {
        Self::new(pg_sys::Datum::from(value))
    }
}

impl Datum<Void> {
    pub fn void() -> Self {
        Self::new(pg_sys::Datum::from(0))
    }
}

/// A complete jsonb value, built once (by jsonb_in) and copied out per call.
pub struct JsonbImage(Vec<u8>);

impl JsonbImage {
    /// `json` must be valid JSON text (serde_json's output).
    pub fn from_json(json: String) -> Self {
        let text = std::ffi::CString::new(json).expect("JSON has no NUL byte");
        // SAFETY: main thread, inside a pgrx guard (the V1 calls' `call`). jsonb_in gets a
        // NUL-terminated cstring datum that outlives the call, and no fcinfo context, so bad
        // input raises ERROR (it is serde_json's output, so only out of memory or a jsonb
        // limit could); pg_sys::jsonb_in is the guarded wrapper, so that ERROR becomes a
        // panic that unwinds, dropping `text` (inside an OnceCell or thread_local
        // initialiser, which then stays uninitialised). The result is a palloc'd, non-toasted
        // jsonb: varsize_any gives its full length and the slice is copied out at once.
        unsafe {
            let datum = pgrx::direct_function_call_as_datum(
                pg_sys::jsonb_in,
                &[Some(pg_sys::Datum::from(text.as_ptr()))],
            )
            .expect("jsonb_in returns a value");
            let ptr = datum.cast_mut_ptr::<pg_sys::varlena>();
            let len = pgrx::varsize_any(ptr);
            Self(std::slice::from_raw_parts(ptr as *const u8, len).to_vec())
        }
    }
}

/// What a body returns: a datum of its declared type, SQL NULL, or an error to raise.
pub type Answer<T> = Result<Option<Datum<T>>, Raise>;

/// Runs `body` under pgrx's guard and turns its result into a return value, NULL or ERROR.
///
/// # Safety
/// Called only from a V1 entry point (`sql_function!`) that PostgreSQL's function manager
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

/// Declares a hand-written function from one source: its SQL declaration (installed by the
/// extension script), checked at compile time against the Rust signature given in SQL types,
/// its `pg_finfo_<symbol>` record, and the `extern "C"` entry point `<symbol>`, which reads
/// the arguments with the declared types and runs the safe `body` under `call`.
///
/// ```text
/// sql_function! {
///     symbol = auth_claim, finfo = pg_finfo_auth_claim, name = "auth_claim",
///     body = claim(path: Text) -> Text,
///     hide_statement = false,
///     sql = r#"CREATE FUNCTION auth.claim(path text) RETURNS text ... AS 'MODULE_PATHNAME', 'auth_claim';"#,
/// }
/// ```
///
/// `released_sql = …` instead of `sql = …` declares an entry point that an earlier version's
/// frozen SQL (`sql/pg_rls_auth--<version>.sql`) calls and this version's does not: checked
/// the same way, not installed. It serves databases that have not yet run `ALTER EXTENSION
/// pg_rls_auth UPDATE`.
#[macro_export]
macro_rules! sql_function {
    (
        symbol = $symbol:ident, finfo = $finfo:ident, name = $name:literal,
        body = $body:ident ( $($arg:ident : $ty:ident),* ) -> $ret:ident,
        hide_statement = $hide:expr,
        sql = $sql:literal $(,)?
    ) => {
        ::pgrx::extension_sql!($sql, name = $name);
        $crate::sql_function! {
            symbol = $symbol, finfo = $finfo, name = $name,
            body = $body($($arg: $ty),*) -> $ret,
            hide_statement = $hide,
            released_sql = $sql,
        }
    };
    (
        symbol = $symbol:ident, finfo = $finfo:ident, name = $name:literal,
        body = $body:ident ( $($arg:ident : $ty:ident),* ) -> $ret:ident,
        hide_statement = $hide:expr,
        released_sql = $sql:literal $(,)?
    ) => {
        const _: () = assert!(
            ::pg_rls_auth_core::sql_signature::declares(
                $sql,
                stringify!($symbol),
                &[$(<$crate::fmgr::$ty as $crate::fmgr::SqlType>::NAME),*],
                <$crate::fmgr::$ret as $crate::fmgr::SqlType>::NAME,
            ),
            concat!("the SQL declaration of ", stringify!($symbol), " does not match its Rust signature"),
        );

        #[no_mangle]
        #[doc(hidden)]
        pub extern "C" fn $finfo() -> &'static ::pgrx::pg_sys::Pg_finfo_record {
            &$crate::fmgr::V1_RECORD
        }

        #[no_mangle]
        #[doc(hidden)]
        /// # Safety
        /// Called only by PostgreSQL's function manager, on the main thread, with a valid
        /// `fcinfo` for the SQL declaration above.
        pub unsafe extern "C-unwind" fn $symbol(
            fcinfo: ::pgrx::pg_sys::FunctionCallInfo,
        ) -> ::pgrx::pg_sys::Datum {
            /// # Safety
            /// A `fmgr::Body`: called only through `call`, inside its pgrx guard, on the main
            /// thread, with the valid `fcinfo` of this function.
            #[allow(unused_mut, unused_variables, unused_assignments)]
            unsafe fn read_and_run(
                fcinfo: ::pgrx::pg_sys::FunctionCallInfo,
            ) -> Result<Option<::pgrx::pg_sys::Datum>, $crate::errors::Raise> {
                let mut n = 0usize;
                $(
                    // SAFETY: valid `fcinfo` (our obligation), whose argument `n` has the SQL
                    // type `$ty` names: the const assertion above checked the declaration.
                    // The value is used only during this call.
                    let $arg = unsafe {
                        <$crate::fmgr::$ty as $crate::fmgr::ArgType>::read(fcinfo, n)
                    };
                    n += 1;
                )*
                let answer: $crate::fmgr::Answer<$crate::fmgr::$ret> = $body($($arg),*);
                answer.map(|d| d.map($crate::fmgr::Datum::into_raw))
            }
            let hide_statement: bool = $hide;
            // SAFETY: PostgreSQL's function manager calls this symbol (LANGUAGE c in the SQL
            // above, whose argument types `read_and_run` reads) on the main thread with a
            // valid `fcinfo`. This frame holds only Copy values, so `call`'s guard and
            // `raise`'s longjmp skip nothing that needs dropping.
            unsafe { $crate::fmgr::call(fcinfo, read_and_run, hide_statement) }
        }
    };
}

/// Argument `n` as `T`, or None when NULL.
///
/// # Safety
/// `fcinfo` must be valid and argument `n` of SQL type matching `T`; main thread, inside a
/// pgrx guard (conversion may raise, as a Rust panic). A borrowed `T` (`&str`) must not be
/// kept past the current call: it points into the argument or the call's memory context.
unsafe fn arg<T: pgrx::FromDatum>(fcinfo: pg_sys::FunctionCallInfo, n: usize) -> Option<T> {
    // SAFETY: the caller's obligations are exactly pg_getarg's (valid `fcinfo`, `T` matching
    // the argument's type); an out-of-range `n` panics (bounds-checked against nargs). Any
    // detoasting or conversion goes through guarded pg_sys calls, so an ERROR there becomes
    // a panic for the caller's pgrx guard, unwinding normally.
    unsafe { pgrx::fcinfo::pg_getarg::<T>(fcinfo, n) }
}

fn utf8_database() -> bool {
    // SAFETY: main thread; GetDatabaseEncoding reads a backend-local variable (set at
    // connection start) and cannot raise (see pg_raw).
    unsafe { crate::pg_raw::get_database_encoding() == pg_sys::pg_enc::PG_UTF8 as i32 }
}

/// A `text` argument as `&str`, or None when NULL. Plain (not toasted) values in a UTF-8
/// database, or all ASCII, the usual case for keys computed per row, are read in place;
/// toasted values are detoasted, and other encodings converted to UTF-8, in the call's memory
/// context.
///
/// # Safety
/// `fcinfo` must be valid and argument `n` of type text; main thread, inside a pgrx guard.
/// The caller picks `'a`: the result must not be kept past the current call.
unsafe fn text_arg<'a>(fcinfo: pg_sys::FunctionCallInfo, n: usize) -> Option<&'a str> {
    // SAFETY: valid `fcinfo` (caller's obligation); reads the argument slot only (an
    // out-of-range `n` panics), nothing can raise.
    let datum = unsafe { pgrx::fcinfo::pg_getarg_datum(fcinfo, n) }?;
    // SAFETY: a non-NULL text argument is a pointer to a varlena valid for the whole call.
    // Its first header byte is readable; when it is external (1B_E) or compressed (4B_C),
    // pg_detoast_datum_packed (guarded: an ERROR is a panic, and only Copy values are live)
    // returns an inline copy in the call's memory context. An inline value has a 1- or 4-byte
    // header, and vardata_any/varsize_any_exhdr give its payload, so the slice is in bounds
    // (u8 needs no alignment) and lives as long as the call.
    let bytes: &'a [u8] = unsafe {
        let mut ptr = datum.cast_mut_ptr::<pg_sys::varlena>();
        if pgrx::varlena::varatt_is_1b_e(ptr) || pgrx::varlena::varatt_is_4b_c(ptr) {
            ptr = pg_sys::pg_detoast_datum_packed(ptr);
        }
        std::slice::from_raw_parts(
            pgrx::varlena::vardata_any(ptr) as *const u8,
            pgrx::varlena::varsize_any_exhdr(ptr),
        )
    };
    // The bytes are in the database's encoding: they are the text itself only in a UTF-8
    // database, or when all ASCII (every server encoding extends ASCII).
    let utf8 = if utf8_database() || bytes.is_ascii() {
        bytes
    } else {
        // SAFETY: `bytes` is valid text in the database's encoding (PostgreSQL checked it on
        // input). pg_server_to_any returns either `bytes` itself (no conversion applies) or
        // the UTF-8 text, NUL-terminated, in a new palloc'd string that lives as long as the
        // call. Guarded wrapper: a conversion ERROR is a panic, with only Copy values live.
        unsafe {
            let len = i32::try_from(bytes.len()).expect("a text value is under 1 GB");
            let p = pg_sys::pg_server_to_any(
                bytes.as_ptr().cast(),
                len,
                pg_sys::pg_enc::PG_UTF8 as i32,
            );
            if std::ptr::eq(p.cast_const(), bytes.as_ptr().cast()) {
                bytes
            } else {
                std::ffi::CStr::from_ptr(p).to_bytes()
            }
        }
    };
    Some(std::str::from_utf8(utf8).unwrap_or_else(|_| {
        pgrx::error!("pg_rls_auth: a text argument is not valid in the database's encoding")
    }))
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
    let p = unsafe {
        crate::pg_raw::palloc_extended(size, pg_sys::MCXT_ALLOC_NO_OOM as std::ffi::c_int)
    };
    std::ptr::NonNull::new(p.cast::<u8>())
}

fn out_of_memory(size: usize) -> Raise {
    Raise::new(
        OUT_OF_MEMORY,
        format!("pg_rls_auth: cannot allocate a result of {size} bytes"),
    )
}

/// A `text` datum copied from `s` into the current memory context.
fn text_datum(s: &str) -> Result<pg_sys::Datum, Raise> {
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
fn varlena_datum(bytes: &[u8]) -> Result<pg_sys::Datum, Raise> {
    let p = palloc_no_raise(bytes.len())
        .ok_or_else(|| out_of_memory(bytes.len()))?
        .as_ptr();
    // SAFETY: `p` is a fresh MAXALIGNed block (enough alignment for jsonb and uuid) of
    // bytes.len() bytes, filled exactly from a non-overlapping slice. `bytes` is a complete
    // datum image (a 4-byte-header jsonb from `jsonb_in`, or a 16-byte uuid). Plain writes.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len()) };
    Ok(pg_sys::Datum::from(p))
}
