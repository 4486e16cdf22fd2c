/*-------------------------------------------------------------------------
 *
 * marker.c
 *	  Markers: rows of upgrade_assist.marker that prove, once they show up
 *	  on a peer, that every change committed before them has arrived too.
 *
 * SQL functions: emit_marker (in the caller's transaction), wait_for_marker
 * and round_trip (the marker committed on its own by the marker writer, see
 * writer.c, then polled for on the peer), and the trigger function
 * marker_skip_own, which keeps a marker that comes back from the peer (both
 * directions replicate for a moment during a cutover) out of the table.
 *
 * Marker numbers (seq) grow per origin without a sequence object, because
 * sequences do not replicate.  The next number of each database lives in
 * shared memory (UaMarkerDb.next_seq, under UaMarkerShared->lock); the first
 * allocation after a server start reads the highest seq of this origin from
 * the table's primary key, counting uncommitted and dead rows too, so that a
 * number can never be handed out twice.  Numbers of aborted transactions are
 * simply skipped.
 *
 * Shared state: UaMarkerShared (marker.h), created here, under one LWLock
 * of the tranche "upgrade_assist marker": the per-database counters and
 * writers and the marker writer's requests (marker_writer.c).
 *
 * IDENTIFICATION
 *	  src/marker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/pg_lsn.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "fence.h"
#include "marker.h"
#include "remote.h"
#include "util.h"

/* How long one look at the peer may outlast the caller's deadline. */
#define UA_LOOK_GRACE_MS 1000

/* Saved plan of the marker INSERT, per backend. */
static SPIPlanPtr ua_insert_plan = NULL;

/* Shared state; NULL unless the library was preloaded. */
UaMarkerShared *ua_marker_shared = NULL;

PG_FUNCTION_INFO_V1(emit_marker);
PG_FUNCTION_INFO_V1(wait_for_marker);
PG_FUNCTION_INFO_V1(round_trip);
PG_FUNCTION_INFO_V1(marker_skip_own);

/*
 * ua_marker_shmem_size
 *		Bytes of shared memory needed.  Valid once MaxBackends is known.
 */
static Size
ua_marker_shmem_size(void)
{
	return add_size(offsetof(UaMarkerShared, requests),
					mul_size(UA_MAX_BACKENDS(), sizeof(UaWriteRequest)));
}

/*
 * ua_marker_shmem_request
 *		Ask for the shared state and its lock (shmem request hook).
 */
void
ua_marker_shmem_request(void)
{
	RequestAddinShmemSpace(ua_marker_shmem_size());
	RequestNamedLWLockTranche("upgrade_assist marker", 1);
}

/*
 * ua_marker_shmem_startup
 *		Attach to or create the shared state; caller holds
 *		AddinShmemInitLock.
 */
void
ua_marker_shmem_startup(void)
{
	bool		found;

	ua_marker_shared = ShmemInitStruct("upgrade_assist marker",
									   ua_marker_shmem_size(), &found);
	if (!found)
	{
		memset(ua_marker_shared, 0, ua_marker_shmem_size());
		ua_marker_shared->lock = &(GetNamedLWLockTranche("upgrade_assist marker"))->lock;
		ua_marker_shared->nrequests = UA_MAX_BACKENDS();
	}
}

/*
 * ua_marker_init
 *		The markers' settings; from _PG_init.
 */
void
ua_marker_init(void)
{
	DefineCustomIntVariable("upgrade_assist.marker_writer_idle_timeout",
							"Seconds a marker writer without work waits before it exits.",
							"The marker writer commits round_trip's markers; the first call after it exited starts it again.",
							&ua_writer_idle_timeout,
							300, 1, 86400,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
}

/*
 * ua_origin
 *		This cluster's marker origin: its system identifier.  System
 *		identifiers are below 2^63 until 2038, so the cast keeps them positive.
 */
int64
ua_origin(void)
{
	return (int64) GetSystemIdentifier();
}

/*
 * ua_marker_relid
 *		OID of upgrade_assist.marker; throws 42P01 when the extension is not
 *		installed in this database.
 */
static Oid
ua_marker_relid(void)
{
	Oid			nsp = get_namespace_oid(UA_SCHEMA, true);
	Oid			relid = OidIsValid(nsp) ? get_relname_relid("marker", nsp) : InvalidOid;

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table upgrade_assist.marker does not exist"),
				 errhint("Run CREATE EXTENSION upgrade_assist in this database.")));
	return relid;
}

