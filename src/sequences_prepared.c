/*-------------------------------------------------------------------------
 *
 * sequences_prepared.c
 *	  The cutover's prepared sequence plan: sequences_prepare() before the
 *	  fence, sync_sequences_prepared() inside the blackout.
 *
 * sequences_prepare() does, in the calling session and before any fence, the
 * part of a sync that does not depend on the sequences' values: it lists the
 * sequences and the columns that draw from them (sequences.c), finds for
 * every column (of every leaf partition) a btree index whose first key it
 * is, checks the privileges, opens each sequence, table and index once
 * (their relcache entries and pages stay warm), and keeps the result in
 * session memory under a token.  sync_sequences_prepared() then applies
 * source states to one batch of that plan: each sequence's own state read
 * from its page, each column's extreme by one index probe in C (no SQL
 * statement, except for a column without such an index), the same plan as
 * sync_sequences (ua_plan_one), and each move done with setval(): in place,
 * one small WAL record, not transactional.  See docs/blackout.md for why
 * that is safe where the cutover uses it.
 *
 * State: one plan per session (ua_prepared), in its own memory context
 * under TopMemoryContext; no shared state.  Locking: see
 * sync_sequences_prepared().
 *
 * IDENTIFICATION
 *	  src/sequences_prepared.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/itup.h"
#include "access/nbtree.h"
#include "access/relation.h"
#include "access/skey.h"
#include "access/table.h"
#include "catalog/index.h"
#include "catalog/pg_am.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_opfamily.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "compat.h"
#include "sequences.h"
#include "util.h"

PG_FUNCTION_INFO_V1(sequences_prepare);
PG_FUNCTION_INFO_V1(sync_sequences_prepared);

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

	/*
	 * The index's end page as the last full probe saw it (ua_index_end):
	 * while that page is unchanged, no key beyond bound can be in the index
	 * (ua_bound_holds), so the next probe needs no scan.
	 */
	bool		bound_valid;
	Oid			bound_filenode; /* the index's relfilenode then */
	BlockNumber bound_blk;		/* its end leaf page in the probe's direction */
	XLogRecPtr	bound_lsn;		/* that page's LSN then */
	int64		bound;			/* the furthest non-null key then */
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
 * ua_key_int8
 *		An integer index key as int64; false for any other type.
 */
static bool
ua_key_int8(Datum d, Oid typid, int64 *value)
{
	switch (typid)
	{
		case INT2OID:
			*value = DatumGetInt16(d);
			return true;
		case INT4OID:
			*value = DatumGetInt32(d);
			return true;
		case INT8OID:
			*value = DatumGetInt64(d);
			return true;
		default:
			return false;
	}
}

/*
 * ua_index_end
 *		Read the end leaf page of btree idx (the rightmost one when right,
 *		else the leftmost) and its furthest non-null first key in that
 *		direction, without looking at the heap: the key may belong to a dead
 *		or uncommitted row, so it is an upper bound of the column's extreme
 *		(in that direction) at the moment of the read.  Fills *blk, *lsn
 *		(the page's LSN under the same buffer lock) and *key; returns false
 *		when there is no such answer (index not WAL-logged or empty, a
 *		deleted or half-dead page on the way, no non-null key on the end
 *		page).  Caller holds a lock on idx.
 *
 * Why the bound lasts while the page is unchanged: a key further than
 * *key can only be inserted into the end page (it covers everything beyond
 * its neighbour's keys), and every insertion, split or deletion there is
 * WAL-logged and moves the page's LSN; a split also ends its being the end
 * page (rightmost: the new page goes right; leftmost: its left half keeps
 * the block, with a new LSN).
 */
static bool
ua_index_end(Relation idx, bool right, BlockNumber *blk, XLogRecPtr *lsn, int64 *key)
{
	TupleDesc	desc = RelationGetDescr(idx);
	Oid			keytype = TupleDescAttr(desc, 0)->atttypid;
	Buffer		buf;
	Page		page;
	BTMetaPageData *meta;
	BlockNumber next;

	if (!RelationNeedsWAL(idx))
		return false;
	buf = ReadBuffer(idx, BTREE_METAPAGE);
	LockBuffer(buf, BUFFER_LOCK_SHARE);
	meta = BTPageGetMeta(BufferGetPage(buf));
	next = meta->btm_magic == BTREE_MAGIC ? meta->btm_root : P_NONE;
	UnlockReleaseBuffer(buf);

	while (next != P_NONE)
	{
		BTPageOpaque opaque;
		int			first;
		int			last;
		bool		found = false;

		CHECK_FOR_INTERRUPTS();
		buf = ReadBuffer(idx, next);
		LockBuffer(buf, BUFFER_LOCK_SHARE);
		page = BufferGetPage(buf);
		opaque = (BTPageOpaque) PageGetSpecialPointer(page);
		if (P_IGNORE(opaque) || (!right && !P_LEFTMOST(opaque)))
		{
			UnlockReleaseBuffer(buf);
			return false;
		}
		if (right && !P_RIGHTMOST(opaque))
		{
			/* Split since its parent was read: go right. */
			next = opaque->btpo_next;
			UnlockReleaseBuffer(buf);
			continue;
		}
		first = P_FIRSTDATAKEY(opaque);
		last = PageGetMaxOffsetNumber(page);
		if (!P_ISLEAF(opaque))
		{
			if (last < first)
			{
				UnlockReleaseBuffer(buf);
				return false;
			}
			next = BTreeTupleGetDownLink((IndexTuple) PageGetItem(page,
																  PageGetItemId(page, right ? last : first)));
			UnlockReleaseBuffer(buf);
			continue;
		}

		/* The end leaf: its furthest non-null key, dead items included. */
		for (int off = right ? last : first; right ? off >= first : off <= last;
			 off += right ? -1 : 1)
		{
			ItemId		iid = PageGetItemId(page, off);
			bool		isnull;
			Datum		d;

			if (!ItemIdIsUsed(iid))
				continue;
			d = index_getattr((IndexTuple) PageGetItem(page, iid), 1, desc, &isnull);
			if (isnull)
				continue;
			found = ua_key_int8(d, keytype, key);
			break;
		}
		*blk = next;
		*lsn = BufferGetLSNAtomic(buf);
		UnlockReleaseBuffer(buf);
		return found;
	}
	return false;
}

