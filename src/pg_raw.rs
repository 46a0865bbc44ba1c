//! Every PostgreSQL function this extension calls without pgrx's guard, in one place. pgrx's
//! wrappers set up a longjmp catch per call, a measurable share of a per-row accessor or of a
//! hook that runs for every statement. An ERROR raised here is not turned into a Rust panic: it
//! longjmps past the calling Rust frames without unwinding them. So each function is called
//! only where it cannot raise, or where the frames it would skip hold nothing that needs
//! dropping; each declaration says which, and every call site's `// SAFETY:` says why it holds.

use pgrx::pg_sys;
use std::ffi::{c_char, c_int, c_void};

unsafe extern "C-unwind" {
    /// Cannot raise when `flags` has MCXT_ALLOC_NO_OOM and `size` is at most MaxAllocSize:
    /// it then returns NULL when out of memory. Only `fmgr::palloc_no_raise` calls it, so.
    pub fn palloc_extended(size: usize, flags: c_int) -> *mut c_void;

    /// Raises only "too many LWLocks taken" (over 200 held at once); the memory store holds at
    /// most one of its locks, and calls it from SQL functions, which hold none.
    #[link_name = "LWLockAcquire"]
    pub fn lwlock_acquire(lock: *mut pg_sys::LWLock, mode: pg_sys::LWLockMode::Type) -> bool;
    /// Cannot raise for a lock this backend holds.
    #[link_name = "LWLockRelease"]
    pub fn lwlock_release(lock: *mut pg_sys::LWLock);

    // elog.h's ereport(ERROR, ...) sequence, used only by `errors::raise`: errstart(ERROR)
    // returns true, the err* calls fill in the error being built, and errfinish longjmps to
    // PostgreSQL's handler. raise's callers hold nothing that needs dropping.
    pub fn errstart(elevel: c_int, domain: *const c_char) -> bool;
    pub fn errcode(sqlerrcode: c_int) -> c_int;
    pub fn errmsg(fmt: *const c_char, ...) -> c_int;
    pub fn errdetail(fmt: *const c_char, ...) -> c_int;
    pub fn errhint(fmt: *const c_char, ...) -> c_int;
    pub fn errfinish(filename: *const c_char, lineno: c_int, funcname: *const c_char);

    /// Reads the backend's database encoding, fixed at connection start; cannot raise. Called
    /// per text argument and result, where pgrx's guard would cost more than the call.
    #[link_name = "GetDatabaseEncoding"]
    pub fn get_database_encoding() -> c_int;

    /// The executor and utility entry points our hooks pass control to. They raise for any
    /// error in the statement; the hooks' frames hold nothing that needs dropping then.
    #[link_name = "standard_ExecutorStart"]
    pub fn standard_executor_start(query_desc: *mut pg_sys::QueryDesc, eflags: i32);
    #[link_name = "standard_ProcessUtility"]
    pub fn standard_process_utility(
        pstmt: *mut pg_sys::PlannedStmt,
        query_string: *const c_char,
        read_only_tree: bool,
        context: pg_sys::ProcessUtilityContext::Type,
        params: pg_sys::ParamListInfo,
        query_env: *mut pg_sys::QueryEnvironment,
        dest: *mut pg_sys::DestReceiver,
        qc: *mut pg_sys::QueryCompletion,
    );

    /// The planner our planner hook passes control to. It raises for any error in planning; the
    /// hook's frame holds nothing that needs dropping then.
    #[link_name = "standard_planner"]
    pub fn standard_planner(
        parse: *mut pg_sys::Query,
        query_string: *const c_char,
        cursor_options: c_int,
        bound_params: pg_sys::ParamListInfo,
    ) -> *mut pg_sys::PlannedStmt;

    // The settings machinery, whose signatures differ by version (see `pg_versions`).
    /// On 15: the static array of settings; cannot raise.
    #[cfg(feature = "pg15")]
    pub fn get_guc_variables() -> *mut *mut pg_sys::config_generic;
    /// On 15: the array's length; cannot raise.
    #[cfg(feature = "pg15")]
    #[link_name = "GetNumConfigOptions"]
    pub fn get_num_config_options() -> c_int;
    /// On 16 and later: pallocs and sorts a new array, so it raises when out of memory.
    #[cfg(not(feature = "pg15"))]
    pub fn get_guc_variables(num_vars: *mut c_int) -> *mut *mut pg_sys::config_generic;
    /// Without placeholders and with `skip_errors` it returns NULL for an unknown name instead
    /// of raising, and only looks the name up in the settings hash table.
    #[cfg(not(feature = "pg15"))]
    pub fn find_option(
        name: *const c_char,
        create_placeholders: bool,
        skip_errors: bool,
        elevel: c_int,
    ) -> *mut pg_sys::config_generic;
    /// With `missing_ok` it returns NULL for an unknown name instead of raising.
    #[cfg(not(feature = "pg15"))]
    #[link_name = "GetConfigOption"]
    pub fn get_config_option(
        name: *const c_char,
        missing_ok: bool,
        restrict_privileged: bool,
    ) -> *const c_char;
}
