/*-------------------------------------------------------------------------
 *
 * verify.c
 *	  Verification that the peer holds the same data: verify(),
 *	  cancel_verify(), verify_workers() behind the verify_progress view, the
 *	  replica trigger verify_range_apply() that computes the peer's side of
 *	  a range, the statements both sides run for a range, and the shared
 *	  state.  The worker that walks the tables is in verify_worker.c.
 *
 * Consistency.  For each range the worker takes the table in SHARE mode
 * (writers wait; a writer already in flight is waited for, at most
 * upgrade_assist.verify_lock_timeout), has its helper take a snapshot (or
 * computes the range itself) and inserts the range as one row of
 * verify_range, alone in its transaction, then commits, which releases the
 * lock.  Every change of the table committed before that commit is in the
 * snapshot, none committed after it is (verify_worker.c).  Replication
 * carries transactions in commit order, so the peer applies the row after
 * exactly the changes counted, and the replica trigger computes the peer's
 * count and checksum of the range right then, in the apply worker's
 * transaction: both describe the same position of the stream.  The trigger
 * never fails the apply: an error is stored in the row.
 *
 * The checksum is the sum modulo 2^64 of a hash of each row (its columns
 * named in the primary's order, each as canonical bytes or as its output
 * text: ua_verify_row_hash in verify_checksum.c), count beside it: independent of the order rows
 * are read in, and of session settings, which both sides pin
 * (ua_verify_pin_settings).  Key ranges compare collatable keys under "C",
 * so both sides cut the same set of rows whatever their collations.
 *
 * Shared memory (UaVerifyShared, LWLock tranche "upgrade_assist verify")
 * holds one slot per active run: its id, database, role, launching
 * transaction, worker and cancel flag.  Every field is read and written
 * under that lock.  After a restart it is empty, and a run whose row still
 * says 'running' becomes 'interrupted' at the next verify().
 *
 * IDENTIFICATION
 *	  src/verify.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>
#include <signal.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "storage/shmem.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datum.h"
#include "utils/float.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "compat.h"
#include "fence.h"
#include "marker.h"
#include "remote.h"
#include "util.h"
#include "verify.h"

/* GUC variables */
double		ua_verify_throttle = 5.0;
int			ua_verify_lock_timeout = 20;
int			ua_verify_max_lock_time = 50;
bool		ua_verify_helper = true;

/* Shared state; NULL unless the library was preloaded. */
UaVerifyShared *ua_verify = NULL;

PG_FUNCTION_INFO_V1(verify);
PG_FUNCTION_INFO_V1(cancel_verify);
PG_FUNCTION_INFO_V1(verify_workers);
PG_FUNCTION_INFO_V1(verify_range_apply);

/*
 * ua_verify_init
 *		Define the settings; called from _PG_init.
 */
void
ua_verify_init(void)
{
	DefineCustomRealVariable("upgrade_assist.verify_throttle",
							 "How long verify() pauses after a range that made writers wait, as a multiple of the time it held the lock.",
							 "0 never pauses.  Ranges that made no one wait are not throttled.",
							 &ua_verify_throttle,
							 5.0, 0.0, 100.0,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("upgrade_assist.verify_lock_timeout",
							"Longest wait of verify() for a range's table lock before it lets writers go and tries again.",
							"Writers that queue behind the waiting lock wait as long at most.",
							&ua_verify_lock_timeout,
							20, 1, 10000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomBoolVariable("upgrade_assist.verify_helper",
							 "Whether verify() computes the primary's side of a range in a helper, from a snapshot taken under the range's lock.",
							 "The lock is then held only while the snapshot is taken and the range's row is committed.  Off: the worker computes under the lock.",
							 &ua_verify_helper,
							 true,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("upgrade_assist.verify_max_lock_time",
							"How long verify() aims to hold a range's table lock at most.",
							"A range that held it longer makes the next ones smaller; chunk_rows is the most rows a range has.",
							&ua_verify_max_lock_time,
							50, 1, 10000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
}

/*
 * ua_verify_shmem_request
 *		Ask for this file's shared memory and LWLock; called from the
 *		module's shmem request hook (or _PG_init before 15).
 */
void
ua_verify_shmem_request(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(UaVerifyShared)));
	RequestNamedLWLockTranche("upgrade_assist verify", 1);
}

/*
 * ua_verify_shmem_startup
 *		Attach to (or create) the shared state.  The caller holds
 *		AddinShmemInitLock.
 */
void
ua_verify_shmem_startup(void)
{
	bool		found;

	ua_verify = ShmemInitStruct("upgrade_assist verify",
								MAXALIGN(sizeof(UaVerifyShared)), &found);
	if (!found)
	{
		memset(ua_verify, 0, sizeof(UaVerifyShared));
		ua_verify->lock = &(GetNamedLWLockTranche("upgrade_assist verify"))->lock;
	}
}

/* ------------------------------------------------------------------------
 * The statements of a range, the same on both sides
 * ------------------------------------------------------------------------
 */

/*
 * ua_verify_pin_settings
 *		Pin every setting that changes the text of a value (and so a row's
 *		hash) to a fixed value, for the current GUC nest level and those
 *		below; returns the nest level to pass to AtEOXact_GUC(true, level),
 *		which restores them.  An error restores them as the (sub)transaction
 *		aborts.
 */
int
ua_verify_pin_settings(void)
{
	static const char *const pinned[][2] = {
		{"TimeZone", "UTC"},
		{"DateStyle", "ISO, MDY"},
		{"IntervalStyle", "postgres"},
		{"extra_float_digits", "1"},
		{"bytea_output", "hex"},
		{"lc_monetary", "C"},
		{"xmlbinary", "base64"},
		{"search_path", "pg_catalog, pg_temp"},
		{"row_security", "off"},
	};
	int			level = NewGUCNestLevel();

	for (int i = 0; i < (int) lengthof(pinned); i++)
		(void) set_config_option(pinned[i][0], pinned[i][1],
								 superuser() ? PGC_SUSET : PGC_USERSET,
								 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	return level;
}

/*
 * ua_verify_names
 *		The elements of a text[] datum (no NULLs) as C strings.
 */
static char **
ua_verify_names(Datum arr, int *n)
{
	Datum	   *elems;
	bool	   *nulls;
	char	  **names;

	deconstruct_array(DatumGetArrayTypeP(arr), TEXTOID, -1, false,
					  TYPALIGN_INT, &elems, &nulls, n);
	names = palloc(sizeof(char *) * Max(*n, 1));
	for (int i = 0; i < *n; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("column list contains a null")));
		names[i] = TextDatumGetCString(elems[i]);
	}
	return names;
}

/*
 * ua_verify_column_type
 *		Type of the named column of relid; throws 42703 when this side's
 *		table has no such column.
 */
static Oid
ua_verify_column_type(Oid relid, const char *name)
{
	AttrNumber	attnum = get_attnum(relid, name);

	if (attnum == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of table \"%s\" does not exist on this side",
						name, get_rel_name(relid))));
	return get_atttype(relid, attnum);
}

