//! Hoisting session calls. A policy written `owner_id = auth.user_id()` calls the accessor once
//! per row; written `owner_id = (SELECT auth.user_id())` the planner makes the call an initplan,
//! run once per execution, whose value can also drive an index scan. With
//! `pg_rls_auth.hoist_session_calls` on, a planner hook rewrites the first form into the second
//! before planning, in every query: policy quals are in the query by then (the rewriter adds
//! them), so every policy benefits. The value is an initplan parameter, computed afresh at each
//! execution and never a constant in the plan, so a cached generic plan serves the next user
//! correctly.
//!
//! What is hoisted: the largest expressions built only from constants, session accessors and
//! non-volatile operators, functions and casts over them, that call at least one accessor (so
//! `auth.jwt() ->> 'org'` and `auth.claim('x')::uuid` are one initplan each). Anything reading a
//! column or a parameter (`auth.claim(col)`), anything volatile (`check_write_rate`, which must
//! count every row) and set-returning calls stay where they are.
//!
//! Where: WHERE and JOIN conditions, HAVING, policies (security quals and WITH CHECK options),
//! and output columns that no GROUP BY, ORDER BY, DISTINCT or window refers to (those are
//! matched against each other by the parser's decisions, which a rewrite must not disturb),
//! in the query and every sub-query. Not: queries without FROM (their expressions run once
//! anyway), VALUES lists, function calls in FROM, RETURNING, ON CONFLICT, MERGE actions. SQL functions that the planner inlines are expanded after this
//! hook, so calls inside them stay per row (a non-inlined function's own queries are hoisted
//! when they are planned).

use crate::guc;
use crate::pg_versions;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgList;
use std::ffi::{c_char, c_int, c_void, CStr};

static mut PREV_PLANNER: pg_sys::planner_hook_type = None;

/// The C symbols of the session accessors. A function is one when it is a C function of this
/// library with one of these symbols, whatever its name or schema: only a superuser can create
/// a C function.
const ACCESSOR_SYMBOLS: &[&[u8]] = &[
    b"auth_user_id",
    b"auth_uid",
    b"auth_claim",
    b"auth_session",
    b"auth_jwt",
    b"auth_role",
    b"auth_email",
    b"auth_organization",
    b"auth_organization_id",
    b"auth_organization_uuid",
];

/// pg_language's OID for C (fixed in the catalog's initial data).
const C_LANGUAGE: pg_sys::Oid = pg_sys::Oid::from_u32(13);

pub fn init() {
    // SAFETY: called once, from _PG_init on the main thread, before any query: nothing reads
    // the static concurrently. The previous hook is saved before ours is installed and ours
    // always calls it, so the chain stays intact. Plain writes: nothing can raise.
    unsafe {
        PREV_PLANNER = pg_sys::planner_hook;
        pg_sys::planner_hook = Some(planner);
    }
}

/// # Safety
/// Called only by PostgreSQL as planner_hook, on the main thread, with the planner's valid
/// arguments.
unsafe extern "C-unwind" fn planner(
    parse: *mut pg_sys::Query,
    query_string: *const c_char,
    cursor_options: c_int,
    bound_params: pg_sys::ParamListInfo,
) -> *mut pg_sys::PlannedStmt {
    if guc::HOIST_SESSION_CALLS.get() {
        hoist_guarded(parse);
    }
    // SAFETY: PostgreSQL's arguments (caller's obligation), passed on to the hook installed
    // before ours or to standard_planner, whose contract they meet (`parse` is still a valid
    // Query: hoisting only replaces expressions in it). PREV_PLANNER is read by value; it is
    // written only in `init`. An ERROR there longjmps past this frame, which holds nothing
    // that needs dropping (`hoist_guarded` has returned).
    unsafe {
        match PREV_PLANNER {
            Some(prev) => prev(parse, query_string, cursor_options, bound_params),
            None => {
                crate::pg_raw::standard_planner(parse, query_string, cursor_options, bound_params)
            }
        }
    }
}

#[pg_guard]
extern "C-unwind" fn hoist_guarded(parse: *mut pg_sys::Query) {
    // SAFETY: `parse` is the planner's valid, rewritten Query, which the planner is about to
    // modify in place anyway (callers that keep a query plan a copy). Errors (out of memory,
    // catalog access) are panics for this function's guard.
    unsafe { hoist_query(parse) }
}

