//! auth.lint(): Row Level Security findings read from the catalogs, one row per finding, with
//! a DDL fix where one exists. Policies are read as expression trees (`pg_policy.polqual` and
//! `polwithcheck` through `stringToNode`), never as text; the extension's own functions are
//! found through `pg_depend`, so a look-alike `auth.uid()` another role created is not one of
//! them. Everything runs with the caller's rights and reads only catalogs every role may read,
//! with `search_path` pinned to pg_catalog: nothing another role created is looked up by name.

use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use std::collections::{HashMap, HashSet};
use std::ffi::{c_void, CString};

/// Objects outside these schemas are linted (the system's and the extension's own are not).
const USER_RELATIONS: &str = "c.relnamespace OPERATOR(pg_catalog.<>) ALL (ARRAY(
    SELECT n.oid FROM pg_catalog.pg_namespace n WHERE n.nspname IN
    ('pg_catalog', 'information_schema', 'pg_toast', '_pg_rls_auth')))
    AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
        AND d.objid = c.oid AND d.deptype = 'e')";

/// Roles that policies bind: not superusers, not BYPASSRLS (0 is PUBLIC).
const CLIENT: &str = "(g.grantee = 0 OR EXISTS (SELECT FROM pg_catalog.pg_roles r
    WHERE r.oid = g.grantee AND NOT r.rolsuper AND NOT r.rolbypassrls))";