/*
 * ua_verify_key_list
 *		Append the key columns (with COLLATE "C" where collatable) for an
 *		ORDER BY or a row comparison's left side; with param > 0, the
 *		elements of that text[] parameter cast to the columns' types for
 *		the right side instead.
 */
static void
ua_verify_key_list(StringInfo buf, Oid relid, char **keys, int nkeys, int param)
{
	for (int i = 0; i < nkeys; i++)
	{
		Oid			typid = ua_verify_column_type(relid, keys[i]);

		if (i > 0)
			appendStringInfoString(buf, ", ");
		if (param > 0)
			appendStringInfo(buf, "$%d[%d]::%s", param, i + 1,
							 format_type_be_qualified(typid));
		else
			appendStringInfoString(buf, quote_identifier(keys[i]));
		if (type_is_collatable(typid))
			appendStringInfoString(buf, " COLLATE \"C\"");
	}
}

/*
 * ua_verify_range_cond
 *		Append the WHERE clause of a key range: keys > $1 (when has_from),
 *		keys <= $2 (when has_to), row comparisons over the key columns.
 */
static void
ua_verify_range_cond(StringInfo buf, Oid relid, char **keys, int nkeys,
					 bool has_from, bool has_to)
{
	if (!has_from && !has_to)
		return;
	appendStringInfoString(buf, " WHERE ");
	if (has_from)
	{
		appendStringInfoChar(buf, '(');
		ua_verify_key_list(buf, relid, keys, nkeys, 0);
		appendStringInfoString(buf, ") > (");
		ua_verify_key_list(buf, relid, keys, nkeys, 1);
		appendStringInfoChar(buf, ')');
	}
	if (has_to)
	{
		appendStringInfoString(buf, has_from ? " AND (" : "(");
		ua_verify_key_list(buf, relid, keys, nkeys, 0);
		appendStringInfoString(buf, ") <= (");
		ua_verify_key_list(buf, relid, keys, nkeys, 2);
		appendStringInfoChar(buf, ')');
	}
}

/*
 * ua_verify_qualified
 *		The quoted, schema-qualified name of relid.
 */
static char *
ua_verify_qualified(Oid relid)
{
	return quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
									  get_rel_name(relid));
}

/*
 * ua_verify_bound_sql
 *		The statement that finds a range's upper bound on the primary without
 *		a lock (any key will do: the range is what lies between its bounds
 *		when its row commits): the key ($3)-th after $1 (text[], used when
 *		has_from) in key order, as text[]; no row when fewer are left.
 *		Parameters as ua_verify_plan's ($2 unused).
 */
