//! Every difference between the PostgreSQL versions pg_rls_auth builds for (15, 16, 17, 18),
//! in one place, as pgvector keeps its version shims together. Elsewhere the code is the same
//! for every version.
//!
//! | what | 15 | 16, 17 | 18 |
//! |---|---|---|---|
//! | listing every setting | `get_guc_variables()` returns the sorted array | builds and sorts a new array per call | as 16 |
//! | reading another extension's setting per row | array slot found once, confirmed per call | `GetConfigOption` (a hash lookup) | as 16 |
//! | `ExecutorRun_hook` | takes `execute_once` | as 15 | no `execute_once` |
//! | `expression_tree_mutator` | a function | a macro over `expression_tree_mutator_impl` | as 16 |
//! | `heap_update` | HOT shown on the new tuple | also reports which indexes need entries | as 16 |
//! | `index_beginscan` | no instrumentation | as 15 | takes an instrumentation pointer |
//!
//! 16 is compiled only where a PostgreSQL 16 is installed, and is not tested (see README).

use crate::pg_raw;
use pgrx::pg_sys;
use std::ffi::CStr;

/// Every setting's record. On 16 and later this allocates and sorts a new array: call it only
/// off the per-row paths (library load, configuration reload).
///
/// # Safety
/// Backend main thread only; the records are valid until settings are next defined or removed.
/// On 16 and later this can raise ERROR (out of memory) without pgrx's guard: the caller's
/// frames must then hold nothing that needs dropping (no RefCell borrow, String, Rc...).
pub unsafe fn guc_variables() -> (*mut *mut pg_sys::config_generic, usize) {
    #[cfg(feature = "pg15")]
    // SAFETY: main thread (caller's obligation). On 15 these return the static array
    // `guc_variables` and its length: no allocation, nothing that can raise. The array holds
    // `count` valid record pointers until a setting is next added or removed.
    unsafe {
        (
            pg_raw::get_guc_variables(),
            pg_raw::get_num_config_options() as usize,
        )
    }
    #[cfg(not(feature = "pg15"))]
    {
        let mut count = 0;
        // SAFETY: main thread (caller's obligation); `count` is a valid out-parameter. It
        // returns a new array of `count` record pointers, palloc'd in CurrentMemoryContext
        // and sorted; the records themselves live in the GUC hash table. The palloc can raise
        // ERROR (out of memory), which longjmps past the callers unguarded (see # Safety).
        let vars = unsafe { pg_raw::get_guc_variables(&mut count) };
        (vars, count as usize)
    }
}

