/*-------------------------------------------------------------------------
 *
 * verify_checksum.c
 *	  The count and checksum of a range, the same code on both sides (the
 *	  primary's worker or snapshot helper, the peer's replica trigger):
 *	  the kept statements that read a range, and the per-row hash (each
 *	  column as canonical bytes or as its output text), summed modulo 2^64.
 *	  verify.c says why both sides then describe the same rows.
 *
 * IDENTIFICATION
 *	  src/verify_checksum.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datum.h"
#include "utils/float.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "compat.h"
#include "util.h"
#include "verify.h"

/*
 * The statements of ranges are prepared once per process and kept: the
 * worker runs the same few for every range of a table, the apply worker's
 * trigger the same few for every range it applies.  Keyed by their text
 * (which names the table and every column), so a changed column list is
 * another statement; the plan cache replans after DDL by itself.
 */
#define UA_VERIFY_PLANS 16

typedef struct UaVerifyPlan
{
	char	   *sql;
	SPIPlanPtr	plan;
} UaVerifyPlan;

static UaVerifyPlan ua_verify_plans[UA_VERIFY_PLANS];
static int	ua_verify_plan_next = 0;

/*
 * ua_verify_plan
 *		The kept plan of sql (parameters text[], text[], int8), prepared on
 *		first use; the oldest of UA_VERIFY_PLANS is freed for a new one.
 *		Caller is connected to SPI.
 */
SPIPlanPtr
ua_verify_plan(const char *sql)
{
	Oid			types[3] = {TEXTARRAYOID, TEXTARRAYOID, INT8OID};
	UaVerifyPlan *p;
	SPIPlanPtr	plan;

	for (int i = 0; i < UA_VERIFY_PLANS; i++)
		if (ua_verify_plans[i].sql && strcmp(ua_verify_plans[i].sql, sql) == 0)
			return ua_verify_plans[i].plan;
	plan = SPI_prepare(sql, 3, types);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "SPI_keepplan failed");
	p = &ua_verify_plans[ua_verify_plan_next];
	ua_verify_plan_next = (ua_verify_plan_next + 1) % UA_VERIFY_PLANS;
	if (p->plan)
		SPI_freeplan(p->plan);
	if (p->sql)
		pfree(p->sql);
	p->sql = MemoryContextStrdup(TopMemoryContext, sql);
	p->plan = plan;
	return plan;
}

/*
 * How the checksum reads a column: the value's own bytes where they are the
 * same on every cluster that holds the same value (what replication's text
 * round trip gives back bit for bit), the output function's text otherwise.
 */
typedef enum UaVerifyKind
{
	UA_VK_INT,					/* int2, int4, int8, oid: as int64 */
	UA_VK_FLOAT4,
	UA_VK_FLOAT8,				/* NaN as one value */
	UA_VK_BOOL,
	UA_VK_WORD,					/* date, time, timestamp(tz), money: as int64 */
	UA_VK_UUID,
	UA_VK_BYTES,				/* text, varchar, bpchar, bytea: detoasted bytes */
	UA_VK_TEXT					/* anything else: output function, pinned settings */
} UaVerifyKind;

typedef struct UaVerifyCol
{
	UaVerifyKind kind;
	Oid			typid;			/* the base type */
	FmgrInfo	out;
} UaVerifyCol;

static UaVerifyKind
ua_verify_kind(Oid typid)
{
	switch (typid)
	{
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case OIDOID:
			return UA_VK_INT;
		case FLOAT4OID:
			return UA_VK_FLOAT4;
		case FLOAT8OID:
			return UA_VK_FLOAT8;
		case BOOLOID:
			return UA_VK_BOOL;
		case DATEOID:
		case TIMEOID:
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
		case CASHOID:
			return UA_VK_WORD;
		case UUIDOID:
			return UA_VK_UUID;
		case TEXTOID:
		case VARCHAROID:
		case BPCHAROID:
		case BYTEAOID:
			return UA_VK_BYTES;
		default:
			return UA_VK_TEXT;
	}
}

/* Append v to buf as 8 bytes, least significant first (any byte order). */
static inline void
ua_verify_put64(StringInfo buf, uint64 v)
{
	char		b[8];

	for (int i = 0; i < 8; i++)
		b[i] = (char) ((v >> (8 * i)) & 0xff);
	appendBinaryStringInfo(buf, b, 8);
}

