//! Every difference between the PostgreSQL versions pg_rls_auth builds for (15, 16, 17, 18),
//! in one place, as pgvector keeps its version shims together. Elsewhere the code is the same
//! for every version.
//!
//! | what | 15 | 16, 17 | 18 |
//! |---|---|---|---|
//! | listing every setting | `get_guc_variables()` returns the sorted array | builds and sorts a new array per call | as 16 |
//! | reading another extension's setting per row | array slot found once, confirmed per call | `GetConfigOption` (a hash lookup) | as 16 |
//! | `ExecutorRun_hook` | takes `execute_once` | as 15 | no `execute_once` |
//!
//! 16 is compiled only where a PostgreSQL 16 is installed, and is not tested (see README).

use pgrx::pg_sys;
use std::ffi::{c_char, CStr};

// Called directly rather than through pgrx's guarded wrappers (a longjmp catch per call): none
// of them can raise with the arguments given here.
unsafe extern "C-unwind" {
    #[cfg(feature = "pg15")]
    #[link_name = "get_guc_variables"]
    fn raw_get_guc_variables() -> *mut *mut pg_sys::config_generic;
    #[cfg(feature = "pg15")]
    #[link_name = "GetNumConfigOptions"]
    fn raw_get_num_config_options() -> std::ffi::c_int;
    #[cfg(not(feature = "pg15"))]
    #[link_name = "get_guc_variables"]
    fn raw_get_guc_variables(num_vars: *mut std::ffi::c_int) -> *mut *mut pg_sys::config_generic;
    /// With `missing_ok` it returns NULL for an unknown name instead of raising.
    #[cfg(not(feature = "pg15"))]
    #[link_name = "GetConfigOption"]
    fn raw_get_config_option(
        name: *const c_char,
        missing_ok: bool,
        restrict_privileged: bool,
    ) -> *const c_char;
}

/// Every setting's record. On 16 and later this allocates and sorts a new array: call it only
/// off the per-row paths (library load, configuration reload).
///
/// # Safety
/// Backend main thread only; the records are valid until settings are next defined or removed.
pub unsafe fn guc_variables() -> (*mut *mut pg_sys::config_generic, usize) {
    #[cfg(feature = "pg15")]
    // SAFETY: plain reads of the settings array and its length.
    unsafe {
        (
            raw_get_guc_variables(),
            raw_get_num_config_options() as usize,
        )
    }
    #[cfg(not(feature = "pg15"))]
    {
        let mut count = 0;
        // SAFETY: `count` is a valid out-parameter; the array is palloc'd in the current context.
        let vars = unsafe { raw_get_guc_variables(&mut count) };
        (vars, count as usize)
    }
}

/// Finds a string setting by name, per row. On 15 the settings array is stable between
/// definitions, so its slot is found once and confirmed per call by slot and name pointer
/// (both change if the array is re-sorted or the record replaced). On 16 and later the array
/// is rebuilt per listing, so the lookup is PostgreSQL's own hash lookup: no allocation, no
/// sort, nothing that can raise.
#[derive(Default)]
pub struct SettingLookup {
    #[cfg(feature = "pg15")]
    found: std::cell::Cell<Option<(usize, *mut pg_sys::config_generic, *const c_char)>>,
    /// How many settings existed when it was last found absent: until that changes, it still
    /// is (setting it the first time adds a placeholder).
    #[cfg(feature = "pg15")]
    absent_at: std::cell::Cell<Option<usize>>,
}

impl SettingLookup {
    #[cfg(feature = "pg15")]
    fn is(var: *mut pg_sys::config_generic, name: &CStr) -> bool {
        // SAFETY: `var` is a live record of the settings array.
        let var = unsafe { &*var };
        var.vartype == pg_sys::config_type::PGC_STRING
            // SAFETY: every record's name is a NUL-terminated string it owns.
            && unsafe { CStr::from_ptr(var.name) }
                .to_bytes()
                .eq_ignore_ascii_case(name.to_bytes())
    }

