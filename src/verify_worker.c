/*-------------------------------------------------------------------------
 *
 * verify_worker.c
 *	  The worker of one verify() run (verify.c starts it; its snapshot
 *	  helper is in verify_helper.c): for each table of the run, range after range, the worker finds
 *	  the range's bound, takes the table in SHARE mode, has the helper take
 *	  a snapshot, writes the range as a verify_range row alone in its
 *	  transaction and commits; the helper then computes the range's count
 *	  and checksum from its snapshot.  Every UA_VERIFY_BATCH ranges the
 *	  worker compares those the peer has computed (the replica trigger, as
 *	  the rows were applied) and records every difference, waiting for the
 *	  peer only when UA_VERIFY_IN_FLIGHT are pending and at the table's
 *	  end.  A differing range is compared again key by key, through the same
 *	  protocol, when the run asks for keys.  See verify.c for why both sides
 *	  then describe the same position of the stream.
 *
 * Locks: a range holds the table in SHARE mode from the moment the lock is
 * granted until its transaction commits: the helper's snapshot handoff, one
 * insert, the commit (without the helper, and for the keys pass and tables
 * without primary key: the checksum of at most chunk_rows rows, one insert,
 * the commit); the wait for the lock is bounded by
 * upgrade_assist.verify_lock_timeout, after which the range is tried again.
 * Nothing else of the user's is locked beyond ACCESS SHARE.
 *
 * IDENTIFICATION
 *	  src/verify_worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relation.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "fence.h"
#include "marker.h"
#include "remote.h"
#include "util.h"
#include "verify.h"

/* What ua_verify_write_range did. */
typedef enum UaVerifyWrite
{
	UA_VW_WRITTEN,				/* the range's row is committed */
	UA_VW_LOCK_REFUSED,			/* lock not granted in time; nothing written */
	UA_VW_TOO_LARGE				/* no primary key and too many rows */
} UaVerifyWrite;

/* One range written, waiting for the peer's side. */
typedef struct UaVerifyRange
{
	int64		range_no;
	const char *mode;
	Datum		key_from;		/* text[], or 0: from the start */
	Datum		key_to;			/* text[], or 0: to the end */
	UaVerifySums here;
	bool		keys_pass;		/* a differing range compared key by key */
	TimestampTz asked_at;		/* when its lock was asked for */
} UaVerifyRange;

/* The table being verified. */
typedef struct UaVerifyTable
{
	Oid			relid;
	char	   *schemaname;
	char	   *relname;
	char	   *qualified;
	Datum		key_columns;	/* text[], or 0 without primary key */
	Datum		columns;		/* text[] */
	int64		rows_done;
	int64		ranges_done;
	int64		ranges_differ;
	double		max_lock_ms;
	bool		not_comparable;
	char	   *note;
	int			chunk;			/* rows of the next range (adapted) */
	bool		busy;			/* a range found writers */
	MemoryContext cxt;			/* lives as long as the table's turn */
} UaVerifyTable;

/* The run, as its row says. */
typedef struct UaVerifyRun
{
	int64		run_id;
	int64		origin;
	Oid			roleid;
	char	   *peer;
	int			chunk_rows;
	bool		find_keys;
	int64		timeout_ms;
	int64		next_range;
	int64		rows_before;	/* rows of the tables finished */
} UaVerifyRun;

int			ua_verify_my_slot = -1;

/*
 * ua_verify_worker_detach
 *		before_shmem_exit callback: free the run's slot.
 */
static void
ua_verify_worker_detach(int code pg_attribute_unused(), Datum arg pg_attribute_unused())
{
	PGPROC	   *helper = NULL;

	LWLockAcquire(ua_verify->lock, LW_EXCLUSIVE);
	if (ua_verify_my_slot >= 0 &&
		ua_verify->slots[ua_verify_my_slot].proc == MyProc)
	{
		helper = ua_verify->slots[ua_verify_my_slot].helper_proc;
		memset(&ua_verify->slots[ua_verify_my_slot], 0, sizeof(UaVerifySlot));
	}
	LWLockRelease(ua_verify->lock);
	/* The helper sees the slot gone and exits. */
	if (helper)
		SetLatch(&helper->procLatch);
}

/*
 * ua_verify_cancelled
 *		Whether cancel_verify() asked this run to stop.
 */
bool
ua_verify_cancelled(void)
{
	bool		cancel;

	LWLockAcquire(ua_verify->lock, LW_SHARED);
	cancel = ua_verify->slots[ua_verify_my_slot].cancel;
	LWLockRelease(ua_verify->lock);
	return cancel;
}

/*
 * ua_verify_publish
 *		Show the table verified now and the rows compared so far.
 */
static void
ua_verify_publish(Oid relid, int64 rows_done)
{
	LWLockAcquire(ua_verify->lock, LW_EXCLUSIVE);
	ua_verify->slots[ua_verify_my_slot].relid = relid;
	ua_verify->slots[ua_verify_my_slot].rows_done = rows_done;
	LWLockRelease(ua_verify->lock);
}

/*
 * ua_verify_peer_query
 *		ua_peer_query as the role that called verify() (its user mapping).
 *		Caller is in a transaction.
 */
static PGresult *
ua_verify_peer_query(UaVerifyRun *run, const char *sql, int nparams,
					 const char *const *params, TimestampTz deadline)
{
	Oid			save_userid;
	int			save_sec;
	PGresult   *volatile res = NULL;

	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(run->roleid, save_sec | SECURITY_LOCAL_USERID_CHANGE);
	PG_TRY();
	{
		res = ua_peer_query(run->peer, sql, nparams, params, deadline);
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(save_userid, save_sec);
	}
	PG_END_TRY();
	return res;
}

/*
 * ua_verify_exec
 *		Run a bookkeeping statement in a transaction of its own, through
 *		the fence.  Parameters as ua_spi_exec_typed.
 */
