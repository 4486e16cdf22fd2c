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
 * This file holds the export, the reading of the statistics (from the
 * export tables or a peer) and the catalog writes of one table
 * (ua_import_table); import_stats() and the worker that calls them, one
 * transaction per batch of tables, are in stats_import_worker.c.
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
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_operator.h"
#include "catalog/pg_statistic.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "libpq-fe.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

#include "compat.h"
#include "fence.h"
#include "remote.h"
#include "stats.h"
#include "stats_import.h"
#include "util.h"

/* How long reading the statistics from a peer may take. */
#define UA_STATS_IMPORT_PEER_MS (10 * 60 * 1000)

PG_FUNCTION_INFO_V1(export_stats);

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
void
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
 * ua_import_read_source
 *		Read the statistics to import, sorted by schema and table name (in
 *		"C"): the relation rows into rel, the attribute rows into att, from
 *		the export tables (source NULL) or from the peer named source, which
 *		is asked as roleid (its user mapping).  Caller is in a transaction,
 *		connected to SPI.
 */
void
ua_import_read_source(const char *source, Oid roleid, UaRows *rel, UaRows *att,
					  MemoryContext cxt)
{
	if (source != NULL)
	{
		TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														   UA_STATS_IMPORT_PEER_MS);
		Oid			save_userid;
		int			save_sec;

		GetUserIdAndSecContext(&save_userid, &save_sec);
		SetUserIdAndSecContext(roleid, save_sec | SECURITY_LOCAL_USERID_CHANGE);
		ua_rows_from_peer(source, UA_EXPORT_REL_SQL, UA_R_NCOLS, rel, deadline, cxt);
		ua_rows_from_peer(source, UA_EXPORT_ATT_SQL, UA_A_NCOLS, att, deadline, cxt);
		SetUserIdAndSecContext(save_userid, save_sec);
	}
	else
	{
		ua_rows_from_spi(UA_STORED_REL_SQL, 0, NULL, NULL, UA_R_NCOLS, rel, cxt);
		ua_rows_from_spi(UA_STORED_ATT_SQL, 0, NULL, NULL, UA_A_NCOLS, att, cxt);
	}
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
void
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
