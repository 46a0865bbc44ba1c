# Where each PostgreSQL version the tests use lives: 15 from Debian's packages, others built by
# scripts/postgres.sh. Source this file.
PG_RLS_AUTH_PG_PREFIX=${PG_RLS_AUTH_PG_PREFIX:-/var/cache/pg_rls_auth/postgresql}

pg_config_of() {
  case $1 in
    15) echo /usr/lib/postgresql/15/bin/pg_config ;;
    *) echo "$PG_RLS_AUTH_PG_PREFIX/$1/bin/pg_config" ;;
  esac
}