static void
ua_verify_exec(const char *sql, int nargs, Oid *types, Datum *values,
			   const char *nulls, int expected)
{
	MemoryContext cxt = CurrentMemoryContext;

	ua_xact_begin(NULL);
	ua_fence_exempt_begin();
	ua_spi_exec_typed(sql, nargs, types, values, nulls, expected);
	ua_fence_exempt_end();
	ua_xact_end(cxt);
}

/*
 * ua_verify_add_diff
 *		Record one difference of the table (in its own transaction).
 */
static void
ua_verify_add_diff(UaVerifyRun *run, UaVerifyTable *t, const char *kind,
				   UaVerifyRange *r, int64 rows_there, bool has_rows_there,
				   const char *detail)
{
	Oid			types[10] = {INT8OID, TEXTOID, TEXTOID, INT8OID, TEXTOID,
	TEXTARRAYOID, TEXTARRAYOID, INT8OID, INT8OID, TEXTOID};
	Datum		values[10];
	char		nulls[10] = "          ";

	values[0] = Int64GetDatum(run->run_id);
	values[1] = CStringGetTextDatum(t->schemaname);
	values[2] = CStringGetTextDatum(t->relname);
	values[3] = Int64GetDatum(r ? r->range_no : 0);
	nulls[3] = r ? ' ' : 'n';
	values[4] = CStringGetTextDatum(kind);
	values[5] = r ? r->key_from : (Datum) 0;
	nulls[5] = (r && r->key_from) ? ' ' : 'n';
	values[6] = r ? r->key_to : (Datum) 0;
	nulls[6] = (r && r->key_to) ? ' ' : 'n';
	values[7] = Int64GetDatum(r ? r->here.rows : 0);
	nulls[7] = r ? ' ' : 'n';
	values[8] = Int64GetDatum(rows_there);
	nulls[8] = has_rows_there ? ' ' : 'n';
	values[9] = detail ? CStringGetTextDatum(detail) : (Datum) 0;
	nulls[9] = detail ? ' ' : 'n';
	ua_verify_exec("INSERT INTO upgrade_assist.verify_diff"
				   " (run_id, schemaname, relname, range_no, kind, key_from, key_to,"
				   "  rows_here, rows_there, detail)"
				   " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
				   10, types, values, nulls, SPI_OK_INSERT);
}

/*
 * ua_verify_add_key_diffs
 *		Record the keys whose hashes differ between this side's keys pass of
 *		range r and the peer's (keys and hashes as array text); returns how
 *		many.
 */
static int64
ua_verify_add_key_diffs(UaVerifyRun *run, UaVerifyTable *t, UaVerifyRange *r,
						const char *keys_there, const char *hashes_there)
{
	Oid			types[10] = {INT8OID, TEXTOID, TEXTOID, INT8OID, TEXTOID,
		TEXTOID, TEXTOID, TEXTOID, TEXTARRAYOID, TEXTARRAYOID};
	Datum		values[10];
	char		nulls[10] = "          ";
	MemoryContext cxt = CurrentMemoryContext;
	uint64		n;

	values[0] = Int64GetDatum(run->run_id);
	values[1] = CStringGetTextDatum(t->schemaname);
	values[2] = CStringGetTextDatum(t->relname);
	values[3] = Int64GetDatum(r->range_no);
	values[4] = r->here.keys ? CStringGetTextDatum(r->here.keys) : (Datum) 0;
	nulls[4] = r->here.keys ? ' ' : 'n';
	values[5] = r->here.hashes ? CStringGetTextDatum(r->here.hashes) : (Datum) 0;
	nulls[5] = r->here.hashes ? ' ' : 'n';
	values[6] = keys_there ? CStringGetTextDatum(keys_there) : (Datum) 0;
	nulls[6] = keys_there ? ' ' : 'n';
	values[7] = hashes_there ? CStringGetTextDatum(hashes_there) : (Datum) 0;
	nulls[7] = hashes_there ? ' ' : 'n';
	values[8] = r->key_from;
	nulls[8] = r->key_from ? ' ' : 'n';
	values[9] = r->key_to;
	nulls[9] = r->key_to ? ' ' : 'n';

	ua_xact_begin(NULL);
	ua_fence_exempt_begin();
	n = ua_spi_exec_typed("INSERT INTO upgrade_assist.verify_diff"
						  " (run_id, schemaname, relname, range_no, kind, key_from, key_to, key)"
						  " SELECT $1, $2, $3, $4,"
						  "        CASE WHEN t.k IS NULL THEN 'missing there'"
						  "             WHEN h.k IS NULL THEN 'missing here'"
						  "             ELSE 'changed' END,"
						  "        $9, $10, coalesce(h.k, t.k)"
						  "   FROM unnest($5::text[], $6::bigint[]) AS h(k, x)"
						  "   FULL JOIN unnest($7::text[], $8::bigint[]) AS t(k, x)"
						  "     ON h.k = t.k"
						  "  WHERE h.x IS DISTINCT FROM t.x",
						  10, types, values, nulls, SPI_OK_INSERT);
	ua_fence_exempt_end();
	ua_xact_end(cxt);
	return (int64) n;
}

/*
 * ua_verify_describe
 *		Fill t with the table's columns and primary key (this side's
 *		catalog, in attnum and key order) and check that the peer has a
 *		table of that name.  Returns false, with t->note set, when it is
 *		gone here or missing on the peer.
 */
