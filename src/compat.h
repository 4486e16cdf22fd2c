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
 * PostgreSQL 17 added custom wait events for extensions
 * (WaitEventExtensionNew), so that pg_stat_activity.wait_event names what an
 * extension waits for; before 17 every wait shows as "Extension".
 */
#if PG_VERSION_NUM >= 170000
#define UA_HAVE_CUSTOM_WAIT_EVENTS 1
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
 * PostgreSQL 16 replaced pg_class_ownercheck() by object_ownercheck().
 */
#include "catalog/pg_class.h"
#if PG_VERSION_NUM >= 160000
#define ua_rel_ownercheck(relid, roleid) \
	object_ownercheck(RelationRelationId, (relid), (roleid))
#else
#define ua_rel_ownercheck(relid, roleid) pg_class_ownercheck((relid), (roleid))
#endif

/*
 * PostgreSQL 17 made pg_attribute.attstattarget nullable (NULL: the default,
 * which older releases store as -1).  Takes an ATTNUM syscache tuple.
 */
#include "access/htup_details.h"
#include "catalog/pg_attribute.h"
#include "utils/syscache.h"
#if PG_VERSION_NUM >= 170000
static inline int
ua_attstattarget(HeapTuple atttup)
{
	bool		isnull;
	Datum		d = SysCacheGetAttr(ATTNUM, atttup, Anum_pg_attribute_attstattarget,
									&isnull);

	return isnull ? -1 : DatumGetInt16(d);
}
#else
#define ua_attstattarget(atttup) \
	((int) ((Form_pg_attribute) GETSTRUCT(atttup))->attstattarget)
#endif

/*
 * PostgreSQL 14 added multiranges, whose bounds histogram holds values of
 * their range type: the type a bounds histogram of a column of type t holds.
 */
#include "utils/lsyscache.h"
#include "utils/typcache.h"
#if PG_VERSION_NUM >= 140000
#define ua_bounds_histogram_type(t) \
	(type_is_multirange(t) ? \
	 lookup_type_cache((t), TYPECACHE_MULTIRANGE_INFO)->rngtype->type_id : (t))
#else
#define ua_bounds_histogram_type(t) (t)
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
 * Write fence (fence.c): executor and utility hook signatures.
 *
 * PostgreSQL 14 added readOnlyTree to ProcessUtility_hook.  PostgreSQL 18
 * dropped execute_once from ExecutorRun_hook (18 betas also made
 * ExecutorStart_hook return bool; 18.0 reverted that, so it stays void).
 */
#if PG_VERSION_NUM >= 140000
#define UA_PROCESS_UTILITY_ARGS_DECL \
	PlannedStmt *pstmt, const char *queryString, bool readOnlyTree, \
	ProcessUtilityContext context, ParamListInfo params, \
	QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc
#define UA_PROCESS_UTILITY_ARGS \
	pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc
#else
#define UA_PROCESS_UTILITY_ARGS_DECL \
	PlannedStmt *pstmt, const char *queryString, \
	ProcessUtilityContext context, ParamListInfo params, \
	QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc
#define UA_PROCESS_UTILITY_ARGS \
	pstmt, queryString, context, params, queryEnv, dest, qc
#endif

#if PG_VERSION_NUM >= 180000
#define UA_EXECUTOR_RUN_ARGS_DECL \
	QueryDesc *queryDesc, ScanDirection direction, uint64 count
#define UA_EXECUTOR_RUN_ARGS queryDesc, direction, count
#else
#define UA_EXECUTOR_RUN_ARGS_DECL \
	QueryDesc *queryDesc, ScanDirection direction, uint64 count, bool execute_once
#define UA_EXECUTOR_RUN_ARGS queryDesc, direction, count, execute_once
#endif

/*
 * PostgreSQL 16 made the large-object write functions refuse to run in a
 * read-only transaction; the fence checks them itself before.
 */
#if PG_VERSION_NUM >= 160000
#define UA_LO_CHECKS_READ_ONLY 1
#else
#define UA_LO_CHECKS_READ_ONLY 0
#endif

/*
 * PostgreSQL 18 replaced pg_attribute_noreturn() by pg_noreturn, written
 * before the return type.
 */
#if PG_VERSION_NUM >= 180000
#define UA_NORETURN pg_noreturn
#else
#define UA_NORETURN pg_attribute_noreturn()
#endif

/*
 * PostgreSQL 14 moved the top transaction id from PGXACT into PGPROC.
 */
#if PG_VERSION_NUM >= 140000
#define UA_PROC_XID(proc) ((proc)->xid)
#else
#define UA_PROC_XID(proc) (ProcGlobal->allPgXact[(proc)->pgprocno].xid)
#endif

/*
 * PostgreSQL 16 renamed the accessor of the local copy of the backend status
 * array (1-based index in both).
 */
