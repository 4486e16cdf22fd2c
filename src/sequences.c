/*-------------------------------------------------------------------------
 *
 * sequences.c
 *	  Sequence plan and sync: move every sequence of the database forward
 *	  past every value already used, here or on the source cluster.
 *
 * SQL functions: sequence_plan (computes, changes nothing) and
 * sync_sequences (computes and applies), both run on the new side;
 * sync_sequences_given, the same as sync_sequences with the source's states
 * given as arrays, and sequence_states, which reads those states on the
 * source: the cutover worker runs the latter on its own cluster and passes
 * the result to the former on the peer, so the peer never connects back;
 * the cutover's prepared way (sequences_prepare, sync_sequences_prepared)
 * is in sequences_prepared.c and shares the plan's pieces through
 * sequences.h.
 *
 * Logical replication carries row values, not sequence counters.  For each
 * sequence of the database the plan gathers three positions and takes the
 * furthest in the sequence's direction, plus the margin:
 *
 *	- the local state (last_value, is_called);
 *	- the state on the source, when there is one: read from the source
 *	  peer (one query for all sequences; a second one only for sequences
 *	  never called there), or given by the caller as arrays;
 *	- the extreme (max ascending, min descending) of every integer column
 *	  that draws from it: identity columns and columns whose default is
 *	  nextval() of it, with or without OWNED BY, over every partition and
 *	  child table (one query per table, answered from indexes where they
 *	  exist).
 *
 * A position is compared by the value the next nextval() returns, so that
 * is_called is honoured exactly.  CYCLE sequences follow the source's
 * position instead, since their values do not grow.  The result is applied
 * with ALTER SEQUENCE ... RESTART, which (unlike setval) is transactional:
 * sync_sequences is all or nothing, also when the caller's transaction rolls
 * back later.
 *
 * Locking: sync_sequences takes ShareRowExclusiveLock on every sequence
 * (what ALTER SEQUENCE takes) before reading it, so that no concurrent
 * nextval() can slip between the read and the change; the locks are held
 * until the caller's transaction ends.
 *
 * IDENTIFICATION
 *	  src/sequences.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "common/int.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/primnodes.h"
#include "parser/parse_node.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/tuplestore.h"

#include "compat.h"
#include "remote.h"
#include "sequences.h"
#include "util.h"

/* Number of output columns of sequence_plan and sync_sequences. */
#define UA_SEQ_COLS 10

/* Never-called sequences read per statement (see ua_read_uncalled). */
#define UA_UNCALLED_CHUNK 200

/* Where a sequence's next nextval() lands; past: beyond the int64 range. */
typedef struct UaPos
{
	int64		next;
	bool		past;
} UaPos;

/* Hash entry: a sequence by schema and name, for matching the source. */
typedef struct UaSeqName
{
	NameData	nspname;
	NameData	relname;
} UaSeqName;

typedef struct UaSeqEntry
{
	UaSeqName	key;
	int			index;
} UaSeqEntry;

/* Hash entry: a sequence by OID. */
typedef struct UaOidEntry
{
	Oid			oid;
	int			index;
} UaOidEntry;

/*
 * Where the source's sequence states come from: a peer (peer set), arrays
 * given by the caller (given set, ngiven elements each), or nowhere.
 */
typedef struct UaSource
{
	const char *peer;
	bool		given;
	int			ngiven;
	Datum	   *schemas;		/* text */
	Datum	   *names;			/* text */
	Datum	   *values;			/* int8: last_value */
	Datum	   *called;			/* bool: is_called */
} UaSource;

PG_FUNCTION_INFO_V1(sequence_plan);
PG_FUNCTION_INFO_V1(sync_sequences);
PG_FUNCTION_INFO_V1(sync_sequences_given);
PG_FUNCTION_INFO_V1(sequence_states);

/*
 * Every sequence of the database except the system's and temporary ones: the
 * same set as ua_source_sql reads on a source peer.
 */
static const char *const ua_list_sql =
"SELECT c.oid, n.nspname, c.relname, c.oid::pg_catalog.regclass::pg_catalog.text,"
"       s.seqincrement, s.seqmin, s.seqmax, s.seqcycle"
"  FROM pg_catalog.pg_sequence s"
"  JOIN pg_catalog.pg_class c ON c.oid = s.seqrelid"
"  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
" WHERE c.relpersistence <> 't'"
"   AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
" ORDER BY n.nspname, c.relname";

/*
 * Columns that may draw from a sequence: identity columns (the sequence
 * depends internally on the column) and columns whose default mentions the
 * sequence (the caller keeps those whose default is nextval() of it).  A
 * partition is left out when its partition root uses the same sequence for
 * the same column, since the root's query covers it.
 */