/*
 * ua_marker_max_seq
 *		Highest seq of this origin in the marker table, counting every row
 *		version (committed, in progress or dead); 0 when there is none.
 *		Must be called inside a transaction.
 */
static int64
ua_marker_max_seq(void)
{
	Relation	rel = table_open(ua_marker_relid(), AccessShareLock);
	Relation	idx;
	Oid			pkoid;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	int64		maxseq = 0;

	(void) RelationGetIndexList(rel);	/* fills rd_pkindex */
	pkoid = rel->rd_pkindex;
	if (!OidIsValid(pkoid))
		elog(ERROR, "upgrade_assist.marker has no primary key");
	idx = index_open(pkoid, AccessShareLock);

	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_INT8EQ,
				Int64GetDatum(ua_origin()));
	scan = systable_beginscan_ordered(rel, idx, SnapshotAny, 1, &key);
	tup = systable_getnext_ordered(scan, BackwardScanDirection);
	if (HeapTupleIsValid(tup))
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, 2, RelationGetDescr(rel), &isnull);

		if (!isnull)
			maxseq = DatumGetInt64(d);
	}
	systable_endscan_ordered(scan);
	index_close(idx, AccessShareLock);
	table_close(rel, AccessShareLock);
	return maxseq;
}

/*
 * ua_marker_db
 *		This database's shared slot, claimed when missing.  Caller holds
 *		UaMarkerShared->lock exclusively.  Throws 54000 when all slots are
 *		taken.
 */
UaMarkerDb *
ua_marker_db(void)
{
	UaMarkerDb *free_slot = NULL;

	for (int i = 0; i < UA_MARKER_MAX_DATABASES; i++)
	{
		UaMarkerDb *slot = &ua_marker_shared->dbs[i];

		if (slot->dboid == MyDatabaseId)
			return slot;
		if (slot->dboid == InvalidOid && free_slot == NULL)
			free_slot = slot;
	}
	if (free_slot == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("upgrade_assist is in use in too many databases"),
				 errdetail("At most %d databases per cluster can write markers.",
						   UA_MARKER_MAX_DATABASES)));
	memset(free_slot, 0, sizeof(*free_slot));
	free_slot->dboid = MyDatabaseId;
	return free_slot;
}

/*
 * ua_next_marker_seq
 *		Allocate the next marker seq of this database's origin.  Never returns
 *		the same number twice while the server runs, nor a number at or below
 *		one already in the table.  Caller is in a transaction.
 */
int64
ua_next_marker_seq(void)
{
	UaMarkerDb *slot;
	Oid			relid = ua_marker_relid();
	int64		seq;
	int64		maxseq;

	ua_require_preloaded(ua_marker_shared);

	/* The common case: one trip through the lock. */
	LWLockAcquire(ua_marker_shared->lock, LW_EXCLUSIVE);
	slot = ua_marker_db();
	if (slot->seq_known && slot->marker_relid == relid)
	{
		seq = slot->next_seq++;
		LWLockRelease(ua_marker_shared->lock);
		return seq;
	}
	LWLockRelease(ua_marker_shared->lock);

	/*
	 * First use since the server started, or the table was recreated (DROP
	 * and CREATE EXTENSION, perhaps with restored rows): read the table,
	 * outside the lock, and never move the counter backwards.
	 */
	maxseq = ua_marker_max_seq();

	LWLockAcquire(ua_marker_shared->lock, LW_EXCLUSIVE);
	slot = ua_marker_db();
	if (!slot->seq_known || slot->next_seq <= maxseq)
		slot->next_seq = maxseq + 1;
	slot->seq_known = true;
	slot->marker_relid = relid;
	seq = slot->next_seq++;
	LWLockRelease(ua_marker_shared->lock);
	return seq;
}

/*
 * ua_check_kind
 *		Throw 22004/22023 unless kind is an acceptable marker kind.
 */
static void
ua_check_kind(const char *kind)
{
	if (kind == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("marker kind must not be null")));
	if (kind[0] == '\0' || strlen(kind) > UA_KIND_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("marker kind must have between 1 and %d bytes", UA_KIND_MAX)));
}