char *
ua_verify_bound_sql(Oid relid, Datum key_columns, bool has_from)
{
	StringInfoData sql;
	char	  **keys;
	int			nkeys;

	keys = ua_verify_names(key_columns, &nkeys);
	initStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT ARRAY[");
	for (int i = 0; i < nkeys; i++)
		appendStringInfo(&sql, "%s%s::pg_catalog.text", i > 0 ? ", " : "",
						 quote_identifier(keys[i]));
	appendStringInfo(&sql, "] FROM ONLY %s", ua_verify_qualified(relid));
	if (has_from)
	{
		appendStringInfoString(&sql, " WHERE (");
		ua_verify_key_list(&sql, relid, keys, nkeys, 0);
		appendStringInfoString(&sql, ") > (");
		ua_verify_key_list(&sql, relid, keys, nkeys, 1);
		appendStringInfoChar(&sql, ')');
	}
	appendStringInfoString(&sql, " ORDER BY ");
	ua_verify_key_list(&sql, relid, keys, nkeys, 0);
	appendStringInfoString(&sql, " OFFSET $3 - 1 LIMIT 1");
	return sql.data;
}

/*
 * ua_verify_range_sql
 *		The statement that reads one side of a range of relid (this side's
 *		table) for ua_verify_compute: the key columns first (ordered, the
 *		primary's range pass: their text of the last row is the range's
 *		upper bound) or the key's text (keys mode), then every column of
 *		columns, in that order.  Parameters: $1 text[] lower bound
 *		(exclusive, used when has_from), $2 text[] upper bound (inclusive,
 *		when has_to), $3 int8 the most rows read (when limited or ordered).
 *		Ordered reads the rows in key order ("C" for collatable keys), at
 *		most $3 of them.  key_columns and columns are text[] datums of
 *		column names, in the primary's order; throws 42703 for a column this
 *		side lacks.  *lead receives the number of columns before the hashed
 *		ones.
 */
char *
ua_verify_range_sql(Oid relid, const char *mode, Datum key_columns,
					Datum columns, bool has_from, bool has_to, bool limited,
					bool ordered, int *lead)
{
	StringInfoData sql;
	char	  **keys = NULL;
	char	  **cols;
	int			nkeys = 0;
	int			ncols;
	bool		with_keys = strcmp(mode, UA_VERIFY_MODE_KEYS) == 0;

	if (key_columns != (Datum) 0)
		keys = ua_verify_names(key_columns, &nkeys);
	cols = ua_verify_names(columns, &ncols);
	if (ordered && nkeys == 0)
		elog(ERROR, "an ordered range needs a key");

	initStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT ");
	*lead = 0;
	if (ordered)
	{
		for (int i = 0; i < nkeys; i++)
			appendStringInfo(&sql, "%s, ", quote_identifier(keys[i]));
		*lead = nkeys;
	}
	else if (with_keys)
	{
		if (nkeys == 1)
			appendStringInfo(&sql, "%s::pg_catalog.text, ", quote_identifier(keys[0]));
		else
		{
			appendStringInfoString(&sql, "ROW(");
			for (int i = 0; i < nkeys; i++)
				appendStringInfo(&sql, "%s%s", i > 0 ? ", " : "",
								 quote_identifier(keys[i]));
			appendStringInfoString(&sql, ")::pg_catalog.text, ");
		}
		*lead = 1;
	}
	for (int i = 0; i < ncols; i++)
	{
		(void) ua_verify_column_type(relid, cols[i]);
		appendStringInfo(&sql, "%s%s", i > 0 ? ", " : "",
						 quote_identifier(cols[i]));
	}
	appendStringInfo(&sql, " FROM ONLY %s", ua_verify_qualified(relid));
	ua_verify_range_cond(&sql, relid, keys, nkeys, has_from, has_to);
	if (ordered)
	{
		appendStringInfoString(&sql, " ORDER BY ");
		ua_verify_key_list(&sql, relid, keys, nkeys, 0);
	}
	if (limited || ordered)
		appendStringInfoString(&sql, " LIMIT $3");
	return sql.data;
}

/* ------------------------------------------------------------------------
 * The peer's side: the replica trigger
 * ------------------------------------------------------------------------
 */

/*
 * ua_verify_getattr
 *		Column name of the trigger's row (NULL datum when SQL NULL).
 */
static Datum
ua_verify_getattr(HeapTuple tuple, TupleDesc desc, const char *name)
{
	int			attnum = SPI_fnumber(desc, name);
	bool		isnull;
	Datum		d;

	if (attnum <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("table \"verify_range\" has no column \"%s\"", name)));
	d = heap_getattr(tuple, attnum, desc, &isnull);
	return isnull ? (Datum) 0 : d;
}

/*
 * ua_verify_check_replicated
 *		Throw 55000 unless relid is replicated in step with verify_range:
 *		where native subscriptions carry verify_range, the table must be in
 *		the same subscription and in state r (ready).  Without any
 *		subscription carrying verify_range (an external pipeline), nothing
 *		can be checked here.  Caller is connected to SPI.
 */
static void
ua_verify_check_replicated(Oid relid)
{
	Oid			types[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(relid)};
	bool		isnull;
	bool		native;
	char	   *state;

	ua_spi_exec_typed("SELECT EXISTS (SELECT FROM pg_catalog.pg_subscription_rel v"
					  "   WHERE v.srrelid = 'upgrade_assist.verify_range'::pg_catalog.regclass),"
					  " (SELECT pg_catalog.min(r.srsubstate::pg_catalog.text)"
					  "    FROM pg_catalog.pg_subscription_rel r"
					  "    JOIN pg_catalog.pg_subscription_rel v ON v.srsubid = r.srsubid"
					  "     AND v.srrelid = 'upgrade_assist.verify_range'::pg_catalog.regclass"
					  "   WHERE r.srrelid = $1)",
					  1, types, values, NULL, SPI_OK_SELECT);
	native = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
										SPI_tuptable->tupdesc, 1, &isnull));
	state = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	if (native && state == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table is not replicated by the subscription that carries upgrade_assist.verify_range")));
	if (native && strcmp(state, "r") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table is in subscription state \"%s\", not \"r\" (ready)", state)));
}

