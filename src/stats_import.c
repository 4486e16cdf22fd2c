/*-------------------------------------------------------------------------
 *
 * stats_import.c
 *	  Planner statistics carried from the old cluster to the new one:
 *	  export_stats() on the old side writes every table's relation
 *	  statistics and every column's pg_statistic row, in text form, into the
 *	  tables stats_export_rel and stats_export_att; import_stats() on the
 *	  new side reads them back, from those tables (carried by pg_upgrade or
 *	  by replication) or straight from a peer, and writes them into its own
 *	  catalogs.
 *
 * The text forms are those of the pg_stats view (one field per statistics
 * kind), read from pg_statistic itself so that range statistics come along
 * from 13 on.  From 18 on the import goes through pg_restore_relation_stats
 * and pg_restore_attribute_stats; on 15 to 17 it writes pg_class and
 * pg_statistic itself, building each slot as ANALYZE would: the values
 * parsed by the element type ANALYZE gives the slot, this cluster's
 * operators and collations.  It takes ShareUpdateExclusiveLock on each table
 * (the lock ANALYZE takes) and requires the caller to own it, since the
 * catalog writes bypass privileges.  A column whose type, collation or
 * statistics target differs from the old side's, or that does not exist
 * any more, is left alone and reported.
 *
 * import_stats() hands the work to a background worker (running as the
 * caller for the ownership checks and the peer's user mapping), which
 * commits one transaction per batch of tables, each table in a
 * subtransaction: a table that fails is reported and rolled back alone.
 * Every table done is recorded in its run (stats_import_run,
 * stats_import_table), so that a call after a cancel or a crash resumes the
 * run and imports only what is left.  The writes pass the write fence (a
 * fenced new side prepares before its cutover).
 *
 * No shared state: one import per database at a time is ensured by a
 * session lock the caller holds while its worker runs.
 *
 * IDENTIFICATION
 *	  src/stats_import.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "catalog/pg_authid.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_operator.h"
#include "catalog/pg_statistic.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "libpq-fe.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "storage/ipc.h"
#include "storage/lock.h"
#include "storage/procarray.h"
#include "postmaster/bgworker.h"
#include "tcop/tcopprot.h"
#include "utils/snapmgr.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

#include "compat.h"
#include "fence.h"
#include "remote.h"
#include "stats.h"
#include "util.h"

/* How long reading the statistics from a peer may take. */
#define UA_STATS_IMPORT_PEER_MS (10 * 60 * 1000)
/* Longest the worker waits for a table's lock before it reports it failed. */
#define UA_STATS_IMPORT_LOCK_TIMEOUT "10s"
/* Largest batch (tables per transaction) import_stats() takes. */
#define UA_STATS_IMPORT_MAX_BATCH 10000

PG_FUNCTION_INFO_V1(export_stats);
PG_FUNCTION_INFO_V1(import_stats);

/*
 * What is exported, as a query that runs on any release from 13 on: locally
 * into the export tables, or on a peer for import_stats(source).  Sorted by
 * schema and table name in the "C" collation on both, so that the import
 * merges the two result sets by strcmp.
 */
#define UA_EXPORT_FILTER \
	" WHERE c.relkind IN ('r', 'm', 'p') AND c.relpersistence = 'p'" \
	"   AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'upgrade_assist')" \
	"   AND n.nspname !~ '^pg_toast'"

#define UA_EXPORT_REL_SQL \
	"SELECT n.nspname::text, c.relname::text, c.relpages, c.reltuples," \
	"       c.relallvisible" \
	"  FROM pg_catalog.pg_class c" \
	"  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace" \
	UA_EXPORT_FILTER \
	" ORDER BY n.nspname COLLATE \"C\", c.relname COLLATE \"C\""

/* The slot of kind k, as pg_stats picks it. */
#define UA_SLOT(k, what) \
	"CASE " #k " WHEN s.stakind1 THEN s." what "1" \
	" WHEN s.stakind2 THEN s." what "2 WHEN s.stakind3 THEN s." what "3" \
	" WHEN s.stakind4 THEN s." what "4 WHEN s.stakind5 THEN s." what "5 END"