static bool
ua_verify_describe(UaVerifyRun *run, UaVerifyTable *t, MemoryContext cxt)
{
	Oid			types[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(t->relid)};
	bool		isnull;
	bool		exists;

	ua_xact_begin("verify: describing a table");
	exists = SearchSysCacheExists1(RELOID, ObjectIdGetDatum(t->relid));
	if (exists)
	{
		Datum		d;

		t->qualified = MemoryContextStrdup(cxt,
										   quote_qualified_identifier(t->schemaname, t->relname));
		ua_spi_exec_typed("SELECT (SELECT pg_catalog.array_agg(a.attname::pg_catalog.text ORDER BY a.attnum)"
						  "          FROM pg_catalog.pg_attribute a"
						  "         WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped),"
						  "       (SELECT pg_catalog.array_agg(a.attname::pg_catalog.text ORDER BY k.ord)"
						  "          FROM pg_catalog.pg_index i,"
						  "               unnest(i.indkey::pg_catalog.int2[]) WITH ORDINALITY AS k(attnum, ord)"
						  "          JOIN pg_catalog.pg_attribute a ON a.attrelid = $1 AND a.attnum = k.attnum"
						  "         WHERE i.indrelid = $1 AND i.indisprimary)",
						  1, types, values, NULL, SPI_OK_SELECT);
		{
			MemoryContext old = MemoryContextSwitchTo(cxt);

			d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
			t->columns = isnull ? (Datum) 0 : datumCopy(d, false, -1);
			d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
			t->key_columns = isnull ? (Datum) 0 : datumCopy(d, false, -1);
			MemoryContextSwitchTo(old);
		}
	}
	if (!exists || t->columns == (Datum) 0)
	{
		ua_xact_end(cxt);
		t->note = "the table was dropped here";
		return false;
	}

	{
		const char *params[1] = {t->qualified};
		PGresult   *res;

		res = ua_verify_peer_query(run,
								   "SELECT pg_catalog.to_regclass($1) IS NOT NULL",
								   1, params,
								   TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
															   run->timeout_ms));
		exists = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
		PQclear(res);
	}
	ua_xact_end(cxt);
	if (!exists)
	{
		t->note = "the table does not exist on the peer";
		return false;
	}
	return true;
}

static bool ua_verify_have_helper = false;

/*
 * The range whose row committed last and whose figures the helper is still
 * computing (NULL: none).  On a table nobody writes, the worker finds the
 * next range's bound while the helper computes the previous range; it
 * collects the figures before it asks for the next snapshot (the helper
 * serves one request at a time) and before it compares ranges with the
 * peer's.
 */
static UaVerifyRange *ua_verify_owed = NULL;
static uint64 ua_verify_owed_req = 0;
static MemoryContext ua_verify_owed_cxt = NULL;

/*
 * ua_verify_helper_collect
 *		Wait for the helper's figures of the owed range, if any, and store
 *		them in it.  Throws as ua_verify_helper_result (the owed range is
 *		forgotten first).
 */
static void
ua_verify_helper_collect(UaVerifyRun *run)
{
	UaVerifyRange *r = ua_verify_owed;

	if (r == NULL)
		return;
	ua_verify_owed = NULL;
	ua_verify_helper_result(ua_verify_owed_req, run->timeout_ms, &r->here,
							ua_verify_owed_cxt);
}

/*
 * ua_verify_write_range
 *		One range of the table, this side: find its upper bound (mode
 *		range: chunk_rows keys after r->key_from), take the table in SHARE
 *		mode, compute the count and checksum (and key hashes in keys mode),
 *		insert the verify_range row and commit.  Fills r (allocated in cxt).
 *		Returns UA_VW_LOCK_REFUSED when the lock was not granted within
 *		verify_lock_timeout (nothing written; try again), UA_VW_TOO_LARGE
 *		for a table without primary key that has more than chunk_rows rows
 *		(nothing written).  *lock_ms receives how long the lock
 *		was held, *blocked_ms how long since it was asked for (what a writer
 *		queued behind the request waited at most), *waiters whether writers
 *		queued behind it.
 */