/* What the trigger hands to its subtransaction, and gets back. */
typedef struct UaVerifyApply
{
	HeapTuple	tuple;
	TupleDesc	desc;
	UaVerifySums *sums;
	MemoryContext cxt;			/* the trigger's: *sums is allocated here */
} UaVerifyApply;

/*
 * ua_verify_apply_compute
 *		ua_try_subxact callback of verify_range_apply: compute this side of
 *		the range the row describes, with the settings pinned (restored
 *		before it returns; an error restores them as the subtransaction
 *		aborts, and releases SPI with it).
 */
static void
ua_verify_apply_compute(void *arg)
{
	UaVerifyApply *a = (UaVerifyApply *) arg;
	HeapTuple	tuple = a->tuple;
	TupleDesc	desc = a->desc;
	char	   *schemaname = TextDatumGetCString(ua_verify_getattr(tuple, desc, "schemaname"));
	char	   *relname = TextDatumGetCString(ua_verify_getattr(tuple, desc, "relname"));
	char	   *mode = TextDatumGetCString(ua_verify_getattr(tuple, desc, "mode"));
	Datum		key_columns = ua_verify_getattr(tuple, desc, "key_columns");
	Datum		columns = ua_verify_getattr(tuple, desc, "columns");
	Datum		key_from = ua_verify_getattr(tuple, desc, "key_from");
	Datum		key_to = ua_verify_getattr(tuple, desc, "key_to");
	Datum		limit = ua_verify_getattr(tuple, desc, "row_limit");
	Oid			relid;
	int			level;
	int			lead;
	char	   *sql;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	level = ua_verify_pin_settings();
	relid = RangeVarGetRelid(makeRangeVar(schemaname, relname, -1),
							 AccessShareLock, true);
	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table \"%s.%s\" does not exist on this side",
						schemaname, relname)));
	ua_verify_check_replicated(relid);
	sql = ua_verify_range_sql(relid, mode, key_columns, columns,
							  key_from != (Datum) 0, key_to != (Datum) 0,
							  limit != (Datum) 0, false, &lead);
	ua_verify_compute(sql, lead, strcmp(mode, UA_VERIFY_MODE_KEYS) == 0, false,
					  key_from, key_to,
					  limit != (Datum) 0 ? DatumGetInt64(limit) : 0,
					  a->sums, a->cxt);
	AtEOXact_GUC(true, level);
	SPI_finish();
}

/*
 * verify_range_apply() returns trigger
 *		BEFORE INSERT FOR EACH ROW trigger on upgrade_assist.verify_range,
 *		enabled as a replica trigger: it fires where the row is applied by
 *		replication.  A row of this cluster's origin came back from the peer
 *		and is skipped.  Otherwise it computes this side's count and
 *		checksum (and in keys mode every key's hash) of the row's range and
 *		stores them in the row with the time it took; any error of that
 *		computation (table or column missing here, table not ready) is
 *		stored in error_there instead of failing the apply.  Throws 39P01
 *		when not fired as such a trigger.
 */