#define UA_EXPORT_ATT_SQL \
	"SELECT n.nspname::text, c.relname::text, a.attname::text, s.stainherit," \
	"       pg_catalog.format_type(a.atttypid, a.atttypmod)," \
	"       (SELECT pg_catalog.quote_ident(cn.nspname) || '.' ||" \
	"               pg_catalog.quote_ident(co.collname)" \
	"          FROM pg_catalog.pg_collation co" \
	"          JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace" \
	"         WHERE co.oid = a.attcollation)," \
	"       coalesce(a.attstattarget::integer, -1)," \
	"       s.stanullfrac, s.stawidth, s.stadistinct," \
	"       (" UA_SLOT(1, "stavalues") ")::text," \
	"       " UA_SLOT(1, "stanumbers") "," \
	"       (" UA_SLOT(2, "stavalues") ")::text," \
	"       (" UA_SLOT(3, "stanumbers") ")[1]," \
	"       (" UA_SLOT(4, "stavalues") ")::text," \
	"       " UA_SLOT(4, "stanumbers") "," \
	"       " UA_SLOT(5, "stanumbers") "," \
	"       (" UA_SLOT(6, "stavalues") ")::text," \
	"       (" UA_SLOT(6, "stanumbers") ")[1]," \
	"       (" UA_SLOT(7, "stavalues") ")::text" \
	"  FROM pg_catalog.pg_statistic s" \
	"  JOIN pg_catalog.pg_class c ON c.oid = s.starelid" \
	"  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace" \
	"  JOIN pg_catalog.pg_attribute a" \
	"    ON a.attrelid = s.starelid AND a.attnum = s.staattnum" \
	"   AND NOT a.attisdropped" \
	UA_EXPORT_FILTER \
	" ORDER BY n.nspname COLLATE \"C\", c.relname COLLATE \"C\", a.attnum, s.stainherit"

/* The same rows from the export tables (columns in the same order). */
#define UA_STORED_REL_SQL \
	"SELECT schemaname, relname, relpages, reltuples, relallvisible" \
	"  FROM upgrade_assist.stats_export_rel" \
	" ORDER BY schemaname COLLATE \"C\", relname COLLATE \"C\""
#define UA_STORED_ATT_SQL \
	"SELECT schemaname, relname, attname, inherited, atttype, attcollation," \
	"       attstattarget, null_frac, avg_width, n_distinct," \
	"       most_common_vals, most_common_freqs, histogram_bounds, correlation," \
	"       most_common_elems, most_common_elem_freqs, elem_count_histogram," \
	"       range_length_histogram, range_empty_frac, range_bounds_histogram" \
	"  FROM upgrade_assist.stats_export_att" \
	" ORDER BY schemaname COLLATE \"C\", relname COLLATE \"C\", attname, inherited"

/* Columns of the attribute rows, 0-based. */
enum
{
	UA_A_SCHEMA, UA_A_REL, UA_A_ATT, UA_A_INHERITED, UA_A_TYPE, UA_A_COLL,
	UA_A_TARGET, UA_A_NULLFRAC, UA_A_WIDTH, UA_A_NDISTINCT,
	UA_A_MCV, UA_A_MCF, UA_A_HIST, UA_A_CORR,
	UA_A_MCE, UA_A_MCEF, UA_A_DECHIST,
	UA_A_RLHIST, UA_A_REMPTY, UA_A_RBHIST,
	UA_A_NCOLS
};
#define UA_R_NCOLS 5

/* A result set in text form, from SPI or from a peer. */
typedef struct UaRows
{
	int			nrows;
	int			ncols;
	char	  **v;				/* nrows * ncols, NULL for SQL NULL */
} UaRows;

#define UA_CELL(rows, r, c) ((rows)->v[(r) * (rows)->ncols + (c)])

/* One table's outcome. */
typedef struct UaImportResult
{
	const char *status;
	int			imported;
	int			skipped;
	Oid			relid;			/* the table on this side, if found */
	StringInfoData detail;
} UaImportResult;

/*
 * ua_stats_pin_gucs
 *		Settings under which values are printed and parsed the same way on
 *		both sides, and type names are qualified unless in pg_catalog.
 *		Returns the GUC nest level for AtEOXact_GUC.
 */
