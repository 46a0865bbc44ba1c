/*
 * The pg_hba line an OAuth login matched (PostgreSQL 18). pgrx does not bind Port or HbaLine,
 * so these three fields are read here, compiled against the server's own headers, rather than
 * through a Rust copy of their layout.
 */
#include "postgres.h"

#include "libpq/hba.h"
#include "libpq/libpq-be.h"
#include "miscadmin.h"

/* The line's issuer, scope and delegate_ident_mapping; false when there is none. */
bool
pg_rls_auth_oauth_hba(const char **issuer, const char **scope, bool *skip_usermap)
{
	if (MyProcPort == NULL || MyProcPort->hba == NULL)
		return false;
	*issuer = MyProcPort->hba->oauth_issuer;
	*scope = MyProcPort->hba->oauth_scope;
	*skip_usermap = MyProcPort->hba->oauth_skip_usermap;
	return true;
}
