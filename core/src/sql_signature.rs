//! Checks a hand-written function's SQL declaration against its Rust signature, at compile
//! time (`const fn`): the shell's `sql_function!` asserts it for every function it declares,
//! so a mismatch is a build error, never undefined behaviour when PostgreSQL calls it.

/// Whether `sql` declares exactly one function, whose argument types (in order) are `args`,
/// whose result type is `returns`, and whose C symbol is `symbol` (`AS 'MODULE_PATHNAME',
/// '<symbol>'`). Types compare without regard to case; every argument must be named.
pub const fn declares(sql: &str, symbol: &str, args: &[&str], returns: &str) -> bool {
    let s = sql.as_bytes();
    let create = b"CREATE FUNCTION ";
    let Some(start) = find(s, create, 0) else {
        return false;
    };
    if find(s, create, start + 1).is_some() {
        return false;
    }
    let Some(open) = find(s, b"(", start) else {
        return false;
    };
    // Each argument: `name type [DEFAULT expr]`, separated by commas outside quotes.
    let mut i = open + 1;
    let mut n = 0;
    loop {
        i = skip_spaces(s, i);
        if i < s.len() && s[i] == b')' {
            break;
        }
        if n == args.len() {
            return false;
        }
        let name_end = word_end(s, i);
        let ty = skip_spaces(s, name_end);
        let ty_end = word_end(s, ty);
        if !eq_ignore_case(s, ty, ty_end, args[n].as_bytes()) {
            return false;
        }
        // Skip the rest of this argument (a DEFAULT may hold quoted commas).
        let mut j = ty_end;
        let mut quoted = false;
        while j < s.len() && (quoted || (s[j] != b',' && s[j] != b')')) {
            if s[j] == b'\'' {
                quoted = !quoted;
            }
            j += 1;
        }
        if j == s.len() {
            return false;
        }
        n += 1;
        i = if s[j] == b',' { j + 1 } else { j };
    }
    if n != args.len() {
        return false;
    }
    let after = skip_spaces(s, i + 1);
    let returns_kw = b"RETURNS ";
    if !eq_ignore_case(s, after, after + returns_kw.len(), returns_kw) {
        return false;
    }
    let ty = skip_spaces(s, after + returns_kw.len());
    if !eq_ignore_case(s, ty, word_end(s, ty), returns.as_bytes()) {
        return false;
    }
    let module = b"AS 'MODULE_PATHNAME', '";
    let Some(m) = find(s, module, ty) else {
        return false;
    };
    let sym = m + module.len();
    let symbol = symbol.as_bytes();
    sym + symbol.len() < s.len()
        && eq_ignore_case(s, sym, sym + symbol.len(), symbol)
        && s[sym + symbol.len()] == b'\''
}

const fn find(s: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i + needle.len() <= s.len() {
        if eq_ignore_case(s, i, i + needle.len(), needle) {
            return Some(i);
        }
        i += 1;
    }
    None
}

const fn skip_spaces(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && s[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

const fn word_end(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == b'_') {
        i += 1;
    }
    i
}

/// `s[from..to]` equals `word`, ASCII case-insensitively (false when out of bounds).
const fn eq_ignore_case(s: &[u8], from: usize, to: usize, word: &[u8]) -> bool {
    if to > s.len() || to < from || to - from != word.len() {
        return false;
    }
    let mut k = 0;
    while k < word.len() {
        if !s[from + k].eq_ignore_ascii_case(&word[k]) {
            return false;
        }
        k += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::declares;

    const SQL: &str = "
CREATE FUNCTION auth.f(key text, n integer, bucket text DEFAULT 'a, b') RETURNS boolean
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'auth_f';
COMMENT ON FUNCTION auth.f(text, integer, text) IS 'x';";

    #[test]
    fn a_matching_declaration_passes() {
        assert!(declares(
            SQL,
            "auth_f",
            &["text", "integer", "text"],
            "boolean"
        ));
        assert!(declares(
            SQL,
            "auth_f",
            &["TEXT", "Integer", "text"],
            "BOOLEAN"
        ));
        assert!(declares(
            "create function auth.g() returns void language c as 'MODULE_PATHNAME', 'g';",
            "g",
            &[],
            "void"
        ));
    }

    #[test]
    fn every_difference_fails() {
        // Argument types, their order and count; the result; the symbol.
        assert!(!declares(
            SQL,
            "auth_f",
            &["text", "text", "text"],
            "boolean"
        ));
        assert!(!declares(
            SQL,
            "auth_f",
            &["integer", "text", "text"],
            "boolean"
        ));
        assert!(!declares(SQL, "auth_f", &["text", "integer"], "boolean"));
        assert!(!declares(
            SQL,
            "auth_f",
            &["text", "integer", "text", "text"],
            "boolean"
        ));
        assert!(!declares(
            SQL,
            "auth_f",
            &["text", "integer", "text"],
            "text"
        ));
        assert!(!declares(
            SQL,
            "auth_g",
            &["text", "integer", "text"],
            "boolean"
        ));
        assert!(!declares(
            SQL,
            "auth_",
            &["text", "integer", "text"],
            "boolean"
        ));
        // A second function would go unchecked.
        let two =
            format!("{SQL}\nCREATE FUNCTION auth.h() RETURNS text AS 'MODULE_PATHNAME', 'h';");
        assert!(!declares(
            &two,
            "auth_f",
            &["text", "integer", "text"],
            "boolean"
        ));
        // A type that only starts like the declared one.
        assert!(!declares(
            "CREATE FUNCTION a(x textual) RETURNS text AS 'MODULE_PATHNAME', 's';",
            "s",
            &["text"],
            "text"
        ));
        assert!(!declares("", "s", &[], "text"));
        assert!(!declares(
            "CREATE FUNCTION a(x text",
            "s",
            &["text"],
            "text"
        ));
    }

    #[test]
    fn it_runs_at_compile_time() {
        const OK: bool = declares(SQL, "auth_f", &["text", "integer", "text"], "boolean");
        const _: () = assert!(OK);
    }
}
