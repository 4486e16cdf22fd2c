/*-------------------------------------------------------------------------
 *
 * stats_import_worker.c
 *	  import_stats() and its background worker: the caller starts the
 *	  worker and waits for it; the worker keeps the run (stats_import_run,
 *	  stats_import_table), reads the statistics (stats_import.c) and imports
 *	  them in batches, one transaction per batch.
 *
 * IDENTIFICATION
 *	  src/stats_import_worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "storage/procarray.h"
#include "tcop/tcopprot.h"
#include "common/hashfn.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "compat.h"
#include "fence.h"
#include "remote.h"
#include "stats.h"
#include "stats_import.h"
#include "util.h"

PG_FUNCTION_INFO_V1(import_stats);

/* ---------------------------------------------------------------------------
 * The import worker
 *
 * import_stats() runs the import in a background worker, so that it can
 * commit: one transaction per batch of tables, each table in a
 * subtransaction of it.  A run (stats_import_run) records every table done
 * (stats_import_table); a call that finds a run of the same source still
 * 'running' (the previous call was cancelled, or the server crashed) resumes
 * it and imports only the tables it has not recorded as imported or skipped.
 * The caller holds a session lock for the database while its worker runs, so
 * one import runs per database at a time, and stops its worker when it is
 * itself cancelled; the worker stops when its caller is gone.
 * ---------------------------------------------------------------------------
 */

/* What the caller hands its worker (bgw_extra). */
typedef struct UaImportArgs
{
	Oid			dboid;
	Oid			roleid;			/* the caller: ownership and peer mapping */
	int			caller_pid;
	int			batch_size;
	int			rebuild_jobs;	/* workers of the rebuild beside it, or 0 */
	int			jobs;			/* import workers, the first (leader) included */
	int			leader_pid;		/* helpers: the leader, 0 in the leader */
	int			batch_base;		/* helpers: batch numbers above this */
	int64		request;		/* this call, as stats_import_run.request */
	bool		has_source;
	char		source[NAMEDATALEN];
} UaImportArgs;

StaticAssertDecl(sizeof(UaImportArgs) <= BGW_EXTRALEN,
				 "UaImportArgs must fit in bgw_extra");

/* One table imported in a subtransaction, as the caller. */
typedef struct UaImportCall
{
	UaRows	   *rel;
	int			rr;
	UaRows	   *att;
	int			first;
	int			last;
	UaImportResult *res;
	Oid			roleid;
	int			sec;
} UaImportCall;

#define UA_IMPORT_RUN_SQL \
	"SELECT run_id FROM upgrade_assist.stats_import_run" \
	" WHERE origin = (SELECT system_identifier FROM pg_catalog.pg_control_system())" \
	"   AND source IS NOT DISTINCT FROM $1 AND state = 'running'" \
	" ORDER BY run_id DESC LIMIT 1"
#define UA_IMPORT_RESUME_SQL \
	"UPDATE upgrade_assist.stats_import_run" \
	"   SET attempts = attempts + 1, request = $2, error_code = NULL," \
	"       error_message = NULL" \
	" WHERE run_id = $1" \
	" RETURNING attempts::bigint, (SELECT coalesce(max(t.batch), 0)::bigint" \
	"                                FROM upgrade_assist.stats_import_table t" \
	"                               WHERE t.run_id = $1)"
#define UA_IMPORT_NEW_SQL \
	"INSERT INTO upgrade_assist.stats_import_run" \
	"  (run_id, origin, source, started_by, started_at, request)" \
	" SELECT coalesce(max(run_id), 0) + 1," \
	"        (SELECT system_identifier FROM pg_catalog.pg_control_system())," \
	"        $1, (SELECT rolname FROM pg_catalog.pg_roles WHERE oid = $3)," \
	"        now(), $2" \
	"   FROM upgrade_assist.stats_import_run" \
	" RETURNING run_id, attempts::bigint, 0::bigint"
#define UA_IMPORT_DONE_SQL \
	"SELECT schemaname, relname FROM upgrade_assist.stats_import_table" \
	" WHERE run_id = $1 AND status <> 'failed'" \
	" ORDER BY schemaname COLLATE \"C\", relname COLLATE \"C\""
/* This side's tables with extended statistics, sorted as the relation rows. */
#define UA_IMPORT_EXT_SQL \
	"SELECT s, r FROM (SELECT DISTINCT n.nspname::text, c.relname::text" \
	"                    FROM pg_catalog.pg_statistic_ext x" \
	"                    JOIN pg_catalog.pg_class c ON c.oid = x.stxrelid" \
	"                    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace) e(s, r)" \
	" ORDER BY s COLLATE \"C\", r COLLATE \"C\""
