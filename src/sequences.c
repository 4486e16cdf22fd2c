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
 * sequences_prepare and sync_sequences_prepared, the cutover's way (a plan
 * kept in the session before the fence, then batches moved by index probes
 * and setval() inside the blackout: see the section at the end of the file
 * and docs/blackout.md).
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

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/skey.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/pg_am.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_opfamily.h"
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
#include "storage/bufmgr.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
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

/* One sequence of the database and its plan. */
typedef struct UaSeq
{
	Oid			oid;
	char	   *nspname;
	char	   *relname;
	char	   *display;		/* regclass output, quoted as needed */
	int64		increment;
	int64		minvalue;
	int64		maxvalue;
	bool		cycle;

	int64		cur_value;		/* local state */
	bool		cur_called;

	bool		has_source;		/* found on the source peer */
	int64		src_value;
	bool		src_called;

	bool		has_extreme;	/* some column holds a value */
	int64		extreme;
	List	   *columns;		/* display names (char *) */
	int64		type_min;		/* tightest range of the columns' types */
	int64		type_max;

	int64		new_value;		/* what nextval() returns after the sync */
	bool		overflow;		/* no valid new value; reason in detail */
	const char *action;
	char	   *detail;
} UaSeq;

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

/* A column that draws from a sequence, as read from the catalogs. */
typedef struct UaUse
{
	int			seq;			/* index into the sequence array */
	Oid			relid;
	char		relkind;
	char	   *table;			/* quoted schema.table, for queries */
	char	   *attname;
	Oid			typid;			/* base type */
} UaUse;

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
PG_FUNCTION_INFO_V1(sequences_prepare);
PG_FUNCTION_INFO_V1(sync_sequences_prepared);

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
static UaSeq *
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
static List *
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
static void
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
static int64
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

/* ---------------------------------------------------------------------------
 * The prepared plan, for the cutover's blackout
 *
 * sequences_prepare() does, in the calling session and before any fence, the
 * part of a sync that does not depend on the sequences' values: it lists the
 * sequences and the columns that draw from them, finds for every column (of
 * every leaf partition) a btree index whose first key it is, checks the
 * privileges, opens each sequence, table and index once (their relcache
 * entries and pages stay warm), and keeps the result in session memory
 * under a token.  sync_sequences_prepared() then applies source states to
 * one batch of that plan: each sequence's own state read from its page,
 * each column's extreme by one index probe in C (no SQL statement, except
 * for a column without such an index), the same plan as sync_sequences
 * (ua_plan_one), and each move done with setval(): in place, one small WAL
 * record, not transactional.  See docs/blackout.md for why that is safe
 * where the cutover uses it.
 * ---------------------------------------------------------------------------
 */

/* One column of one table (a leaf partition or a plain table) to probe. */
typedef struct UaProbe
{
	int			seq;			/* index into the plan's sequences */
	Oid			relid;
	Oid			indexid;		/* btree index led by the column, or invalid */
	bool		index_desc;		/* that index column is DESC */
	AttrNumber	attnum;
	Oid			typid;			/* int2, int4 or int8 */
	char	   *table;			/* quoted schema.table */
	char	   *attname;
} UaProbe;

/* The plan of this session, in its own memory context under TopMemoryContext. */
typedef struct UaPrepared
{
	MemoryContext cxt;
	int64		token;
	int			nseqs;
	UaSeq	   *seqs;			/* ordered by schema and name */
	int			nprobes;
	UaProbe    *probes;			/* ordered by seq */
	int		   *first_probe;	/* nseqs + 1 offsets into probes */
} UaPrepared;

static UaPrepared *ua_prepared = NULL;

/*
 * ua_seq_read_state
 *		The exact (last_value, is_called) of sequence seqoid, read from its
 *		page under a share buffer lock: no SQL, no table, no lock left
 *		behind (the AccessShareLock taken to read is released).  Returns
 *		false when seqoid is no longer a sequence.  With check_select,
 *		throws 42501 unless the current user may SELECT from it.
 */
