/*-------------------------------------------------------------------------
 *
 * sequences.h
 *	  Sequence plans, shared by sequences.c (sequence_plan, sync_sequences
 *	  and their variants) and sequences_prepared.c (the cutover's prepared
 *	  plan: sequences_prepare, sync_sequences_prepared, the index probes),
 *	  and what the cutover worker uses: exact sequence states read in C,
 *	  without SQL, for the blackout's "sync sequences" step.
 *
 * IDENTIFICATION
 *	  src/sequences.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef UA_SEQUENCES_H
#define UA_SEQUENCES_H

#include "postgres.h"

#include "fmgr.h"
#include "nodes/pg_list.h"
#include "utils/hsearch.h"

/*
 * Sequences per call of sync_sequences_prepared(): each call is one peer
 * transaction, and setval() keeps a lock on every sequence it moved until
 * that transaction ends, so this bounds the lock table entries one call
 * needs (well under the default 64 per backend slot times the backends).
 */
#define UA_SEQ_BATCH 500

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

/* sequences.c: the plan's pieces (caller has SPI connected where noted) */
extern UaSeq *ua_list_sequences(MemoryContext cxt, int *count, HTAB **byname);
extern List *ua_list_uses(MemoryContext cxt, UaSeq *seqs, int nseqs);
extern void ua_plan_one(UaSeq *s, int64 margin);
extern int64 ua_margin_arg(FunctionCallInfo fcinfo, int argno);

/* sequences_prepared.c */
extern bool ua_seq_read_state(Oid seqoid, bool check_select,
							  int64 *last_value, bool *is_called);

#endif							/* UA_SEQUENCES_H */