static const char *const ua_uses_sql =
"WITH uses AS ("
"  SELECT d.objid AS seq, d.refobjid AS rel, d.refobjsubid AS att,"
"         NULL::pg_catalog.text AS adbin"
"    FROM pg_catalog.pg_depend d"
"   WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass"
"     AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass"
"     AND d.deptype = 'i' AND d.refobjsubid > 0"
"  UNION ALL"
"  SELECT d.refobjid, ad.adrelid, ad.adnum, ad.adbin::pg_catalog.text"
"    FROM pg_catalog.pg_depend d"
"    JOIN pg_catalog.pg_attrdef ad ON ad.oid = d.objid"
"   WHERE d.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass"
"     AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass"
"     AND d.deptype = 'n')"
" SELECT u.seq, u.rel, c.relkind, n.nspname, c.relname,"
"        u.rel::pg_catalog.regclass::pg_catalog.text, a.attname,"
"        a.atttypid, u.adbin"
"   FROM uses u"
"   JOIN pg_catalog.pg_class sc ON sc.oid = u.seq AND sc.relkind = 'S'"
"   JOIN pg_catalog.pg_class c ON c.oid = u.rel"
"   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
"   JOIN pg_catalog.pg_attribute a"
"     ON a.attrelid = u.rel AND a.attnum = u.att AND NOT a.attisdropped"
"  WHERE c.relkind IN ('r', 'p')"
"    AND NOT (c.relispartition AND EXISTS ("
"        SELECT 1 FROM uses r"
"          JOIN pg_catalog.pg_attribute ra"
"            ON ra.attrelid = r.rel AND ra.attnum = r.att"
"         WHERE r.rel = pg_catalog.pg_partition_root(u.rel)"
"           AND r.seq = u.seq AND ra.attname = a.attname))"
"  ORDER BY u.rel, a.attnum";

/*
 * The source's sequences.  last_value is NULL when the sequence was never
 * called (or, without the SELECT privilege, unreadable: the flag says which).
 */
static const char *const ua_source_sql =
"SELECT n.nspname, c.relname, c.oid::pg_catalog.regclass::pg_catalog.text,"
"       pg_catalog.has_sequence_privilege(c.oid, 'SELECT'),"
"       CASE WHEN pg_catalog.has_sequence_privilege(c.oid, 'SELECT')"
"            THEN pg_catalog.pg_sequence_last_value(c.oid) END"
"  FROM pg_catalog.pg_class c"
"  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
" WHERE c.relkind = 'S' AND c.relpersistence <> 't'"
"   AND n.nspname NOT IN ('pg_catalog', 'information_schema')";

/*
 * ua_int8_from_text
 *		Parse a peer's int8 output.
 */
static int64
ua_int8_from_text(const char *s)
{
	return DatumGetInt64(DirectFunctionCall1(int8in, CStringGetDatum(s)));
}

/*
 * ua_seq_name
 *		Hash key of a sequence by schema and name.
 */
static UaSeqName
ua_seq_name(const char *nspname, const char *relname)
{
	UaSeqName	key;

	memset(&key, 0, sizeof(key));
	strlcpy(NameStr(key.nspname), nspname, NAMEDATALEN);
	strlcpy(NameStr(key.relname), relname, NAMEDATALEN);
	return key;
}

/*
 * ua_list_sequences
 *		Read every sequence of the database into an array allocated in cxt;
 *		*count gets its length and *byname a hash by schema and name.
 *		Caller has SPI connected.
 */
UaSeq *
ua_list_sequences(MemoryContext cxt, int *count, HTAB **byname)
{
	HASHCTL		ctl;
	UaSeq	   *seqs;
	uint64		n;

	if (SPI_execute(ua_list_sql, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "listing the sequences failed");
	n = SPI_processed;
	seqs = MemoryContextAllocZero(cxt, sizeof(UaSeq) * Max(n, 1));

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(UaSeqName);
	ctl.entrysize = sizeof(UaSeqEntry);
	ctl.hcxt = cxt;
	*byname = hash_create("upgrade_assist sequences", Max(n, 16), &ctl,
						  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

	for (uint64 i = 0; i < n; i++)
	{
		UaSeq	   *s = &seqs[i];
		bool		isnull;
		UaSeqName	key;
		UaSeqEntry *entry;

		s->oid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
												SPI_tuptable->tupdesc, 1, &isnull));
		s->nspname = ua_spi_getvalue(i, 2, cxt);
		s->relname = ua_spi_getvalue(i, 3, cxt);
		s->display = ua_spi_getvalue(i, 4, cxt);
		s->increment = ua_spi_getint8(i, 5, &isnull);
		s->minvalue = ua_spi_getint8(i, 6, &isnull);
		s->maxvalue = ua_spi_getint8(i, 7, &isnull);
		s->cycle = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i],
											  SPI_tuptable->tupdesc, 8, &isnull));
		s->type_min = PG_INT64_MIN;
		s->type_max = PG_INT64_MAX;

		key = ua_seq_name(s->nspname, s->relname);
		entry = hash_search(*byname, &key, HASH_ENTER, NULL);
		entry->index = (int) i;
	}
	*count = (int) n;
	return seqs;
}