    /// The current value of string setting `name` (always the same for one lookup), or None
    /// when there is no such setting or it has no value.
    #[cfg(feature = "pg15")]
    pub fn string_value(&self, name: &CStr) -> Option<&'static [u8]> {
        // SAFETY: the array and its records are valid until settings are next defined, which
        // cannot happen during this call; a cached slot is used only after it is confirmed.
        let var = unsafe {
            let (vars, count) = guc_variables();
            match self.found.get() {
                Some((i, var, var_name))
                    if i < count && *vars.add(i) == var && (*var).name == var_name =>
                {
                    var
                }
                _ => {
                    if self.absent_at.get() == Some(count) {
                        return None;
                    }
                    // The record, whatever its value: a placeholder made by RESET has none yet,
                    // and a later SET fills that same record in.
                    let Some(i) = (0..count).find(|&i| Self::is(*vars.add(i), name)) else {
                        self.absent_at.set(Some(count));
                        return None;
                    };
                    let var = *vars.add(i);
                    self.found.set(Some((i, var, (*var).name)));
                    var
                }
            }
        };
        // SAFETY: `var` is a string record (checked by `is`); its value pointer is NULL or a
        // NUL-terminated string that lives until the setting next changes.
        unsafe {
            let ptr = *(*var.cast::<pg_sys::config_string>()).variable;
            (!ptr.is_null()).then(|| CStr::from_ptr(ptr).to_bytes())
        }
    }

    #[cfg(not(feature = "pg15"))]
    pub fn string_value(&self, name: &CStr) -> Option<&'static [u8]> {
        // SAFETY: `name` is NUL-terminated; with missing_ok and without restrict_privileged
        // GetConfigOption cannot raise, and returns NULL or the value, which lives until the
        // setting next changes.
        unsafe {
            let ptr = raw_get_config_option(name.as_ptr(), true, false);
            (!ptr.is_null()).then(|| CStr::from_ptr(ptr).to_bytes())
        }
    }
}

/// The executor's run hook: PostgreSQL 18 dropped its `execute_once` argument. `before` runs
/// first, then the previous hook or the standard executor.
pub mod executor_run {
    use pgrx::pg_sys;

    static mut PREV: pg_sys::ExecutorRun_hook_type = None;
    static mut BEFORE: Option<fn()> = None;

    unsafe extern "C-unwind" {
        #[cfg(not(feature = "pg18"))]
        #[link_name = "standard_ExecutorRun"]
        fn standard(
            query_desc: *mut pg_sys::QueryDesc,
            direction: pg_sys::ScanDirection::Type,
            count: u64,
            execute_once: bool,
        );
        #[cfg(feature = "pg18")]
        #[link_name = "standard_ExecutorRun"]
        fn standard(
            query_desc: *mut pg_sys::QueryDesc,
            direction: pg_sys::ScanDirection::Type,
            count: u64,
        );
    }

    fn before() {
        // SAFETY: written once in `install`, during _PG_init, before any query runs.
        if let Some(f) = unsafe { BEFORE } {
            f();
        }
    }

    #[cfg(not(feature = "pg18"))]
    unsafe extern "C-unwind" fn hook(
        query_desc: *mut pg_sys::QueryDesc,
        direction: pg_sys::ScanDirection::Type,
        count: u64,
        execute_once: bool,
    ) {
        before();
        // SAFETY: PostgreSQL's arguments, passed on unchanged to the next hook in the chain.
        unsafe { PREV.unwrap_or(standard)(query_desc, direction, count, execute_once) }
    }

    #[cfg(feature = "pg18")]
    unsafe extern "C-unwind" fn hook(
        query_desc: *mut pg_sys::QueryDesc,
        direction: pg_sys::ScanDirection::Type,
        count: u64,
    ) {
        before();
        // SAFETY: PostgreSQL's arguments, passed on unchanged to the next hook in the chain.
        unsafe { PREV.unwrap_or(standard)(query_desc, direction, count) }
    }

    /// Installs the hook; call once, from _PG_init.
    pub fn install(f: fn()) {
        // SAFETY: _PG_init runs once per backend, single-threaded, before any query.
        unsafe {
            BEFORE = Some(f);
            PREV = pg_sys::ExecutorRun_hook;
            pg_sys::ExecutorRun_hook = Some(hook);
        }
    }
}