static UaVerifyWrite
ua_verify_write_range(UaVerifyRun *run, UaVerifyTable *t, UaVerifyRange *r,
					  double *lock_ms, double *blocked_ms, double *work_ms,
					  bool *waiters, MemoryContext cxt)
{
	volatile UaVerifyWrite result = UA_VW_WRITTEN;
	bool		whole = strcmp(r->mode, UA_VERIFY_MODE_WHOLE) == 0;
	bool		with_keys = strcmp(r->mode, UA_VERIFY_MODE_KEYS) == 0;
	bool		ordered = strcmp(r->mode, UA_VERIFY_MODE_RANGE) == 0;
	bool		helped = ordered && ua_verify_have_helper;
	volatile uint64 req = 0;
	volatile bool went = false;
	TimestampTz locked_at = 0;
	TimestampTz asked_at = 0;

	*waiters = false;
	*lock_ms = 0;
	*blocked_ms = 0;
	*work_ms = 0;
	if (!helped)
		ua_verify_helper_collect(run);
	ua_xact_begin("verify: range");
	ua_fence_exempt_begin();
	PG_TRY();
	{
		int			level = ua_verify_pin_settings();
		char		buf[32];
		char	   *sql = NULL;
		int			lead = 0;

		if (helped)
		{
			/*
			 * With the helper, the bound first, without a lock: the range is
			 * whatever lies between its bounds when its row commits.
			 */
			Datum		values[3] = {r->key_from, (Datum) 0, Int64GetDatum(t->chunk)};
			char		nulls[3] = {r->key_from ? ' ' : 'n', 'n', ' '};
			bool		isnull;

			sql = ua_verify_bound_sql(t->relid, t->key_columns, r->key_from != (Datum) 0);
			if (SPI_execute_plan(ua_verify_plan(sql), values, nulls, false, 1) != SPI_OK_SELECT)
				elog(ERROR, "the range's bound could not be read");
			r->key_to = (Datum) 0;
			if (SPI_processed == 1)
			{
				Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
											  1, &isnull);
				MemoryContext old = MemoryContextSwitchTo(cxt);

				r->key_to = datumCopy(d, false, -1);
				MemoryContextSwitchTo(old);
			}
			/* The helper is free for this range's snapshot once done. */
			ua_verify_helper_collect(run);
		}
		else
		{
			/*
			 * A range pass reads the next t->chunk rows in key order: the
			 * last one's key is the range's upper bound (none when fewer were
			 * left: the range runs to the end of the table, and the lock
			 * keeps it so).
			 */
			sql = ua_verify_range_sql(t->relid, r->mode, t->key_columns, t->columns,
									  r->key_from != (Datum) 0,
									  !ordered && r->key_to != (Datum) 0,
									  whole, ordered, &lead);
		}

		/*
		 * The commit releases the lock: it need not wait for the WAL flush
		 * (nor for a synchronous standby), since what matters is the commit
		 * record's place in the stream, not its durability (a crash ends the
		 * run anyway).
		 */
		(void) set_config_option("synchronous_commit", "off", PGC_USERSET,
								 PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0, false);
		/* The lock: a bounded wait, so that writers never queue for long. */
		snprintf(buf, sizeof(buf), "%dms", ua_verify_lock_timeout);
		(void) set_config_option("lock_timeout", buf, PGC_SUSET, PGC_S_SESSION,
								 GUC_ACTION_LOCAL, true, 0, false);
		asked_at = GetCurrentTimestamp();
		LockRelationOid(t->relid, ShareLock);
		locked_at = GetCurrentTimestamp();

		if (helped)
			(void) ua_verify_helper_ask(run->origin, r->range_no, &req);
		else
		{
			ua_verify_compute(sql, lead, with_keys, ordered, r->key_from,
							  ordered ? (Datum) 0 : r->key_to,
							  ordered ? (int64) t->chunk : (int64) run->chunk_rows + 1,
							  &r->here, cxt);
			if (ordered)
				r->key_to = r->here.rows < t->chunk ? (Datum) 0 : r->here.last_key;
		}
		if (whole && r->here.rows > run->chunk_rows)
			result = UA_VW_TOO_LARGE;
		else
		{
			Oid			types[16] = {INT8OID, INT8OID, INT8OID, TEXTOID, TEXTOID,
				TEXTOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
			INT8OID, INT8OID, TEXTOID, FLOAT8OID, TEXTOID, TEXTOID};
			Datum		values[16];
			char		nulls[16] = "                ";

			values[0] = Int64GetDatum(run->origin);
			values[1] = Int64GetDatum(run->run_id);
			values[2] = Int64GetDatum(r->range_no);
			values[3] = CStringGetTextDatum(t->schemaname);
			values[4] = CStringGetTextDatum(t->relname);
			values[5] = CStringGetTextDatum(r->mode);
			values[6] = t->key_columns;
			nulls[6] = t->key_columns ? ' ' : 'n';
			values[7] = t->columns;
			values[8] = r->key_from;
			nulls[8] = r->key_from ? ' ' : 'n';
			values[9] = r->key_to;
			nulls[9] = r->key_to ? ' ' : 'n';
			values[10] = Int64GetDatum((int64) run->chunk_rows + 1);
			nulls[10] = whole ? ' ' : 'n';
			/* The helper's figures come after the commit: kept here only. */
			values[11] = Int64GetDatum(r->here.rows);
			nulls[11] = helped ? 'n' : ' ';
			values[12] = helped ? (Datum) 0 : CStringGetTextDatum(r->here.sum);
			nulls[12] = helped ? 'n' : ' ';
			values[13] = Float8GetDatum(ua_ms_since(locked_at));
			/* The keys stay here: the peer sends its own back. */
			nulls[14] = nulls[15] = 'n';
			(void) with_keys;
			ua_spi_exec_typed("INSERT INTO upgrade_assist.verify_range"
							  " (origin, run_id, range_no, schemaname, relname, mode,"
							  "  key_columns, columns, key_from, key_to, row_limit,"
							  "  rows_here, sum_here, lock_ms, written_at)"
							  " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11,"
							  "         $12, $13::pg_catalog.numeric, $14,"
							  "         pg_catalog.clock_timestamp())",
							  14, types, values, nulls, SPI_OK_INSERT);
			result = UA_VW_WRITTEN;
		}
		{
			Relation	rel = relation_open(t->relid, NoLock);

			*waiters = LockHasWaitersRelation(rel, ShareLock);
			relation_close(rel, NoLock);
		}
		AtEOXact_GUC(true, level);
		ua_fence_exempt_end();
		ua_xact_end(cxt);
		*lock_ms = ua_ms_since(locked_at);
		*blocked_ms = ua_ms_since(asked_at);
		if (req != 0)
		{
			went = true;
			ua_verify_helper_go(req, result == UA_VW_WRITTEN);
		}
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		ua_fence_exempt_end_all();
		edata = ua_recover_from_error(cxt);
		if (req != 0 && !went)
			ua_verify_helper_go(req, false);
		if (edata->sqlerrcode != ERRCODE_LOCK_NOT_AVAILABLE)
			ReThrowError(edata);
		FreeErrorData(edata);
		return UA_VW_LOCK_REFUSED;
	}
	PG_END_TRY();
	*work_ms = ua_ms_since(asked_at);
	if (req != 0 && result == UA_VW_WRITTEN)
	{
		/* Collected before the next snapshot, or at once when throttled. */
		ua_verify_owed = r;
		ua_verify_owed_req = req;
		ua_verify_owed_cxt = cxt;
		r->asked_at = asked_at;
	}
	return result;
}

/*
 * ua_verify_fetch
 *		Compare with this side the ranges of pending[0..n-1] (in range
 *		number order) that the peer has computed, in order, stopping at the
 *		first it has not; with wait, first wait until it has computed them
 *		all.  Records every difference; a differing range, when the run asks
 *		for keys, is compared again key by key.  Returns how many of pending
 *		were compared (all of them with wait).  Throws 57014 when the peer
 *		lacks a range after the run's timeout.
 */