/// Hoists accessor calls in `query` and its sub-queries, in place.
///
/// # Safety
/// `query` is a valid Query of a tree being planned, in a memory context that lives as long.
unsafe fn hoist_query(query: *mut pg_sys::Query) {
    // SAFETY: caller's obligation: a valid Query whose fields are valid trees (or NULL/NIL);
    // each cast follows PostgreSQL's declared node types for those fields. New expressions
    // replace old ones in place; the lists themselves are not reshaped.
    unsafe {
        let q = &mut *query;
        // Without a FROM list the query's own expressions run once anyway; leaving them alone
        // also keeps PL/pgSQL's simple expressions (which it recognises before planning and
        // then evaluates from the plan's target list, without initplans) what it expects.
        let here = !q.rtable.is_null();
        let mut hoisted = false;
        for rte in PgList::<pg_sys::RangeTblEntry>::from_pg(q.rtable).iter_ptr() {
            if (*rte).rtekind == pg_sys::RTEKind::RTE_SUBQUERY && !(*rte).subquery.is_null() {
                hoist_query((*rte).subquery);
            }
            hoisted |= hoist_list((*rte).securityQuals, here);
        }
        for cte in PgList::<pg_sys::CommonTableExpr>::from_pg(q.cteList).iter_ptr() {
            let inner = (*cte).ctequery;
            if !inner.is_null() && (*inner).type_ == pg_sys::NodeTag::T_Query {
                hoist_query(inner.cast());
            }
        }
        hoisted |= hoist_jointree(q.jointree.cast(), here);
        hoisted |= hoist_field(&mut q.havingQual, here);
        for tle in PgList::<pg_sys::TargetEntry>::from_pg(q.targetList).iter_ptr() {
            if (*tle).ressortgroupref == 0 && !(*tle).resjunk {
                let mut expr = (*tle).expr.cast::<pg_sys::Node>();
                hoisted |= hoist_field(&mut expr, here);
                (*tle).expr = expr.cast();
            }
        }
        for wco in PgList::<pg_sys::WithCheckOption>::from_pg(q.withCheckOptions).iter_ptr() {
            hoisted |= hoist_field(&mut (*wco).qual, here);
        }
        if hoisted {
            q.hasSubLinks = true;
        }
    }
}

/// The join tree's conditions (FROM … JOIN … ON, WHERE).
///
/// # Safety
/// `node` is NULL or a valid FromExpr, JoinExpr or RangeTblRef.
unsafe fn hoist_jointree(node: *mut pg_sys::Node, here: bool) -> bool {
    if node.is_null() {
        return false;
    }
    // SAFETY: caller's obligation; the casts follow the node's tag.
    unsafe {
        match (*node).type_ {
            pg_sys::NodeTag::T_FromExpr => {
                let from = node.cast::<pg_sys::FromExpr>();
                let mut hoisted = false;
                for item in PgList::<pg_sys::Node>::from_pg((*from).fromlist).iter_ptr() {
                    hoisted |= hoist_jointree(item, here);
                }
                hoisted | hoist_field(&mut (*from).quals, here)
            }
            pg_sys::NodeTag::T_JoinExpr => {
                let join = node.cast::<pg_sys::JoinExpr>();
                let left = hoist_jointree((*join).larg, here);
                let right = hoist_jointree((*join).rarg, here);
                left | right | hoist_field(&mut (*join).quals, here)
            }
            _ => false,
        }
    }
}

/// Each element of an implicitly-ANDed list (security quals), replaced in place.
///
/// # Safety
/// `list` is NIL or a valid List of expression nodes.
unsafe fn hoist_list(list: *mut pg_sys::List, here: bool) -> bool {
    if list.is_null() {
        return false;
    }
    let mut hoisted = false;
    // SAFETY: caller's obligation: a valid List of `length` pointer cells.
    unsafe {
        for i in 0..(*list).length as usize {
            let cell = (*list).elements.add(i);
            let mut expr = (*cell).ptr_value.cast::<pg_sys::Node>();
            hoisted |= hoist_field(&mut expr, here);
            (*cell).ptr_value = expr.cast();
        }
    }
    hoisted
}

/// What `mutate` is told and tells: whether to hoist at this query level (otherwise it only
/// looks for sub-queries), and whether it did.
struct Mutation {
    here: bool,
    hoisted: bool,
    /// How deep the mutator is in the expression now.
    depth: u32,
}

/// How deep hoisting looks into an expression (the mutator and `hoistable` together): as
/// deep as people write. Deeper parts are planned as written, so an expression of any depth
/// plans as it would without the hook, never failing at the stack limit in our recursion.
const MAX_DEPTH: u32 = 100;