/*
 * ua_bound_holds
 *		Is the end page that p's last full probe saw (p->bound_blk) still
 *		the same page of the same index file, still the end, and unchanged
 *		(same LSN)?  Then no key beyond p->bound is in the index.  Caller
 *		holds a lock on idx.
 */
static bool
ua_bound_holds(const UaProbe *p, Relation idx, bool right)
{
	Buffer		buf;
	BTPageOpaque opaque;
	bool		holds;

	if (!p->bound_valid || idx->rd_rel->relfilenode != p->bound_filenode)
		return false;
	buf = ReadBuffer(idx, p->bound_blk);
	LockBuffer(buf, BUFFER_LOCK_SHARE);
	opaque = (BTPageOpaque) PageGetSpecialPointer(BufferGetPage(buf));
	holds = !P_IGNORE(opaque) && P_ISLEAF(opaque) &&
		(right ? P_RIGHTMOST(opaque) : P_LEFTMOST(opaque)) &&
		BufferGetLSNAtomic(buf) == p->bound_lsn;
	UnlockReleaseBuffer(buf);
	return holds;
}

/*
 * ua_probe_extreme
 *		The furthest value of probe p's column in direction want_max (max
 *		when true, min otherwise) into *value.  When p's saved bound still
 *		holds (ua_bound_holds: the index's end page unchanged since the last
 *		full probe), that bound, read from one index page; else one ordered
 *		index scan skipping NULLs, first visible tuple only, which also
 *		saves the bound for the next probe when the end page's furthest key
 *		is that tuple's (so the bound equals the exact answer when saved);
 *		without an index, one SPI statement (caller has SPI connected).
 *		Returns false when the column holds no value.  Throws 55000 when the
 *		table or index is gone.
 */
static bool
ua_probe_extreme(UaProbe *p, bool want_max, int64 *value)
{
	Relation	rel = try_relation_open(p->relid, AccessShareLock);
	bool		found = false;

	if (rel == NULL || rel->rd_rel->relkind != RELKIND_RELATION)
		ua_plan_stale(psprintf("Table %s", p->table));

	if (OidIsValid(p->indexid))
	{
		Relation	idx = try_relation_open(p->indexid, AccessShareLock);
		bool		right = want_max != p->index_desc;
		ScanKeyData key;
		SysScanDesc scan;
		HeapTuple	tup;
		BlockNumber blk = InvalidBlockNumber;
		XLogRecPtr	lsn = InvalidXLogRecPtr;
		int64		bound = 0;
		bool		has_bound;

		if (idx == NULL || idx->rd_rel->relkind != RELKIND_INDEX)
			ua_plan_stale(psprintf("An index of table %s", p->table));
		if (ua_bound_holds(p, idx, right))
		{
			*value = p->bound;
			relation_close(idx, AccessShareLock);
			relation_close(rel, AccessShareLock);
			return true;
		}

		/* The end page first: what the scan then finds is at most its key. */
		has_bound = ua_index_end(idx, right, &blk, &lsn, &bound);
		ScanKeyEntryInitialize(&key, SK_ISNULL | SK_SEARCHNOTNULL, p->attnum,
							   InvalidStrategy, InvalidOid, InvalidOid, InvalidOid,
							   (Datum) 0);
		scan = systable_beginscan_ordered(rel, idx, GetActiveSnapshot(), 1, &key);
		tup = systable_getnext_ordered(scan, right ?
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
		p->bound_valid = found && has_bound && bound == *value;
		if (p->bound_valid)
		{
			p->bound_filenode = idx->rd_rel->relfilenode;
			p->bound_blk = blk;
			p->bound_lsn = lsn;
			p->bound = bound;
		}
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