/*
 * ua_read_uncalled
 *		Exact (last_value, is_called) of sequences that pg_sequence_last_value
 *		reported as never called: locally through SPI when peer is NULL, else
 *		on the peer, UA_UNCALLED_CHUNK sequences per statement (a longer
 *		UNION ALL would exhaust the parser's stack).  names are SQL-ready
 *		(quoted) names valid where the statement runs; results go to
 *		values[i], called[i].
 */
static void
ua_read_uncalled(const char *peer, char **names, int n,
				 int64 *values, bool *called)
{
	StringInfoData sql;

	initStringInfo(&sql);
	for (int first = 0; first < n; first += UA_UNCALLED_CHUNK)
	{
		int			count = Min(n - first, UA_UNCALLED_CHUNK);

		resetStringInfo(&sql);
		for (int i = first; i < first + count; i++)
			appendStringInfo(&sql, "%sSELECT %d, last_value, is_called FROM %s",
							 i > first ? " UNION ALL " : "", i, names[i]);

		if (peer == NULL)
		{
			if (SPI_execute(sql.data, true, 0) != SPI_OK_SELECT ||
				SPI_processed != (uint64) count)
				elog(ERROR, "reading sequence states failed");
			for (uint64 r = 0; r < SPI_processed; r++)
			{
				bool		isnull;
				int			i = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[r],
															SPI_tuptable->tupdesc, 1, &isnull));

				values[i] = ua_spi_getint8(r, 2, &isnull);
				called[i] = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[r],
													   SPI_tuptable->tupdesc, 3, &isnull));
			}
		}
		else
		{
			PGresult   *res = ua_peer_query(peer, sql.data, 0, NULL, 0);

			if (PQntuples(res) != count)
			{
				PQclear(res);
				elog(ERROR, "reading sequence states on peer \"%s\" failed", peer);
			}
			for (int r = 0; r < count; r++)
			{
				int			i = atoi(PQgetvalue(res, r, 0));

				values[i] = ua_int8_from_text(PQgetvalue(res, r, 1));
				called[i] = PQgetvalue(res, r, 2)[0] == 't';
			}
			PQclear(res);
		}
	}
	pfree(sql.data);
}

/*
 * ua_read_local
 *		Fill cur_value and cur_called of every sequence, exactly, without
 *		reading any table.  With lock, first take ShareRowExclusiveLock on
 *		each (blocks nextval and setval until the transaction ends).  Throws
 *		42501 naming the first sequence the current user may not SELECT from
 *		(checked here: pg_sequence_last_value also accepts USAGE and, from 18
 *		on, returns NULL instead of failing).  Caller has SPI connected.
 */