/// Each catalog-only check: (severity, code, query returning object, detail, fix).
const CATALOG_CHECKS: &[(&str, &str, &str)] = &[
    (
        "error",
        "rls_disabled",
        "SELECT DISTINCT c.oid::pg_catalog.regclass::text,
            'client roles may read or write it, and row level security is off',
            pg_catalog.format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY;', c.oid::pg_catalog.regclass)
         FROM pg_catalog.pg_class c,
              LATERAL pg_catalog.aclexplode(COALESCE(c.relacl, pg_catalog.acldefault('r', c.relowner))) g
         WHERE c.relkind IN ('r', 'p') AND NOT c.relrowsecurity AND USER_RELATIONS
           AND g.grantee <> c.relowner AND CLIENT
           AND g.privilege_type IN ('SELECT', 'INSERT', 'UPDATE', 'DELETE')
           AND CASE WHEN g.grantee = 0
               THEN EXISTS (SELECT FROM pg_catalog.pg_namespace n,
                   LATERAL pg_catalog.aclexplode(COALESCE(n.nspacl, pg_catalog.acldefault('n', n.nspowner))) s
                   WHERE n.oid = c.relnamespace AND s.grantee = 0 AND s.privilege_type = 'USAGE')
               ELSE pg_catalog.has_schema_privilege(g.grantee, c.relnamespace, 'USAGE') END",
    ),
    (
        "info",
        "rls_enabled_no_policy",
        "SELECT c.oid::pg_catalog.regclass::text,
            'row level security is on and no policy exists: client roles see and change nothing',
            NULL
         FROM pg_catalog.pg_class c
         WHERE c.relkind IN ('r', 'p') AND c.relrowsecurity AND USER_RELATIONS
           AND NOT EXISTS (SELECT FROM pg_catalog.pg_policy p WHERE p.polrelid = c.oid)",
    ),
    (
        "warning",
        "multiple_permissive_policies",
        "SELECT c.oid::pg_catalog.regclass::text,
            pg_catalog.format('%s permissive policies (%s) apply to role %s for %s: each row is checked against every one',
                pg_catalog.count(*), pg_catalog.string_agg(p.polname::text, ', ' ORDER BY p.polname),
                CASE WHEN r.role = 0 THEN 'PUBLIC' ELSE r.role::pg_catalog.regrole::text END, k.cmd),
            NULL
         FROM pg_catalog.pg_policy p JOIN pg_catalog.pg_class c ON c.oid = p.polrelid,
              LATERAL pg_catalog.unnest(p.polroles) r(role),
              LATERAL (SELECT pg_catalog.unnest(CASE p.polcmd WHEN '*' THEN ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE']
                  WHEN 'r' THEN ARRAY['SELECT'] WHEN 'a' THEN ARRAY['INSERT'] WHEN 'w' THEN ARRAY['UPDATE']
                  ELSE ARRAY['DELETE'] END)) k(cmd)
         WHERE p.polpermissive AND USER_RELATIONS
         GROUP BY c.oid, r.role, k.cmd HAVING pg_catalog.count(*) > 1",
    ),
    (
        "warning",
        "security_definer_search_path",
        "SELECT DISTINCT p.oid::pg_catalog.regprocedure::text,
            'SECURITY DEFINER, callable by client roles, and search_path is not pinned: objects the caller creates can run with the owner''s rights',
            pg_catalog.format('ALTER FUNCTION %s SET search_path = pg_catalog, pg_temp;', p.oid::pg_catalog.regprocedure)
         FROM pg_catalog.pg_proc p,
              LATERAL pg_catalog.aclexplode(COALESCE(p.proacl, pg_catalog.acldefault('f', p.proowner))) g
         WHERE p.prosecdef AND g.privilege_type = 'EXECUTE' AND g.grantee <> p.proowner AND CLIENT
           AND NOT EXISTS (SELECT FROM pg_catalog.unnest(p.proconfig) s WHERE s LIKE 'search\\_path=%')
           AND p.pronamespace <> ALL (ARRAY(SELECT n.oid FROM pg_catalog.pg_namespace n
               WHERE n.nspname IN ('pg_catalog', 'information_schema', '_pg_rls_auth')))
           AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
               AND d.objid = p.oid AND d.deptype = 'e')",
    ),
    (
        "error",
        "view_bypasses_rls",
        "SELECT DISTINCT v.oid::pg_catalog.regclass::text,
            pg_catalog.format('reads %s, which has row level security, with the rights of its owner %s, whom the policies do not bind',
                t.oid::pg_catalog.regclass, v.relowner::pg_catalog.regrole),
            pg_catalog.format('ALTER VIEW %s SET (security_invoker = true);', v.oid::pg_catalog.regclass)
         FROM pg_catalog.pg_class v
         JOIN pg_catalog.pg_rewrite w ON w.ev_class = v.oid
         JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.objid = w.oid
             AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
         JOIN pg_catalog.pg_class t ON t.oid = d.refobjid AND t.oid <> v.oid AND t.relrowsecurity
         JOIN pg_catalog.pg_roles o ON o.oid = v.relowner
         WHERE v.relkind = 'v'
           AND NOT COALESCE('security_invoker=true' = ANY (v.reloptions) OR 'security_invoker=on' = ANY (v.reloptions), false)
           AND (o.rolsuper OR o.rolbypassrls OR (v.relowner = t.relowner AND NOT t.relforcerowsecurity))
           AND EXISTS (SELECT FROM pg_catalog.aclexplode(COALESCE(v.relacl, pg_catalog.acldefault('r', v.relowner))) g
               WHERE g.grantee <> v.relowner AND CLIENT AND g.privilege_type = 'SELECT')",
    ),
    (
        "info",
        "owner_not_forced",
        "SELECT c.oid::pg_catalog.regclass::text,
            pg_catalog.format('its owner %s is an ordinary role and bypasses the policies (FORCE is off): connections as the owner see every row',
                c.relowner::pg_catalog.regrole),
            pg_catalog.format('ALTER TABLE %s FORCE ROW LEVEL SECURITY;', c.oid::pg_catalog.regclass)
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_roles o ON o.oid = c.relowner
         WHERE c.relkind IN ('r', 'p') AND c.relrowsecurity AND NOT c.relforcerowsecurity
           AND NOT o.rolsuper AND NOT o.rolbypassrls AND USER_RELATIONS",
    ),
];