Datum
verify_range_apply(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	HeapTuple	tuple;
	MemoryContext cxt = CurrentMemoryContext;
	UaVerifySums sums = {0};
	char	   *error = NULL;
	TimestampTz start = GetCurrentTimestamp();
	Datum		origin;
	Datum		values[7];
	bool		nulls[7] = {false, false, false, false, false, false, false};
	bool		replace[7] = {true, true, true, true, true, true, true};
	int			attnums[7];
	static const char *const outcols[7] = {
		"rows_there", "sum_there", "keys_there", "hashes_there",
		"error_there", "computed_at", "computed_ms"
	};
	Datum		full_values[64];
	bool		full_nulls[64];
	bool		full_replace[64];

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("verify_range_apply() was not called by the trigger manager")));
	if (!TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		!TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("verify_range_apply() must be fired BEFORE INSERT FOR EACH ROW")));

	tuple = trigdata->tg_trigtuple;
	desc = RelationGetDescr(trigdata->tg_relation);
	if (desc->natts > (int) lengthof(full_values))
		elog(ERROR, "verify_range has too many columns");

	origin = ua_verify_getattr(tuple, desc, "origin");
	if (origin != (Datum) 0 && DatumGetInt64(origin) == ua_origin())
		return PointerGetDatum(NULL);
	/* Already computed (a copy of an older row, as table sync makes). */
	if (ua_verify_getattr(tuple, desc, "computed_at") != (Datum) 0)
		return PointerGetDatum(tuple);

	{
		UaVerifyApply a;
		ErrorData  *edata;

		a.tuple = tuple;
		a.desc = desc;
		a.sums = &sums;
		a.cxt = cxt;
		edata = ua_try_subxact(ua_verify_apply_compute, &a);
		if (edata)
		{
			/* A cancel or shutdown of the apply worker is not the range's fault. */
			if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED ||
				edata->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN)
				ReThrowError(edata);
			error = pstrdup(edata->message ? edata->message : "unknown error");
			FreeErrorData(edata);
		}
	}

	for (int i = 0; i < 7; i++)
	{
		attnums[i] = SPI_fnumber(desc, outcols[i]);
		if (attnums[i] <= 0)
			elog(ERROR, "verify_range has no column \"%s\"", outcols[i]);
	}
	if (error == NULL)
	{
		Oid			typinput;
		Oid			typioparam;

		values[0] = Int64GetDatum(sums.rows);
		values[1] = DirectFunctionCall3(numeric_in, CStringGetDatum(sums.sum),
										ObjectIdGetDatum(InvalidOid),
										Int32GetDatum(-1));
		nulls[2] = sums.keys == NULL;
		nulls[3] = sums.hashes == NULL;
		if (sums.keys)
		{
			getTypeInputInfo(TEXTARRAYOID, &typinput, &typioparam);
			values[2] = OidInputFunctionCall(typinput, sums.keys, typioparam, -1);
		}
		if (sums.hashes)
		{
			getTypeInputInfo(INT8ARRAYOID, &typinput, &typioparam);
			values[3] = OidInputFunctionCall(typinput, sums.hashes, typioparam, -1);
		}
		nulls[4] = true;
	}
	else
	{
		nulls[0] = nulls[1] = nulls[2] = nulls[3] = true;
		values[4] = CStringGetTextDatum(error);
	}
	values[5] = TimestampTzGetDatum(GetCurrentTimestamp());
	values[6] = Float8GetDatum(ua_ms_since(start));

	for (int i = 0; i < desc->natts; i++)
	{
		full_replace[i] = false;
		full_nulls[i] = false;
		full_values[i] = (Datum) 0;
	}
	for (int i = 0; i < 7; i++)
	{
		full_values[attnums[i] - 1] = values[i];
		full_nulls[attnums[i] - 1] = nulls[i];
		full_replace[attnums[i] - 1] = replace[i];
	}
	return PointerGetDatum(heap_modify_tuple(tuple, desc, full_values,
											 full_nulls, full_replace));
}

/* ------------------------------------------------------------------------
 * The primary's side: starting, cancelling and watching runs
 * ------------------------------------------------------------------------
 */

/*
 * ua_verify_check_table
 *		Throw unless relid can be verified by the calling role: 22023 for
 *		anything but a permanent ordinary table outside the extension's
 *		schema, 42501 without SELECT on it.
 */
static void
ua_verify_check_table(Oid relid)
{
	char		relkind = get_rel_relkind(relid);
	char	   *name;

	if (relkind == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	name = get_rel_name(relid);
	if (relkind == RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" is a partitioned table", name),
				 errhint("Verify its partitions.")));
	if (relkind != RELKIND_RELATION)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" is not a table", name)));
	if (get_rel_persistence(relid) != RELPERSISTENCE_PERMANENT)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("table \"%s\" is not replicated: it is temporary or unlogged", name)));
	if (strcmp(get_namespace_name(get_rel_namespace(relid)), UA_SCHEMA) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("table \"%s\" belongs to upgrade_assist", name)));
	if (pg_class_aclcheck(relid, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for table %s", name),
				 errdetail("verify() reads every table it compares.")));
}

/*
 * ua_verify_default_tables
 *		The tables verify() takes when none are given: the permanent
 *		ordinary tables of the publications of this database, or, without
 *		any publication (an external pipeline), of every user schema; never
 *		the extension's own.  Caller is connected to SPI.
 */
pg_noinline static List *
ua_verify_default_tables(void)
{
	List	   *oids = NIL;

	ua_spi_exec_typed("SELECT c.oid FROM pg_catalog.pg_class c"
					  "  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
					  " WHERE c.relkind = 'r' AND c.relpersistence = 'p'"
					  "   AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'upgrade_assist')"
					  "   AND n.nspname !~ '^pg_(toast|temp_)'"
					  "   AND (NOT EXISTS (SELECT FROM pg_catalog.pg_publication)"
					  "        OR c.oid IN (SELECT pg_catalog.format('%I.%I', p.schemaname, p.tablename)::pg_catalog.regclass"
					  "                       FROM pg_catalog.pg_publication_tables p))"
					  " ORDER BY n.nspname, c.relname",
					  0, NULL, NULL, NULL, SPI_OK_SELECT);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;

		oids = lappend_oid(oids,
						   DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
														  SPI_tuptable->tupdesc,
														  1, &isnull)));
	}
	return oids;
}

/*
 * ua_verify_given_tables
 *		The tables of verify()'s tables argument, duplicates removed.
 *		Throws 22023 for an empty or multi-dimensional array, 22004 for a
 *		NULL element.
 */
pg_noinline static List *
ua_verify_given_tables(ArrayType *arr)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	List	   *oids = NIL;

	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("tables must be a one-dimensional array")));
	deconstruct_array(arr, REGCLASSOID, sizeof(Oid), true, TYPALIGN_INT,
					  &elems, &nulls, &n);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("tables must not be empty"),
				 errhint("Pass NULL to verify every replicated table.")));
	for (int i = 0; i < n; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("tables must not contain nulls")));
		oids = list_append_unique_oid(oids, DatumGetObjectId(elems[i]));
	}
	return oids;
}

