/*-------------------------------------------------------------------------
 *
 * sequences.h
 *	  What the cutover worker uses of sequences.c: exact sequence states
 *	  read in C, without SQL, for the blackout's "sync sequences" step.
 *
 * IDENTIFICATION
 *	  src/sequences.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef UA_SEQUENCES_H
#define UA_SEQUENCES_H

#include "postgres.h"

/*
 * Sequences per call of sync_sequences_prepared(): each call is one peer
 * transaction, and setval() keeps a lock on every sequence it moved until
 * that transaction ends, so this bounds the lock table entries one call
 * needs (well under the default 64 per backend slot times the backends).
 */
#define UA_SEQ_BATCH 500

extern bool ua_seq_read_state(Oid seqoid, bool check_select,
							  int64 *last_value, bool *is_called);

#endif							/* UA_SEQUENCES_H */