/*
 * ua_insert_marker
 *		Insert a marker in the current transaction, numbered seq (0: allocate
 *		a number now).  Caller has SPI connected and an active snapshot.
 *		Fills *out.  Throws 55000 when a trigger skipped the row (under
 *		session_replication_role = replica, marker_skip_own does).
 */
void
ua_insert_marker(const char *kind, const char *note, int64 seq, UaMarker *out)
{
	Oid			argtypes[6] = {INT8OID, INT8OID, TEXTOID, TIMESTAMPTZOID, LSNOID, TEXTOID};
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	volatile int rc = 0;

	ua_check_kind(kind);
	if (ua_insert_plan == NULL)
	{
		SPIPlanPtr	plan;

		plan = SPI_prepare("INSERT INTO upgrade_assist.marker"
						   " (origin, seq, kind, written_at, written_lsn, note)"
						   " VALUES ($1, $2, $3, $4, $5, $6)",
						   6, argtypes);
		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "SPI_keepplan failed");
		ua_insert_plan = plan;
	}

	out->origin = ua_origin();
	out->seq = seq > 0 ? seq : ua_next_marker_seq();
	out->written_at = GetCurrentTimestamp();
	/* Every change committed before this point ends before this LSN. */
	out->written_lsn = GetXLogInsertRecPtr();

	values[0] = Int64GetDatum(out->origin);
	values[1] = Int64GetDatum(out->seq);
	values[2] = CStringGetTextDatum(kind);
	values[3] = TimestampTzGetDatum(out->written_at);
	values[4] = LSNGetDatum(out->written_lsn);
	if (note != NULL)
		values[5] = CStringGetTextDatum(note);
	else
	{
		values[5] = (Datum) 0;
		nulls[5] = 'n';
	}

	/* Markers pass the write fence: the cutover's final marker is one. */
	ua_fence_exempt_begin();
	PG_TRY();
	{
		rc = SPI_execute_plan(ua_insert_plan, values, nulls, false, 0);
	}
	PG_FINALLY();
	{
		ua_fence_exempt_end();
	}
	PG_END_TRY();
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "inserting a marker failed: %s", SPI_result_code_string(rc));
	/* marker_skip_own skips this cluster's rows in replica mode. */
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the marker was not inserted: a trigger on upgrade_assist.marker skipped it"),
				 errhint("Markers cannot be written with session_replication_role = replica.")));
}

/*
 * emit_marker(kind text, note text) returns upgrade_assist.marker
 *		Write a marker in the caller's transaction and return it.
 */
Datum
emit_marker(PG_FUNCTION_ARGS)
{
	char	   *kind = PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *note = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	TupleDesc	tupdesc;
	Datum		values[6];
	bool		nulls[6] = {false};
	UaMarker	m;

	ua_require_preloaded(ua_marker_shared);
	ua_check_kind(kind);
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot write a marker during recovery")));
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ua_insert_marker(kind, note, 0, &m);
	SPI_finish();

	values[0] = Int64GetDatum(m.origin);
	values[1] = Int64GetDatum(m.seq);
	values[2] = CStringGetTextDatum(kind);
	values[3] = TimestampTzGetDatum(m.written_at);
	values[4] = LSNGetDatum(m.written_lsn);
	if (note != NULL)
		values[5] = CStringGetTextDatum(note);
	else
		nulls[5] = true;

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc),
													  values, nulls)));
}

/*
 * ua_marker_wait
 *		Poll the peer until it shows this origin's marker seq.  Returns the
 *		microseconds waited, counted from start, or -1 when the deadline
 *		passes first.  With own_request, the marker is this backend's open
 *		request to the marker writer, which is checked (and kept moving) at
 *		every look.  Caller is in a transaction (the peer lookup reads
 *		catalogs).
 *
 * One look may run a little past the deadline, so that a look in flight at
 * the deadline (a peer slow to answer) counts as "not there yet" rather than
 * failing as a timeout of the look itself.  A peer that hangs still fails
 * soon.
 */