/// Every policy on a user table: (table, policy, command, qual, with check), the expressions
/// as node trees in text form.
const POLICIES: &str = "SELECT c.oid::pg_catalog.regclass::text, p.polname::text, p.polcmd::text,
    p.polqual::text, p.polwithcheck::text, c.oid::text
    FROM pg_catalog.pg_policy p JOIN pg_catalog.pg_class c ON c.oid = p.polrelid
    WHERE USER_RELATIONS ORDER BY 1, 2";

/// The extension's functions, by name (found through pg_depend, not by name lookup).
const OWN_FUNCTIONS: &str = "SELECT p.oid, p.proname::text FROM pg_catalog.pg_proc p
    JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.objid = p.oid
    JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND d.deptype = 'e'
    WHERE e.extname = 'pg_rls_auth'";

/// Session accessors: what a policy reads the caller's identity with.
const ACCESSORS: &[&str] = &[
    "user_id",
    "uid",
    "claim",
    "session",
    "jwt",
    "role",
    "email",
    "organization",
    "organization_id",
];

/// Claims the user can edit (Supabase's user metadata): never a basis for authorization.
const USER_EDITABLE: &[&str] = &["user_metadata", "raw_user_meta_data"];

struct Finding {
    severity: &'static str,
    code: &'static str,
    object: String,
    detail: String,
    fix: Option<String>,
}

fn sql(query: &str) -> String {
    query
        .replace("USER_RELATIONS", USER_RELATIONS)
        .replace("CLIENT", CLIENT)
}

/// The extension's functions a policy may call.
struct OwnFunctions {
    accessors: HashSet<pg_sys::Oid>,
    rate_limit: HashSet<pg_sys::Oid>,
}

/// What one walk over a policy expression found.
struct Walk<'a> {
    functions: &'a OwnFunctions,
    /// Nesting depth in sub-selects.
    depth: u32,
    rate_limit_in_subquery: bool,
    anonymous_disjunction: bool,
    user_editable_claim: bool,
    /// Columns of the policy's table compared with an accessor.
    compared_columns: Vec<i16>,
    /// Whether each subtree (by node address) calls an accessor, so that asking again, as
    /// every operator and `IS NULL` above it does, costs nothing: without it a chain of n
    /// operators took 2^n steps. The trees live until the lint call returns, so addresses are
    /// not reused while this lives.
    accessor_under: HashMap<usize, bool>,
    /// How deep the walk is in the tree now (`find_accessor` included).
    nesting: u32,
    /// Some part lay deeper than MAX_NESTING and was not looked at.
    too_deep: bool,
}

/// How deep lint looks into a policy's expression: as deep as people write, and shallow enough
/// that the walk's own recursion stays far inside PostgreSQL's stack limit whatever a policy's
/// author nested (a refusal then would make lint fail for every caller).
const MAX_NESTING: u32 = 200;

impl<'a> Walk<'a> {
    fn new(functions: &'a OwnFunctions) -> Self {
        Walk {
            functions,
            depth: 0,
            rate_limit_in_subquery: false,
            anonymous_disjunction: false,
            user_editable_claim: false,
            compared_columns: Vec::new(),
            accessor_under: HashMap::new(),
            nesting: 0,
            too_deep: false,
        }
    }
}

/// The text of a `text` constant, if `node` is one.
///
/// # Safety
/// `node` is NULL or a valid node of a tree made by stringToNode in the current context.
unsafe fn const_text(node: *mut pg_sys::Node) -> Option<String> {
    // SAFETY: caller's obligation: `node` is valid or NULL; a T_Const node is a pg_sys::Const,
    // and a non-null text constant's datum points to a detoastable text value (from
    // stringToNode, in memory). text_to_cstring (guarded) copies it; it raises only when out
    // of memory, a panic for the caller's pgrx guard.
    unsafe {
        if node.is_null() || (*node).type_ != pg_sys::NodeTag::T_Const {
            return None;
        }
        let c = node as *mut pg_sys::Const;
        if (*c).constisnull || (*c).consttype != pg_sys::TEXTOID {
            return None;
        }
        let p = pg_sys::text_to_cstring((*c).constvalue.cast_mut_ptr());
        Some(std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned())
    }
}