static void
ua_read_local(UaSeq *seqs, int n, bool lock)
{
	Datum	   *oids = palloc(sizeof(Datum) * Max(n, 1));
	char	  **names = palloc(sizeof(char *) * Max(n, 1));
	int		   *which = palloc(sizeof(int) * Max(n, 1));
	int64	   *values = palloc(sizeof(int64) * Max(n, 1));
	bool	   *called = palloc(sizeof(bool) * Max(n, 1));
	int			nuncalled = 0;
	ArrayType  *arr;
	Oid			argtypes[1] = {OIDARRAYOID};
	Datum		args[1];

	if (n == 0)
		return;
	for (int i = 0; i < n; i++)
	{
		if (pg_class_aclcheck(seqs[i].oid, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied for sequence %s", seqs[i].display)));
		if (lock)
			LockRelationOid(seqs[i].oid, ShareRowExclusiveLock);
		oids[i] = ObjectIdGetDatum(seqs[i].oid);
	}
	arr = construct_array(oids, n, OIDOID, sizeof(Oid), true, TYPALIGN_INT);
	args[0] = PointerGetDatum(arr);

	if (SPI_execute_with_args("SELECT pg_catalog.pg_sequence_last_value(s)"
							  "  FROM pg_catalog.unnest($1) WITH ORDINALITY AS u(s, i)"
							  " ORDER BY i",
							  1, argtypes, args, NULL, true, 0) != SPI_OK_SELECT ||
		SPI_processed != (uint64) n)
		elog(ERROR, "reading sequence states failed");
	for (int i = 0; i < n; i++)
	{
		bool		isnull;

		seqs[i].cur_value = ua_spi_getint8(i, 1, &isnull);
		seqs[i].cur_called = !isnull;
		if (isnull)
		{
			names[nuncalled] = quote_qualified_identifier(seqs[i].nspname,
														  seqs[i].relname);
			which[nuncalled++] = i;
		}
	}

	ua_read_uncalled(NULL, names, nuncalled, values, called);
	for (int k = 0; k < nuncalled; k++)
	{
		seqs[which[k]].cur_value = values[k];
		seqs[which[k]].cur_called = called[k];
	}
}

/*
 * ua_read_source
 *		Fill has_source, src_value and src_called from the source peer, with
 *		one query (two when some sequence was never called there).  Throws
 *		42501 naming the first sequence that the peer's role may not read.
 */
static void
ua_read_source(const char *peer, UaSeq *seqs, HTAB *byname)
{
	PGresult   *res = ua_peer_query(peer, ua_source_sql, 0, NULL, 0);
	int			ntuples = PQntuples(res);
	char	  **names = palloc(sizeof(char *) * Max(ntuples, 1));
	int		   *which = palloc(sizeof(int) * Max(ntuples, 1));
	int64	   *values = palloc(sizeof(int64) * Max(ntuples, 1));
	bool	   *called = palloc(sizeof(bool) * Max(ntuples, 1));
	int			nuncalled = 0;

	for (int r = 0; r < ntuples; r++)
	{
		UaSeqName	key = ua_seq_name(PQgetvalue(res, r, 0), PQgetvalue(res, r, 1));
		UaSeqEntry *entry = hash_search(byname, &key, HASH_FIND, NULL);
		UaSeq	   *s;

		if (entry == NULL)
			continue;			/* not here: nothing to move */
		s = &seqs[entry->index];
		if (PQgetvalue(res, r, 3)[0] != 't')
		{
			char	   *name = pstrdup(s->display);

			PQclear(res);
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("peer \"%s\" may not read sequence %s", peer, name),
					 errhint("Grant SELECT on the source's sequences to the role of the user mapping, or make it a member of pg_read_all_data.")));
		}
		s->has_source = true;
		if (PQgetisnull(res, r, 4))
		{
			names[nuncalled] = pstrdup(PQgetvalue(res, r, 2));
			which[nuncalled++] = entry->index;
		}
		else
		{
			s->src_value = ua_int8_from_text(PQgetvalue(res, r, 4));
			s->src_called = true;
		}
	}
	PQclear(res);

	ua_read_uncalled(peer, names, nuncalled, values, called);
	for (int k = 0; k < nuncalled; k++)
	{
		seqs[which[k]].src_value = values[k];
		seqs[which[k]].src_called = called[k];
	}
}

/*
 * ua_take_given
 *		Fill has_source, src_value and src_called from the arrays of
 *		source (sync_sequences_given).  Entries naming no sequence of this
 *		database are ignored, as sequences missing here are in
 *		ua_read_source.  Throws 22023 when a sequence is named twice.
 */
static void
ua_take_given(const UaSource *source, UaSeq *seqs, HTAB *byname)
{
	for (int i = 0; i < source->ngiven; i++)
	{
		char	   *nspname = TextDatumGetCString(source->schemas[i]);
		char	   *relname = TextDatumGetCString(source->names[i]);
		UaSeqName	key;
		UaSeqEntry *entry;
		UaSeq	   *s;

		/* Too long to be a name: no sequence here (ua_seq_name truncates). */
		if (strlen(nspname) >= NAMEDATALEN || strlen(relname) >= NAMEDATALEN)
			continue;
		key = ua_seq_name(nspname, relname);
		entry = hash_search(byname, &key, HASH_FIND, NULL);
		if (entry == NULL)
			continue;			/* not here: nothing to move */
		s = &seqs[entry->index];
		if (s->has_source)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("sequence %s is given more than once", s->display)));
		s->has_source = true;
		s->src_value = DatumGetInt64(source->values[i]);
		s->src_called = DatumGetBool(source->called[i]);
	}
}

/*
 * ua_default_is_nextval
 *		Is the column default (adbin, a pg_node_tree) exactly nextval() of
 *		the sequence seqoid, possibly cast to the column's type?  Defaults
 *		that compute something from nextval() do not count: their column's
 *		values are not the sequence's.
 */
static bool
ua_default_is_nextval(const char *adbin, Oid seqoid)
{
	Node	   *node = stringToNode(adbin);
	FuncExpr   *fexpr;
	Const	   *arg;

	/* Look through casts between integer types. */
	for (;;)
	{
		if (IsA(node, RelabelType))
			node = (Node *) ((RelabelType *) node)->arg;
		else if (IsA(node, FuncExpr) &&
				 ((FuncExpr *) node)->funcformat != COERCE_EXPLICIT_CALL &&
				 list_length(((FuncExpr *) node)->args) == 1 &&
				 ((FuncExpr *) node)->funcid != F_NEXTVAL)
			node = linitial(((FuncExpr *) node)->args);
		else
			break;
	}
	if (!IsA(node, FuncExpr))
		return false;
	fexpr = (FuncExpr *) node;
	if (fexpr->funcid != F_NEXTVAL || list_length(fexpr->args) != 1 ||
		!IsA(linitial(fexpr->args), Const))
		return false;
	arg = (Const *) linitial(fexpr->args);
	return arg->consttype == REGCLASSOID && !arg->constisnull &&
		DatumGetObjectId(arg->constvalue) == seqoid;
}