/// Rewrites the expression in `field`; true when anything was hoisted at this level.
///
/// # Safety
/// `*field` is NULL or a valid expression tree.
unsafe fn hoist_field(field: &mut *mut pg_sys::Node, here: bool) -> bool {
    if field.is_null() {
        return false;
    }
    let mut m = Mutation {
        here,
        hoisted: false,
        depth: 0,
    };
    // SAFETY: caller's obligation; `mutate` receives `m` as its context and only while this
    // call runs.
    *field = unsafe { mutate(*field, (&mut m as *mut Mutation).cast()) };
    m.hoisted
}

/// The tree mutator: a hoistable expression becomes a sub-select of itself; any other node is
/// copied with its children mutated; a sub-query is hoisted in place.
///
/// # Safety
/// Called by `hoist_field` and by PostgreSQL's expression_tree_mutator with a valid node or
/// NULL and a context that is a `*mut Mutation`.
#[pg_guard]
unsafe extern "C-unwind" fn mutate(
    node: *mut pg_sys::Node,
    context: *mut c_void,
) -> *mut pg_sys::Node {
    if node.is_null() {
        return node;
    }
    // SAFETY: caller's obligation (valid node, `context` a live Mutation). The mutator
    // function is pgrx's guarded wrapper: an ERROR is a panic for this function's guard.
    unsafe {
        if (*node).type_ == pg_sys::NodeTag::T_Query {
            hoist_query(node.cast());
            return node;
        }
        let m = context.cast::<Mutation>();
        if (*m).depth >= MAX_DEPTH {
            return node;
        }
        if (*m).here
            && hoistable(node, (*m).depth) == Some(true)
            && !pg_sys::contain_volatile_functions(node)
        {
            (*m).hoisted = true;
            return sub_select(node);
        }
        (*m).depth += 1;
        let mutated = pg_versions::expression_tree_mutator(node, mutate, context);
        (*m).depth -= 1;
        mutated
    }
}

/// Whether `node` may be evaluated once per execution: Some(true) when it calls an accessor,
/// Some(false) when it is constant, None when it depends on anything else (a column, a
/// parameter, a sub-select, an aggregate, a set-returning call, a node kind not listed).
/// Volatility is checked by the caller, once, on the whole expression. `depth` is how deep
/// `node` lies; None below MAX_DEPTH.
///
/// # Safety
/// `node` is NULL or a valid expression tree.
unsafe fn hoistable(node: *mut pg_sys::Node, depth: u32) -> Option<bool> {
    if node.is_null() {
        return Some(false);
    }
    if depth >= MAX_DEPTH {
        return None;
    }
    // The mutator asks this at every level of an expression: stay cancellable.
    pgrx::check_for_interrupts!();
    let depth = depth + 1;
    // SAFETY: caller's obligation; each cast follows the node's tag and reads only the fields
    // PostgreSQL declares for it.
    unsafe {
        let all = |args: *mut pg_sys::List| -> Option<bool> {
            PgList::<pg_sys::Node>::from_pg(args)
                .iter_ptr()
                .try_fold(false, |calls, arg| Some(calls | hoistable(arg, depth)?))
        };
        match (*node).type_ {
            pg_sys::NodeTag::T_Const => Some(false),
            pg_sys::NodeTag::T_FuncExpr => {
                let f = node.cast::<pg_sys::FuncExpr>();
                if (*f).funcretset {
                    return None;
                }
                let args = all((*f).args)?;
                Some(args || is_accessor((*f).funcid))
            }
            pg_sys::NodeTag::T_OpExpr
            | pg_sys::NodeTag::T_DistinctExpr
            | pg_sys::NodeTag::T_NullIfExpr => {
                let op = node.cast::<pg_sys::OpExpr>();
                if (*op).opretset {
                    return None;
                }
                all((*op).args)
            }
            pg_sys::NodeTag::T_ScalarArrayOpExpr => {
                all((*node.cast::<pg_sys::ScalarArrayOpExpr>()).args)
            }
            pg_sys::NodeTag::T_BoolExpr => all((*node.cast::<pg_sys::BoolExpr>()).args),
            pg_sys::NodeTag::T_CoalesceExpr => all((*node.cast::<pg_sys::CoalesceExpr>()).args),
            pg_sys::NodeTag::T_RelabelType => {
                hoistable((*node.cast::<pg_sys::RelabelType>()).arg.cast(), depth)
            }
            pg_sys::NodeTag::T_CoerceViaIO => {
                hoistable((*node.cast::<pg_sys::CoerceViaIO>()).arg.cast(), depth)
            }
            pg_sys::NodeTag::T_CollateExpr => {
                hoistable((*node.cast::<pg_sys::CollateExpr>()).arg.cast(), depth)
            }
            pg_sys::NodeTag::T_NullTest => {
                hoistable((*node.cast::<pg_sys::NullTest>()).arg.cast(), depth)
            }
            pg_sys::NodeTag::T_BooleanTest => {
                hoistable((*node.cast::<pg_sys::BooleanTest>()).arg.cast(), depth)
            }
            _ => None,
        }
    }
}

