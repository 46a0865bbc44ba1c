//! Executor and utility hooks: at every point where PostgreSQL may start parallel workers
//! (the executor's start and run, which launches a Gather's workers, and utility statements
//! such as a parallel CREATE INDEX) a session ended by a failed auth.jwt_session_init() or a
//! revocation is cleared from the setting parallel workers inherit, so they see exactly the
//! leader's session. The run hook matters for portals: one started before the failed init runs
//! after it. Executor start also checks the session against the revocations (`revocation`).
//!
//! The hooks sit in the path of every statement, so an error raised further down must reach
//! PostgreSQL exactly as it was raised. They therefore call the next hook through raw C
//! declarations, not pgrx's guarded wrappers (which would catch the error and re-raise a copy),
//! and hold nothing that needs dropping while they do: an error unwinds past them untouched.
//! An error of their own work is raised with the client's statement hidden from the log.

use crate::errors::Raise;
use crate::session;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::Cell;
use std::ffi::c_char;
use std::panic::AssertUnwindSafe;

static mut PREV_EXECUTOR_START: pg_sys::ExecutorStart_hook_type = None;
static mut PREV_PROCESS_UTILITY: pg_sys::ProcessUtility_hook_type = None;

thread_local! {
    /// What `guarded_before_statement` failed with, raised once its guard has returned.
    static FAILED: Cell<Option<Raise>> = const { Cell::new(None) };
}

/// `session::before_statement`, then any error it met raised with the statement hidden: the
/// statement is the client's and may hold a token (`SELECT auth.jwt_session_init('ey…')`),
/// and PostgreSQL would otherwise log it with the error. `check_revocation` only at executor
/// start: the check reads a table, which takes a snapshot, and a utility statement such as
/// `BEGIN ISOLATION LEVEL SERIALIZABLE` or `SET TRANSACTION SNAPSHOT` must run before any
/// snapshot is taken.
fn before_statement_checked(check_revocation: bool) {
    guarded_before_statement(check_revocation);
    if let Some(failed) = FAILED.take() {
        // SAFETY: main thread (a hook), outside any pgrx guard (`guarded_before_statement`
        // has returned). `failed` moves into `raise`, which drops it before errfinish; this
        // frame then holds nothing, and our hook callers (`executor_start`, `process_utility`,
        // the ExecutorRun shim) hold only Copy values.
        unsafe { crate::errors::raise(failed, true) }
    }
}

#[pg_guard]
extern "C-unwind" fn guarded_before_statement(check_revocation: bool) {
    // Not in an aborted transaction block, where only ROLLBACK may run.
    // SAFETY: main thread (a hook); IsTransactionState only reads the current transaction's
    // state and cannot raise; it is the guarded wrapper, under this function's #[pg_guard].
    if !unsafe { pg_sys::IsTransactionState() } {
        return;
    }
    // An ERROR caught here (ours, PostgreSQL's inside our work, or a panic) is raised again at
    // once by the caller, which aborts the transaction as the original would have.
    let failed = PgTryBuilder::new(AssertUnwindSafe(|| {
        session::before_statement(check_revocation).err()
    }))
    .catch_others(|caught| Some(Raise::from_caught(caught)))
    .execute();
    FAILED.set(failed);
}

/// # Safety
/// Called only by PostgreSQL as ExecutorStart_hook, on the main thread, with the executor's
/// valid arguments.
unsafe extern "C-unwind" fn executor_start(query_desc: *mut pg_sys::QueryDesc, eflags: i32) {
    before_statement_checked(true);
    // SAFETY: PostgreSQL's arguments (caller's obligation), passed on unchanged to the hook
    // installed before ours or to standard_ExecutorStart, whose contract they meet.
    // PREV_EXECUTOR_START is read by value; it is written only in `init` (_PG_init). An ERROR
    // there longjmps past this frame, which holds nothing that needs dropping
    // (`guarded_before_statement` has returned); when we run under SPI from a guarded call,
    // it lands in that call's pgrx boundary instead, still skipping only this frame.
    unsafe {
        match PREV_EXECUTOR_START {
            Some(prev) => prev(query_desc, eflags),
            None => crate::pg_raw::standard_executor_start(query_desc, eflags),
        }
    }
}

/// # Safety
/// Called only by PostgreSQL as ProcessUtility_hook, on the main thread, with valid arguments.
#[allow(clippy::too_many_arguments)]
unsafe extern "C-unwind" fn process_utility(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    before_statement_checked(false);
    // SAFETY: PostgreSQL's arguments (caller's obligation), passed on unchanged to the hook
    // installed before ours or to standard_ProcessUtility, whose contract they meet.
    // PREV_PROCESS_UTILITY is read by value; it is written only in `init` (_PG_init). An
    // ERROR there longjmps past this frame, which holds nothing that needs dropping.
    unsafe {
        let next = PREV_PROCESS_UTILITY.unwrap_or(crate::pg_raw::standard_process_utility);
        next(
            pstmt,
            query_string,
            read_only_tree,
            context,
            params,
            query_env,
            dest,
            qc,
        )
    }
}

/// Runs before every executor start and run and every utility statement.
fn before_statement() {
    before_statement_checked(false);
}

pub fn init() {
    crate::pg_versions::executor_run::install(before_statement);
    // SAFETY: called once, from _PG_init on the main thread, before any query: nothing reads
    // these statics concurrently. Each previous hook is saved before ours is installed and
    // our hooks always call it, so the chain stays intact. Plain writes: nothing can raise.
    unsafe {
        PREV_EXECUTOR_START = pg_sys::ExecutorStart_hook;
        pg_sys::ExecutorStart_hook = Some(executor_start);
        PREV_PROCESS_UTILITY = pg_sys::ProcessUtility_hook;
        pg_sys::ProcessUtility_hook = Some(process_utility);
    }
}