static int
ua_stats_pin_gucs(void)
{
	int			level = NewGUCNestLevel();

	(void) set_config_option("search_path", "pg_catalog", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("datestyle", "ISO, MDY", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("intervalstyle", "postgres", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("timezone", "UTC", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("extra_float_digits", "1", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	return level;
}

/*
 * export_stats() returns integer
 *		Replace the contents of the export tables with this database's
 *		statistics; returns the number of tables exported.  Superuser only
 *		(pg_statistic is); 42501 otherwise.
 */
Datum
export_stats(PG_FUNCTION_ARGS)
{
	volatile uint64 ntables = 0;
	int			level;

	if (!superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to export statistics"),
				 errdetail("Only superusers may read pg_statistic.")));

	level = ua_stats_pin_gucs();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ua_fence_exempt_begin();
	PG_TRY();
	{
		ua_spi_exec_typed("DELETE FROM upgrade_assist.stats_export_att",
						  0, NULL, NULL, NULL, SPI_OK_DELETE);
		ua_spi_exec_typed("DELETE FROM upgrade_assist.stats_export_rel",
						  0, NULL, NULL, NULL, SPI_OK_DELETE);
		ntables = ua_spi_exec_typed("INSERT INTO upgrade_assist.stats_export_rel"
									"  (schemaname, relname, relpages, reltuples,"
									"   relallvisible) " UA_EXPORT_REL_SQL,
									0, NULL, NULL, NULL, SPI_OK_INSERT);
		ua_spi_exec_typed("INSERT INTO upgrade_assist.stats_export_att"
						  "  (schemaname, relname, attname, inherited, atttype,"
						  "   attcollation, attstattarget, null_frac, avg_width,"
						  "   n_distinct, most_common_vals, most_common_freqs,"
						  "   histogram_bounds, correlation, most_common_elems,"
						  "   most_common_elem_freqs, elem_count_histogram,"
						  "   range_length_histogram, range_empty_frac,"
						  "   range_bounds_histogram) " UA_EXPORT_ATT_SQL,
						  0, NULL, NULL, NULL, SPI_OK_INSERT);
	}
	PG_FINALLY();
	{
		ua_fence_exempt_end();
	}
	PG_END_TRY();
	SPI_finish();
	AtEOXact_GUC(true, level);
	PG_RETURN_INT32((int32) ntables);
}

/*
 * ua_rows_from_spi
 *		Run sql (parameters as ua_spi_exec_typed takes them) through SPI and
 *		keep its result as text in cxt.  Caller is connected to SPI.
 */
static void
ua_rows_from_spi(const char *sql, int nargs, Oid *types, Datum *values,
				 int ncols, UaRows *rows, MemoryContext cxt)
{
	ua_spi_exec_typed(sql, nargs, types, values, NULL, SPI_OK_SELECT);
	rows->nrows = (int) SPI_processed;
	rows->ncols = ncols;
	rows->v = MemoryContextAllocZero(cxt, sizeof(char *) * Max(rows->nrows, 1) * ncols);
	for (int r = 0; r < rows->nrows; r++)
		for (int c = 0; c < ncols; c++)
			UA_CELL(rows, r, c) = ua_spi_getvalue(r, c + 1, cxt);
}

/*
 * ua_rows_from_peer
 *		Run sql on the named peer and keep its result as text in cxt.  Throws
 *		as ua_peer_query does, and 42804 if the peer's answer has another
 *		shape.
 */
static void
ua_rows_from_peer(const char *peer, const char *sql, int ncols, UaRows *rows,
				  TimestampTz deadline, MemoryContext cxt)
{
	PGresult   *res = ua_peer_query(peer, sql, 0, NULL, deadline);

	if (PQnfields(res) != ncols)
	{
		PQclear(res);
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("unexpected answer from peer \"%s\"", peer)));
	}
	rows->nrows = PQntuples(res);
	rows->ncols = ncols;
	rows->v = MemoryContextAllocZero(cxt, sizeof(char *) * Max(rows->nrows, 1) * ncols);
	for (int r = 0; r < rows->nrows; r++)
		for (int c = 0; c < ncols; c++)
			if (!PQgetisnull(res, r, c))
				UA_CELL(rows, r, c) = MemoryContextStrdup(cxt, PQgetvalue(res, r, c));
	PQclear(res);
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
 * ua_collation_text
 *		A collation as the export names it ("schema"."name"), NULL for none.
 */
static char *
ua_collation_text(Oid collid)
{
	HeapTuple	tup;
	Form_pg_collation coll;
	char	   *result;

	if (!OidIsValid(collid))
		return NULL;
	tup = SearchSysCache1(COLLOID, ObjectIdGetDatum(collid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for collation %u", collid);
	coll = (Form_pg_collation) GETSTRUCT(tup);
	result = psprintf("%s.%s",
					  quote_identifier(get_namespace_name(coll->collnamespace)),
					  quote_identifier(NameStr(coll->collname)));
	ReleaseSysCache(tup);
	return result;
}

/*
 * ua_column_mismatch
 *		Why attribute row ar cannot go to column attname of relid, or NULL
 *		if it can; fills *attnum, *typid and *collid.
 */
static const char *
ua_column_mismatch(Oid relid, UaRows *att, int ar, AttrNumber *attnum,
				   Oid *typid, Oid *collid)
{
	HeapTuple	tup;
	Form_pg_attribute attr;
	int			target;
	const char *why = NULL;
	char	   *coll;
	const char *oldcoll = UA_CELL(att, ar, UA_A_COLL);

	*attnum = get_attnum(relid, UA_CELL(att, ar, UA_A_ATT));
	if (*attnum == InvalidAttrNumber || *attnum < 0)
		return "column does not exist";
	tup = SearchSysCache2(ATTNUM, ObjectIdGetDatum(relid), Int16GetDatum(*attnum));
	if (!HeapTupleIsValid(tup))
		return "column does not exist";
	attr = (Form_pg_attribute) GETSTRUCT(tup);
	*typid = attr->atttypid;
	*collid = attr->attcollation;
	target = ua_attstattarget(tup);

	if (strcmp(format_type_with_typemod(attr->atttypid, attr->atttypmod),
			   UA_CELL(att, ar, UA_A_TYPE)) != 0)
		why = psprintf("type differs (old %s, new %s)", UA_CELL(att, ar, UA_A_TYPE),
					   format_type_with_typemod(attr->atttypid, attr->atttypmod));
	else if (target != atoi(UA_CELL(att, ar, UA_A_TARGET)))
		why = psprintf("statistics target differs (old %s, new %d)",
					   UA_CELL(att, ar, UA_A_TARGET), target);
	else
	{
		coll = ua_collation_text(attr->attcollation);
		if ((coll == NULL) != (oldcoll == NULL) ||
			(coll != NULL && strcmp(coll, oldcoll) != 0))
			why = psprintf("collation differs (old %s, new %s)",
						   oldcoll ? oldcoll : "none", coll ? coll : "none");
	}
	ReleaseSysCache(tup);
	return why;
}

#if PG_VERSION_NUM >= 180000

/*
 * ua_import_rel_stats
 *		Relation statistics of relation row rr through 18's
 *		pg_restore_relation_stats.  Caller is connected to SPI.
 */
static void
ua_import_rel_stats(UaRows *rel, int rr, Oid relid)
{
	Oid			types[5] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[5];
	char		nulls[5];

	(void) relid;
	for (int c = 0; c < 5; c++)
	{
		values[c] = UA_CELL(rel, rr, c) ? CStringGetTextDatum(UA_CELL(rel, rr, c)) : (Datum) 0;
		nulls[c] = UA_CELL(rel, rr, c) ? ' ' : 'n';
	}
	ua_spi_exec_typed("SELECT pg_catalog.pg_restore_relation_stats("
					  "'schemaname', $1, 'relname', $2,"
					  " 'relpages', $3::integer, 'reltuples', $4::real,"
					  " 'relallvisible', $5::integer)",
					  5, types, values, nulls, SPI_OK_SELECT);
}

/*
 * ua_import_att_stats
 *		Statistics of attribute row ar through 18's pg_clear_attribute_stats
 *		and pg_restore_attribute_stats; returns false when the latter
 *		reported a problem (as a WARNING).  Caller is connected to SPI.
 */
static bool
ua_import_att_stats(UaRows *att, int ar, Oid relid, AttrNumber attnum,
					Oid typid, Oid collid)
{
	Oid			types[UA_A_NCOLS];
	Datum		values[UA_A_NCOLS];
	char		nulls[UA_A_NCOLS];
	bool		isnull;

	(void) relid;
	(void) attnum;
	(void) typid;
	(void) collid;
	for (int c = 0; c < UA_A_NCOLS; c++)
	{
		types[c] = TEXTOID;
		values[c] = UA_CELL(att, ar, c) ? CStringGetTextDatum(UA_CELL(att, ar, c)) : (Datum) 0;
		nulls[c] = UA_CELL(att, ar, c) ? ' ' : 'n';
	}
	ua_spi_exec_typed("SELECT pg_catalog.pg_clear_attribute_stats($1, $2, $3, $4::boolean)",
					  4, types, values, nulls, SPI_OK_SELECT);
	/* NULL arguments are left out by pg_restore_attribute_stats. */
	ua_spi_exec_typed("SELECT pg_catalog.pg_restore_attribute_stats("
					  "'schemaname', $1, 'relname', $2, 'attname', $3,"
					  " 'inherited', $4::boolean, 'null_frac', $8::real,"
					  " 'avg_width', $9::integer, 'n_distinct', $10::real,"
					  " 'most_common_vals', $11, 'most_common_freqs', $12::real[],"
					  " 'histogram_bounds', $13, 'correlation', $14::real,"
					  " 'most_common_elems', $15, 'most_common_elem_freqs', $16::real[],"
					  " 'elem_count_histogram', $17::real[],"
					  " 'range_length_histogram', $18, 'range_empty_frac', $19::real,"
					  " 'range_bounds_histogram', $20)"
					  " FROM (SELECT $5, $6, $7) unused",
					  UA_A_NCOLS, types, values, nulls, SPI_OK_SELECT);
	return DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
									  1, &isnull)) && !isnull;
}

#else							/* PG_VERSION_NUM < 180000 */

/*
 * ua_import_rel_stats
 *		Relation statistics of relation row rr into pg_class (a
 *		transactional update).  Caller holds a lock on relid.
 */
static void
ua_import_rel_stats(UaRows *rel, int rr, Oid relid)
{
	Relation	pgclass = table_open(RelationRelationId, RowExclusiveLock);
	HeapTuple	tup = SearchSysCacheCopy1(RELOID, ObjectIdGetDatum(relid));
	Form_pg_class form;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	form = (Form_pg_class) GETSTRUCT(tup);
	form->relpages = DatumGetInt32(DirectFunctionCall1(int4in,
													   CStringGetDatum(UA_CELL(rel, rr, 2))));
	form->reltuples = DatumGetFloat4(DirectFunctionCall1(float4in,
														 CStringGetDatum(UA_CELL(rel, rr, 3))));
	form->relallvisible = DatumGetInt32(DirectFunctionCall1(int4in,
															CStringGetDatum(UA_CELL(rel, rr, 4))));
	CatalogTupleUpdate(pgclass, &tup->t_self, tup);
	heap_freetuple(tup);
	table_close(pgclass, RowExclusiveLock);
}

/*
 * ua_parse_array
 *		A one-dimensional array without NULLs of element type elemtype from
 *		its text form; throws 22023 otherwise.  elemtype may itself be an
 *		array type: ANALYZE stores the values of an array column so.
 */
static Datum
ua_parse_array(const char *text, Oid elemtype, const char *field)
{
	Datum		d;
	ArrayType  *arr;

	d = OidFunctionCall3(F_ARRAY_IN, CStringGetDatum(text),
						 ObjectIdGetDatum(elemtype), Int32GetDatum(-1));
	arr = DatumGetArrayTypeP(d);
	if (ARR_NDIM(arr) != 1 || array_contains_nulls(arr))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a one-dimensional array without nulls", field)));
	return d;
}

/* The slots of one pg_statistic row being built. */
typedef struct UaSlots
{
	int			n;
	int16		kind[STATISTIC_NUM_SLOTS];
	Oid			op[STATISTIC_NUM_SLOTS];
	Oid			coll[STATISTIC_NUM_SLOTS];
	Datum		numbers[STATISTIC_NUM_SLOTS];	/* 0: none */
	Datum		values[STATISTIC_NUM_SLOTS];	/* 0: none */
} UaSlots;

/*
 * ua_add_slot
 *		Append one slot; numbers and values are text forms or NULL.
 */
static void
ua_add_slot(UaSlots *s, int16 kind, Oid op, Oid coll, const char *numbers,
			const char *values, Oid valtype, const char *field)
{
	if (s->n >= STATISTIC_NUM_SLOTS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("too many statistics kinds for one column")));
	s->kind[s->n] = kind;
	s->op[s->n] = op;
	s->coll[s->n] = coll;
	s->numbers[s->n] = numbers ? ua_parse_array(numbers, FLOAT4OID, field) : (Datum) 0;
	s->values[s->n] = values ? ua_parse_array(values, valtype, field) : (Datum) 0;
	s->n++;
}

/*
 * ua_import_att_stats
 *		Write the pg_statistic row of attribute row ar for column attnum of
 *		relid (type typid, collation collid) as ANALYZE would, replacing
 *		the one there.  Caller holds a lock on relid.  Returns true.
 */
static bool
ua_import_att_stats(UaRows *att, int ar, Oid relid, AttrNumber attnum,
					Oid typid, Oid collid)
{
	TypeCacheEntry *tc = lookup_type_cache(typid, TYPECACHE_EQ_OPR | TYPECACHE_LT_OPR);
	bool		inherit = strcmp(UA_CELL(att, ar, UA_A_INHERITED), "t") == 0;
	UaSlots		s = {0};
	Datum		values[Natts_pg_statistic];
	bool		nulls[Natts_pg_statistic];
	bool		replaces[Natts_pg_statistic];
	Relation	sd;
	HeapTuple	old;
	HeapTuple	tup;
	char	   *corr = NULL;

#define CELL(c) UA_CELL(att, ar, (c))

	/* Scalar statistics: the column's type and its default operators. */
	if (CELL(UA_A_MCV) || CELL(UA_A_MCF))
	{
		if (!CELL(UA_A_MCV) || !CELL(UA_A_MCF) || !OidIsValid(tc->eq_opr))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("most common values of column \"%s\" cannot be imported",
							CELL(UA_A_ATT))));
		ua_add_slot(&s, STATISTIC_KIND_MCV, tc->eq_opr, collid,
					CELL(UA_A_MCF), CELL(UA_A_MCV), typid, "most_common_vals");
	}
	if (CELL(UA_A_HIST))
	{
		if (!OidIsValid(tc->lt_opr))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("type %s has no ordering operator", format_type_be(typid))));
		ua_add_slot(&s, STATISTIC_KIND_HISTOGRAM, tc->lt_opr, collid,
					NULL, CELL(UA_A_HIST), typid, "histogram_bounds");
	}
	if (CELL(UA_A_CORR))
	{
		if (!OidIsValid(tc->lt_opr))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("type %s has no ordering operator", format_type_be(typid))));
		corr = psprintf("{%s}", CELL(UA_A_CORR));
		ua_add_slot(&s, STATISTIC_KIND_CORRELATION, tc->lt_opr, collid,
					corr, NULL, InvalidOid, "correlation");
	}

	/*
	 * Element statistics: tsvector's lexemes are text in the default
	 * collation (ts_typanalyze); an array's elements are its element type,
	 * compared by that type's equality in the column's collation
	 * (array_typanalyze).
	 */
	if (CELL(UA_A_MCE) || CELL(UA_A_MCEF) || CELL(UA_A_DECHIST))
	{
		Oid			elemtype;
		Oid			elemcoll;
		Oid			elemeq;

		if (getBaseType(typid) == TSVECTOROID)
		{
			elemtype = TEXTOID;
			elemcoll = DEFAULT_COLLATION_OID;
			elemeq = TextEqualOperator;
		}
		else
		{
			elemtype = get_base_element_type(typid);
			elemcoll = collid;
			elemeq = OidIsValid(elemtype) ?
				lookup_type_cache(elemtype, TYPECACHE_EQ_OPR)->eq_opr : InvalidOid;
		}
		if (!OidIsValid(elemeq) ||
			(CELL(UA_A_MCE) == NULL) != (CELL(UA_A_MCEF) == NULL))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("element statistics of column \"%s\" cannot be imported",
							CELL(UA_A_ATT))));
		if (CELL(UA_A_MCE))
			ua_add_slot(&s, STATISTIC_KIND_MCELEM, elemeq, elemcoll,
						CELL(UA_A_MCEF), CELL(UA_A_MCE), elemtype,
						"most_common_elems");
		if (CELL(UA_A_DECHIST))
			ua_add_slot(&s, STATISTIC_KIND_DECHIST, elemeq, elemcoll,
						CELL(UA_A_DECHIST), NULL, InvalidOid,
						"elem_count_histogram");
	}

	/*
	 * Range statistics (range_typanalyze, multirange_typanalyze): bounds as
	 * values of the range type, without operator or collation; lengths as
	 * float8 ordered by float8's "<", with the fraction of empty ranges.
	 */
	if (CELL(UA_A_RBHIST))
	{
		Oid			rngtype = ua_bounds_histogram_type(getBaseType(typid));

		ua_add_slot(&s, STATISTIC_KIND_BOUNDS_HISTOGRAM, InvalidOid, InvalidOid,
					NULL, CELL(UA_A_RBHIST), rngtype, "range_bounds_histogram");
	}
	if (CELL(UA_A_RLHIST) || CELL(UA_A_REMPTY))
	{
		if (!CELL(UA_A_RLHIST) || !CELL(UA_A_REMPTY))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("range statistics of column \"%s\" cannot be imported",
							CELL(UA_A_ATT))));
		ua_add_slot(&s, STATISTIC_KIND_RANGE_LENGTH_HISTOGRAM, Float8LessOperator,
					InvalidOid, psprintf("{%s}", CELL(UA_A_REMPTY)),
					CELL(UA_A_RLHIST), FLOAT8OID, "range_length_histogram");
	}

	memset(nulls, false, sizeof(nulls));
	memset(replaces, true, sizeof(replaces));
	values[Anum_pg_statistic_starelid - 1] = ObjectIdGetDatum(relid);
	values[Anum_pg_statistic_staattnum - 1] = Int16GetDatum(attnum);
	values[Anum_pg_statistic_stainherit - 1] = BoolGetDatum(inherit);
	values[Anum_pg_statistic_stanullfrac - 1] =
		DirectFunctionCall1(float4in, CStringGetDatum(CELL(UA_A_NULLFRAC)));
	values[Anum_pg_statistic_stawidth - 1] =
		DirectFunctionCall1(int4in, CStringGetDatum(CELL(UA_A_WIDTH)));
	values[Anum_pg_statistic_stadistinct - 1] =
		DirectFunctionCall1(float4in, CStringGetDatum(CELL(UA_A_NDISTINCT)));
	for (int i = 0; i < STATISTIC_NUM_SLOTS; i++)
	{
		bool		used = i < s.n;

		values[Anum_pg_statistic_stakind1 - 1 + i] = Int16GetDatum(used ? s.kind[i] : 0);
		values[Anum_pg_statistic_staop1 - 1 + i] = ObjectIdGetDatum(used ? s.op[i] : InvalidOid);
		values[Anum_pg_statistic_stacoll1 - 1 + i] = ObjectIdGetDatum(used ? s.coll[i] : InvalidOid);
		values[Anum_pg_statistic_stanumbers1 - 1 + i] = used ? s.numbers[i] : (Datum) 0;
		nulls[Anum_pg_statistic_stanumbers1 - 1 + i] = !used || s.numbers[i] == (Datum) 0;
		values[Anum_pg_statistic_stavalues1 - 1 + i] = used ? s.values[i] : (Datum) 0;
		nulls[Anum_pg_statistic_stavalues1 - 1 + i] = !used || s.values[i] == (Datum) 0;
	}