/*
 * ua_verify_row_hash
 *		Hash of the columns lead.. of a row: each column as a tag, and for
 *		variable-length values a length, then its bytes, the whole hashed
 *		once (so NULL, empty and shifted values all differ).
 */
static uint64
ua_verify_row_hash(Datum *values, bool *nulls, int lead, int natts,
				   UaVerifyCol *cols, StringInfo buf)
{
	resetStringInfo(buf);
	for (int i = lead; i < natts; i++)
	{
		Datum		d = values[i];

		if (nulls[i])
		{
			appendStringInfoChar(buf, 'N');
			continue;
		}
		switch (cols[i].kind)
		{
			case UA_VK_INT:
				appendStringInfoChar(buf, 'i');
				ua_verify_put64(buf, (uint64) (cols[i].typid == INT2OID ?
											   (int64) DatumGetInt16(d) :
											   cols[i].typid == INT4OID ?
											   (int64) DatumGetInt32(d) :
											   cols[i].typid == OIDOID ?
											   (int64) DatumGetObjectId(d) :
											   DatumGetInt64(d)));
				break;
			case UA_VK_FLOAT4:
				{
					float4		f = DatumGetFloat4(d);
					uint32		u;

					if (isnan(f))
						f = get_float4_nan();
					memcpy(&u, &f, sizeof(u));
					appendStringInfoChar(buf, 'r');
					ua_verify_put64(buf, u);
				}
				break;
			case UA_VK_FLOAT8:
				{
					float8		f = DatumGetFloat8(d);
					uint64		u;

					if (isnan(f))
						f = get_float8_nan();
					memcpy(&u, &f, sizeof(u));
					appendStringInfoChar(buf, 'd');
					ua_verify_put64(buf, u);
				}
				break;
			case UA_VK_BOOL:
				appendStringInfoChar(buf, DatumGetBool(d) ? 'T' : 'F');
				break;
			case UA_VK_WORD:
				appendStringInfoChar(buf, 'w');
				if (cols[i].typid == DATEOID)
					ua_verify_put64(buf, (uint64) (int64) DatumGetDateADT(d));
				else
					ua_verify_put64(buf, (uint64) DatumGetInt64(d));
				break;
			case UA_VK_UUID:
				appendStringInfoChar(buf, 'u');
				appendBinaryStringInfo(buf, (char *) DatumGetPointer(d), UUID_LEN);
				break;
			case UA_VK_BYTES:
				{
					struct varlena *v = PG_DETOAST_DATUM_PACKED(d);

					appendStringInfoChar(buf, 'b');
					ua_verify_put64(buf, VARSIZE_ANY_EXHDR(v));
					appendBinaryStringInfo(buf, VARDATA_ANY(v), VARSIZE_ANY_EXHDR(v));
					if ((Pointer) v != DatumGetPointer(d))
						pfree(v);
				}
				break;
			case UA_VK_TEXT:
				{
					char	   *s = OutputFunctionCall(&cols[i].out, d);
					size_t		len = strlen(s);

					appendStringInfoChar(buf, 't');
					ua_verify_put64(buf, len);
					appendBinaryStringInfo(buf, s, len);
					pfree(s);
				}
				break;
		}
	}
	return DatumGetUInt64(hash_any_extended((unsigned char *) buf->data,
											buf->len, 0));
}

/*
 * ua_verify_compute
 *		Run a statement of ua_verify_range_sql (lead: its *lead) with its
 *		parameters (NULL datums: no bound) and store in *out, allocated in
 *		cxt, the rows' count and the sum (modulo 2^64) of their hashes; in
 *		keys mode also every key's text and hash as text[] and bigint[]
 *		(text); for an ordered statement the last row's key columns' text as
 *		a text[] datum in out->last_key (0 when no row).  The rows are read
 *		through a cursor and hashed in C, UA_VERIFY_FETCH at a time.  Caller
 *		is connected to SPI with the settings pinned; the statement takes a
 *		snapshot of its own (it sees what committed before it began).
 */
#define UA_VERIFY_FETCH 1000