/*
 * ua_type_range
 *		Range of an integer base type; false for any other type.
 */
static bool
ua_type_range(Oid typid, int64 *min, int64 *max)
{
	switch (typid)
	{
		case INT2OID:
			*min = PG_INT16_MIN;
			*max = PG_INT16_MAX;
			return true;
		case INT4OID:
			*min = PG_INT32_MIN;
			*max = PG_INT32_MAX;
			return true;
		case INT8OID:
			*min = PG_INT64_MIN;
			*max = PG_INT64_MAX;
			return true;
		default:
			return false;
	}
}

/*
 * ua_list_uses
 *		The integer columns that draw from the listed sequences, ordered by
 *		table; each sequence's columns and type range are filled in.
 *		Returns a List of UaUse allocated in cxt.
 */
List *
ua_list_uses(MemoryContext cxt, UaSeq *seqs, int nseqs)
{
	List	   *uses = NIL;
	HASHCTL		ctl;
	HTAB	   *byoid;

	/* Sequence index by OID. */
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(UaOidEntry);
	byoid = hash_create("upgrade_assist sequence oids", Max(nseqs, 16), &ctl,
						HASH_ELEM | HASH_BLOBS);
	for (int i = 0; i < nseqs; i++)
	{
		UaOidEntry *entry = hash_search(byoid, &seqs[i].oid, HASH_ENTER, NULL);

		entry->index = i;
	}

	if (SPI_execute(ua_uses_sql, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "listing the columns that use sequences failed");

	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Oid			seqoid = DatumGetObjectId(SPI_getbinval(tup, desc, 1, &isnull));
		UaOidEntry *entry = hash_search(byoid, &seqoid, HASH_FIND, NULL);
		char	   *adbin = SPI_getvalue(tup, desc, 9);
		Oid			typid;
		int64		tmin,
					tmax;
		UaSeq	   *s;
		UaUse	   *use;
		MemoryContext old;

		if (entry == NULL)
			continue;			/* a temporary or system sequence */
		if (adbin != NULL && !ua_default_is_nextval(adbin, seqoid))
			continue;
		typid = getBaseType(DatumGetObjectId(SPI_getbinval(tup, desc, 8, &isnull)));
		if (!ua_type_range(typid, &tmin, &tmax))
			continue;

		s = &seqs[entry->index];
		old = MemoryContextSwitchTo(cxt);
		use = palloc0(sizeof(UaUse));
		use->seq = entry->index;
		use->relid = DatumGetObjectId(SPI_getbinval(tup, desc, 2, &isnull));
		use->relkind = DatumGetChar(SPI_getbinval(tup, desc, 3, &isnull));
		use->table = quote_qualified_identifier(SPI_getvalue(tup, desc, 4),
												SPI_getvalue(tup, desc, 5));
		use->attname = SPI_getvalue(tup, desc, 7);
		use->typid = typid;
		uses = lappend(uses, use);
		s->columns = lappend(s->columns,
							 psprintf("%s.%s", SPI_getvalue(tup, desc, 6),
									  quote_identifier(use->attname)));
		MemoryContextSwitchTo(old);
		s->type_min = Max(s->type_min, tmin);
		s->type_max = Min(s->type_max, tmax);
	}
	hash_destroy(byoid);
	return uses;
}

/*
 * ua_read_extremes
 *		For every table in uses (a List of UaUse ordered by table), run one
 *		query for the extremes of all its columns (max for ascending
 *		sequences, min for descending) and keep, per sequence, the furthest.
 *		A partitioned table is read with its partitions; a plain table
 *		without its children, which have their own defaults.
 */