#undef CELL

	sd = table_open(StatisticRelationId, RowExclusiveLock);
	old = SearchSysCache3(STATRELATTINH, ObjectIdGetDatum(relid),
						  Int16GetDatum(attnum), BoolGetDatum(inherit));
	if (HeapTupleIsValid(old))
	{
		tup = heap_modify_tuple(old, RelationGetDescr(sd), values, nulls, replaces);
		ReleaseSysCache(old);
		CatalogTupleUpdate(sd, &tup->t_self, tup);
	}
	else
	{
		tup = heap_form_tuple(RelationGetDescr(sd), values, nulls);
		CatalogTupleInsert(sd, tup);
	}
	heap_freetuple(tup);
	table_close(sd, RowExclusiveLock);
	return true;
}

#endif							/* PG_VERSION_NUM >= 180000 */

/*
 * ua_import_table
 *		Import relation row rr and attribute rows [first, last) into the
 *		table they name.  Fills res; throws on bad values (the caller rolls
 *		the table back).  Caller is connected to SPI.
 */
static void
ua_import_table(UaRows *rel, int rr, UaRows *att, int first, int last,
				UaImportResult *res)
{
	Oid			nspid = get_namespace_oid(UA_CELL(rel, rr, 0), true);
	Oid			relid = OidIsValid(nspid) ? get_relname_relid(UA_CELL(rel, rr, 1), nspid) : InvalidOid;
	char		relkind;

	res->status = "skipped";
	res->relid = relid;
	if (!OidIsValid(relid))
	{
		appendStringInfoString(&res->detail, "table does not exist");
		res->skipped = last - first;
		return;
	}
	relkind = get_rel_relkind(relid);
	if (relkind != RELKIND_RELATION && relkind != RELKIND_MATVIEW &&
		relkind != RELKIND_PARTITIONED_TABLE)
	{
		appendStringInfoString(&res->detail, "not a table or materialized view");
		res->skipped = last - first;
		return;
	}
	if (!ua_rel_ownercheck(relid, GetUserId()))
	{
		appendStringInfoString(&res->detail, "must be owner of table");
		res->skipped = last - first;
		return;
	}
	/* ANALYZE's lock: reads and writes go on, ANALYZE and DDL wait. */
	LockRelationOid(relid, ShareUpdateExclusiveLock);
	if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(relid)))
	{
		appendStringInfoString(&res->detail, "table was dropped");
		res->skipped = last - first;
		return;
	}

	ua_import_rel_stats(rel, rr, relid);
	for (int ar = first; ar < last; ar++)
	{
		AttrNumber	attnum;
		Oid			typid = InvalidOid;
		Oid			collid = InvalidOid;
		const char *why = ua_column_mismatch(relid, att, ar, &attnum, &typid, &collid);

		if (why == NULL &&
			!ua_import_att_stats(att, ar, relid, attnum, typid, collid))
			why = "pg_restore_attribute_stats reported a problem";
		if (why != NULL)
		{
			res->skipped++;
			appendStringInfo(&res->detail, "%scolumn %s%s: %s",
							 res->detail.len > 0 ? "; " : "",
							 quote_identifier(UA_CELL(att, ar, UA_A_ATT)),
							 strcmp(UA_CELL(att, ar, UA_A_INHERITED), "t") == 0 ?
							 " (inherited)" : "", why);
		}
		else
			res->imported++;
	}
	res->status = "imported";
	CommandCounterIncrement();
}

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
#define UA_IMPORT_RECORD_SQL \
	"INSERT INTO upgrade_assist.stats_import_table AS t" \
	"  (run_id, schemaname, relname, relid, status, columns_imported," \
	"   columns_skipped, detail, batch, attempt, imported_at)" \
	" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, clock_timestamp())" \
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

