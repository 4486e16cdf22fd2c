/*-------------------------------------------------------------------------
 *
 * compat.h
 *	  Every difference between the PostgreSQL major versions that
 *	  upgrade_assist supports (13 and later) lives here, each shim next to
 *	  the release that changed the API.
 *
 * IDENTIFICATION
 *	  src/compat.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef UA_COMPAT_H
#define UA_COMPAT_H

#include "postgres.h"

#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/acl.h"
#include "utils/guc.h"

#if PG_VERSION_NUM < 130000
#error "upgrade_assist requires PostgreSQL 13 or later"
#endif

/*
 * PostgreSQL 15 added shmem_request_hook; before it, shared memory and LWLock
 * tranches are requested directly from _PG_init.
 */
#if PG_VERSION_NUM >= 150000
#define UA_HAVE_SHMEM_REQUEST_HOOK 1
#endif

/*
 * PostgreSQL 15 replaced EmitWarningsOnPlaceholders() with
 * MarkGUCPrefixReserved().
 */
#if PG_VERSION_NUM < 150000
#define MarkGUCPrefixReserved(prefix) EmitWarningsOnPlaceholders(prefix)
#endif

/*
 * PostgreSQL 17 replaced PGPROC.pgprocno by ProcNumber / MyProcNumber.
 * Regular backends and background workers have numbers below MaxBackends in
 * every supported release.
 */
#if PG_VERSION_NUM >= 170000
#define UA_MY_PROCNO ((int) MyProcNumber)
#else
#define UA_MY_PROCNO (MyProc->pgprocno)
#endif

/*
 * MaxBackends is final only once shmem_request_hook runs (15+).  Before 15,
 * _PG_init runs before it is computed, so derive it from the same GUCs the
 * server uses (13 and 14: connections + autovacuum workers + launcher +
 * background workers + WAL senders).
 */
#if PG_VERSION_NUM >= 150000
#define UA_MAX_BACKENDS() (MaxBackends)
#else
#include "postmaster/autovacuum.h"
#include "replication/walsender.h"
#define UA_MAX_BACKENDS() \
	(MaxConnections + autovacuum_max_workers + 1 + max_worker_processes + max_wal_senders)
#endif

/*
 * PostgreSQL 16 folded the per-object-type ACL check functions into
 * object_aclcheck().
 */
#if PG_VERSION_NUM >= 160000
#include "catalog/pg_foreign_server.h"
#define ua_foreign_server_aclcheck(srvid, roleid, mode) \
	object_aclcheck(ForeignServerRelationId, (srvid), (roleid), (mode))
#else
#define ua_foreign_server_aclcheck(srvid, roleid, mode) \
	pg_foreign_server_aclcheck((srvid), (roleid), (mode))
#endif

/*
 * PostgreSQL 17 added infinite intervals; earlier releases have none.
 */
#if PG_VERSION_NUM >= 170000
#define UA_INTERVAL_NOT_FINITE(i) INTERVAL_NOT_FINITE(i)
#else
#define UA_INTERVAL_NOT_FINITE(i) false
#endif

/*
 * PostgreSQL 18 added ANALYZE ONLY: a partitioned table's own (inheritance)
 * statistics without analyzing every partition again.  Before 18, ANALYZE of
 * a partitioned table always recurses into its partitions.
 */
#if PG_VERSION_NUM >= 180000
#define UA_ANALYZE_ONLY(relkind) ((relkind) == RELKIND_PARTITIONED_TABLE ? "ONLY " : "")
#else
#define UA_ANALYZE_ONLY(relkind) ""
#endif

#endif							/* UA_COMPAT_H */