/// Whether `funcid` is one of this library's session accessors (see ACCESSOR_SYMBOLS).
fn is_accessor(funcid: pg_sys::Oid) -> bool {
    // SAFETY: main thread, inside a transaction (planning), as syscache lookups need. The
    // tuple is released before returning and read only while held; prosrc and probin are
    // non-null text columns for C functions (checked anyway), copied out by text_to_cstring.
    // The calls are pgrx's guarded wrappers: an ERROR (catalog access, out of memory) is a
    // panic for the caller's guard, and only Copy values and a pinned tuple are live (a panic
    // leaves the tuple to the transaction's resource owner, which releases it at abort).
    unsafe {
        let tuple = pg_sys::SearchSysCache1(
            pg_sys::SysCacheIdentifier::PROCOID as c_int,
            pg_sys::Datum::from(funcid),
        );
        if tuple.is_null() {
            return false;
        }
        let form = pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_proc>(tuple);
        let found = (*form).prolang == C_LANGUAGE
            && text_column_is(tuple, pg_sys::Anum_pg_proc_prosrc, |symbol| {
                ACCESSOR_SYMBOLS.contains(&symbol)
            })
            && text_column_is(tuple, pg_sys::Anum_pg_proc_probin, |library| {
                library.ends_with(b"/pg_rls_auth") || library == b"pg_rls_auth"
            });
        pg_sys::ReleaseSysCache(tuple);
        found
    }
}

/// Whether a text column of a pg_proc syscache tuple is non-null and satisfies `test`.
///
/// # Safety
/// `tuple` is a pg_proc tuple held from the PROCOID syscache.
unsafe fn text_column_is(
    tuple: pg_sys::HeapTuple,
    attribute: u32,
    test: impl Fn(&[u8]) -> bool,
) -> bool {
    let mut is_null = false;
    // SAFETY: caller's obligation; the attribute number is pg_proc's; a non-null value is a
    // text datum, which text_to_cstring copies into the current (planner's) context; the copy
    // is read here and freed.
    unsafe {
        let datum = pg_sys::SysCacheGetAttr(
            pg_sys::SysCacheIdentifier::PROCOID as c_int,
            tuple,
            attribute as pg_sys::AttrNumber,
            &mut is_null,
        );
        if is_null {
            return false;
        }
        let copy = pg_sys::text_to_cstring(datum.cast_mut_ptr());
        let matches = test(CStr::from_ptr(copy).to_bytes());
        pg_sys::pfree(copy.cast());
        matches
    }
}

/// `(SELECT expr)`: an uncorrelated scalar sub-select, which the planner turns into an initplan.
///
/// # Safety
/// `expr` is a valid expression without Vars, Params or aggregates (it passed `hoistable`).
unsafe fn sub_select(expr: *mut pg_sys::Node) -> *mut pg_sys::Node {
    // SAFETY: the nodes are zeroed (palloc0) in the current memory context, the planner's,
    // and given their tags; every field not set here is zero/NULL/NIL/false as makeNode
    // leaves it. The palloc calls are guarded (out of memory is a panic for the caller's
    // guard).
    unsafe {
        let query = pg_sys::palloc0(size_of::<pg_sys::Query>()).cast::<pg_sys::Query>();
        (*query).type_ = pg_sys::NodeTag::T_Query;
        (*query).commandType = pg_sys::CmdType::CMD_SELECT;
        (*query).querySource = pg_sys::QuerySource::QSRC_ORIGINAL;
        (*query).canSetTag = true;
        (*query).jointree = pg_sys::makeFromExpr(std::ptr::null_mut(), std::ptr::null_mut());
        let entry = pg_sys::makeTargetEntry(expr.cast(), 1, std::ptr::null_mut(), false);
        (*query).targetList = pg_sys::lappend(std::ptr::null_mut(), entry.cast());

        let link = pg_sys::palloc0(size_of::<pg_sys::SubLink>()).cast::<pg_sys::SubLink>();
        (*link).xpr.type_ = pg_sys::NodeTag::T_SubLink;
        (*link).subLinkType = pg_sys::SubLinkType::EXPR_SUBLINK;
        (*link).subselect = query.cast();
        (*link).location = -1;
        link.cast()
    }
}