static void
ua_read_extremes(List *uses, UaSeq *seqs)
{
	StringInfoData sql;
	int			nuses = list_length(uses);
	int			first = 0;

	initStringInfo(&sql);
	while (first < nuses)
	{
		UaUse	   *head = list_nth(uses, first);
		int			last = first;

		while (last + 1 < nuses &&
			   ((UaUse *) list_nth(uses, last + 1))->relid == head->relid)
			last++;

		resetStringInfo(&sql);
		appendStringInfoString(&sql, "SELECT ");
		for (int k = first; k <= last; k++)
		{
			UaUse	   *u = list_nth(uses, k);

			appendStringInfo(&sql, "%spg_catalog.%s(%s)::pg_catalog.int8",
							 k > first ? ", " : "",
							 seqs[u->seq].increment > 0 ? "max" : "min",
							 quote_identifier(u->attname));
		}
		appendStringInfo(&sql, " FROM %s%s",
						 head->relkind == RELKIND_PARTITIONED_TABLE ? "" : "ONLY ",
						 head->table);

		if (SPI_execute(sql.data, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "reading the columns of %s failed", head->table);
		for (int k = first; k <= last; k++)
		{
			UaUse	   *u = list_nth(uses, k);
			UaSeq	   *s = &seqs[u->seq];
			bool		isnull;
			int64		v = ua_spi_getint8(0, k - first + 1, &isnull);

			if (isnull)
				continue;
			if (!s->has_extreme ||
				(s->increment > 0 ? v > s->extreme : v < s->extreme))
				s->extreme = v;
			s->has_extreme = true;
		}
		first = last + 1;
	}
	pfree(sql.data);
}

/*
 * ua_pos
 *		Where nextval() lands from state (value, called).
 */
static UaPos
ua_pos(int64 value, bool called, int64 increment)
{
	UaPos		p = {value, false};

	if (called && pg_add_s64_overflow(value, increment, &p.next))
		p.past = true;
	return p;
}

/*
 * ua_further
 *		Is a strictly further than b in the direction of increment?
 */
static bool
ua_further(UaPos a, UaPos b, int64 increment)
{
	if (a.past || b.past)
		return a.past && !b.past;
	return increment > 0 ? a.next > b.next : a.next < b.next;
}

/*
 * ua_advance
 *		Move p by margin in the direction of increment.
 */
static UaPos
ua_advance(UaPos p, int64 margin, int64 increment)
{
	if (p.past || margin == 0)
		return p;
	if (increment > 0 ? pg_add_s64_overflow(p.next, margin, &p.next)
		: pg_sub_s64_overflow(p.next, margin, &p.next))
		p.past = true;
	return p;
}

/*
 * ua_overflow
 *		Mark s as impossible to sync, with reason as its detail.
 */
static void
ua_overflow(UaSeq *s, char *reason)
{
	s->overflow = true;
	s->action = "overflow";
	s->detail = reason;
}

/*
 * ua_plan_one
 *		Compute the new value, action and detail of one sequence.
 *
 * The new position is the furthest, in the sequence's direction, of the
 * local one, the source's and one past the columns' extreme, plus margin.
 * The values of a CYCLE sequence come round again, so neither "furthest"
 * nor its columns' extreme tells its position: with a source it takes the
 * source's position as it is (margin does not apply), without one it keeps
 * its own plus margin, and it wraps like nextval().
 * Positions beyond minvalue/maxvalue (non-CYCLE) or outside a column's
 * type are an overflow.
 */
void
ua_plan_one(UaSeq *s, int64 margin)
{
	int64		inc = s->increment;
	UaPos		cur = ua_pos(s->cur_value, s->cur_called, inc);
	UaPos		target;
	bool		follow = s->cycle && s->has_source;
	bool		beyond_end;

	if (follow)
		target = ua_pos(s->src_value, s->src_called, inc);
	else
	{
		target = cur;
		if (s->has_source)
		{
			UaPos		src = ua_pos(s->src_value, s->src_called, inc);

			if (ua_further(src, target, inc))
				target = src;
		}
		if (s->has_extreme && !s->cycle)
		{
			UaPos		col = ua_pos(s->extreme, true, inc);

			if (ua_further(col, target, inc))
				target = col;
		}
		target = ua_advance(target, margin, inc);
	}

	/* Past the end in the sequence's direction: wrap or overflow. */
	beyond_end = target.past ||
		(inc > 0 ? target.next > s->maxvalue : target.next < s->minvalue);
	if (beyond_end && s->cycle)
	{
		target.next = inc > 0 ? s->minvalue : s->maxvalue;
		target.past = false;
	}
	else if (beyond_end)
	{
		if (target.past)
			ua_overflow(s, psprintf("The next value would be beyond the range of bigint."));
		else
			ua_overflow(s, psprintf("The next value would be " INT64_FORMAT ", beyond the %s " INT64_FORMAT ".",
									target.next,
									inc > 0 ? "maximum value" : "minimum value",
									inc > 0 ? s->maxvalue : s->minvalue));
		return;
	}
	if (target.next < s->minvalue || target.next > s->maxvalue)
	{
		ua_overflow(s, psprintf("The next value would be " INT64_FORMAT ", outside the range " INT64_FORMAT " to " INT64_FORMAT ".",
								target.next, s->minvalue, s->maxvalue));
		return;
	}
	if (target.next < s->type_min || target.next > s->type_max)
	{
		ua_overflow(s, psprintf("The next value would be " INT64_FORMAT ", outside the range of the type of column %s.",
								target.next, (char *) linitial(s->columns)));
		return;
	}

	s->new_value = target.next;

	/* The local position, as nextval() would see it. */
	if (s->cycle && (cur.past || (inc > 0 ? cur.next > s->maxvalue
								  : cur.next < s->minvalue)))
	{
		cur.next = inc > 0 ? s->minvalue : s->maxvalue;
		cur.past = false;
	}
	if (!cur.past && cur.next == target.next)
		s->action = "none";
	else
		s->action = follow ? "follow source" : "advance";

	if (follow)
		s->detail = "CYCLE: takes the source's position.";
	else if (s->cycle)
		s->detail = "CYCLE without a source: the columns do not tell its position.";
}

/*
 * ua_restart
 *		ALTER SEQUENCE s RESTART WITH s->new_value, in the current
 *		transaction (a new relfilenode: rolled back with it).  Throws 42501
 *		unless the current user owns the sequence.
 */
static void
ua_restart(UaSeq *s)
{
	AlterSeqStmt *stmt = makeNode(AlterSeqStmt);
	ParseState *pstate = make_parsestate(NULL);

	stmt->sequence = makeRangeVar(s->nspname, s->relname, -1);
	stmt->options = list_make1(makeDefElem("restart",
										   (Node *) makeFloat(psprintf(INT64_FORMAT, s->new_value)),
										   -1));
	stmt->for_identity = false;
	stmt->missing_ok = false;
	(void) AlterSequence(pstate, stmt);
	free_parsestate(pstate);
	CommandCounterIncrement();
}

/*
 * ua_text_array
 *		A List of C strings as text[].
 */
static Datum
ua_text_array(List *items)
{
	int			n = list_length(items);
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));
	int			i = 0;
	ListCell   *lc;

	foreach(lc, items)
		elems[i++] = CStringGetTextDatum((char *) lfirst(lc));
	return PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false,
										   TYPALIGN_INT));
}