static void ua_verify_run_range(UaVerifyRun *run, UaVerifyTable *t,
								UaVerifyRange *r, MemoryContext cxt);

static int
ua_verify_fetch(UaVerifyRun *run, UaVerifyTable *t, UaVerifyRange *pending,
				int n, bool wait, MemoryContext cxt)
{
	TimestampTz start = GetCurrentTimestamp();
	TimestampTz deadline = TimestampTzPlusMilliseconds(start, run->timeout_ms);
	char		origin[32];
	char		runbuf[32];
	char		from[32];
	char		to[32];
	const char *params[4] = {origin, runbuf, from, to};
	PGresult   *res = NULL;
	int			done = 0;
	int			row = 0;

	if (n == 0)
		return 0;
	ua_verify_helper_collect(run);
	snprintf(origin, sizeof(origin), INT64_FORMAT, run->origin);
	snprintf(runbuf, sizeof(runbuf), INT64_FORMAT, run->run_id);
	snprintf(from, sizeof(from), INT64_FORMAT, pending[0].range_no);
	snprintf(to, sizeof(to), INT64_FORMAT, pending[n - 1].range_no);

	for (;;)
	{
		int			have = 0;

		ua_xact_begin("verify: waiting for the peer");
		res = ua_verify_peer_query(run,
								   "SELECT range_no, rows_there, sum_there::pg_catalog.text,"
								   "       error_there, keys_there::pg_catalog.text,"
								   "       hashes_there::pg_catalog.text"
								   "  FROM upgrade_assist.verify_range"
								   " WHERE origin = $1::pg_catalog.int8"
								   "   AND run_id = $2::pg_catalog.int8"
								   "   AND range_no BETWEEN $3::pg_catalog.int8 AND $4::pg_catalog.int8"
								   "   AND computed_at IS NOT NULL"
								   " ORDER BY range_no",
								   4, params, deadline);
		ua_xact_end(cxt);
		/* The rows may include keys passes numbered among them: count ours. */
		for (int i = 0, j = 0; i < PQntuples(res) && j < n; i++)
		{
			int64		no = strtoi64(PQgetvalue(res, i, 0), NULL, 10);

			while (j < n && pending[j].range_no < no)
				j++;
			if (j < n && pending[j].range_no == no)
				have++, j++;
		}
		if (have == n || !wait)
			break;
		PQclear(res);
		res = NULL;
		if (ua_ms_until(deadline) <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_QUERY_CANCELED),
					 errmsg("range " INT64_FORMAT " of table %s did not show on the peer within the timeout",
							pending[n - 1].range_no, t->qualified),
					 errhint("Check that upgrade_assist.verify_range is replicated to the peer by the same subscription as the table.")));
		if (ua_verify_cancelled())
			ereport(ERROR,
					(errcode(ERRCODE_QUERY_CANCELED),
					 errmsg("verification cancelled")));
		(void) ua_wait(WL_LATCH_SET | WL_TIMEOUT,
					   Min(ua_poll_backoff_ms((int64) ua_ms_since(start)),
						   Max(ua_ms_until(deadline), 1)),
					   UA_WE_PEER);
	}

	for (done = 0; done < n && !t->not_comparable; done++)
	{
		UaVerifyRange *r = &pending[done];
		const char *error;
		int64		rows_there;
		int			i;

		while (row < PQntuples(res) &&
			   strtoi64(PQgetvalue(res, row, 0), NULL, 10) < r->range_no)
			row++;
		if (row >= PQntuples(res) ||
			strtoi64(PQgetvalue(res, row, 0), NULL, 10) != r->range_no)
			break;				/* not computed yet: later */
		i = row++;
		error = PQgetisnull(res, i, 3) ? NULL : PQgetvalue(res, i, 3);

		if (error)
		{
			t->not_comparable = true;
			t->note = MemoryContextStrdup(t->cxt, error);
			ua_verify_add_diff(run, t, "not comparable", r, 0, false, error);
			done++;
			break;
		}
		rows_there = strtoi64(PQgetvalue(res, i, 1), NULL, 10);
		if (!r->keys_pass)
		{
			t->ranges_done++;
			t->rows_done += r->here.rows;
		}
		if (rows_there == r->here.rows &&
			strcmp(PQgetvalue(res, i, 2), r->here.sum) == 0)
		{
			if (r->keys_pass)
				ua_verify_add_diff(run, t, "range", r, rows_there, true,
								   "the range matched when compared again key by key: it changed in between");
			continue;
		}
		if (r->keys_pass)
		{
			int64		nkeys;

			nkeys = ua_verify_add_key_diffs(run, t, r,
											PQgetisnull(res, i, 4) ? NULL : PQgetvalue(res, i, 4),
											PQgetisnull(res, i, 5) ? NULL : PQgetvalue(res, i, 5));
			if (nkeys == 0)
				ua_verify_add_diff(run, t, "range", r, rows_there, true,
								   "no differing key found when compared again");
			continue;
		}
		t->ranges_differ++;
		ua_verify_add_diff(run, t, "range", r, rows_there, true, NULL);
		if (run->find_keys && strcmp(r->mode, UA_VERIFY_MODE_RANGE) == 0)
		{
			UaVerifyRange keys = *r;

			keys.mode = UA_VERIFY_MODE_KEYS;
			keys.keys_pass = true;
			ua_verify_run_range(run, t, &keys, cxt);
		}
	}
	PQclear(res);
	return done;
}

/*
 * ua_verify_throttle_pause
 *		After a range of a busy table (writers queued behind its lock, or it
 *		waited for writers in flight): pause verify_throttle times the time
 *		the range took (from its lock request to its checksum, computed
 *		under the lock or by the helper), watching the latch (a cancel).
 *		The run's share of the time, and of the CPU, is then about
 *		1 / (1 + verify_throttle) while writers are about.
 */