/*
 * ua_import_record
 *		Store one table's outcome in the run.  Caller is connected to SPI.
 */
static void
ua_import_record(int64 run_id, const char *schema, const char *relname,
				 UaImportResult *res, int batch, int attempt)
{
	Oid			types[10] = {INT8OID, TEXTOID, TEXTOID, OIDOID, TEXTOID,
	INT4OID, INT4OID, TEXTOID, INT4OID, INT4OID};
	Datum		values[10];
	char		nulls[11] = "          ";
	int			rc;

	values[0] = Int64GetDatum(run_id);
	values[1] = CStringGetTextDatum(schema);
	values[2] = CStringGetTextDatum(relname);
	values[3] = ObjectIdGetDatum(res->relid);
	nulls[3] = OidIsValid(res->relid) ? ' ' : 'n';
	values[4] = CStringGetTextDatum(res->status);
	values[5] = Int32GetDatum(res->imported);
	values[6] = Int32GetDatum(res->skipped);
	values[7] = res->detail.len > 0 ? CStringGetTextDatum(res->detail.data) : (Datum) 0;
	nulls[7] = res->detail.len > 0 ? ' ' : 'n';
	values[8] = Int32GetDatum(batch);
	values[9] = Int32GetDatum(attempt);

	/* Planned once per worker: it runs for every table. */
	if (ua_import_record_plan == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare(UA_IMPORT_RECORD_SQL, 10, types);

		if (plan == NULL || SPI_keepplan(plan) != 0)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		ua_import_record_plan = plan;
	}
	rc = SPI_execute_plan(ua_import_record_plan, values, nulls, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(rc));
}