/*
 * ua_verify_create_run
 *		Store a new run and its tables (through SPI, in the caller's
 *		transaction) and return its id.  Runs of this cluster left
 *		'running' without a worker (a restart) become 'interrupted'; the
 *		ranges of all but the last runs of this origin are deleted (the
 *		deletes replicate, so the peer forgets them too).
 */
static int64
ua_verify_create_run(const char *peer, List *relids, int chunk_rows,
					 bool find_keys, Interval *timeout, Oid roleid)
{
	int64		origin = ua_origin();
	int64		run_id;
	int64		active[UA_VERIFY_MAX_RUNS];
	int			nactive = 0;
	bool		isnull;
	ListCell   *lc;
	int			ord = 0;

	LWLockAcquire(ua_verify->lock, LW_SHARED);
	for (int i = 0; i < UA_VERIFY_MAX_RUNS; i++)
		if (ua_verify->slots[i].run_id > 0)
			active[nactive++] = ua_verify->slots[i].run_id;
	LWLockRelease(ua_verify->lock);

	/* Run ids come from the table: this lock serialises callers. */
	ua_spi_exec_typed("LOCK TABLE upgrade_assist.verify_run IN SHARE ROW EXCLUSIVE MODE",
					  0, NULL, NULL, NULL, SPI_OK_UTILITY);
	{
		Datum	   *ids = palloc(sizeof(Datum) * Max(nactive, 1));
		Oid			types[2] = {INT8OID, INT8ARRAYOID};
		Datum		values[2];

		for (int i = 0; i < nactive; i++)
			ids[i] = Int64GetDatum(active[i]);
		values[0] = Int64GetDatum(origin);
		values[1] = PointerGetDatum(construct_array(ids, nactive, INT8OID, 8,
													FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		ua_spi_exec_typed("UPDATE upgrade_assist.verify_run"
						  "   SET state = 'interrupted', ended_at = coalesce(ended_at, now())"
						  " WHERE origin = $1 AND state = 'running' AND run_id <> ALL ($2)",
						  2, types, values, NULL, SPI_OK_UPDATE);
	}

	{
		Oid			types[6] = {INT8OID, TEXTOID, INT4OID, BOOLOID, INTERVALOID, NAMEOID};
		Datum		values[6];
		NameData	who;

		namestrcpy(&who, GetUserNameFromId(roleid, false));
		values[0] = Int64GetDatum(origin);
		values[1] = CStringGetTextDatum(peer);
		values[2] = Int32GetDatum(chunk_rows);
		values[3] = BoolGetDatum(find_keys);
		values[4] = IntervalPGetDatum(timeout);
		values[5] = NameGetDatum(&who);
		ua_spi_exec_typed("INSERT INTO upgrade_assist.verify_run"
						  " (run_id, origin, peer, chunk_rows, find_keys, timeout,"
						  "  started_by, started_at)"
						  " SELECT coalesce(max(run_id), 0) + 1, $1, $2, $3, $4, $5, $6, now()"
						  "   FROM upgrade_assist.verify_run"
						  " RETURNING run_id",
						  6, types, values, NULL, SPI_OK_INSERT_RETURNING);
		run_id = ua_spi_getint8(0, 1, &isnull);
	}

	{
		Oid			types[2] = {INT8OID, INT8OID};
		Datum		values[2] = {Int64GetDatum(origin), Int64GetDatum(run_id - 3)};

		ua_spi_exec_typed("DELETE FROM upgrade_assist.verify_range"
						  " WHERE origin = $1 AND run_id <= $2",
						  2, types, values, NULL, SPI_OK_DELETE);
	}

	foreach(lc, relids)
	{
		Oid			types[3] = {INT8OID, INT4OID, OIDOID};
		Datum		values[3];

		values[0] = Int64GetDatum(run_id);
		values[1] = Int32GetDatum(++ord);
		values[2] = ObjectIdGetDatum(lfirst_oid(lc));
		ua_spi_exec_typed("INSERT INTO upgrade_assist.verify_table"
						  " (run_id, ord, relid, schemaname, relname, rows_total)"
						  " SELECT $1, $2, c.oid, n.nspname, c.relname,"
						  "        greatest(c.reltuples, 0)::bigint"
						  "   FROM pg_catalog.pg_class c"
						  "   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
						  "  WHERE c.oid = $3",
						  3, types, values, NULL, SPI_OK_INSERT);
	}
	return run_id;
}

/*
 * ua_verify_start_worker
 *		Register the run's worker for slot and wait until the postmaster
 *		has started it.  Throws 53000 when it cannot.
 */
static void
ua_verify_start_worker(int slot, int64 run_id)
{
	BackgroundWorker bgw;
	BackgroundWorkerHandle *handle;
	pid_t		pid;

	ua_bgworker_init(&bgw, "ua_verify_worker_main", "upgrade_assist verify",
					 BGW_NEVER_RESTART, Int32GetDatum(slot));
	snprintf(bgw.bgw_name, BGW_MAXLEN,
			 "upgrade_assist verify worker of run " INT64_FORMAT, run_id);
	memcpy(bgw.bgw_extra, &run_id, sizeof(run_id));
	if (!RegisterDynamicBackgroundWorker(&bgw, &handle) ||
		WaitForBackgroundWorkerStartup(handle, &pid) != BGWH_STARTED)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("could not start the verification worker"),
				 errhint("Raise max_worker_processes.")));
}