static void
ua_verify_throttle_pause(double work_ms, bool busy)
{
	long		ms;

	if (!busy || ua_verify_throttle <= 0)
		return;
	ms = (long) (work_ms * ua_verify_throttle) + 1;
	(void) ua_wait(WL_LATCH_SET | WL_TIMEOUT, Min(ms, 10000L), UA_WE_PEER);
}

/*
 * ua_verify_adapt_chunk
 *		Keep a range's hold of its lock near verify_max_lock_time: after a
 *		range that held it longer, the next ranges have half as many rows
 *		(down to UA_VERIFY_MIN_ADAPT); after one that held it less than a
 *		quarter of that, twice as many again (up to the run's chunk_rows).
 */
static void
ua_verify_adapt_chunk(UaVerifyRun *run, UaVerifyTable *t, double lock_ms)
{
	if (lock_ms > ua_verify_max_lock_time)
		t->chunk = Max(t->chunk / 2, Min(UA_VERIFY_MIN_ADAPT, run->chunk_rows));
	else if (lock_ms < ua_verify_max_lock_time / 4.0 && t->chunk < run->chunk_rows)
		t->chunk = (int) Min((int64) t->chunk * 2, (int64) run->chunk_rows);
}

/*
 * ua_verify_write_retrying
 *		ua_verify_write_range until the lock is granted, pausing a little
 *		longer after each refusal; throws 55P03 after UA_VERIFY_LOCK_TRIES.
 *		Returns false only for a table without primary key that is too
 *		large to compare under one lock.
 */
static bool
ua_verify_write_retrying(UaVerifyRun *run, UaVerifyTable *t, UaVerifyRange *r,
						 MemoryContext cxt)
{
	for (int tries = 1;; tries++)
	{
		double		lock_ms;
		double		blocked_ms;
		double		work_ms;
		bool		waiters;
		UaVerifyWrite w;

		CHECK_FOR_INTERRUPTS();
		if (ua_verify_cancelled())
			ereport(ERROR,
					(errcode(ERRCODE_QUERY_CANCELED),
					 errmsg("verification cancelled")));
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		w = ua_verify_write_range(run, t, r, &lock_ms, &blocked_ms, &work_ms,
								  &waiters, cxt);
		if (w != UA_VW_LOCK_REFUSED)
		{
			/* Writers in flight or queued: the table is busy. */
			bool		busy = waiters || blocked_ms - lock_ms >= 1.0;

			t->max_lock_ms = Max(t->max_lock_ms, blocked_ms);
			ua_verify_adapt_chunk(run, t, lock_ms);

			/*
			 * A busy table is throttled for the range's whole work, the
			 * helper's checksum included: once writers showed, wait for it
			 * now, for the rest of the table (no checksum beside the next
			 * bound's scan, taking CPU from the writers).
			 */
			t->busy |= busy;
			if (t->busy && ua_verify_owed == r)
			{
				ua_verify_helper_collect(run);
				work_ms = ua_ms_since(r->asked_at);
			}
			ua_verify_throttle_pause(work_ms, busy);
			return w == UA_VW_WRITTEN;
		}
		if (tries >= UA_VERIFY_LOCK_TRIES)
			ereport(ERROR,
					(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
					 errmsg("could not lock table %s for a range in %d tries",
							t->qualified, tries)));
		(void) ua_wait(WL_LATCH_SET | WL_TIMEOUT,
					   Min(5L * tries, 200L), UA_WE_PEER);
	}
}

/*
 * ua_verify_run_range
 *		Write one range and wait for the peer's side of it at once (the
 *		keys pass of a differing range).
 */
static void
ua_verify_run_range(UaVerifyRun *run, UaVerifyTable *t, UaVerifyRange *r,
					MemoryContext cxt)
{
	r->range_no = run->next_range++;
	if (ua_verify_write_retrying(run, t, r, cxt))
		(void) ua_verify_fetch(run, t, r, 1, true, cxt);
}

/*
 * ua_verify_set_table
 *		Store the table's state and counters in verify_table.
 */
static void
ua_verify_set_table(UaVerifyRun *run, UaVerifyTable *t, const char *state)
{
	Oid			types[8] = {INT8OID, OIDOID, TEXTOID, INT8OID, INT8OID, INT8OID,
	FLOAT8OID, TEXTOID};
	Datum		values[8];
	char		nulls[8] = "        ";

	values[0] = Int64GetDatum(run->run_id);
	values[1] = ObjectIdGetDatum(t->relid);
	values[2] = CStringGetTextDatum(state);
	values[3] = Int64GetDatum(t->rows_done);
	values[4] = Int64GetDatum(t->ranges_done);
	values[5] = Int64GetDatum(t->ranges_differ);
	values[6] = Float8GetDatum(t->max_lock_ms);
	nulls[6] = t->max_lock_ms > 0 ? ' ' : 'n';
	values[7] = t->note ? CStringGetTextDatum(t->note) : (Datum) 0;
	nulls[7] = t->note ? ' ' : 'n';
	ua_verify_exec("UPDATE upgrade_assist.verify_table"
				   "   SET state = $3, rows_done = $4, ranges_done = $5,"
				   "       ranges_differ = $6, max_lock_ms = $7, note = $8,"
				   "       started_at = coalesce(started_at, now()),"
				   "       ended_at = CASE WHEN $3 NOT IN ('pending', 'running') THEN now() END"
				   " WHERE run_id = $1 AND relid = $2",
				   8, types, values, nulls, SPI_OK_UPDATE);
	ua_verify_publish(strcmp(state, "running") == 0 ? t->relid : InvalidOid,
					  run->rows_before + t->rows_done);
}