/*
 * ua_import_worker_gucs
 *		The worker's settings for its whole life: ua_stats_pin_gucs' (values
 *		printed and parsed the same way on both sides), and a lock_timeout
 *		so that a table locked for long (or by the caller's own
 *		transaction, which waits for the worker) is reported failed instead
 *		of stopping the import.
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

/* Where the import is in the relation, attribute and done rows. */
typedef struct UaImportPos
{
	int			rr;
	int			ar;
	int			dr;
} UaImportPos;

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

	ua_xact_begin("import_stats: importing");
	ua_fence_exempt_begin();
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
		if (ua_import_is_done(done, &pos->dr, rel, pos->rr))
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
		ua_import_record(run_id, UA_CELL(rel, pos->rr, 0), UA_CELL(rel, pos->rr, 1),
						 &res, batch, attempt);
	}
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
 * ua_import_run
 *		The worker's work: start or resume the run, read the statistics,
 *		import the tables not done yet in batches, mark the run done.
 *		Throws on errors outside a table (the run stays 'running').
 */
static void
ua_import_run(UaImportArgs *a, MemoryContext cxt, int64 *run_id_out)
{
	UaRows		rel;
	UaRows		att;
	UaRows		done;
	int64		run_id;
	int			attempt;
	int			batch;
	UaImportPos pos = {0, 0, 0};
	Oid			types[1] = {INT8OID};
	Datum		values[1];
	Oid			save_userid;
	int			save_sec;

	ua_xact_begin("import_stats: starting");
	ua_fence_exempt_begin();
	run_id = ua_import_start_run(a, &attempt, &batch);
	*run_id_out = run_id;
	values[0] = Int64GetDatum(run_id);
	ua_rows_from_spi(UA_IMPORT_DONE_SQL, 1, types, values, 2, &done, cxt);
	ua_fence_exempt_end();
	ua_xact_end(cxt);

	/* The statistics: the peer is asked as the caller (its user mapping). */
	ua_xact_begin("import_stats: reading the statistics");
	if (a->has_source)
	{
		TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														   UA_STATS_IMPORT_PEER_MS);

		GetUserIdAndSecContext(&save_userid, &save_sec);
		SetUserIdAndSecContext(a->roleid, save_sec | SECURITY_LOCAL_USERID_CHANGE);
		ua_rows_from_peer(a->source, UA_EXPORT_REL_SQL, UA_R_NCOLS, &rel, deadline, cxt);
		ua_rows_from_peer(a->source, UA_EXPORT_ATT_SQL, UA_A_NCOLS, &att, deadline, cxt);
		SetUserIdAndSecContext(save_userid, save_sec);
	}
	else
	{
		ua_rows_from_spi(UA_STORED_REL_SQL, 0, NULL, NULL, UA_R_NCOLS, &rel, cxt);
		ua_rows_from_spi(UA_STORED_ATT_SQL, 0, NULL, NULL, UA_A_NCOLS, &att, cxt);
	}
	ua_xact_end(cxt);

	while (pos.rr < rel.nrows)
	{
		UaImportPos start = pos;

		CHECK_FOR_INTERRUPTS();
		if (BackendPidGetProc(a->caller_pid) == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_QUERY_CANCELED),
					 errmsg("the caller of import_stats() is gone")));
		batch++;

		/*
		 * The batch in one transaction without subtransactions (no
		 * subtransaction XIDs to overflow every snapshot of the server); if
		 * it fails, again with one subtransaction per table, so that the
		 * table that failed is reported and rolled back alone.
		 */
		if (!ua_import_batch_fast(a, &rel, &att, &done, &pos, run_id, batch,
								  attempt, cxt))
		{
			pos = start;
			ua_import_batch(a, &rel, &att, &done, &pos, run_id, batch, attempt,
							cxt, true);
		}
	}

	ua_xact_begin("import_stats: finishing");
	ua_fence_exempt_begin();
	ua_spi_exec_typed("UPDATE upgrade_assist.stats_import_run"
					  "   SET state = 'done', ended_at = clock_timestamp()"
					  " WHERE run_id = $1",
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

	(void) main_arg;
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
 *		peer (ua_peer_check).  The worker reads them as superuser.
 */
static void
ua_import_check_privileges(const char *source)
{
	const char *const tables[2] = {"stats_export_rel", "stats_export_att"};
	Oid			nsp;

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
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("statistics cannot be imported during recovery")));
	ua_require_preloaded(ua_stats);
	ua_import_check_privileges(source);
	store = ua_materialize_srf(fcinfo, &tupdesc);

	memset(&args, 0, sizeof(args));
	args.dboid = MyDatabaseId;
	args.roleid = GetUserId();
	args.caller_pid = MyProcPid;
	args.batch_size = batch_size;
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