/*
 * ua_margin_arg
 *		The margin argument argno: throws 22004 when NULL, 22023 when
 *		negative.
 */
int64
ua_margin_arg(FunctionCallInfo fcinfo, int argno)
{
	int64		margin;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("margin must not be null")));
	margin = PG_GETARG_INT64(argno);
	if (margin < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("margin must not be negative"),
				 errdetail("A sequence is never moved backwards.")));
	return margin;
}

/*
 * ua_sequences
 *		sequence_plan (apply = false), sync_sequences and
 *		sync_sequences_given (apply = true; fname names the function in
 *		errors), with the source's states from source.  Returns the rows
 *		through a materialized tuplestore.  With apply, every sequence is
 *		moved in the caller's transaction or, on any error, none.
 */
static Datum
ua_sequences(FunctionCallInfo fcinfo, const char *fname, bool apply,
			 const UaSource *source, int64 margin)
{
	bool		has_source = source->peer != NULL || source->given;
	MemoryContext cxt = CurrentMemoryContext;
	TupleDesc	tupdesc;
	Tuplestorestate *store;
	HTAB	   *byname;
	UaSeq	   *seqs;
	int			nseqs;
	List	   *uses;

	store = ua_materialize_srf(fcinfo, &tupdesc);
	if (apply)
	{
		PreventCommandIfReadOnly(fname);
		PreventCommandDuringRecovery(fname);
	}

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	seqs = ua_list_sequences(cxt, &nseqs, &byname);
	ua_read_local(seqs, nseqs, apply);
	uses = ua_list_uses(cxt, seqs, nseqs);
	ua_read_extremes(uses, seqs);
	if (source->peer != NULL)
		ua_read_source(source->peer, seqs, byname);
	else if (source->given)
		ua_take_given(source, seqs, byname);
	SPI_finish();

	/* Compute everything first: an overflow anywhere changes nothing. */
	for (int i = 0; i < nseqs; i++)
	{
		ua_plan_one(&seqs[i], margin);
		if (apply && seqs[i].overflow)
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("sequence %s cannot be moved forward without overflow",
							seqs[i].display),
					 errdetail_internal("%s", seqs[i].detail),
					 errhint("No sequence was changed.")));
	}
	if (apply)
		for (int i = 0; i < nseqs; i++)
			if (strcmp(seqs[i].action, "none") != 0)
				ua_restart(&seqs[i]);


	for (int i = 0; i < nseqs; i++)
	{
		UaSeq	   *s = &seqs[i];
		Datum		values[UA_SEQ_COLS];
		bool		nulls[UA_SEQ_COLS] = {false};

		values[0] = ObjectIdGetDatum(s->oid);
		values[1] = ua_text_array(s->columns);
		values[2] = Int64GetDatum(s->cur_value);
		values[3] = BoolGetDatum(s->cur_called);
		values[4] = Int64GetDatum(s->src_value);
		nulls[4] = !s->has_source;
		values[5] = BoolGetDatum(s->src_called);
		nulls[5] = !s->has_source;
		values[6] = Int64GetDatum(s->extreme);
		nulls[6] = !s->has_extreme;
		values[7] = Int64GetDatum(s->new_value);
		nulls[7] = s->overflow;
		values[8] = CStringGetTextDatum(s->action);
		if (s->detail != NULL)
			values[9] = CStringGetTextDatum(s->detail);
		else if (has_source && !s->has_source)
			values[9] = CStringGetTextDatum("Not on the source.");
		else
			nulls[9] = true;
		tuplestore_putvalues(store, tupdesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * sequence_plan(source text, margin bigint) returns setof record
 *		What sync_sequences would do, changing nothing.
 */
Datum
sequence_plan(PG_FUNCTION_ARGS)
{
	UaSource	source = {0};

	source.peer = PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0));
	return ua_sequences(fcinfo, "sequence_plan()", false, &source,
						ua_margin_arg(fcinfo, 1));
}