/// Whether the tree under `node` calls an accessor: each subtree is looked at once per lint
/// call (`Walk::accessor_under`).
///
/// # Safety
/// As `const_text`.
unsafe fn calls_accessor(node: *mut pg_sys::Node, w: &mut Walk<'_>) -> bool {
    let mut finder = Finder {
        functions: w.functions,
        known: &mut w.accessor_under,
        nesting: w.nesting,
        too_deep: &mut w.too_deep,
    };
    // SAFETY: caller's obligation for `node`; `finder` outlives the walk and is its context.
    unsafe { find_accessor(node, (&mut finder as *mut Finder<'_>).cast()) }
}

/// The context of `find_accessor`.
struct Finder<'a> {
    functions: &'a OwnFunctions,
    known: &'a mut HashMap<usize, bool>,
    nesting: u32,
    too_deep: &'a mut bool,
}

/// # Safety
/// Called by PostgreSQL's tree walkers (and `calls_accessor`) with a valid node or NULL and a
/// context that is a `*mut Finder`.
#[pg_guard]
unsafe extern "C-unwind" fn find_accessor(node: *mut pg_sys::Node, context: *mut c_void) -> bool {
    if node.is_null() {
        return false;
    }
    // A policy's tree is as large as its author made it: stay cancellable.
    pgrx::check_for_interrupts!();
    let finder = context as *mut Finder<'_>;
    // SAFETY: the context is the `Finder` that `calls_accessor` passed, through the walkers
    // unchanged; it is only touched through short-lived accesses, none live across the
    // recursive walk. Casts follow the node's tag. The walkers are pgrx's guarded wrappers:
    // an ERROR is a panic for this function's guard.
    unsafe {
        if let Some(&known) = (*finder).known.get(&(node as usize)) {
            return known;
        }
        if (*finder).nesting >= MAX_NESTING {
            *(*finder).too_deep = true;
            return false;
        }
        (*finder).nesting += 1;
        let found = match (*node).type_ {
            pg_sys::NodeTag::T_FuncExpr
                if (*finder)
                    .functions
                    .accessors
                    .contains(&(*(node as *mut pg_sys::FuncExpr)).funcid) =>
            {
                true
            }
            pg_sys::NodeTag::T_Query => pg_sys::query_tree_walker(
                node as *mut pg_sys::Query,
                Some(find_accessor),
                context,
                0,
            ),
            _ => pg_sys::expression_tree_walker(node, Some(find_accessor), context),
        };
        (*finder).nesting -= 1;
        (*finder).known.insert(node as usize, found);
        found
    }
}

/// Walks `node` with `w`.
///
/// # Safety
/// As `const_text`; `w` is valid for the walk.
unsafe fn walk(node: *mut pg_sys::Node, w: &mut Walk<'_>) {
    // SAFETY: `node` is a valid tree or NULL (caller's obligation); `visit` receives each
    // node and `w` as the context pointer, which it casts back.
    unsafe { visit(node, (w as *mut Walk<'_>).cast()) };
}

/// # Safety
/// Called by PostgreSQL's tree walkers (and `walk`) with a valid node or NULL and a context
/// that is a `*mut Walk`.
#[pg_guard]
unsafe extern "C-unwind" fn visit(node: *mut pg_sys::Node, context: *mut c_void) -> bool {
    if node.is_null() {
        return false;
    }
    // A policy's tree is as large as its author made it: stay cancellable.
    pgrx::check_for_interrupts!();
    let w = context as *mut Walk<'_>;
    // SAFETY: the context is the `Walk` that `walk` passed; short-lived accesses only, none
    // live across `visit_node`, which takes the context itself.
    unsafe {
        if (*w).nesting >= MAX_NESTING {
            (*w).too_deep = true;
            return false;
        }
        (*w).nesting += 1;
        let found = visit_node(node, context);
        (*w).nesting -= 1;
        found
    }
}

/// `visit`'s work on one node.
///
/// # Safety
/// As `visit`, with `node` not NULL.
unsafe fn visit_node(node: *mut pg_sys::Node, context: *mut c_void) -> bool {
    // SAFETY: the context is the `Walk` that `walk` passed (the walkers pass it through
    // unchanged), used by one walk at a time. Each cast follows the node's tag, as PostgreSQL's
    // own walkers do; the lists read (`args`) belong to those nodes. The walker functions are
    // pgrx's guarded wrappers: an ERROR is a panic for this function's guard.
    unsafe {
        let w = &mut *(context as *mut Walk<'_>);
        match (*node).type_ {
            pg_sys::NodeTag::T_FuncExpr => {
                let f = node as *mut pg_sys::FuncExpr;
                if w.functions.accessors.contains(&(*f).funcid) {
                    // auth.claim('user_metadata...')
                    let args = pgrx::PgList::<pg_sys::Node>::from_pg((*f).args);
                    if let Some(path) = args.get_ptr(0).and_then(|a| const_text(a)) {
                        w.user_editable_claim |= user_editable(&path);
                    }
                }
                if w.depth > 0 && w.functions.rate_limit.contains(&(*f).funcid) {
                    w.rate_limit_in_subquery = true;
                }
            }
            pg_sys::NodeTag::T_OpExpr => {
                let op = node as *mut pg_sys::OpExpr;
                let args = pgrx::PgList::<pg_sys::Node>::from_pg((*op).args);
                if let (Some(left), Some(right)) = (args.get_ptr(0), args.get_ptr(1)) {
                    for (a, b) in [(left, right), (right, left)] {
                        // column = accessor(...), or accessor(...) -> 'user_metadata'
                        if calls_accessor(b, w) {
                            if let Some(attnum) = column_of(a) {
                                w.compared_columns.push(attnum);
                            }
                            if const_text(a).is_some_and(|t| user_editable(&t)) {
                                w.user_editable_claim = true;
                            }
                        }
                    }
                }
            }
            pg_sys::NodeTag::T_BoolExpr => {
                let b = node as *mut pg_sys::BoolExpr;
                if (*b).boolop == pg_sys::BoolExprType::OR_EXPR {
                    let args = pgrx::PgList::<pg_sys::Node>::from_pg((*b).args);
                    w.anonymous_disjunction |= args.iter_ptr().any(|arm| {
                        (*arm).type_ == pg_sys::NodeTag::T_NullTest && {
                            let t = arm as *mut pg_sys::NullTest;
                            (*t).nulltesttype == pg_sys::NullTestType::IS_NULL
                                && calls_accessor((*t).arg.cast(), w)
                        }
                    });
                }
            }
            pg_sys::NodeTag::T_Query => {
                w.depth += 1;
                let found =
                    pg_sys::query_tree_walker(node as *mut pg_sys::Query, Some(visit), context, 0);
                w.depth -= 1;
                return found;
            }
            _ => {}
        }
        pg_sys::expression_tree_walker(node, Some(visit), context)
    }
}

fn user_editable(path: &str) -> bool {
    USER_EDITABLE
        .iter()
        .any(|u| path == *u || path.starts_with(&format!("{u}.")))
}

/// The attribute number when `node` is a column of the policy's own table (possibly under a
/// cast).
///
/// # Safety
/// As `const_text`.
unsafe fn column_of(node: *mut pg_sys::Node) -> Option<i16> {
    // SAFETY: caller's obligation; casts follow the tags.
    unsafe {
        match (*node).type_ {
            pg_sys::NodeTag::T_Var => {
                let v = node as *mut pg_sys::Var;
                ((*v).varno == 1 && (*v).varlevelsup == 0 && (*v).varattno > 0)
                    .then_some((*v).varattno)
            }
            pg_sys::NodeTag::T_RelabelType => {
                column_of((*(node as *mut pg_sys::RelabelType)).arg.cast())
            }
            _ => None,
        }
    }
}

/// Whether `tree` (a pg_node_tree's text) is the constant `true`.
///
/// # Safety
/// `tree` is a valid node tree.
unsafe fn is_true(tree: *mut pg_sys::Node) -> bool {
    // SAFETY: caller's obligation; the cast follows the tag.
    unsafe {
        !tree.is_null() && (*tree).type_ == pg_sys::NodeTag::T_Const && {
            let c = tree as *mut pg_sys::Const;
            (*c).consttype == pg_sys::BOOLOID
                && !(*c).constisnull
                && bool::from_datum((*c).constvalue, false).unwrap_or(false)
        }
    }
}

fn rows(client: &SpiClient<'_>, query: &str) -> Vec<Vec<Option<String>>> {
    let table = client
        .select(&sql(query), None, &[])
        .unwrap_or_else(|e| pgrx::error!("pg_rls_auth: auth.lint() failed: {e}"));
    let width = table.columns().unwrap_or(0);
    table
        .map(|row| {
            (1..=width)
                .map(|i| row.get::<String>(i).ok().flatten())
                .collect()
        })
        .collect()
}

fn policy_findings(client: &SpiClient<'_>, out: &mut Vec<Finding>) {
    let own: Vec<(pg_sys::Oid, String)> = client
        .select(OWN_FUNCTIONS, None, &[])
        .unwrap_or_else(|e| pgrx::error!("pg_rls_auth: auth.lint() failed: {e}"))
        .filter_map(|r| Some((r.get::<pg_sys::Oid>(1).ok()??, r.get::<String>(2).ok()??)))
        .collect();
    let named = |wanted: &dyn Fn(&str) -> bool| {
        own.iter()
            .filter(|(_, n)| wanted(n))
            .map(|(o, _)| *o)
            .collect()
    };
    let functions = OwnFunctions {
        accessors: named(&|n| ACCESSORS.contains(&n)),
        rate_limit: named(&|n| n == "check_write_rate"),
    };
    let indexed: HashMap<String, HashSet<i16>> = rows(
        client,
        "SELECT i.indrelid::text, (i.indkey::pg_catalog.int2[])[0]::text FROM pg_catalog.pg_index i",
    )
    .into_iter()
    .filter_map(|r| Some((r[0].clone()?, r[1].clone()?.parse().ok()?)))
    .fold(HashMap::new(), |mut m, (rel, att)| {
        m.entry(rel).or_insert_with(HashSet::new).insert(att);
        m
    });
    for r in rows(client, POLICIES) {
        let (table, policy, cmd) = (
            r[0].clone().unwrap_or_default(),
            r[1].clone().unwrap_or_default(),
            r[2].clone().unwrap_or_default(),
        );
        let relid = r[5].clone().unwrap_or_default();
        let object = format!("{policy} ON {table}");
        let writes = matches!(cmd.as_str(), "a" | "w" | "d" | "*");
        let mut w = Walk::new(&functions);
        for (which, text) in [("USING", &r[3]), ("WITH CHECK", &r[4])] {
            let Some(text) = text else { continue };
            let Ok(text) = CString::new(text.as_str()) else {
                continue;
            };
            // SAFETY: `text` is pg_node_tree output PostgreSQL wrote to pg_policy;
            // stringToNode (guarded) parses it into the current memory context, which lives
            // until this SQL call returns; the tree is only read. An ERROR is a panic for
            // this #[pg_extern]'s guard, with only owned values live.
            let tree = unsafe { pg_sys::stringToNode(text.as_ptr()) } as *mut pg_sys::Node;
            // SAFETY: a valid tree just made.
            if writes && unsafe { is_true(tree) } {
                out.push(Finding {
                    severity: "error",
                    code: "policy_always_true",
                    object: object.clone(),
                    detail: format!(
                        "{which} (true) on a policy that lets client roles write: any row passes"
                    ),
                    fix: None,
                });
            }
            // SAFETY: as above.
            unsafe { walk(tree, &mut w) };
        }
        if w.anonymous_disjunction {
            out.push(Finding {
                severity: "error",
                code: "anonymous_disjunction",
                object: object.clone(),
                detail: "an arm `<session accessor> IS NULL OR ...` opens rows to callers with no session".into(),
                fix: None,
            });
        }
        if w.user_editable_claim {
            out.push(Finding {
                severity: "error",
                code: "user_editable_claim",
                object: object.clone(),
                detail:
                    "reads user_metadata (raw_user_meta_data), which users can change themselves"
                        .into(),
                fix: None,
            });
        }
        if w.too_deep {
            out.push(Finding {
                severity: "warning",
                code: "policy_too_deep",
                object: object.clone(),
                detail: format!(
                    "nested deeper than {MAX_NESTING} levels: lint did not look below that depth"
                ),
                fix: None,
            });
        }
        if w.rate_limit_in_subquery {
            out.push(Finding {
                severity: "error",
                code: "rate_limit_in_subquery",
                object: object.clone(),
                detail: "auth.check_write_rate() inside a sub-select is evaluated once per statement, not once per row".into(),
                fix: None,
            });
        }
        let leading = indexed.get(&relid);
        let mut unindexed: Vec<i16> = w
            .compared_columns
            .iter()
            .copied()
            .filter(|a| !leading.is_some_and(|s| s.contains(a)))
            .collect();
        unindexed.sort_unstable();
        unindexed.dedup();
        for attnum in unindexed {
            let column = rows(
                client,
                &format!(
                    "SELECT pg_catalog.quote_ident(attname) FROM pg_catalog.pg_attribute WHERE attrelid = {relid} AND attnum = {attnum}"
                ),
            )
            .into_iter()
            .next()
            .and_then(|r| r[0].clone())
            .unwrap_or_default();
            out.push(Finding {
                severity: "warning",
                code: "policy_column_without_index",
                object: object.clone(),
                detail: format!("compares column {column} with the session, and no index starts with it: every query scans the table"),
                fix: Some(format!("CREATE INDEX ON {table} ({column});")),
            });
        }
    }
}

/// Row Level Security findings: severity (`error`, `warning`, `info`), code, the object, what
/// is wrong, and a DDL fix where one exists.
#[pg_extern(stable, parallel_restricted)]
fn lint() -> TableIterator<
    'static,
    (
        name!(severity, String),
        name!(code, String),
        name!(object, String),
        name!(detail, String),
        name!(fix, Option<String>),
    ),
> {
    let mut out = Vec::new();
    // The caller may be a superuser, and these queries compare oids with integer and regclass
    // constants: an operator for exactly those types in a schema on the caller's search_path
    // would win over pg_catalog's and run with the caller's rights. Only pg_catalog is searched.
    crate::guc::with_settings(&[crate::guc::PINNED_SEARCH_PATH], || {
        Spi::connect(|client| {
            for (severity, code, query) in CATALOG_CHECKS {
                for r in rows(client, query) {
                    out.push(Finding {
                        severity,
                        code,
                        object: r[0].clone().unwrap_or_default(),
                        detail: r[1].clone().unwrap_or_default(),
                        fix: r[2].clone(),
                    });
                }
            }
            policy_findings(client, &mut out);
        })
    });
    let rank = |s: &str| match s {
        "error" => 0,
        "warning" => 1,
        _ => 2,
    };
    out.sort_by(|a, b| {
        (rank(a.severity), a.code, &a.object, &a.detail).cmp(&(
            rank(b.severity),
            b.code,
            &b.object,
            &b.detail,
        ))
    });
    TableIterator::new(
        out.into_iter()
            .map(|f| (f.severity.into(), f.code.into(), f.object, f.detail, f.fix)),
    )
}