#define UA_IMPORT_RECORD_SQL \
	"INSERT INTO upgrade_assist.stats_import_table AS t" \
	"  (run_id, schemaname, relname, relid, status, columns_imported," \
	"   columns_skipped, detail, batch, attempt, imported_at)" \
	" SELECT $1, r.s, r.r, r.o, r.st, r.i, r.k, r.d, $9, $10, clock_timestamp()" \
	"   FROM unnest($2::text[], $3::text[], $4::oid[], $5::text[], $6::integer[]," \
	"               $7::integer[], $8::text[]) r(s, r, o, st, i, k, d)" \
	" ON CONFLICT (run_id, schemaname, relname) DO UPDATE" \
	"   SET relid = EXCLUDED.relid, status = EXCLUDED.status," \
	"       columns_imported = EXCLUDED.columns_imported," \
	"       columns_skipped = EXCLUDED.columns_skipped," \
	"       detail = EXCLUDED.detail, batch = EXCLUDED.batch," \
	"       attempt = EXCLUDED.attempt, imported_at = EXCLUDED.imported_at"

/*
 * ua_import_lock_tag
 *		The session lock that allows one import per database: an object lock
 *		on stats_import_run's pg_class entry (pg_locks shows it so).
 */
static void
ua_import_lock_tag(LOCKTAG *tag)
{
	Oid			nsp = get_namespace_oid(UA_SCHEMA, false);
	Oid			relid = get_relname_relid("stats_import_run", nsp);

	if (!OidIsValid(relid))
		elog(ERROR, "table %s.stats_import_run does not exist", UA_SCHEMA);
	SET_LOCKTAG_OBJECT(*tag, MyDatabaseId, RelationRelationId, relid, 0);
}

/*
 * ua_import_table_call
 *		ua_import_table as the caller (ua_try_subxact's callback).
 */
static void
ua_import_table_call(void *arg)
{
	UaImportCall *c = (UaImportCall *) arg;

	SetUserIdAndSecContext(c->roleid, c->sec | SECURITY_LOCAL_USERID_CHANGE);
	ua_import_table(c->rel, c->rr, c->att, c->first, c->last, c->res);
}

/* The worker's plan of UA_IMPORT_RECORD_SQL. */
static SPIPlanPtr ua_import_record_plan = NULL;

/* The outcomes of one batch, recorded by one statement at its end. */
typedef struct UaImportRecords
{
	int			n;
	Datum	   *schema;
	Datum	   *relname;
	Datum	   *relid;
	bool	   *relid_null;
	Datum	   *status;
	Datum	   *imported;
	Datum	   *skipped;
	Datum	   *detail;
	bool	   *detail_null;
} UaImportRecords;

/*
 * ua_import_records_init
 *		Room for the outcomes of up to n tables.
 */
static void
ua_import_records_init(UaImportRecords *r, int n)
{
	r->n = 0;
	r->schema = palloc(sizeof(Datum) * n);
	r->relname = palloc(sizeof(Datum) * n);
	r->relid = palloc(sizeof(Datum) * n);
	r->relid_null = palloc(sizeof(bool) * n);
	r->status = palloc(sizeof(Datum) * n);
	r->imported = palloc(sizeof(Datum) * n);
	r->skipped = palloc(sizeof(Datum) * n);
	r->detail = palloc(sizeof(Datum) * n);
	r->detail_null = palloc(sizeof(bool) * n);
}

/*
 * ua_import_records_add
 *		Keep one table's outcome for ua_import_records_store.
 */
static void
ua_import_records_add(UaImportRecords *r, const char *schema,
					  const char *relname, UaImportResult *res)
{
	int			i = r->n++;

	r->schema[i] = CStringGetTextDatum(schema);
	r->relname[i] = CStringGetTextDatum(relname);
	r->relid[i] = ObjectIdGetDatum(res->relid);
	r->relid_null[i] = !OidIsValid(res->relid);
	r->status[i] = CStringGetTextDatum(res->status);
	r->imported[i] = Int32GetDatum(res->imported);
	r->skipped[i] = Int32GetDatum(res->skipped);
	r->detail_null[i] = res->detail.len == 0;
	r->detail[i] = r->detail_null[i] ? (Datum) 0 : CStringGetTextDatum(res->detail.data);
}

/* A one-dimensional array of n elements of type typid (int4, oid or text). */
static Datum
ua_import_array(Datum *elems, bool *nulls, int n, Oid typid)
{
	int			dims[1] = {n};
	int			lbs[1] = {1};

	if (typid == TEXTOID)
		return PointerGetDatum(construct_md_array(elems, nulls, 1, dims, lbs, TEXTOID,
												  -1, false, TYPALIGN_INT));
	return PointerGetDatum(construct_md_array(elems, nulls, 1, dims, lbs, typid,
											  sizeof(int32), true, TYPALIGN_INT));
}

/*
 * ua_import_records_store
 *		Store the batch's outcomes in the run, by one statement.  Caller is
 *		connected to SPI.
 */
