/*-------------------------------------------------------------------------
 *
 * cutover_multidb.c
 *	  The cutover and the other databases of this cluster.
 *
 * The write fence is cluster-wide, while a cutover moves the replication of
 * the one database it is called in.  A database of this cluster whose own
 * forward subscription into the peer is left out of the call would be left
 * half moved: fenced here, opened on the peer while its forward replication
 * still runs.  The checks step therefore refuses, before the fence, when
 * another database of this cluster still has a forward subscription from it
 * (ua_multidb_refuse_uncovered).
 *
 * "Has a forward subscription from this cluster" is decided as the checks
 * step decides it for the calling database: a subscription of the peer
 * cluster (pg_subscription is a shared catalog, so one statement on the
 * peer sees the subscriptions of all its databases), enabled or not, whose
 * slot name is the name of a logical replication slot of this cluster in
 * another database.  Slot names are unique in a cluster, so the name is the
 * link.  A logical slot that no subscription of the peer names (a CDC
 * consumer, pg_recvlogical, a slot nobody uses) does not count: cutting over
 * does not change what it reads, the fence only stops the writes.
 *
 * No shared state, no locks.
 *
 * IDENTIFICATION
 *	  src/cutover_multidb.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "utils/memutils.h"

#include "cutover.h"
#include "util.h"

/*
 * ua_multidb_refuse_uncovered
 *		Throw 55000 (object_not_in_prerequisite_state), naming every other
 *		database of this cluster whose logical slot a subscription of the
 *		peer uses, with the subscription and its database on the peer in
 *		the DETAIL; return when there is none.  Runs in the cutover worker
 *		outside a transaction (it starts its own); reads only, here and on
 *		the peer (ua_cutover_remote, within the attempt's deadline: a peer
 *		that does not answer throws its connection error).
 */
void
ua_multidb_refuse_uncovered(UaRun *run)
{
	char	   *slots;
	char	   *dbs;
	const char *vals[2];
	PGresult   *res;
	int			n;
	StringInfoData names;
	StringInfoData subs;
	int			ndb = 0;

	/* The logical slots of the other databases, as two parallel arrays. */
	ua_xact_begin(NULL);
	ua_spi_exec("SELECT coalesce(pg_catalog.array_agg(slot_name::text ORDER BY slot_name), '{}')::text,"
				"       coalesce(pg_catalog.array_agg(database::text ORDER BY slot_name), '{}')::text"
				"  FROM pg_catalog.pg_replication_slots"
				" WHERE slot_type = 'logical'"
				"   AND database <> pg_catalog.current_database()",
				0, NULL, true);
	slots = ua_spi_getvalue(0, 1, run->cxt);
	dbs = ua_spi_getvalue(0, 2, run->cxt);
	ua_xact_end(run->cxt);
	if (strcmp(slots, "{}") == 0)
		return;

	/* Which of them a subscription of the peer consumes. */
	vals[0] = slots;
	vals[1] = dbs;
	res = ua_cutover_remote(run,
							"SELECT l.db, s.subname::text, d.datname::text, l.slot,"
							"       CASE WHEN s.subenabled THEN 'enabled' ELSE 'disabled' END"
							"  FROM pg_catalog.pg_subscription s"
							"  JOIN pg_catalog.pg_database d ON d.oid = s.subdbid"
							"  JOIN ROWS FROM (pg_catalog.unnest($1::text[]), pg_catalog.unnest($2::text[])) AS l(slot, db)"
							"    ON l.slot = s.subslotname::text"
							" ORDER BY l.db, s.subname",
							2, vals);
	n = PQntuples(res);
	if (n == 0)
	{
		PQclear(res);
		return;
	}

	initStringInfo(&names);
	initStringInfo(&subs);
	for (int i = 0; i < n; i++)
	{
		const char *db = PQgetvalue(res, i, 0);

		if (i == 0 || strcmp(db, PQgetvalue(res, i - 1, 0)) != 0)
		{
			appendStringInfo(&names, "%s\"%s\"", ndb > 0 ? ", " : "", db);
			ndb++;
		}
		appendStringInfo(&subs, "%ssubscription \"%s\" (%s) of database \"%s\" on the peer uses slot \"%s\" of database \"%s\" here",
						 i > 0 ? "; " : "",
						 PQgetvalue(res, i, 1), PQgetvalue(res, i, 4),
						 PQgetvalue(res, i, 2), PQgetvalue(res, i, 3), db);
	}
	PQclear(res);

	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 ndb == 1 ?
			 errmsg("database %s of this cluster also replicates to peer \"%s\"",
					names.data, run->peer) :
			 errmsg("databases %s of this cluster also replicate to peer \"%s\"",
					names.data, run->peer),
			 errdetail("Found: %s. The fence is cluster-wide and a cutover moves one database: "
					   "the others would be fenced here and opened on the peer while their forward "
					   "replication still runs.", subs.data),
			 errhint("Drop the peer's subscription of each database that is not to be moved before "
					 "the cutover (that database then stays here, fenced with this cluster); "
					 "see docs/many-databases.md.")));
}