bool
ua_seq_read_state(Oid seqoid, bool check_select, int64 *last_value, bool *is_called)
{
	Relation	rel = try_relation_open(seqoid, AccessShareLock);
	Buffer		buf;
	Page		page;
	ItemId		lp;
	HeapTupleHeader th;
	Form_pg_sequence_data data;

	if (rel == NULL)
		return false;
	if (rel->rd_rel->relkind != RELKIND_SEQUENCE)
	{
		relation_close(rel, AccessShareLock);
		return false;
	}
	if (check_select &&
		pg_class_aclcheck(seqoid, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for sequence %s",
						quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
												   RelationGetRelationName(rel)))));

	buf = ReadBuffer(rel, 0);
	LockBuffer(buf, BUFFER_LOCK_SHARE);
	page = BufferGetPage(buf);
	if (PageGetMaxOffsetNumber(page) < FirstOffsetNumber ||
		!ItemIdIsNormal(PageGetItemId(page, FirstOffsetNumber)))
		elog(ERROR, "sequence \"%s\" has no data tuple", RelationGetRelationName(rel));
	lp = PageGetItemId(page, FirstOffsetNumber);
	th = (HeapTupleHeader) PageGetItem(page, lp);
	data = (Form_pg_sequence_data) ((char *) th + th->t_hoff);
	*last_value = data->last_value;
	*is_called = data->is_called;
	UnlockReleaseBuffer(buf);
	relation_close(rel, AccessShareLock);
	return true;
}

/*
 * ua_plan_stale
 *		Throw 55000: an object of the prepared plan is gone or changed.
 */
static UA_NORETURN void
ua_plan_stale(const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("the prepared sequence plan is out of date"),
			 errdetail("%s changed since sequences_prepare().", what),
			 errhint("Call upgrade_assist.sequences_prepare() again.")));
}

/*
 * ua_find_probe_index
 *		A valid, non-partial btree index of rel whose first key is attnum
 *		with the integer operator family (so that its order is the
 *		column's numeric order); InvalidOid when there is none.  *desc says
 *		whether that key is DESC.  Each index is opened (warming its
 *		relcache entry) and its lock released.
 */
static Oid
ua_find_probe_index(Relation rel, AttrNumber attnum, bool *desc)
{
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;
	Oid			found = InvalidOid;

	foreach(lc, indexes)
	{
		Oid			indexid = lfirst_oid(lc);
		Relation	idx = index_open(indexid, AccessShareLock);
		Form_pg_index ind = idx->rd_index;

		if (idx->rd_rel->relam == BTREE_AM_OID && ind->indisvalid &&
			ind->indnkeyatts >= 1 && ind->indkey.values[0] == attnum &&
			heap_attisnull(idx->rd_indextuple, Anum_pg_index_indpred, NULL) &&
			idx->rd_opfamily[0] == INTEGER_BTREE_FAM_OID)
		{
			found = indexid;
			*desc = (idx->rd_indoption[0] & INDOPTION_DESC) != 0;
		}
		index_close(idx, AccessShareLock);
		if (OidIsValid(found))
			break;
	}
	list_free(indexes);
	return found;
}

/*
 * ua_cmp_probe
 *		qsort order of probes: by sequence.
 */
static int
ua_cmp_probe(const void *a, const void *b)
{
	const UaProbe *pa = a;
	const UaProbe *pb = b;

	if (pa->seq != pb->seq)
		return pa->seq < pb->seq ? -1 : 1;
	return 0;
}

/*
 * ua_prepare_probes
 *		The probes of every column in uses, into prep (allocated in its
 *		context): one per plain table, one per leaf partition of a
 *		partitioned table.  Checks SELECT on each table that has a drawing
 *		column and, row_security being off in the calling function, throws
 *		42501 where row-level security would hide rows (check_enable_rls),
 *		as the SQL path of sync_sequences does.  Locks are released as soon
 *		as each relation was looked at.
 */