static void
ua_import_records_store(int64 run_id, UaImportRecords *r, int batch, int attempt)
{
	Oid			types[10] = {INT8OID, TEXTARRAYOID, TEXTARRAYOID, OIDARRAYOID,
		TEXTARRAYOID, INT4ARRAYOID, INT4ARRAYOID, TEXTARRAYOID, INT4OID, INT4OID};
	Datum		values[10];
	int			rc;

	if (r->n == 0)
		return;
	values[0] = Int64GetDatum(run_id);
	values[1] = ua_import_array(r->schema, NULL, r->n, TEXTOID);
	values[2] = ua_import_array(r->relname, NULL, r->n, TEXTOID);
	values[3] = ua_import_array(r->relid, r->relid_null, r->n, OIDOID);
	values[4] = ua_import_array(r->status, NULL, r->n, TEXTOID);
	values[5] = ua_import_array(r->imported, NULL, r->n, INT4OID);
	values[6] = ua_import_array(r->skipped, NULL, r->n, INT4OID);
	values[7] = ua_import_array(r->detail, r->detail_null, r->n, TEXTOID);
	values[8] = Int32GetDatum(batch);
	values[9] = Int32GetDatum(attempt);

	/* Planned once per worker: it runs for every batch. */
	if (ua_import_record_plan == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare(UA_IMPORT_RECORD_SQL, 10, types);

		if (plan == NULL || SPI_keepplan(plan) != 0)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		ua_import_record_plan = plan;
	}
	rc = SPI_execute_plan(ua_import_record_plan, values, NULL, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(rc));
}

/*
 * ua_import_worker_gucs
 *		The worker's settings for its whole life: ua_stats_pin_gucs' (values
 *		printed and parsed the same way on both sides), and a lock_timeout
 *		so that a table locked for long (or by the caller's own
 *		transaction, which waits for the worker) is reported failed instead
 *		of stopping the import; and the batches committed without waiting
 *		for their WAL to reach the disk: the run's last transaction waits
 *		for it (all of it, the earlier batches' too) before import_stats()
 *		returns, and a crash before that loses whole batches with their
 *		records, which the next call then imports again.
 */