int64
ua_marker_wait(const char *peer, int64 seq, TimestampTz start,
			   TimestampTz deadline, bool own_request)
{
	char		origin_buf[32];
	char		seq_buf[32];
	const char *params[2];
	TimestampTz query_deadline;

	snprintf(origin_buf, sizeof(origin_buf), INT64_FORMAT, ua_origin());
	snprintf(seq_buf, sizeof(seq_buf), INT64_FORMAT, seq);
	params[0] = origin_buf;
	params[1] = seq_buf;
	query_deadline = TimestampTzPlusMilliseconds(deadline, UA_LOOK_GRACE_MS);

	for (;;)
	{
		PGresult   *res;
		bool		found;
		TimestampTz now;
		long		delay;

		if (own_request)
		{
			UaMarker	m;

			(void) ua_marker_request_check(&m);
		}
		res = ua_peer_query(peer,
							"SELECT 1 FROM upgrade_assist.marker"
							" WHERE origin = $1::pg_catalog.int8"
							" AND seq = $2::pg_catalog.int8",
							2, params, query_deadline);
		found = PQntuples(res) > 0;
		PQclear(res);
		now = GetCurrentTimestamp();
		if (found)
			return now - start;
		if (now >= deadline)
			return -1;

		delay = ua_poll_backoff_ms((now - start) / 1000);
		if (delay > ua_ms_until(deadline))
			delay = ua_ms_until(deadline);
		if (delay > 0)
			(void) ua_wait(WL_LATCH_SET | WL_TIMEOUT, delay, UA_WE_MARKER);
		else
			CHECK_FOR_INTERRUPTS();
	}
}

/*
 * ua_wait_on_peer
 *		ua_marker_wait, throwing 57014 at the deadline naming the marker,
 *		the peer and the last marker of this origin that the peer does show.
 *		timeout_ms is the caller's timeout, for messages.
 */
static int64
ua_wait_on_peer(const char *peer, int64 seq, TimestampTz start,
				TimestampTz deadline, int64 timeout_ms, bool own_request)
{
	int64		waited = ua_marker_wait(peer, seq, start, deadline, own_request);
	char		origin_buf[32];
	const char *params[1] = {origin_buf};
	char	   *last = NULL;
	PGresult   *res;

	if (waited >= 0)
		return waited;

	snprintf(origin_buf, sizeof(origin_buf), INT64_FORMAT, ua_origin());
	res = ua_peer_query(peer,
						"SELECT max(seq) FROM upgrade_assist.marker"
						" WHERE origin = $1::pg_catalog.int8",
						1, params,
						TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													UA_LOOK_GRACE_MS));
	if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
		last = pstrdup(PQgetvalue(res, 0, 0));
	PQclear(res);
	ereport(ERROR,
			(errcode(ERRCODE_QUERY_CANCELED),
			 errmsg("marker " INT64_FORMAT " did not arrive on peer \"%s\" within the timeout of " INT64_FORMAT " ms",
					seq, peer, timeout_ms),
			 last ?
			 errdetail("The last marker of origin " INT64_FORMAT " that the peer shows is %s.",
					   ua_origin(), last) :
			 errdetail("The peer shows no marker of origin " INT64_FORMAT ".",
					   ua_origin()),
			 errhint("Check that replication to the peer is running and carries upgrade_assist.marker.")));
	return -1;					/* keep the compiler quiet */
}

/*
 * ua_deadline
 *		now + the timeout argument at position argno (22004/22023 on bad
 *		input); the timeout itself in *ms.
 */
static TimestampTz
ua_deadline(FunctionCallInfo fcinfo, int argno, TimestampTz now, int64 *ms)
{
	*ms = ua_interval_to_ms(PG_ARGISNULL(argno) ? NULL :
							PG_GETARG_INTERVAL_P(argno), "timeout");
	return TimestampTzPlusMilliseconds(now, *ms);
}

/*
 * wait_for_marker(peer text, seq bigint, timeout interval) returns interval
 *		Wait until the peer shows this cluster's marker seq; return the time
 *		waited.
 */
Datum
wait_for_marker(PG_FUNCTION_ARGS)
{
	char	   *peer = PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0));
	TimestampTz start = GetCurrentTimestamp();
	TimestampTz deadline;
	int64		timeout_ms;
	int64		seq;
	int64		waited;
	Interval   *result;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("seq must not be null")));
	seq = PG_GETARG_INT64(1);
	if (seq <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("seq must be positive")));
	deadline = ua_deadline(fcinfo, 2, start, &timeout_ms);
	if (peer == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("peer must not be null")));

	waited = ua_wait_on_peer(peer, seq, start, deadline, timeout_ms, false);

	result = (Interval *) palloc0(sizeof(Interval));
	result->time = waited;
	PG_RETURN_INTERVAL_P(result);
}