/*
 * sync_sequences(source text, margin bigint) returns setof record
 *		Move every sequence forward as sequence_plan says, in the caller's
 *		transaction; all or nothing.
 */
Datum
sync_sequences(PG_FUNCTION_ARGS)
{
	UaSource	source = {0};

	source.peer = PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0));
	return ua_sequences(fcinfo, "sync_sequences()", true, &source,
						ua_margin_arg(fcinfo, 1));
}

/*
 * ua_given_array
 *		The elements of argument argno, a one-dimensional array of elmtype,
 *		into *elems; returns their number.  Throws 22004 for a NULL array
 *		or element, 22023 for more than one dimension.
 */
static int
ua_given_array(FunctionCallInfo fcinfo, int argno, const char *argname,
			   Oid elmtype, Datum **elems)
{
	ArrayType  *arr;
	bool	   *nulls;
	int			n;
	int16		typlen;
	bool		typbyval;
	char		typalign;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", argname)));
	arr = PG_GETARG_ARRAYTYPE_P(argno);
	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a one-dimensional array", argname)));
	Assert(ARR_ELEMTYPE(arr) == elmtype);
	get_typlenbyvalalign(elmtype, &typlen, &typbyval, &typalign);
	deconstruct_array(arr, elmtype, typlen, typbyval, typalign,
					  elems, &nulls, &n);
	for (int i = 0; i < n; i++)
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s must not contain nulls", argname)));
	return n;
}

/*
 * sync_sequences_given(schema_names text[], sequence_names text[],
 *						last_values bigint[], is_called boolean[],
 *						margin bigint) returns setof record
 *		sync_sequences with the source's states given as four arrays of the
 *		same length (element i: one sequence), as sequence_states returns
 *		them on the source.
 */
Datum
sync_sequences_given(PG_FUNCTION_ARGS)
{
	UaSource	source = {0};
	int			nschemas,
				nnames,
				nvalues,
				ncalled;

	source.given = true;
	nschemas = ua_given_array(fcinfo, 0, "schema_names", TEXTOID, &source.schemas);
	nnames = ua_given_array(fcinfo, 1, "sequence_names", TEXTOID, &source.names);
	nvalues = ua_given_array(fcinfo, 2, "last_values", INT8OID, &source.values);
	ncalled = ua_given_array(fcinfo, 3, "is_called", BOOLOID, &source.called);
	if (nnames != nschemas || nvalues != nschemas || ncalled != nschemas)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("schema_names, sequence_names, last_values and is_called must have the same length"),
				 errdetail("Their lengths are %d, %d, %d and %d.",
						   nschemas, nnames, nvalues, ncalled)));
	source.ngiven = nschemas;
	return ua_sequences(fcinfo, "sync_sequences_given()", true, &source,
						ua_margin_arg(fcinfo, 4));
}

/*
 * sequence_states() returns table(schema_name text, sequence_name text,
 *								   last_value bigint, is_called boolean)
 *		The exact state of every sequence that sync_sequences considers,
 *		ordered by schema and name, read without scanning any table.
 *		Throws 42501 naming a sequence the caller may not read.
 */
Datum
sequence_states(PG_FUNCTION_ARGS)
{
	MemoryContext cxt = CurrentMemoryContext;
	TupleDesc	tupdesc;
	Tuplestorestate *store = ua_materialize_srf(fcinfo, &tupdesc);
	HTAB	   *byname;
	UaSeq	   *seqs;
	int			nseqs;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	seqs = ua_list_sequences(cxt, &nseqs, &byname);
	ua_read_local(seqs, nseqs, false);
	SPI_finish();

	for (int i = 0; i < nseqs; i++)
	{
		Datum		values[4];
		bool		nulls[4] = {false};

		values[0] = CStringGetTextDatum(seqs[i].nspname);
		values[1] = CStringGetTextDatum(seqs[i].relname);
		values[2] = Int64GetDatum(seqs[i].cur_value);
		values[3] = BoolGetDatum(seqs[i].cur_called);
		tuplestore_putvalues(store, tupdesc, values, nulls);
	}
	return (Datum) 0;
}