/*
 * ua_verify_one_table
 *		Verify the table t of the run, range by range, and store its
 *		outcome.  Throws on a failure the run cannot go on with (the peer
 *		unreachable, a cancel); the caller records it.
 */
static void
ua_verify_one_table(UaVerifyRun *run, UaVerifyTable *t, MemoryContext cxt)
{
	UaVerifyRange *pending;
	int			npending = 0;
	int			since_look = 0;
	Datum		from = (Datum) 0;
	bool		last = false;
	MemoryContext batchcxt;

	t->cxt = cxt;
	t->chunk = run->chunk_rows;
	batchcxt = AllocSetContextCreate(cxt, "upgrade_assist verify batch",
									 ALLOCSET_DEFAULT_SIZES);
	pending = MemoryContextAlloc(cxt, sizeof(UaVerifyRange) * UA_VERIFY_IN_FLIGHT);
	/* A helper gone (it failed) leaves the next tables to the lock. */
	if (ua_verify_have_helper)
	{
		LWLockAcquire(ua_verify->lock, LW_SHARED);
		ua_verify_have_helper = ua_verify_helper_alive();
		LWLockRelease(ua_verify->lock);
	}

	ua_verify_set_table(run, t, "running");
	if (!ua_verify_describe(run, t, cxt))
	{
		t->not_comparable = true;
		ua_verify_add_diff(run, t, "not comparable", NULL, 0, false, t->note);
		ua_verify_set_table(run, t, "not comparable");
		return;
	}

	while (!last && !t->not_comparable)
	{
		UaVerifyRange *r = &pending[npending];

		memset(r, 0, sizeof(UaVerifyRange));
		r->mode = t->key_columns ? UA_VERIFY_MODE_RANGE : UA_VERIFY_MODE_WHOLE;
		r->key_from = from;
		r->range_no = run->next_range++;
		if (!ua_verify_write_retrying(run, t, r, batchcxt))
		{
			char	   *note = psprintf("no primary key, and more than %d rows: "
										"compared only as a whole, under one lock, up to chunk_rows rows",
										run->chunk_rows);

			t->not_comparable = true;
			t->note = MemoryContextStrdup(cxt, note);
			ua_verify_add_diff(run, t, "not comparable", NULL, 0, false, note);
			break;
		}
		npending++;
		since_look++;
		last = (r->key_to == (Datum) 0);
		from = r->key_to;

		/*
		 * The peer computes each range as it applies it, while this side
		 * goes on with the next: every UA_VERIFY_BATCH ranges, compare
		 * those it has done without waiting; wait for them all only when
		 * UA_VERIFY_IN_FLIGHT are written and not compared, and at the end.
		 */
		if (since_look == UA_VERIFY_BATCH || last || npending == UA_VERIFY_IN_FLIGHT)
		{
			bool		drain = last || npending == UA_VERIFY_IN_FLIGHT;
			int			done;

			since_look = 0;
			done = ua_verify_fetch(run, t, pending, npending, drain, batchcxt);
			if (done > 0 && done < npending)
				memmove(pending, pending + done,
						sizeof(UaVerifyRange) * (npending - done));
			npending -= done;
			if (npending == 0)
			{
				MemoryContext old;

				/* Only the next range's lower bound outlives the batch. */
				old = MemoryContextSwitchTo(cxt);
				if (from != (Datum) 0)
					from = datumCopy(from, false, -1);
				MemoryContextSwitchTo(old);
				MemoryContextReset(batchcxt);
			}
			if (done > 0 && !last && !t->not_comparable)
				ua_verify_set_table(run, t, "running");
		}
	}
	ua_verify_set_table(run, t,
						t->not_comparable ? "not comparable" :
						t->ranges_differ > 0 ? "different" : "same");
	run->rows_before += t->rows_done;
}

/*
 * ua_verify_load_run
 *		Read the run's row into *run (allocated in cxt); false when it does
 *		not exist or is no longer running (its transaction rolled back, or
 *		it was cancelled before the worker began).
 */
static bool
ua_verify_load_run(UaVerifyRun *run, MemoryContext cxt)
{
	bool		isnull;
	bool		found;

	ua_xact_begin(NULL);
	found = ua_spi_exec_typed("SELECT peer, chunk_rows::int8, find_keys::int4::int8,"
							  "       (extract(epoch FROM timeout) * 1000)::int8,"
							  "       origin,"
							  "       (SELECT coalesce(max(range_no), 0) + 1"
							  "          FROM upgrade_assist.verify_range g"
							  "         WHERE g.origin = r.origin AND g.run_id = r.run_id)"
							  "  FROM upgrade_assist.verify_run r"
							  " WHERE run_id = $1 AND state = 'running'",
							  1, (Oid[]) {INT8OID}, (Datum[]) {Int64GetDatum(run->run_id)},
							  NULL, SPI_OK_SELECT) == 1;
	if (found)
	{
		run->peer = ua_spi_getvalue(0, 1, cxt);
		run->chunk_rows = (int) ua_spi_getint8(0, 2, &isnull);
		run->find_keys = ua_spi_getint8(0, 3, &isnull) != 0;
		run->timeout_ms = ua_spi_getint8(0, 4, &isnull);
		run->origin = ua_spi_getint8(0, 5, &isnull);
		run->next_range = ua_spi_getint8(0, 6, &isnull);
	}
	ua_xact_end(cxt);
	return found;
}

/*
 * ua_verify_next_table
 *		The run's next pending table, in its order; false when none is left.
 */