/*
 * ua_round_trip_wait
 *		round_trip's work once the peer is reachable: submit the marker to
 *		the writer, look for it on the peer meanwhile, then collect what the
 *		writer committed.  The caller ends the request, also on error.
 */
static void
ua_round_trip_wait(const char *peer, TimestampTz start, TimestampTz deadline,
				   int64 timeout_ms, UaMarker *m, Interval *latency)
{
	int64		seq = ua_marker_request_submit("probe");

	latency->time = ua_wait_on_peer(peer, seq, start, deadline, timeout_ms, true);
	/* The peer shows it, so it is committed here; the writer says so soon. */
	ua_marker_request_wait(TimestampTzPlusMilliseconds(deadline, UA_LOOK_GRACE_MS), m);
}

/*
 * round_trip(peer text, timeout interval) returns (seq, written_lsn, latency)
 *		Commit a new marker independently of the caller's transaction, then
 *		poll the peer until it shows it.  latency runs from just before the
 *		marker was written to the look that found it on the peer.
 */
Datum
round_trip(PG_FUNCTION_ARGS)
{
	char	   *peer = PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0));
	TimestampTz now = GetCurrentTimestamp();
	int64		timeout_ms;
	TimestampTz deadline = ua_deadline(fcinfo, 1, now, &timeout_ms);
	TimestampTz start;
	TupleDesc	tupdesc;
	Datum		values[3];
	bool		nulls[3] = {false};
	UaMarker	m;
	Interval   *latency = (Interval *) palloc0(sizeof(Interval));

	ua_require_preloaded(ua_marker_shared);
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot write a marker during recovery")));

	/* Reach the peer first, so that an unreachable one costs no marker. */
	(void) ua_peer_connect(peer, deadline);

	start = GetCurrentTimestamp();
	PG_TRY();
	{
		ua_round_trip_wait(peer, start, deadline, timeout_ms, &m, latency);
	}
	PG_FINALLY();
	{
		ua_marker_request_end();
	}
	PG_END_TRY();

	values[0] = Int64GetDatum(m.seq);
	values[1] = LSNGetDatum(m.written_lsn);
	values[2] = IntervalPGetDatum(latency);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc),
													  values, nulls)));
}

/*
 * marker_skip_own() returns trigger
 *		BEFORE INSERT FOR EACH ROW trigger on upgrade_assist.marker, enabled
 *		as a replica trigger: it fires only where session_replication_role
 *		is replica, as in logical replication apply workers.  A row whose
 *		origin is this cluster is one of its own markers that travelled to
 *		the peer and back: it is skipped (the row is here already, and would
 *		collide on (origin, seq)).  Any other row is inserted unchanged.
 *		Reads only the new row, no catalog or table access.  Throws 39P01
 *		when not fired as such a trigger, 42703 on a table without a bigint
 *		column origin.
 */
Datum
marker_skip_own(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TupleDesc	tupdesc;
	HeapTuple	tuple;
	AttrNumber	attnum = InvalidAttrNumber;
	Datum		origin;
	bool		isnull;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("marker_skip_own() was not called by the trigger manager")));
	if (!TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		!TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("marker_skip_own() must be fired BEFORE INSERT FOR EACH ROW")));

	tuple = trigdata->tg_trigtuple;
	tupdesc = RelationGetDescr(trigdata->tg_relation);
	for (int i = 0; i < tupdesc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(tupdesc, i);

		if (!att->attisdropped && att->atttypid == INT8OID &&
			strcmp(NameStr(att->attname), "origin") == 0)
		{
			attnum = att->attnum;
			break;
		}
	}
	if (attnum == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("table \"%s\" has no bigint column \"origin\"",
						RelationGetRelationName(trigdata->tg_relation))));

	origin = heap_getattr(tuple, attnum, tupdesc, &isnull);
	if (!isnull && DatumGetInt64(origin) == ua_origin())
	{
		ereport(DEBUG1,
				(errmsg_internal("skipping a marker of this cluster that came back from the peer")));
		return PointerGetDatum(NULL);
	}
	return PointerGetDatum(tuple);
}