/*
 * ua_verify_take_slot
 *		Claim a free run slot for the calling transaction; a slot claimed by
 *		a transaction that ended without its worker ever attaching is free
 *		again.  Throws 55006 when all are busy.
 */
pg_noinline static int
ua_verify_take_slot(void)
{
	int			slot = -1;
	TransactionId xid = GetTopTransactionId();

	LWLockAcquire(ua_verify->lock, LW_EXCLUSIVE);
	for (int i = 0; i < UA_VERIFY_MAX_RUNS && slot < 0; i++)
	{
		UaVerifySlot *s = &ua_verify->slots[i];

		if (s->run_id != 0 && !s->attached && s->proc == NULL &&
			TransactionIdIsValid(s->launcher_xid) &&
			!TransactionIdIsInProgress(s->launcher_xid) &&
			s->pid == -1)
			memset(s, 0, sizeof(UaVerifySlot));
		if (s->run_id == 0)
		{
			slot = i;
			memset(s, 0, sizeof(UaVerifySlot));
			s->run_id = -1;
			/* So that the slot is found stale if this backend dies. */
			s->launcher_xid = xid;
			s->pid = -1;
		}
	}
	LWLockRelease(ua_verify->lock);
	if (slot < 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("%d verifications are running already", UA_VERIFY_MAX_RUNS),
				 errhint("Wait for one to end or cancel it with upgrade_assist.cancel_verify().")));
	return slot;
}

/*
 * verify(peer text, tables regclass[], chunk_rows int, find_keys boolean,
 *		  timeout interval) returns bigint
 *		Store a new run and start its worker; returns the run id without
 *		waiting for the work, which begins once the calling transaction
 *		commits (the worker exits if it rolls back).  Throws 22004 for NULL
 *		arguments, 22023 for values out of range or tables that cannot be
 *		verified, 42501 for a table the caller cannot read, the peer's
 *		lookup errors (42704, ...), 25006 during recovery, 55006 when
 *		UA_VERIFY_MAX_RUNS runs are active.
 */
Datum
verify(PG_FUNCTION_ARGS)
{
	char	   *peer;
	int			chunk_rows;
	bool		find_keys;
	int64		timeout_ms;
	Oid			roleid = GetUserId();
	List	   *relids;
	int			slot;
	volatile int64 run_id = 0;
	Oid			save_userid;
	int			save_sec;

	ua_require_preloaded(ua_verify);
	for (int i = 0; i < 5; i++)
		if (i != 1 && PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s must not be null",
							i == 0 ? "peer" : i == 2 ? "chunk_rows" :
							i == 3 ? "find_keys" : "timeout")));
	peer = text_to_cstring(PG_GETARG_TEXT_PP(0));
	chunk_rows = PG_GETARG_INT32(2);
	find_keys = PG_GETARG_BOOL(3);
	if (chunk_rows < UA_VERIFY_MIN_CHUNK || chunk_rows > UA_VERIFY_MAX_CHUNK)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("chunk_rows must be between %d and %d",
						UA_VERIFY_MIN_CHUNK, UA_VERIFY_MAX_CHUNK)));
	timeout_ms = ua_interval_to_ms(PG_GETARG_INTERVAL_P(4), "timeout");
	if (timeout_ms < 1000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout must be at least 1 second")));
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("verify() cannot run during recovery"),
				 errhint("Run it on the primary of the replication.")));
	ua_peer_check(peer);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	relids = PG_ARGISNULL(1) ? ua_verify_default_tables()
		: ua_verify_given_tables(PG_GETARG_ARRAYTYPE_P(1));
	{
		ListCell   *lc;

		foreach(lc, relids)
			ua_verify_check_table(lfirst_oid(lc));
	}
	if (relids == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("no table to verify")));

	slot = ua_verify_take_slot();
	GetUserIdAndSecContext(&save_userid, &save_sec);
	PG_TRY();
	{
		/*
		 * The run's bookkeeping passes the fence, and is written as the
		 * bootstrap superuser: a granted role needs no privilege on the
		 * extension's tables (this code writes only the run's own rows).
		 */
		ua_fence_exempt_begin();
		SetUserIdAndSecContext(BOOTSTRAP_SUPERUSERID,
							   save_sec | SECURITY_LOCAL_USERID_CHANGE);
		run_id = ua_verify_create_run(peer, relids, chunk_rows, find_keys,
									  PG_GETARG_INTERVAL_P(4), roleid);
		SetUserIdAndSecContext(save_userid, save_sec);
		ua_fence_exempt_end();

		LWLockAcquire(ua_verify->lock, LW_EXCLUSIVE);
		ua_verify->slots[slot].run_id = run_id;
		ua_verify->slots[slot].dboid = MyDatabaseId;
		ua_verify->slots[slot].roleid = roleid;
		ua_verify->slots[slot].launcher_xid = GetTopTransactionId();
		ua_verify->slots[slot].pid = -1;
		LWLockRelease(ua_verify->lock);

		ua_verify_start_worker(slot, run_id);
	}
	PG_CATCH();
	{
		SetUserIdAndSecContext(save_userid, save_sec);
		ua_fence_exempt_end_all();
		LWLockAcquire(ua_verify->lock, LW_EXCLUSIVE);
		if (!ua_verify->slots[slot].attached)
			memset(&ua_verify->slots[slot], 0, sizeof(UaVerifySlot));
		LWLockRelease(ua_verify->lock);
		PG_RE_THROW();
	}
	PG_END_TRY();
	SPI_finish();
	PG_RETURN_INT64(run_id);
}