static bool
ua_verify_next_table(UaVerifyRun *run, UaVerifyTable *t, MemoryContext cxt)
{
	bool		isnull;
	bool		found;

	memset(t, 0, sizeof(UaVerifyTable));
	ua_xact_begin(NULL);
	found = ua_spi_exec_typed("SELECT relid, schemaname, relname"
							  "  FROM upgrade_assist.verify_table"
							  " WHERE run_id = $1 AND state = 'pending'"
							  " ORDER BY ord LIMIT 1",
							  1, (Oid[]) {INT8OID}, (Datum[]) {Int64GetDatum(run->run_id)},
							  NULL, SPI_OK_SELECT) == 1;
	if (found)
	{
		t->relid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
												  SPI_tuptable->tupdesc, 1, &isnull));
		t->schemaname = ua_spi_getvalue(0, 2, cxt);
		t->relname = ua_spi_getvalue(0, 3, cxt);
		t->qualified = MemoryContextStrdup(cxt,
										   quote_qualified_identifier(t->schemaname, t->relname));
	}
	ua_xact_end(cxt);
	return found;
}

/*
 * ua_verify_end_run
 *		Store the run's outcome unless it was cancelled meanwhile.
 */
static void
ua_verify_end_run(UaVerifyRun *run, const char *state, const char *note)
{
	Oid			types[3] = {INT8OID, TEXTOID, TEXTOID};
	Datum		values[3];
	char		nulls[3] = "   ";

	values[0] = Int64GetDatum(run->run_id);
	values[1] = CStringGetTextDatum(state);
	values[2] = note ? CStringGetTextDatum(note) : (Datum) 0;
	nulls[2] = note ? ' ' : 'n';
	ua_verify_exec("UPDATE upgrade_assist.verify_run"
				   "   SET state = $2, note = $3, ended_at = now()"
				   " WHERE run_id = $1 AND state = 'running'",
				   3, types, values, nulls, SPI_OK_UPDATE);
}

/*
 * ua_verify_worker_main
 *		Entry point of a run's worker.  main_arg is its slot; bgw_extra
 *		holds the run id.  Exits when every table is done, when the run is
 *		cancelled, or when the launching transaction rolled back.
 */
void
ua_verify_worker_main(Datum main_arg)
{
	UaVerifyRun run;
	TransactionId xid;
	Oid			dboid;
	MemoryContext runcxt;
	MemoryContext tablecxt;

	memset(&run, 0, sizeof(run));
	memcpy(&run.run_id, MyBgworkerEntry->bgw_extra, sizeof(run.run_id));
	ua_verify_my_slot = DatumGetInt32(main_arg);

	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();

	if (ua_verify == NULL || ua_verify_my_slot < 0 ||
		ua_verify_my_slot >= UA_VERIFY_MAX_RUNS)
		proc_exit(0);

	LWLockAcquire(ua_verify->lock, LW_EXCLUSIVE);
	if (ua_verify->slots[ua_verify_my_slot].run_id != run.run_id ||
		ua_verify->slots[ua_verify_my_slot].attached)
	{
		LWLockRelease(ua_verify->lock);
		proc_exit(0);
	}
	ua_verify->slots[ua_verify_my_slot].attached = true;
	ua_verify->slots[ua_verify_my_slot].pid = MyProcPid;
	ua_verify->slots[ua_verify_my_slot].proc = MyProc;
	dboid = ua_verify->slots[ua_verify_my_slot].dboid;
	run.roleid = ua_verify->slots[ua_verify_my_slot].roleid;
	xid = ua_verify->slots[ua_verify_my_slot].launcher_xid;
	LWLockRelease(ua_verify->lock);
	before_shmem_exit(ua_verify_worker_detach, (Datum) 0);

	/* Bookkeeping and checksums as the bootstrap superuser; peers as the caller. */
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	SetConfigOption("application_name", "upgrade_assist verify",
					PGC_USERSET, PGC_S_OVERRIDE);

	StartTransactionCommand();
	if (TransactionIdIsValid(xid))
		XactLockTableWait(xid, NULL, NULL, XLTW_None);
	CommitTransactionCommand();

	runcxt = AllocSetContextCreate(TopMemoryContext, "upgrade_assist verify",
								   ALLOCSET_DEFAULT_SIZES);
	tablecxt = AllocSetContextCreate(runcxt, "upgrade_assist verify table",
									 ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(runcxt);
	if (!ua_verify_load_run(&run, runcxt))
		proc_exit(0);
	ua_verify_have_helper = ua_verify_helper_start(run.run_id);

	for (;;)
	{
		UaVerifyTable t;
		volatile bool stop = false;

		MemoryContextReset(tablecxt);
		MemoryContextSwitchTo(tablecxt);
		CHECK_FOR_INTERRUPTS();
		if (ua_verify_cancelled() || !ua_verify_next_table(&run, &t, tablecxt))
			break;

		PG_TRY();
		{
			ua_verify_one_table(&run, &t, tablecxt);
		}
		PG_CATCH();
		{
			ErrorData  *edata = ua_recover_from_error(tablecxt);

			/* Its memory goes with the table's; the helper's answer too. */
			ua_verify_owed = NULL;
			ua_fence_exempt_end_all();
			if (ua_verify_cancelled())
			{
				ua_verify_set_table(&run, &t, "cancelled");
				stop = true;
			}
			else
			{
				t.not_comparable = true;
				t.note = pstrdup(edata->message ? edata->message : "unknown error");
				ua_verify_add_diff(&run, &t, "not comparable", NULL, 0, false, t.note);
				ua_verify_set_table(&run, &t, "not comparable");
				/* A peer that cannot be reached fails the run, not each table. */
				if (edata->sqlerrcode == ERRCODE_CONNECTION_FAILURE ||
					edata->sqlerrcode == ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION)
				{
					ua_verify_end_run(&run, "failed", t.note);
					stop = true;
				}
			}
			FreeErrorData(edata);
		}
		PG_END_TRY();
		if (stop)
			break;
	}
	MemoryContextSwitchTo(runcxt);
	if (!ua_verify_cancelled())
		ua_verify_end_run(&run, "done", NULL);
	proc_exit(0);
}