static void
ua_import_worker_gucs(void)
{
	SetConfigOption("search_path", "pg_catalog", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("datestyle", "ISO, MDY", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("intervalstyle", "postgres", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("timezone", "UTC", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("extra_float_digits", "1", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("lock_timeout", UA_STATS_IMPORT_LOCK_TIMEOUT,
					PGC_SUSET, PGC_S_OVERRIDE);
	/* Until the run's last commit, which flushes the WAL of all (see there). */
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("application_name", "upgrade_assist import_stats",
					PGC_USERSET, PGC_S_OVERRIDE);
}

/*
 * ua_import_start_run
 *		Resume the run of this source left 'running', or store a new one;
 *		record the call's request in it.  Sets *attempt and *batch (the last
 *		batch number used).  Caller is connected to SPI.
 */
static int64
ua_import_start_run(UaImportArgs *a, int *attempt, int *batch)
{
	Oid			types[3] = {TEXTOID, INT8OID, OIDOID};
	Datum		values[3];
	char		nulls[4] = "   ";
	int64		run_id = 0;
	bool		isnull;

	values[0] = a->has_source ? CStringGetTextDatum(a->source) : (Datum) 0;
	nulls[0] = a->has_source ? ' ' : 'n';
	values[1] = Int64GetDatum(a->request);
	values[2] = ObjectIdGetDatum(a->roleid);

	/* One caller per database at a time (its lock): no race here. */
	if (ua_spi_exec_typed(UA_IMPORT_RUN_SQL, 1, types, values, nulls,
						  SPI_OK_SELECT) == 1)
	{
		run_id = ua_spi_getint8(0, 1, &isnull);
		values[0] = Int64GetDatum(run_id);
		types[0] = INT8OID;
		nulls[0] = ' ';
		ua_spi_exec_typed(UA_IMPORT_RESUME_SQL, 2, types, values, nulls,
						  SPI_OK_UPDATE_RETURNING);
		*attempt = (int) ua_spi_getint8(0, 1, &isnull);
		*batch = (int) ua_spi_getint8(0, 2, &isnull);
		return run_id;
	}
	ua_spi_exec_typed(UA_IMPORT_NEW_SQL, 3, types, values, nulls,
					  SPI_OK_INSERT_RETURNING);
	run_id = ua_spi_getint8(0, 1, &isnull);
	*attempt = (int) ua_spi_getint8(0, 2, &isnull);
	*batch = (int) ua_spi_getint8(0, 3, &isnull);
	return run_id;
}

/*
 * ua_same_table
 *		Whether attribute row ar names the table of relation row rr.
 */
static bool
ua_same_table(UaRows *rel, int rr, UaRows *att, int ar)
{
	return strcmp(UA_CELL(rel, rr, 0), UA_CELL(att, ar, UA_A_SCHEMA)) == 0 &&
		strcmp(UA_CELL(rel, rr, 1), UA_CELL(att, ar, UA_A_REL)) == 0;
}

/*
 * ua_table_cmp
 *		strcmp order of (schema, table) of attribute row ar against relation
 *		row rr.
 */
static int
ua_table_cmp(UaRows *att, int ar, UaRows *rel, int rr)
{
	int			c = strcmp(UA_CELL(att, ar, UA_A_SCHEMA), UA_CELL(rel, rr, 0));

	return c != 0 ? c : strcmp(UA_CELL(att, ar, UA_A_REL), UA_CELL(rel, rr, 1));
}

/*
 * ua_import_is_done
 *		Whether relation row rr is among the done rows (sorted as the
 *		relation rows are; *dr is the merge position).
 */
static bool
ua_import_is_done(UaRows *done, int *dr, UaRows *rel, int rr)
{
	while (*dr < done->nrows)
	{
		int			c = strcmp(UA_CELL(done, *dr, 0), UA_CELL(rel, rr, 0));

		if (c == 0)
			c = strcmp(UA_CELL(done, *dr, 1), UA_CELL(rel, rr, 1));
		if (c > 0)
			return false;
		(*dr)++;
		if (c == 0)
			return true;
	}
	return false;
}

/*
 * Where the import is in the relation, attribute and done rows; and which
 * tables it takes: with only set, those in it (in_only) or those not in it.
 */
typedef struct UaImportPos
{
	int			rr;
	int			ar;
	int			dr;
	UaRows	   *only;
	bool		in_only;
	int			xr;				/* merge position in only */
	int			jobs;			/* with jobs > 1, only the tables whose */
	uint32		shares;			/* ua_import_share is in this mask */
} UaImportPos;

/*
 * ua_import_share
 *		Which of jobs workers imports the table of relation row rr: by its
 *		name, so that every worker agrees whatever rows it read.
 */
static int
ua_import_share(UaRows *rel, int rr, int jobs)
{
	uint32		h = hash_bytes((const unsigned char *) UA_CELL(rel, rr, 0),
							   strlen(UA_CELL(rel, rr, 0)));

	h ^= hash_bytes((const unsigned char *) UA_CELL(rel, rr, 1),
					strlen(UA_CELL(rel, rr, 1))) * 31;
	return (int) (h % (uint32) jobs);
}

/*
 * ua_import_batch
 *		Import the next batch_size tables not done yet from *pos on, in one
 *		transaction, and record each.  With safe, each table in a
 *		subtransaction (a failing table is recorded failed); without, any
 *		error throws out of the whole batch.
 */
static void
ua_import_batch(UaImportArgs *a, UaRows *rel, UaRows *att, UaRows *done,
				UaImportPos *pos, int64 run_id, int batch, int attempt,
				MemoryContext cxt, bool safe)
{
	int			n = 0;
	Oid			save_userid;
	int			save_sec;
	UaImportRecords records;

	ua_xact_begin("import_stats: importing");
	ua_fence_exempt_begin();
	ua_import_records_init(&records, a->batch_size);
	GetUserIdAndSecContext(&save_userid, &save_sec);
	for (; pos->rr < rel->nrows && n < a->batch_size; pos->rr++)
	{
		UaImportResult res = {0};
		UaImportCall call;
		ErrorData  *edata = NULL;
		int			first;

		/* Attribute rows of tables without a relation row: none. */
		while (pos->ar < att->nrows && ua_table_cmp(att, pos->ar, rel, pos->rr) < 0)
			pos->ar++;
		first = pos->ar;
		while (pos->ar < att->nrows && ua_same_table(rel, pos->rr, att, pos->ar))
			pos->ar++;
		if (pos->only != NULL &&
			ua_import_is_done(pos->only, &pos->xr, rel, pos->rr) != pos->in_only)
			continue;
		if (ua_import_is_done(done, &pos->dr, rel, pos->rr))
			continue;
		if (pos->jobs > 1 &&
			(pos->shares & ((uint32) 1 << ua_import_share(rel, pos->rr, pos->jobs))) == 0)
			continue;
		n++;

		initStringInfo(&res.detail);
		call.rel = rel;
		call.rr = pos->rr;
		call.att = att;
		call.first = first;
		call.last = pos->ar;
		call.res = &res;
		call.roleid = a->roleid;
		call.sec = save_sec;
		if (safe)
			edata = ua_try_subxact(ua_import_table_call, &call);
		else
			ua_import_table_call(&call);
		SetUserIdAndSecContext(save_userid, save_sec);
		if (edata != NULL)
		{
			/* A cancel or shutdown is the run's, not the table's. */
			if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED ||
				edata->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN)
				ReThrowError(edata);
			res.status = "failed";
			res.imported = 0;
			res.skipped = pos->ar - first;
			resetStringInfo(&res.detail);
			appendStringInfo(&res.detail, "%s (SQLSTATE %s)",
							 edata->message ? edata->message : "unknown error",
							 unpack_sql_state(edata->sqlerrcode));
			FreeErrorData(edata);
		}
		ua_import_records_add(&records, UA_CELL(rel, pos->rr, 0),
							  UA_CELL(rel, pos->rr, 1), &res);
	}
	ua_import_records_store(run_id, &records, batch, attempt);
	ua_fence_exempt_end();
	ua_xact_end(cxt);
}

/*
 * ua_import_batch_fast
 *		ua_import_batch without subtransactions; returns false, with the
 *		batch rolled back and out of any transaction, when it threw (but
 *		rethrows a cancel or a shutdown).
 */
static bool
ua_import_batch_fast(UaImportArgs *a, UaRows *rel, UaRows *att, UaRows *done,
					 UaImportPos *pos, int64 run_id, int batch, int attempt,
					 MemoryContext cxt)
{
	volatile bool ok = true;

	PG_TRY();
	{
		ua_import_batch(a, rel, att, done, pos, run_id, batch, attempt, cxt, false);
	}
	PG_CATCH();
	{
		ErrorData  *edata = ua_recover_from_error(cxt);

		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED ||
			edata->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN)
			ReThrowError(edata);
		FreeErrorData(edata);
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

/*
 * ua_import_batches
 *		Import the tables *pos takes, batch after batch (numbered *batch +
 *		step, + 2 step, ...; *batch is left at the last), until the relation
 *		rows are through.  A helper stops when the leader is gone.
 */
static void
ua_import_batches(UaImportArgs *a, UaRows *rel, UaRows *att, UaRows *done,
				  UaImportPos *pos, int64 run_id, int *batch, int step,
				  int attempt, MemoryContext cxt)
{
	while (pos->rr < rel->nrows)
	{
		UaImportPos start = *pos;

		CHECK_FOR_INTERRUPTS();
		if (BackendPidGetProc(a->caller_pid) == NULL ||
			(a->leader_pid != 0 && BackendPidGetProc(a->leader_pid) == NULL))
			ereport(ERROR,
					(errcode(ERRCODE_QUERY_CANCELED),
					 errmsg("the caller of import_stats() is gone")));
		(*batch) += step;

		/*
		 * The batch in one transaction without subtransactions (no
		 * subtransaction XIDs to overflow every snapshot of the server); if
		 * it fails, again with one subtransaction per table, so that the
		 * table that failed is reported and rolled back alone.
		 */
		if (!ua_import_batch_fast(a, rel, att, done, pos, run_id, *batch,
								  attempt, cxt))
		{
			*pos = start;
			ua_import_batch(a, rel, att, done, pos, run_id, *batch, attempt,
							cxt, true);
		}
	}
}

/*
 * ua_import_parallel
 *		The leader's part when a->jobs > 1: start a->jobs - 1 helpers, each
 *		importing the tables of its share (ua_import_share) of what *pos
 *		takes, with batch numbers above *batch that do not collide; import
 *		its own share (and that of any helper that did not start); wait for
 *		the helpers; then sweep: import whatever they did not record (a
 *		helper that died, a table one of them did not see).
 */
static void
ua_import_parallel(UaImportArgs *a, UaRows *rel, UaRows *att, UaRows *done,
				   UaImportPos *pos, int64 run_id, int *batch, int attempt,
				   MemoryContext cxt)
{
	BackgroundWorkerHandle *handles[UA_STATS_IMPORT_MAX_JOBS];
	int			nhandles = 0;
	UaImportPos start = *pos;
	UaImportPos sweep = *pos;
	int			base = *batch;
	int			mine;
	UaRows		recorded;
	Oid			types[2] = {INT8OID, INT4OID};
	Datum		values[2];

	pos->jobs = a->jobs;
	pos->shares = 1;
	for (int k = 1; k < a->jobs; k++)
	{
		UaImportArgs h = *a;
		BackgroundWorker bgw;

		h.leader_pid = MyProcPid;
		h.batch_base = base;
		ua_bgworker_init(&bgw, "ua_stats_import_main", "upgrade_assist import_stats",
						 BGW_NEVER_RESTART, Int32GetDatum(k));
		memcpy(bgw.bgw_extra, &h, sizeof(h));
		if (RegisterDynamicBackgroundWorker(&bgw, &handles[nhandles]))
			nhandles++;
		else
			pos->shares |= (uint32) 1 << k;		/* the leader does it */
	}
	mine = base;
	ua_import_batches(a, rel, att, done, pos, run_id, &mine, a->jobs, attempt, cxt);
	for (int i = 0; i < nhandles; i++)
		(void) WaitForBackgroundWorkerShutdown(handles[i]);

	/* What the helpers did not record, in this call or before. */
	values[0] = Int64GetDatum(run_id);
	values[1] = Int32GetDatum(attempt);
	ua_xact_begin("import_stats: sweeping");
	ua_rows_from_spi("SELECT schemaname, relname FROM upgrade_assist.stats_import_table"
					 " WHERE run_id = $1 AND (status <> 'failed' OR attempt = $2)"
					 " ORDER BY schemaname COLLATE \"C\", relname COLLATE \"C\"",
					 2, types, values, 2, &recorded, cxt);
	ua_xact_end(cxt);
	*batch = base + a->jobs * (rel->nrows + 1);
	sweep.rr = start.rr;
	sweep.ar = start.ar;
	sweep.dr = 0;
	sweep.xr = start.xr;
	ua_import_batches(a, rel, att, &recorded, &sweep, run_id, batch, 1, attempt, cxt);
}

/*
 * ua_import_helper
 *		A helper's work (main_arg k > 0): find the leader's run by the
 *		call's request, read the statistics, import share k.
 */
static void
ua_import_helper(UaImportArgs *a, int k, MemoryContext cxt)
{
	UaRows		rel;
	UaRows		att;
	UaRows		done;
	UaRows		ext;
	UaImportPos pos = {0};
	int64		run_id;
	int			attempt;
	int			batch = a->batch_base + k - a->jobs;
	bool		isnull;
	Oid			types[1] = {INT8OID};
	Datum		values[1];

	ua_xact_begin("import_stats: helper starting");
	values[0] = Int64GetDatum(a->request);
	if (ua_spi_exec_typed("SELECT run_id, attempts::bigint FROM upgrade_assist.stats_import_run"
						  " WHERE request = $1",
						  1, types, values, NULL, SPI_OK_SELECT) != 1)
		elog(ERROR, "import_stats: the run of the call is gone");
	run_id = ua_spi_getint8(0, 1, &isnull);
	attempt = (int) ua_spi_getint8(0, 2, &isnull);
	values[0] = Int64GetDatum(run_id);
	ua_rows_from_spi(UA_IMPORT_DONE_SQL, 1, types, values, 2, &done, cxt);
	ua_import_read_source(a->has_source ? a->source : NULL, a->roleid, &rel, &att, cxt);
	if (a->rebuild_jobs > 0)
	{
		/* The leader did the tables with extended statistics. */
		ua_rows_from_spi(UA_IMPORT_EXT_SQL, 0, NULL, NULL, 2, &ext, cxt);
		pos.only = &ext;
		pos.in_only = false;
	}
	ua_xact_end(cxt);

	pos.jobs = a->jobs;
	pos.shares = (uint32) 1 << k;
	ua_import_batches(a, &rel, &att, &done, &pos, run_id, &batch, a->jobs, attempt, cxt);
}

/*
 * ua_import_run
 *		The worker's work: start or resume the run, read the statistics,
 *		import the tables not done yet in batches, mark the run done.  With
 *		rebuild_jobs, the tables that have extended statistics go first,
 *		then a rebuild of those starts and runs beside the import of the
 *		others.
 *		Throws on errors outside a table (the run stays 'running').
 */
static void
ua_import_run(UaImportArgs *a, MemoryContext cxt, int64 *run_id_out)
{
	UaRows		rel;
	UaRows		att;
	UaRows		done;
	UaRows		ext;
	int64		run_id;
	int			attempt;
	int			batch;
	UaImportPos pos = {0};
	Oid			types[1] = {INT8OID};
	Datum		values[1];

	ua_xact_begin("import_stats: starting");
	ua_fence_exempt_begin();
	run_id = ua_import_start_run(a, &attempt, &batch);
	*run_id_out = run_id;
	values[0] = Int64GetDatum(run_id);
	ua_rows_from_spi(UA_IMPORT_DONE_SQL, 1, types, values, 2, &done, cxt);
	ua_fence_exempt_end();
	ua_xact_end(cxt);

	ua_xact_begin("import_stats: reading the statistics");
	ua_import_read_source(a->has_source ? a->source : NULL, a->roleid, &rel, &att, cxt);
	if (a->rebuild_jobs > 0)
		ua_rows_from_spi(UA_IMPORT_EXT_SQL, 0, NULL, NULL, 2, &ext, cxt);
	ua_xact_end(cxt);

	if (a->rebuild_jobs > 0)
	{
		/*
		 * The tables with extended statistics first; then the rebuild of
		 * those (on their columns), started now so that it runs beside the
		 * import of the others: its workers begin when this transaction
		 * commits, and the import no longer needs their tables' locks.
		 */
		int			target = -1;
		Datum		stage = Int32GetDatum(target);

		pos.only = &ext;
		pos.in_only = true;
		ua_import_batches(a, &rel, &att, &done, &pos, run_id, &batch, 1, attempt, cxt);
		ua_xact_begin("import_stats: starting the rebuild");
		(void) ua_stats_launch(construct_array(&stage, 1, INT4OID, sizeof(int32),
											   true, TYPALIGN_INT),
							   1, &target, a->rebuild_jobs, UA_STATS_EXT, a->roleid);
		ua_xact_end(cxt);
		memset(&pos, 0, sizeof(pos));
		pos.only = &ext;
		pos.in_only = false;
	}
	if (a->jobs > 1)
		ua_import_parallel(a, &rel, &att, &done, &pos, run_id, &batch, attempt, cxt);
	else
		ua_import_batches(a, &rel, &att, &done, &pos, run_id, &batch, 1, attempt, cxt);

	ua_xact_begin("import_stats: finishing");
	/* This commit waits for the WAL, the batches' before it included. */
	SetConfigOption("synchronous_commit", "on", PGC_SUSET, PGC_S_OVERRIDE);
	ua_fence_exempt_begin();
	ua_spi_exec_typed("UPDATE upgrade_assist.stats_import_run"
					  "   SET state = 'done', ended_at = clock_timestamp()"
					  " WHERE run_id = $1 AND error_code IS NULL",
					  1, types, values, NULL, SPI_OK_UPDATE);
	ua_fence_exempt_end();
	ua_xact_end(cxt);
}

/*
 * ua_stats_import_main
 *		Entry point of the import worker; bgw_extra holds its UaImportArgs.
 *		An error outside a table is stored in the run for the caller to
 *		throw; the run stays 'running', so that the next call resumes it.
 */
void
ua_stats_import_main(Datum main_arg)
{
	UaImportArgs args;
	MemoryContext cxt;
	volatile int64 run_id = 0;

	memcpy(&args, MyBgworkerEntry->bgw_extra, sizeof(args));
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	/* Bookkeeping as the bootstrap superuser; the import as the caller. */
	BackgroundWorkerInitializeConnectionByOid(args.dboid, InvalidOid, 0);
	ua_import_worker_gucs();
	cxt = AllocSetContextCreate(TopMemoryContext, "upgrade_assist import_stats",
								ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(cxt);

	PG_TRY();
	{
		int64		id = 0;

		if (DatumGetInt32(main_arg) > 0)
			ua_import_helper(&args, DatumGetInt32(main_arg), cxt);
		else
			ua_import_run(&args, cxt, &id);
		run_id = id;
	}
	PG_CATCH();
	{
		ErrorData  *edata = ua_recover_from_error(cxt);
		Oid			types[3] = {INT8OID, TEXTOID, TEXTOID};
		Datum		values[3];

		/* Whatever the error, the caller finds it by its request. */
		values[0] = Int64GetDatum(args.request);
		values[1] = CStringGetTextDatum(unpack_sql_state(edata->sqlerrcode));
		values[2] = CStringGetTextDatum(edata->message ? edata->message : "unknown error");
		ua_xact_begin(NULL);
		ua_fence_exempt_begin();
		ua_spi_exec_typed("UPDATE upgrade_assist.stats_import_run"
						  "   SET error_code = $2, error_message = $3"
						  " WHERE request = $1",
						  3, types, values, NULL, SPI_OK_UPDATE);
		ua_fence_exempt_end();
		ua_xact_end(cxt);
		elog(LOG, "import_stats() stopped: %s", edata->message);
	}
	PG_END_TRY();
	(void) run_id;
	proc_exit(0);
}

/*
 * ua_import_latest
 *		Run sql with one bigint parameter under the latest snapshot (what the
 *		worker committed, whatever the caller's isolation level).  Caller is
 *		connected to SPI.
 */
static void
ua_import_latest(const char *sql, int64 id)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1];
	SPIPlanPtr	plan = SPI_prepare(sql, 1, types);
	int			rc;

	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	values[0] = Int64GetDatum(id);
	rc = SPI_execute_snapshot(plan, values, NULL, GetLatestSnapshot(),
							  InvalidSnapshot, true, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_snapshot failed: %s", SPI_result_code_string(rc));
}

/*
 * ua_import_check_privileges
 *		What the caller must be allowed to read: the export tables, or the
 *		peer (ua_peer_check); and, for a rebuild beside the import, to call
 *		rebuild_stats().  The worker reads the tables as superuser.
 */
static void
ua_import_check_privileges(const char *source, bool rebuild)
{
	const char *const tables[2] = {"stats_export_rel", "stats_export_att"};
	Oid			nsp;

	if (rebuild)
	{
		Datum		fn = DirectFunctionCall1(regprocedurein,
											 CStringGetDatum(UA_SCHEMA ".rebuild_stats(integer[], integer, boolean)"));

		if (!DatumGetBool(DirectFunctionCall2(has_function_privilege_id, fn,
											  CStringGetTextDatum("EXECUTE"))))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied for function %s.rebuild_stats", UA_SCHEMA),
					 errdetail("rebuild_jobs starts a statistics rebuild.")));
		/* A rebuild active already: say so before anything is imported. */
		LWLockAcquire(ua_stats->lock, LW_SHARED);
		if (ua_stats->run_id != 0)
		{
			LWLockRelease(ua_stats->lock);
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_IN_USE),
					 errmsg("a statistics rebuild is already running"),
					 errhint("Call import_stats() with rebuild_jobs => 0, or wait for the rebuild to end.")));
		}
		LWLockRelease(ua_stats->lock);
	}

	if (source != NULL)
	{
		ua_peer_check(source);
		return;
	}
	nsp = get_namespace_oid(UA_SCHEMA, false);
	for (int i = 0; i < 2; i++)
	{
		Oid			relid = get_relname_relid(tables[i], nsp);

		if (!OidIsValid(relid) ||
			pg_class_aclcheck(relid, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied for table %s.%s", UA_SCHEMA, tables[i])));
	}
}

/*
 * ua_import_wait
 *		Wait until the worker has exited.  Interruptible: a cancel of the
 *		caller throws here (the caller then stops the worker).
 */
static void
ua_import_wait(BackgroundWorkerHandle *handle)
{
	for (;;)
	{
		pid_t		pid;

		if (GetBackgroundWorkerPid(handle, &pid) == BGWH_STOPPED)
			return;
		(void) ua_wait(WL_LATCH_SET | WL_TIMEOUT, 100, UA_WE_STATS);
	}
}

/*
 * import_stats(source text DEFAULT NULL, batch_size integer DEFAULT 100)
 *		returns setof (schemaname, relname, status, columns_imported,
 *		columns_skipped, detail)
 *		Import the statistics of the export tables (source NULL) or of the
 *		peer named source into this database, one row per table: imported
 *		(detail lists the columns skipped and why), skipped (the whole
 *		table, and why) or failed (the error; that table rolled back).  The
 *		work is done by a worker that commits every batch_size tables; a
 *		call after one cancelled (or a crash) resumes its run and returns
 *		the rows of the whole run.  Throws 22023 for an empty source or a
 *		batch size out of range, 55006 while another import runs in this
 *		database, 42501 without the privileges to read the source, and what
 *		the worker met outside a table (a peer's error, for one).
 */
Datum
import_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Tuplestorestate *store;
	char	   *source = PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0));
	int			batch_size = PG_ARGISNULL(1) ? -1 : PG_GETARG_INT32(1);
	int			rebuild_jobs = PG_ARGISNULL(2) ? -1 : PG_GETARG_INT32(2);
	int			jobs = PG_ARGISNULL(3) ? -1 : PG_GETARG_INT32(3);
	UaImportArgs args;
	BackgroundWorker bgw;
	BackgroundWorkerHandle *volatile handle = NULL;
	LOCKTAG		tag;
	int64		run_id;
	bool		isnull;
	Oid			save_userid;
	int			save_sec;

	if (source != NULL && (source[0] == '\0' || strlen(source) >= NAMEDATALEN))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("source must be NULL or the name of a peer")));
	if (batch_size < 1 || batch_size > UA_STATS_IMPORT_MAX_BATCH)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("batch_size must be between 1 and %d",
						UA_STATS_IMPORT_MAX_BATCH)));
	if (rebuild_jobs < 0 || rebuild_jobs > UA_STATS_MAX_JOBS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("rebuild_jobs must be between 0 and %d", UA_STATS_MAX_JOBS)));
	if (jobs < 1 || jobs > UA_STATS_IMPORT_MAX_JOBS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("jobs must be between 1 and %d", UA_STATS_IMPORT_MAX_JOBS)));
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("statistics cannot be imported during recovery")));
	ua_require_preloaded(ua_stats);
	ua_import_check_privileges(source, rebuild_jobs > 0);
	store = ua_materialize_srf(fcinfo, &tupdesc);

	memset(&args, 0, sizeof(args));
	args.dboid = MyDatabaseId;
	args.roleid = GetUserId();
	args.caller_pid = MyProcPid;
	args.batch_size = batch_size;
	args.rebuild_jobs = rebuild_jobs;
	args.jobs = jobs;
	if (!pg_strong_random(&args.request, sizeof(args.request)))
		args.request = (int64) GetCurrentTimestamp() ^ ((int64) MyProcPid << 40);
	args.has_source = (source != NULL);
	if (source != NULL)
		strlcpy(args.source, source, NAMEDATALEN);

	ua_import_lock_tag(&tag);
	if (LockAcquire(&tag, ExclusiveLock, true, true) == LOCKACQUIRE_NOT_AVAIL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("another import_stats() is running in this database")));
	PG_TRY();
	{
		BackgroundWorkerHandle *h;

		ua_bgworker_init(&bgw, "ua_stats_import_main", "upgrade_assist import_stats",
						 BGW_NEVER_RESTART, (Datum) 0);
		memcpy(bgw.bgw_extra, &args, sizeof(args));
		if (!RegisterDynamicBackgroundWorker(&bgw, &h))
			ereport(ERROR,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("could not start the statistics import worker"),
					 errhint("Raise max_worker_processes.")));
		handle = h;
		ua_import_wait(h);
	}
	PG_CATCH();
	{
		if (handle != NULL)
			TerminateBackgroundWorker(handle);
		LockRelease(&tag, ExclusiveLock, true);
		PG_RE_THROW();
	}
	PG_END_TRY();
	LockRelease(&tag, ExclusiveLock, true);

	/* The run's bookkeeping is the extension's: read as its owner would. */
	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(BOOTSTRAP_SUPERUSERID,
						   save_sec | SECURITY_LOCAL_USERID_CHANGE);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ua_import_latest("SELECT run_id, error_code, error_message"
					 "  FROM upgrade_assist.stats_import_run WHERE request = $1",
					 args.request);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("the statistics import worker exited before it started"),
				 errhint("See the server log.")));
	run_id = ua_spi_getint8(0, 1, &isnull);
	if (SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2) != NULL)
	{
		char	   *code = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
		char	   *msg = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3);

		SetUserIdAndSecContext(save_userid, save_sec);

		ereport(ERROR,
				(errcode(MAKE_SQLSTATE(code[0], code[1], code[2], code[3], code[4])),
				 errmsg("%s", msg),
				 errdetail("The statistics import worker stopped (run " INT64_FORMAT
						   "); calling import_stats() again resumes the run.",
						   run_id)));
	}

	ua_import_latest("SELECT schemaname, relname, status, columns_imported,"
					 "       columns_skipped, detail"
					 "  FROM upgrade_assist.stats_import_table WHERE run_id = $1"
					 " ORDER BY schemaname COLLATE \"C\", relname COLLATE \"C\"",
					 run_id);
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		Datum		values[6];
		bool		nulls[6];

		for (int c = 0; c < 6; c++)
			values[c] = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc,
									  c + 1, &nulls[c]);
		tuplestore_putvalues(store, tupdesc, values, nulls);
	}
	SPI_finish();
	SetUserIdAndSecContext(save_userid, save_sec);
	return (Datum) 0;
}