void
ua_verify_compute(const char *sql, int lead, bool with_keys, bool ordered,
				  Datum key_from, Datum key_to, int64 row_limit,
				  UaVerifySums *out, MemoryContext cxt)
{
	Datum		values[3];
	char		nulls[3] = "   ";
	Portal		portal;
	UaVerifyCol *cols = NULL;
	int			natts = 0;
	uint64		sum = 0;
	int64		rows = 0;
	StringInfoData buf;
	Datum	   *tv = NULL;
	bool	   *tn = NULL;
	MemoryContext batch;
	MemoryContext old;
	ArrayBuildState *keys = NULL;
	ArrayBuildState *hashes = NULL;

	values[0] = key_from;
	nulls[0] = key_from == (Datum) 0 ? 'n' : ' ';
	values[1] = key_to;
	nulls[1] = key_to == (Datum) 0 ? 'n' : ' ';
	values[2] = Int64GetDatum(row_limit);
	out->last_key = (Datum) 0;
	out->keys = out->hashes = NULL;

	portal = SPI_cursor_open(NULL, ua_verify_plan(sql), values, nulls, false);
	batch = AllocSetContextCreate(CurrentMemoryContext, "upgrade_assist verify rows",
								  ALLOCSET_DEFAULT_SIZES);
	initStringInfo(&buf);
	if (with_keys)
	{
		keys = initArrayResult(TEXTOID, CurrentMemoryContext, false);
		hashes = initArrayResult(INT8OID, CurrentMemoryContext, false);
	}
	for (;;)
	{
		SPITupleTable *tt;

		CHECK_FOR_INTERRUPTS();
		SPI_cursor_fetch(portal, true, UA_VERIFY_FETCH);
		tt = SPI_tuptable;
		if (cols == NULL)
		{
			natts = tt->tupdesc->natts;
			cols = palloc(sizeof(UaVerifyCol) * natts);
			tv = palloc(sizeof(Datum) * natts);
			tn = palloc(sizeof(bool) * natts);
			for (int i = 0; i < natts; i++)
			{
				Oid			typid = TupleDescAttr(tt->tupdesc, i)->atttypid;
				Oid			outfn;
				bool		varlena;

				cols[i].typid = getBaseType(typid);
				cols[i].kind = ua_verify_kind(cols[i].typid);
				getTypeOutputInfo(cols[i].typid, &outfn, &varlena);
				fmgr_info(outfn, &cols[i].out);
			}
		}
		if (SPI_processed == 0)
			break;
		old = MemoryContextSwitchTo(batch);
		for (uint64 r = 0; r < SPI_processed; r++)
		{
			uint64		h;

			heap_deform_tuple(tt->vals[r], tt->tupdesc, tv, tn);
			h = ua_verify_row_hash(tv, tn, lead, natts, cols, &buf);
			sum += h;
			rows++;
			if (with_keys)
			{
				MemoryContextSwitchTo(old);
				accumArrayResult(keys, tn[0] ? (Datum) 0 : datumCopy(tv[0], false, -1),
								 tn[0], TEXTOID, CurrentMemoryContext);
				accumArrayResult(hashes, Int64GetDatum((int64) h), false,
								 INT8OID, CurrentMemoryContext);
				MemoryContextSwitchTo(batch);
			}
			if (ordered && r == SPI_processed - 1)
			{
				Datum	   *k = palloc(sizeof(Datum) * lead);
				MemoryContext o2 = MemoryContextSwitchTo(cxt);

				for (int i = 0; i < lead; i++)
					k[i] = CStringGetTextDatum(OutputFunctionCall(&cols[i].out, tv[i]));
				if (out->last_key != (Datum) 0)
					pfree(DatumGetPointer(out->last_key));
				out->last_key = PointerGetDatum(construct_array(k, lead, TEXTOID, -1,
																false, TYPALIGN_INT));
				MemoryContextSwitchTo(o2);
			}
		}
		MemoryContextSwitchTo(old);
		MemoryContextReset(batch);
		SPI_freetuptable(tt);
	}
	SPI_cursor_close(portal);
	MemoryContextDelete(batch);

	old = MemoryContextSwitchTo(cxt);
	out->rows = rows;
	out->sum = psprintf(INT64_FORMAT, (int64) sum);
	if (with_keys && rows > 0)
	{
		Oid			outfn;
		bool		varlena;

		getTypeOutputInfo(TEXTARRAYOID, &outfn, &varlena);
		out->keys = OidOutputFunctionCall(outfn, makeArrayResult(keys, CurrentMemoryContext));
		getTypeOutputInfo(INT8ARRAYOID, &outfn, &varlena);
		out->hashes = OidOutputFunctionCall(outfn, makeArrayResult(hashes, CurrentMemoryContext));
	}
	MemoryContextSwitchTo(old);
	pfree(buf.data);
}