/// Where setting `name`'s current value came from (a file, a role's settings, SET…), found
/// without regard to case and without allocating: None when there is no such setting.
pub fn setting_source(name: &CStr) -> Option<pg_sys::GucSource::Type> {
    #[cfg(feature = "pg15")]
    // SAFETY: on 15 `guc_variables` is the static array (no allocation, cannot raise); each of
    // its `count` records is live and has a NUL-terminated name while this loop runs.
    unsafe {
        let (vars, count) = guc_variables();
        (0..count)
            .map(|i| &**vars.add(i))
            .find(|var| {
                CStr::from_ptr(var.name)
                    .to_bytes()
                    .eq_ignore_ascii_case(name.to_bytes())
            })
            .map(|var| var.source)
    }
    #[cfg(not(feature = "pg15"))]
    // SAFETY: `name` is NUL-terminated; without placeholders and with skip_errors find_option
    // only searches the settings hash table (case-insensitively) and returns NULL when the name
    // is unknown: it neither allocates nor raises. The record it returns is live.
    unsafe {
        let var = pg_raw::find_option(
            name.as_ptr(),
            false,
            true,
            pgrx::PgLogLevel::ERROR as std::ffi::c_int,
        );
        (!var.is_null()).then(|| (*var).source)
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
    found: std::cell::Cell<Option<(usize, *mut pg_sys::config_generic, *const std::ffi::c_char)>>,
    /// How many settings existed when it was last found absent: until that changes, it still
    /// is (setting it the first time adds a placeholder).
    #[cfg(feature = "pg15")]
    absent_at: std::cell::Cell<Option<usize>>,
}

impl SettingLookup {
    /// `var` must be a record pointer just read from the current settings array.
    #[cfg(feature = "pg15")]
    fn is(var: *mut pg_sys::config_generic, name: &CStr) -> bool {
        // SAFETY: the only caller passes `*vars.add(i)` with i < count, read from the array
        // in the same call: a live record, not mutated while this shared reference lives
        // (nothing here calls into PostgreSQL).
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
        // SAFETY: main thread (a per-row V1 call). On 15 `guc_variables` returns the static
        // array without allocating, and nothing here can raise or define a setting, so the
        // array and its records stay valid during this call. Every index is < count. A cached
        // record is dereferenced (for its name) only after `*vars.add(i) == var` shows it is
        // still in the array at that slot (`&&` short-circuits). Assumed: a record freed and
        // another allocated at the same address, with its name at the same address, in the
        // same slot (ABA) does not happen; its type would not be checked again below.
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
        // SAFETY: `var` is a live PGC_STRING record (checked by `is` when found, confirmed by
        // slot and name when cached), so it is a config_string whose `variable` points to the
        // value's `char *`: NULL or a NUL-terminated string owned by the GUC machinery. It
        // lives until the setting next changes, so `'static` is an assumption: the caller
        // (`session::fallback_session`) compares or copies it before anything can SET it.
        unsafe {
            let ptr = *(*var.cast::<pg_sys::config_string>()).variable;
            (!ptr.is_null()).then(|| CStr::from_ptr(ptr).to_bytes())
        }
    }

    #[cfg(not(feature = "pg15"))]
    pub fn string_value(&self, name: &CStr) -> Option<&'static [u8]> {
        // SAFETY: main thread; `name` is NUL-terminated. With missing_ok and without
        // restrict_privileged, GetConfigOption is a hash lookup that cannot raise (raw call,
        // no allocation); it returns NULL or the value. For a string setting that is the
        // setting's own string, which lives until it next changes (`'static` is assumed as
        // in the 15 version); for a non-string one it would be a static buffer overwritten
        // by the next call (the names looked up, request.jwt.*, are string settings).
        unsafe {
            let ptr = pg_raw::get_config_option(name.as_ptr(), true, false);
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
        // SAFETY: read by value on the main thread; written only once, in `install` during
        // _PG_init, before any query runs.
        if let Some(f) = unsafe { BEFORE } {
            f();
        }
    }

    /// # Safety
    /// Called only by PostgreSQL as ExecutorRun_hook, on the main thread, with the executor's
    /// valid arguments.
    #[cfg(not(feature = "pg18"))]
    unsafe extern "C-unwind" fn hook(
        query_desc: *mut pg_sys::QueryDesc,
        direction: pg_sys::ScanDirection::Type,
        count: u64,
        execute_once: bool,
    ) {
        before();
        // SAFETY: PostgreSQL's arguments (caller's obligation), passed on unchanged to the
        // hook installed before ours or to standard_ExecutorRun, whose contract they meet.
        // PREV is read by value; it is written only in `install`. This is a raw call: an
        // ERROR in the executor longjmps past this frame, which holds nothing that needs
        // dropping (`before`, which runs under its own #[pg_guard], has returned).
        unsafe { PREV.unwrap_or(standard)(query_desc, direction, count, execute_once) }
    }

    /// # Safety
    /// Called only by PostgreSQL as ExecutorRun_hook, on the main thread, with the executor's
    /// valid arguments.
    #[cfg(feature = "pg18")]
    unsafe extern "C-unwind" fn hook(
        query_desc: *mut pg_sys::QueryDesc,
        direction: pg_sys::ScanDirection::Type,
        count: u64,
    ) {
        before();
        // SAFETY: PostgreSQL's arguments (caller's obligation), passed on unchanged to the
        // hook installed before ours or to standard_ExecutorRun, whose contract they meet.
        // PREV is read by value; it is written only in `install`. This is a raw call: an
        // ERROR in the executor longjmps past this frame, which holds nothing that needs
        // dropping (`before`, which runs under its own #[pg_guard], has returned).
        unsafe { PREV.unwrap_or(standard)(query_desc, direction, count) }
    }

    /// Installs the hook; call once, from _PG_init.
    pub fn install(f: fn()) {
        // SAFETY: _PG_init runs once per process, on the main thread, before any query, so
        // nothing reads these statics concurrently. The previous hook is saved before ours is
        // installed and is always called from `hook`: the chain stays intact. Plain writes.
        unsafe {
            BEFORE = Some(f);
            PREV = pg_sys::ExecutorRun_hook;
            pg_sys::ExecutorRun_hook = Some(hook);
        }
    }
}

/// A tree mutator callback, as PostgreSQL calls it.
pub type Mutator =
    unsafe extern "C-unwind" fn(*mut pg_sys::Node, *mut std::ffi::c_void) -> *mut pg_sys::Node;

/// PostgreSQL's `expression_tree_mutator`: a function on 15 (declared without a prototype for
/// its callback), a macro over `expression_tree_mutator_impl` from 16 on.
///
/// # Safety
/// As the C function's: `node` is NULL or a valid expression tree, and `mutator` accepts
/// `context`. The call is pgrx's guarded wrapper: an ERROR is a panic for the caller's guard.
pub unsafe fn expression_tree_mutator(
    node: *mut pg_sys::Node,
    mutator: Mutator,
    context: *mut std::ffi::c_void,
) -> *mut pg_sys::Node {
    #[cfg(feature = "pg15")]
    // SAFETY: caller's obligation. On 15 the binding declares the callback as a function of no
    // arguments (C's `Node *(*)()`), which C calls as `mutator(node, context)`: the same
    // function pointer, only its Rust type differs.
    unsafe {
        let callback = std::mem::transmute::<
            Mutator,
            unsafe extern "C-unwind" fn() -> *mut pg_sys::Node,
        >(mutator);
        pg_sys::expression_tree_mutator(node, Some(callback), context)
    }
    #[cfg(not(feature = "pg15"))]
    // SAFETY: caller's obligation; the callback type is the one PostgreSQL declares.
    unsafe {
        pg_sys::expression_tree_mutator_impl(node, Some(mutator), context)
    }
}

/// Starts a scan of `index` on `heap` with `nkeys` keys (set by `index_rescan`).
///
/// # Safety
/// As `pg_sys::index_beginscan`: main thread, in a transaction, both relations open and locked,
/// `snapshot` valid until the scan ends. Guarded wrapper: an ERROR becomes a panic.
pub unsafe fn index_beginscan(
    heap: pg_sys::Relation,
    index: pg_sys::Relation,
    snapshot: pg_sys::Snapshot,
    nkeys: std::ffi::c_int,
) -> pg_sys::IndexScanDesc {
    #[cfg(not(feature = "pg18"))]
    // SAFETY: the caller's obligations.
    unsafe {
        pg_sys::index_beginscan(heap, index, snapshot, nkeys, 0)
    }
    #[cfg(feature = "pg18")]
    // SAFETY: the caller's obligations; no instrumentation (NULL is allowed).
    unsafe {
        pg_sys::index_beginscan(heap, index, snapshot, std::ptr::null_mut(), nkeys, 0)
    }
}

/// `heap_update` of the tuple at `otid` to `newtup` in command `cid`, without a crosscheck
/// snapshot: the result, and whether the new version needs index entries (it is not a HOT
/// update). It waits for any other transaction that holds the tuple: callers lock it first.
///
/// # Safety
/// As `pg_sys::heap_update`: main thread, in a transaction that may write and is not in parallel
/// mode; `heap` open with RowExclusiveLock; `newtup` formed with `heap`'s descriptor; the tuple
/// at `otid` visible to `cid` (else it raises). Guarded wrapper: an ERROR becomes a panic.
pub unsafe fn heap_update(
    heap: pg_sys::Relation,
    otid: pg_sys::ItemPointer,
    newtup: pg_sys::HeapTuple,
    cid: pg_sys::CommandId,
) -> (pg_sys::TM_Result::Type, bool) {
    let mut failure = pg_sys::TM_FailureData::default();
    let mut lock_mode = pg_sys::LockTupleMode::LockTupleExclusive;
    #[cfg(feature = "pg15")]
    // SAFETY: the caller's obligations; `failure` and `lock_mode` are valid out-parameters.
    // On 15 a HOT update marks the new tuple heap-only (HEAP_ONLY_TUPLE in t_infomask2).
    unsafe {
        let result = pg_sys::heap_update(
            heap,
            otid,
            newtup,
            cid,
            std::ptr::null_mut(),
            true,
            &mut failure,
            &mut lock_mode,
        );
        let heap_only = (*(*newtup).t_data).t_infomask2 & pg_sys::HEAP_ONLY_TUPLE as u16 != 0;
        (result, !heap_only)
    }
    #[cfg(not(feature = "pg15"))]
    // SAFETY: the caller's obligations; `failure`, `lock_mode` and `indexes` are valid
    // out-parameters.
    unsafe {
        let mut indexes = pg_sys::TU_UpdateIndexes::TU_All;
        let result = pg_sys::heap_update(
            heap,
            otid,
            newtup,
            cid,
            std::ptr::null_mut(),
            true,
            &mut failure,
            &mut lock_mode,
            &mut indexes,
        );
        (result, indexes == pg_sys::TU_UpdateIndexes::TU_All)
    }
}