/*
 * cancel_verify(run bigint) returns boolean
 *		Stop the given run of this database, or every one running here when
 *		run is NULL: mark it cancelled (in the caller's transaction) and
 *		interrupt its worker, which exits within moments, also in the middle
 *		of a range (whose lock it then releases).  Returns whether a run was
 *		marked cancelled.
 */
Datum
cancel_verify(PG_FUNCTION_ARGS)
{
	int64		runs[UA_VERIFY_MAX_RUNS];
	int			pids[2 * UA_VERIFY_MAX_RUNS];
	int			nruns = 0;
	int			npids = 0;
	volatile uint64 marked = 0;
	Oid			save_userid;
	int			save_sec;

	ua_require_preloaded(ua_verify);

	LWLockAcquire(ua_verify->lock, LW_EXCLUSIVE);
	for (int i = 0; i < UA_VERIFY_MAX_RUNS; i++)
	{
		UaVerifySlot *s = &ua_verify->slots[i];

		if (s->run_id <= 0 || s->dboid != MyDatabaseId ||
			(!PG_ARGISNULL(0) && s->run_id != PG_GETARG_INT64(0)))
			continue;
		s->cancel = true;
		runs[nruns++] = s->run_id;
		if (s->attached && s->proc != NULL)
		{
			pids[npids++] = s->pid;
			SetLatch(&s->proc->procLatch);
		}
		/* The snapshot helper too, also in the middle of a checksum. */
		if (s->helper_proc != NULL && s->helper_pid > 0)
		{
			pids[npids++] = s->helper_pid;
			SetLatch(&s->helper_proc->procLatch);
		}
	}
	LWLockRelease(ua_verify->lock);

	/* SIGINT cancels a statement in progress; the worker sees the flag. */
	for (int i = 0; i < npids; i++)
		kill(pids[i], SIGINT);
	if (nruns == 0)
		PG_RETURN_BOOL(false);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ua_fence_exempt_begin();
	GetUserIdAndSecContext(&save_userid, &save_sec);
	/* As in verify(): the run's row is written as the bootstrap superuser. */
	SetUserIdAndSecContext(BOOTSTRAP_SUPERUSERID,
						   save_sec | SECURITY_LOCAL_USERID_CHANGE);
	PG_TRY();
	{
		Datum	   *ids = palloc(sizeof(Datum) * nruns);
		Oid			types[1] = {INT8ARRAYOID};
		Datum		values[1];

		for (int i = 0; i < nruns; i++)
			ids[i] = Int64GetDatum(runs[i]);
		values[0] = PointerGetDatum(construct_array(ids, nruns, INT8OID, 8,
													FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		marked = ua_spi_exec_typed("UPDATE upgrade_assist.verify_run"
								   "   SET state = 'cancelled', ended_at = now()"
								   " WHERE run_id = ANY ($1) AND state = 'running'",
								   1, types, values, NULL, SPI_OK_UPDATE);
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(save_userid, save_sec);
		ua_fence_exempt_end();
	}
	PG_END_TRY();
	SPI_finish();
	PG_RETURN_BOOL(marked > 0);
}

/*
 * verify_workers() returns setof (run_id, pid, relid, rows_done)
 *		One row per active run: its worker's pid (NULL until attached), the
 *		table it verifies now and the rows it has compared so far.
 */
Datum
verify_workers(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Tuplestorestate *store = ua_materialize_srf(fcinfo, &tupdesc);

	if (ua_verify == NULL)
		return (Datum) 0;

	LWLockAcquire(ua_verify->lock, LW_SHARED);
	for (int i = 0; i < UA_VERIFY_MAX_RUNS; i++)
	{
		UaVerifySlot *s = &ua_verify->slots[i];
		Datum		values[4];
		bool		nulls[4] = {false, false, false, false};

		if (s->run_id <= 0)
			continue;
		values[0] = Int64GetDatum(s->run_id);
		values[1] = Int32GetDatum(s->pid);
		nulls[1] = !s->attached;
		values[2] = ObjectIdGetDatum(s->relid);
		nulls[2] = !OidIsValid(s->relid);
		values[3] = Int64GetDatum(s->rows_done);
		tuplestore_putvalues(store, tupdesc, values, nulls);
	}
	LWLockRelease(ua_verify->lock);
	return (Datum) 0;
}