static void
ua_prepare_probes(UaPrepared *prep, List *uses)
{
	List	   *probes = NIL;
	ListCell   *lc;
	int			i;

	foreach(lc, uses)
	{
		UaUse	   *u = lfirst(lc);
		List	   *rels;
		ListCell   *lc2;

		if (pg_class_aclcheck(u->relid, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied for table %s", u->table)));
		(void) check_enable_rls(u->relid, InvalidOid, false);

		if (u->relkind == RELKIND_PARTITIONED_TABLE)
			rels = find_all_inheritors(u->relid, NoLock, NULL);
		else
			rels = list_make1_oid(u->relid);
		foreach(lc2, rels)
		{
			Oid			relid = lfirst_oid(lc2);
			Relation	rel = try_relation_open(relid, AccessShareLock);
			UaProbe    *p;
			MemoryContext old;

			if (rel == NULL)
				continue;		/* dropped meanwhile */
			if (rel->rd_rel->relkind != RELKIND_RELATION)
			{
				relation_close(rel, AccessShareLock);
				continue;
			}
			old = MemoryContextSwitchTo(prep->cxt);
			p = palloc0(sizeof(UaProbe));
			p->seq = u->seq;
			p->relid = relid;
			p->attnum = get_attnum(relid, u->attname);
			p->typid = u->typid;
			p->attname = pstrdup(u->attname);
			p->table = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
												  RelationGetRelationName(rel));
			probes = lappend(probes, p);
			MemoryContextSwitchTo(old);
			if (p->attnum == InvalidAttrNumber)
				elog(ERROR, "column \"%s\" of %s not found", u->attname, p->table);
			p->indexid = ua_find_probe_index(rel, p->attnum, &p->index_desc);
			relation_close(rel, AccessShareLock);
		}
	}

	prep->nprobes = list_length(probes);
	prep->probes = MemoryContextAlloc(prep->cxt, sizeof(UaProbe) * Max(prep->nprobes, 1));
	i = 0;
	foreach(lc, probes)
		prep->probes[i++] = *(UaProbe *) lfirst(lc);
	qsort(prep->probes, prep->nprobes, sizeof(UaProbe), ua_cmp_probe);
	prep->first_probe = MemoryContextAlloc(prep->cxt, sizeof(int) * (prep->nseqs + 1));
	i = 0;
	for (int s = 0; s <= prep->nseqs; s++)
	{
		while (i < prep->nprobes && prep->probes[i].seq < s)
			i++;
		prep->first_probe[s] = i;
	}
}

/*
 * sequences_prepare() returns table(token bigint, schema_name text,
 *									 sequence_name text)
 *		Build this session's plan (replacing an earlier one) and return its
 *		sequences in plan order, each row with the plan's token.  Throws
 *		42501 naming a sequence the current user may not SELECT from or
 *		UPDATE (setval's rule), or a table with a drawing column that it
 *		may not read.  Changes nothing.
 */
Datum
sequences_prepare(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Tuplestorestate *store = ua_materialize_srf(fcinfo, &tupdesc);
	MemoryContext cxt;
	UaPrepared *prep;
	HTAB	   *byname;
	List	   *uses;
	static int64 counter = 0;

	if (ua_prepared != NULL)
	{
		MemoryContextDelete(ua_prepared->cxt);
		ua_prepared = NULL;
	}
	/* Built under the call's memory, kept only on success. */
	cxt = AllocSetContextCreate(CurrentMemoryContext, "upgrade_assist prepared sequences",
								ALLOCSET_DEFAULT_SIZES);
	prep = MemoryContextAllocZero(cxt, sizeof(UaPrepared));
	prep->cxt = cxt;
	prep->token = (int64) GetCurrentTimestamp() + counter++;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	prep->seqs = ua_list_sequences(cxt, &prep->nseqs, &byname);
	uses = ua_list_uses(cxt, prep->seqs, prep->nseqs);
	SPI_finish();

	for (int i = 0; i < prep->nseqs; i++)
	{
		UaSeq	   *s = &prep->seqs[i];

		if (pg_class_aclcheck(s->oid, GetUserId(), ACL_SELECT) != ACLCHECK_OK ||
			pg_class_aclcheck(s->oid, GetUserId(), ACL_UPDATE) != ACLCHECK_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied for sequence %s", s->display),
					 errdetail("SELECT and UPDATE on every sequence are needed.")));
		/* Open it once: its relcache entry and page stay warm. */
		if (!ua_seq_read_state(s->oid, false, &s->cur_value, &s->cur_called))
			ua_plan_stale(psprintf("Sequence %s", s->display));
	}
	ua_prepare_probes(prep, uses);

	MemoryContextSetParent(cxt, TopMemoryContext);
	ua_prepared = prep;

	for (int i = 0; i < prep->nseqs; i++)
	{
		Datum		values[3];
		bool		nulls[3] = {false};

		values[0] = Int64GetDatum(prep->token);
		values[1] = CStringGetTextDatum(prep->seqs[i].nspname);
		values[2] = CStringGetTextDatum(prep->seqs[i].relname);
		tuplestore_putvalues(store, tupdesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * ua_probe_extreme
 *		The furthest value of probe p's column in direction want_max (max
 *		when true, min otherwise) into *value: one ordered index scan
 *		skipping NULLs, first visible tuple only; without an index, one
 *		SPI statement (caller has SPI connected).  Returns false when the
 *		column holds no value.  Throws 55000 when the table or index is gone.
 */
static bool
ua_probe_extreme(const UaProbe *p, bool want_max, int64 *value)
{
	Relation	rel = try_relation_open(p->relid, AccessShareLock);
	bool		found = false;

	if (rel == NULL || rel->rd_rel->relkind != RELKIND_RELATION)
		ua_plan_stale(psprintf("Table %s", p->table));

	if (OidIsValid(p->indexid))
	{
		Relation	idx = try_relation_open(p->indexid, AccessShareLock);
		ScanKeyData key;
		SysScanDesc scan;
		HeapTuple	tup;

		if (idx == NULL || idx->rd_rel->relkind != RELKIND_INDEX)
			ua_plan_stale(psprintf("An index of table %s", p->table));
		ScanKeyEntryInitialize(&key, SK_ISNULL | SK_SEARCHNOTNULL, p->attnum,
							   InvalidStrategy, InvalidOid, InvalidOid, InvalidOid,
							   (Datum) 0);
		scan = systable_beginscan_ordered(rel, idx, GetActiveSnapshot(), 1, &key);
		tup = systable_getnext_ordered(scan, want_max != p->index_desc ?
									   BackwardScanDirection : ForwardScanDirection);
		if (tup != NULL)
		{
			bool		isnull;
			Datum		d = heap_getattr(tup, p->attnum, RelationGetDescr(rel), &isnull);

			if (!isnull)
			{
				found = true;
				*value = p->typid == INT2OID ? (int64) DatumGetInt16(d) :
					p->typid == INT4OID ? (int64) DatumGetInt32(d) : DatumGetInt64(d);
			}
		}
		systable_endscan_ordered(scan);
		relation_close(idx, AccessShareLock);
	}
	else
	{
		char	   *sql = psprintf("SELECT pg_catalog.%s(%s)::pg_catalog.int8 FROM ONLY %s",
								   want_max ? "max" : "min", quote_identifier(p->attname),
								   p->table);
		bool		isnull;

		if (SPI_execute(sql, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "reading column %s of %s failed", p->attname, p->table);
		*value = ua_spi_getint8(0, 1, &isnull);
		found = !isnull;
		pfree(sql);
	}
	relation_close(rel, AccessShareLock);
	return found;
}

/*
 * sync_sequences_prepared(token bigint, first integer, last_values bigint[],
 *						   is_called boolean[], margin bigint)
 *		returns table(sequences integer, moved integer)
 *		Apply source states to sequences first .. first + n - 1 of this
 *		session's plan (n the arrays' length; element i is plan sequence
 *		first + i, a NULL last_value meaning "not on the source").  Every
 *		sequence of the batch is locked (ShareRowExclusiveLock, until the
 *		transaction ends), read and planned before any moves; an overflow
 *		throws 22003 naming it and moves none of the batch.  Moves are
 *		setval() calls: they stay even if the transaction rolls back.
 *		Throws 55000 when token is not this session's plan or the plan is
 *		out of date, 22004/22023 for bad arguments, 25006 when fenced.
 */
Datum
sync_sequences_prepared(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Tuplestorestate *store = ua_materialize_srf(fcinfo, &tupdesc);
	UaPrepared *prep = ua_prepared;
	int64		token;
	int			first;
	int64		margin;
	ArrayType  *arr;
	Datum	   *lasts;
	bool	   *lnulls;
	Datum	   *calls;
	bool	   *cnulls;
	int			n,
				ncalled;
	UaSeq	   *work;
	int			moved = 0;
	Datum		values[2];
	bool		nulls[2] = {false};

	for (int argno = 0; argno < 4; argno++)
		if (PG_ARGISNULL(argno))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s must not be null",
							((const char *const[]) {"token", "first", "last_values", "is_called"})[argno])));
	margin = ua_margin_arg(fcinfo, 4);
	token = PG_GETARG_INT64(0);
	first = PG_GETARG_INT32(1);
	PreventCommandIfReadOnly("sync_sequences_prepared()");
	PreventCommandDuringRecovery("sync_sequences_prepared()");

	if (prep == NULL || prep->token != token)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("no prepared sequence plan with token " INT64_FORMAT " in this session", token),
				 errhint("Call upgrade_assist.sequences_prepare() first, in the same session.")));

	arr = PG_GETARG_ARRAYTYPE_P(2);
	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("last_values must be a one-dimensional array")));
	deconstruct_array(arr, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &lasts, &lnulls, &n);
	arr = PG_GETARG_ARRAYTYPE_P(3);
	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("is_called must be a one-dimensional array")));
	deconstruct_array(arr, BOOLOID, 1, true, TYPALIGN_CHAR, &calls, &cnulls, &ncalled);
	if (ncalled != n)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("last_values and is_called must have the same length"),
				 errdetail("Their lengths are %d and %d.", n, ncalled)));
	if (first < 0 || first > prep->nseqs || n > prep->nseqs - first)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("sequences %d to %d are not in the prepared plan", first, first + n - 1),
				 errdetail("The plan has %d sequences, numbered from 0.", prep->nseqs)));
	for (int i = 0; i < n; i++)
		if (!lnulls[i] && cnulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("is_called must not be null where last_values is not")));

	/* Lock, read and plan the whole batch before moving any of it. */
	work = palloc0(sizeof(UaSeq) * Max(n, 1));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	for (int i = 0; i < n; i++)
	{
		UaSeq	   *s = &work[i];
		int			k = first + i;

		*s = prep->seqs[k];
		s->has_source = !lnulls[i];
		s->src_value = s->has_source ? DatumGetInt64(lasts[i]) : 0;
		s->src_called = s->has_source && DatumGetBool(calls[i]);
		s->has_extreme = false;
		s->extreme = 0;
		s->new_value = 0;
		s->overflow = false;
		s->action = NULL;
		s->detail = NULL;

		LockRelationOid(s->oid, ShareRowExclusiveLock);
		if (!ua_seq_read_state(s->oid, false, &s->cur_value, &s->cur_called))
			ua_plan_stale(psprintf("Sequence %s", s->display));
		for (int p = prep->first_probe[k]; p < prep->first_probe[k + 1]; p++)
		{
			int64		v;

			if (!ua_probe_extreme(&prep->probes[p], s->increment > 0, &v))
				continue;
			if (!s->has_extreme ||
				(s->increment > 0 ? v > s->extreme : v < s->extreme))
				s->extreme = v;
			s->has_extreme = true;
		}
		ua_plan_one(s, margin);
		if (s->overflow)
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("sequence %s cannot be moved forward without overflow",
							s->display),
					 errdetail_internal("%s", s->detail),
					 errhint("No sequence of this batch was changed.")));
	}
	SPI_finish();

	for (int i = 0; i < n; i++)
	{
		if (strcmp(work[i].action, "none") == 0)
			continue;
		if (work[i].new_value < work[i].minvalue || work[i].new_value > work[i].maxvalue)
			elog(ERROR, "planned value " INT64_FORMAT " of sequence %s is out of its range",
				 work[i].new_value, work[i].display);
		(void) DirectFunctionCall3(setval3_oid, ObjectIdGetDatum(work[i].oid),
								   Int64GetDatum(work[i].new_value), BoolGetDatum(false));
		moved++;
	}

	values[0] = Int32GetDatum(n);
	values[1] = Int32GetDatum(moved);
	tuplestore_putvalues(store, tupdesc, values, nulls);
	return (Datum) 0;
}