#if PG_VERSION_NUM >= 160000
#define ua_local_beentry(i) pgstat_get_local_beentry_by_index(i)
#else
#define ua_local_beentry(i) pgstat_fetch_stat_local_beentry(i)
#endif

/*
 * PostgreSQL 16 made get_guc_variables() return its count and exported
 * find_option(); before, the count came from GetNumConfigOptions().
 */
#if PG_VERSION_NUM >= 160000
#define ua_find_guc(name) find_option((name), false, true, ERROR)
#elif defined(GUC_TABLES_H)		/* only where guc_tables.h is included */
static inline struct config_generic *
ua_find_guc(const char *name)
{
	struct config_generic **vars = get_guc_variables();
	int			n = GetNumConfigOptions();

	for (int i = 0; i < n; i++)
		if (strcmp(vars[i]->name, name) == 0)
			return vars[i];
	return NULL;
}
#endif

/*
 * PostgreSQL 14 named the fmgroids.h macros after the functions' SQL names:
 * F_NEXTVAL_OID became F_NEXTVAL.
 */
#if PG_VERSION_NUM < 140000
#include "utils/fmgroids.h"
#define F_NEXTVAL F_NEXTVAL_OID
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

/*
 * strtoi64: c.h has it from 15 on.
 */
#ifndef strtoi64
#define strtoi64(str, endptr, base) ((int64) strtoll((str), (endptr), (base)))
#endif

/*
 * ua_client_connection_lost: has the client closed its connection?  14 added
 * pq_check_connection(); before it, peek at the socket (libpq-be.h is safe
 * to include there only where it does not need the GSSAPI headers, as on 13).
 */
#if PG_VERSION_NUM >= 140000
/* libpq/libpq.h declares it, but pulls in GSSAPI headers where built with GSS */
extern bool pq_check_connection(void);
#define ua_client_connection_lost() (!pq_check_connection())
#else
#include <sys/socket.h>
#include "libpq/libpq-be.h"
static inline bool
ua_client_connection_lost(void)
{
	char		c;
	ssize_t		r;

	if (MyProcPort == NULL || MyProcPort->sock == PGINVALID_SOCKET)
		return false;
	r = recv(MyProcPort->sock, &c, 1, MSG_PEEK | MSG_DONTWAIT);
	if (r == 0)
		return true;
	return r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
}
#endif


/*
 * Preflight (preflight.c).  PostgreSQL 15 added row filters and column lists
 * to publications (pg_publication_rel.prqual, prattrs): this side's query
 * looks for them from 15 on.  PostgreSQL 15 also added
 * pg_stat_subscription_stats: the SQL sent to a peer reads it when the
 * peer's PQserverVersion is 15 or later.
 */
#if PG_VERSION_NUM >= 150000
#define UA_PF_PUBREL_FILTERS \
	" UNION ALL" \
	" SELECT 'error', 'row_filter', pg_catalog.format('%I.%I', n.nspname, c.relname)," \
	"  pg_catalog.format('publication %I publishes only the rows WHERE %s', p.pubname," \
	"   pg_catalog.pg_get_expr(pr.prqual, pr.prrelid))," \
	"  'Drop the row filter (ALTER PUBLICATION ... SET TABLE without WHERE): the other rows never reach the peer.'" \
	"  FROM pg_catalog.pg_publication_rel pr JOIN pubs p ON p.oid = pr.prpubid" \
	"  JOIN pg_catalog.pg_class c ON c.oid = pr.prrelid" \
	"  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE pr.prqual IS NOT NULL" \
	" UNION ALL" \
	" SELECT 'error', 'column_list', pg_catalog.format('%I.%I', n.nspname, c.relname)," \
	"  pg_catalog.format('publication %I publishes only the columns %s', p.pubname," \
	"   (SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.attname), ', ' ORDER BY a.attnum)" \
	"      FROM pg_catalog.pg_attribute a WHERE a.attrelid = pr.prrelid" \
	"       AND a.attnum = ANY (pr.prattrs::int2[])))," \
	"  'Drop the column list: the other columns never reach the peer.'" \
	"  FROM pg_catalog.pg_publication_rel pr JOIN pubs p ON p.oid = pr.prpubid" \
	"  JOIN pg_catalog.pg_class c ON c.oid = pr.prrelid" \
	"  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE pr.prattrs IS NOT NULL"
#else
#define UA_PF_PUBREL_FILTERS ""
#endif

#define UA_PF_PEER_SUB_ERRORS(peer_version) \
	((peer_version) >= 150000 ? \
	 "(SELECT pg_catalog.sum(st.apply_error_count + st.sync_error_count)" \
	 "   FROM pg_catalog.pg_stat_subscription_stats st WHERE st.subid IN (SELECT oid FROM fwd))" : \
	 "NULL::numeric")

#endif							/* UA_COMPAT_H */
