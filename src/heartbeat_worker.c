/*-------------------------------------------------------------------------
 *
 * heartbeat_worker.c
 *	  The heartbeat worker of one database: commits a marker of kind
 *	  'heartbeat' at the configured pace and confirms each one on the peer.
 *
 * One event loop drives three things that never wait for each other: the
 * beat (a local transaction at a fixed pace), the connection to the peer
 * (opened without blocking, reopened with a backoff when it fails), and the
 * confirmation queries (sent without blocking; at most one in flight).  A
 * slow or unreachable peer therefore never delays the next beat:
 * confirmations arrive out of step with the writes.
 *
 * Confirmation: the worker's own heartbeats commit one after another, and
 * replication applies them in commit order, so when the peer shows
 * heartbeat N every earlier heartbeat has arrived too.  The unconfirmed
 * markers wait in a FIFO; a look at the peer asks which of them it shows,
 * and everything up to the newest one shown is confirmed.  Latency is the
 * time from just before the marker's commit to the look that saw it, so
 * looks are frequent right after a beat (1 ms apart, then about 5 % of the
 * age of the oldest unconfirmed marker, at most 50 ms).
 *
 * What the worker measures goes to shared memory (UaHeartbeat, under
 * UaShared->lock) for the sync_status view.  Old heartbeat markers are
 * deleted once a minute (upgrade_assist.heartbeat_retention).
 *
 * Schema drift: every upgrade_assist.schema_check_interval the worker
 * starts a short-lived background worker of its own (ua_schema_check_main,
 * 'upgrade_assist schema check'), which connects to the database and to the
 * peer by itself, compares the published tables' columns and keys with the
 * peer's (ua_preflight_schema_diff, preflight.c), publishes 'same' or
 * 'drift: ...' in the slot, and exits.  The heartbeat worker only registers
 * it (never more than one at a time) and never waits for it, so a
 * comparison that takes hundreds of milliseconds delays no beat.
 *
 * IDENTIFICATION
 *	  src/heartbeat_worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "heartbeat.h"
#include "marker.h"
#include "preflight.h"
#include "remote.h"
#include "util.h"

/* Unconfirmed markers kept; older ones are confirmed by a newer one anyway. */
#define UA_HB_MAX_PENDING 4096

/* How often old heartbeat markers are deleted: every minute, or a tenth of
 * the retention when that is shorter. */
#define UA_HB_PRUNE_MS Min(60000, 100 * (int64) ua_heartbeat_retention_s)

/* Bound of the schema check's statement on the peer. */
#define UA_HB_SCHEMA_TIMEOUT_MS 60000

/* Reconnect backoff bounds. */
#define UA_HB_BACKOFF_MIN_MS 250
#define UA_HB_BACKOFF_MAX_MS 10000

typedef enum UaHbConnPhase
{
	UA_HB_DISCONNECTED,
	UA_HB_CONNECTING,
	UA_HB_IDLE,					/* connected, no query in flight */
	UA_HB_BUSY					/* a confirmation query in flight */
} UaHbConnPhase;

typedef struct UaHbPending
{
	int64		seq;
	TimestampTz written_at;
} UaHbPending;

/* Worker state (one worker per process). */
static UaHeartbeat *hb_slot;
static char hb_peer[NAMEDATALEN];
static int64 hb_every_ms;
static uint32 hb_generation;
static bool hb_configured = false;	/* hb_peer and hb_every_ms are set */

static PGconn *hb_conn = NULL;
static UaHbConnPhase hb_phase = UA_HB_DISCONNECTED;
static PostgresPollingStatusType hb_poll = PGRES_POLLING_WRITING;
static TimestampTz hb_connect_deadline;
static TimestampTz hb_next_connect;
static int	hb_backoff_ms = UA_HB_BACKOFF_MIN_MS;

static UaHbPending hb_pending[UA_HB_MAX_PENDING];
static int	hb_pending_head = 0;	/* oldest */
static int	hb_pending_count = 0;
static TimestampTz hb_next_look = 0;

static int64 hb_latencies[UA_HB_WINDOW];
static int	hb_nlatencies = 0;
static int	hb_latency_pos = 0;
static bool hb_wrote_a_beat = false;

static BackgroundWorkerHandle *hb_schema_worker = NULL;	/* in TopMemoryContext */
static bool hb_schema_start_failed = false; /* logged once until it works */

/*
 * ua_hb_detach
 *		before_shmem_exit callback: leave the slot, tell the launcher, count
 *		a failure when the worker died before its first beat.
 */
static void
ua_hb_detach(int code pg_attribute_unused(), Datum arg pg_attribute_unused())
{
	PGPROC	   *launcher;

	if (hb_conn)
		PQfinish(hb_conn);
	hb_conn = NULL;
	LWLockAcquire(ua_hb_shared->lock, LW_EXCLUSIVE);
	if (hb_slot->worker == MyProc)
	{
		hb_slot->worker = NULL;
		hb_slot->worker_pid = 0;
		hb_slot->connected = false;
		hb_slot->start_requested_at = 0;
		if (hb_wrote_a_beat)
			hb_slot->quick_failures = 0;
		else
			hb_slot->quick_failures++;
	}
	launcher = ua_hb_shared->launcher;
	LWLockRelease(ua_hb_shared->lock);
	if (launcher)
		SetLatch(&launcher->procLatch);
}

/*
 * ua_hb_set_error
 *		Publish the last error (libpq's message or a local one) and that the
 *		peer is not reachable now.
 */
static void
ua_hb_set_error(const char *msg)
{
	LWLockAcquire(ua_hb_shared->lock, LW_EXCLUSIVE);
	strlcpy(hb_slot->last_error, msg, sizeof(hb_slot->last_error));
	hb_slot->last_error_at = GetCurrentTimestamp();
	hb_slot->connected = false;
	LWLockRelease(ua_hb_shared->lock);
}

/*
 * ua_hb_disconnect
 *		Drop the connection after a failure described by msg and schedule
 *		the next attempt with exponential backoff.
 */
static void
ua_hb_disconnect(const char *msg)
{
	if (hb_conn)
		PQfinish(hb_conn);
	hb_conn = NULL;
	hb_phase = UA_HB_DISCONNECTED;
	ua_hb_set_error(msg);
	hb_next_connect = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), hb_backoff_ms);
	hb_backoff_ms = Min(hb_backoff_ms * 2, UA_HB_BACKOFF_MAX_MS);
}

/*
 * ua_hb_error_text
 *		libpq's message of conn, one line, in the worker's loop context.
 */
static char *
ua_hb_error_text(PGconn *conn, const char *fallback)
{
	char	   *msg = conn ? pchomp(PQerrorMessage(conn)) : pstrdup(fallback);

	if (msg[0] == '\0')
		msg = pstrdup(fallback);
	return msg;
}

/*
 * ua_hb_connect_begin
 *		Start connecting to the peer.  Peer lookup errors (server dropped,
 *		mapping missing) are recorded like connection failures.
 */
static void
ua_hb_connect_begin(void)
{
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		StartTransactionCommand();
		hb_conn = ua_peer_connect_start(hb_peer, &hb_connect_deadline);
		CommitTransactionCommand();
		MemoryContextSwitchTo(cxt);
		hb_phase = UA_HB_CONNECTING;
		hb_poll = PGRES_POLLING_WRITING;
	}
	PG_CATCH();
	{
		ErrorData  *edata = ua_recover_from_error(cxt);

		ua_hb_disconnect(edata->message);
	}
	PG_END_TRY();
}

/*
 * ua_hb_connect_done
 *		Polling ended with the connection made: apply the password rule and
 *		publish that the peer is reachable.
 */
static void
ua_hb_connect_done(void)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile bool ok = true;

	PG_TRY();
	{
		StartTransactionCommand();
		ua_peer_connect_finish(hb_conn, hb_peer);
		CommitTransactionCommand();
		MemoryContextSwitchTo(cxt);
	}
	PG_CATCH();
	{
		ErrorData  *edata = ua_recover_from_error(cxt);

		ua_hb_disconnect(edata->message);
		ok = false;
	}
	PG_END_TRY();
	if (!ok)
		return;

	hb_phase = UA_HB_IDLE;
	hb_backoff_ms = UA_HB_BACKOFF_MIN_MS;
	hb_next_look = 0;
	LWLockAcquire(ua_hb_shared->lock, LW_EXCLUSIVE);
	hb_slot->connected = true;
	LWLockRelease(ua_hb_shared->lock);
}

/*
 * ua_hb_xact_begin
 *		Start a transaction of the worker's own work, with a snapshot.
 *		Returns false when the extension is no longer installed (nothing to
 *		do).  Either way SPI is connected and the caller ends with
 *		ua_xact_end.
 */
static bool
ua_hb_xact_begin(const char *activity)
{
	ua_xact_begin(activity);
	return OidIsValid(get_extension_oid("upgrade_assist", true));
}

/*
 * ua_hb_beat
 *		Commit one heartbeat marker and queue it for confirmation.  Returns
 *		false when the extension is gone from the database (the worker must
 *		stop).  Other errors are published and the beat is skipped.
 */
static bool
ua_hb_beat(void)
{
	MemoryContext cxt = CurrentMemoryContext;
	UaMarker	m;
	volatile bool installed = true;
	volatile bool written = false;

	PG_TRY();
	{
		installed = ua_hb_xact_begin("writing a heartbeat marker");
		if (installed)
		{
			ua_insert_marker("heartbeat", NULL, 0, &m);
			written = true;
		}
		ua_xact_end(cxt);
	}
	PG_CATCH();
	{
		ErrorData  *edata = ua_recover_from_error(cxt);

		ereport(LOG,
				(errmsg("upgrade_assist heartbeat could not write a marker: %s",
						edata->message)));
		LWLockAcquire(ua_hb_shared->lock, LW_EXCLUSIVE);
		strlcpy(hb_slot->last_error, edata->message, sizeof(hb_slot->last_error));
		hb_slot->last_error_at = GetCurrentTimestamp();
		LWLockRelease(ua_hb_shared->lock);
	}
	PG_END_TRY();

	if (!installed)
		return false;
	if (!written)
		return true;

	hb_wrote_a_beat = true;
	if (hb_pending_count == UA_HB_MAX_PENDING)
	{
		/* Drop the oldest; a newer confirmation covers it anyway. */
		hb_pending_head = (hb_pending_head + 1) % UA_HB_MAX_PENDING;
		hb_pending_count--;
	}
	hb_pending[(hb_pending_head + hb_pending_count) % UA_HB_MAX_PENDING].seq = m.seq;
	hb_pending[(hb_pending_head + hb_pending_count) % UA_HB_MAX_PENDING].written_at = m.written_at;
	if (hb_pending_count == 0)
		hb_next_look = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 1);
	hb_pending_count++;

	LWLockAcquire(ua_hb_shared->lock, LW_EXCLUSIVE);
	hb_slot->last_written_seq = m.seq;
	hb_slot->last_written_at = m.written_at;
	hb_slot->oldest_unconfirmed_at = hb_pending[hb_pending_head].written_at;
	LWLockRelease(ua_hb_shared->lock);
	return true;
}

/*
 * ua_hb_prune
 *		Delete this origin's heartbeat markers older than the retention.
 */
static void
ua_hb_prune(void)
{
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		Oid			types[2] = {INT8OID, TIMESTAMPTZOID};
		Datum		values[2];
		TimestampTz cutoff;

		bool		installed = ua_hb_xact_begin("pruning heartbeat markers");

		if (installed)
		{
			cutoff = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
												 -1000 * (int64) ua_heartbeat_retention_s);
			values[0] = Int64GetDatum(ua_origin());
			values[1] = TimestampTzGetDatum(cutoff);
			if (SPI_execute_with_args("DELETE FROM upgrade_assist.marker"
									  " WHERE origin = $1 AND kind = 'heartbeat'"
									  " AND written_at < $2",
									  2, types, values, NULL, false, 0) != SPI_OK_DELETE)
				elog(ERROR, "pruning heartbeat markers failed");
		}
		ua_xact_end(cxt);
	}
	PG_CATCH();
	{
		ErrorData  *edata = ua_recover_from_error(cxt);

		ereport(LOG,
				(errmsg("upgrade_assist heartbeat could not prune markers: %s",
						edata->message)));
	}
	PG_END_TRY();
}

/*
 * ua_hb_send_look
 *		Ask the peer which of the pending markers it shows.
 */
static void
ua_hb_send_look(void)
{
	char		origin[32];
	char		lo[32];
	char		hi[32];
	const char *params[3] = {origin, lo, hi};
	int			newest = (hb_pending_head + hb_pending_count - 1) % UA_HB_MAX_PENDING;

	snprintf(origin, sizeof(origin), INT64_FORMAT, ua_origin());
	snprintf(lo, sizeof(lo), INT64_FORMAT, hb_pending[hb_pending_head].seq);
	snprintf(hi, sizeof(hi), INT64_FORMAT, hb_pending[newest].seq);
	if (!PQsendQueryParams(hb_conn,
						   "SELECT max(seq) FROM upgrade_assist.marker"
						   " WHERE origin = $1::pg_catalog.int8"
						   " AND seq BETWEEN $2::pg_catalog.int8 AND $3::pg_catalog.int8"
						   " AND kind = 'heartbeat'",
						   3, NULL, params, NULL, NULL, 0))
	{
		ua_hb_disconnect(ua_hb_error_text(hb_conn, "could not send a query to the peer"));
		return;
	}
	hb_phase = UA_HB_BUSY;
}

/*
 * ua_hb_percentile
 *		The p-th percentile (0..100) of n sorted values.
 */
static int64
ua_hb_percentile(const int64 *sorted, int n, int p)
{
	int			idx = (int) (((int64) p * (n - 1) + 50) / 100);

	return sorted[Min(Max(idx, 0), n - 1)];
}

static int
ua_hb_cmp_int64(const void *a, const void *b)
{
	int64		x = *(const int64 *) a;
	int64		y = *(const int64 *) b;

	return (x > y) - (x < y);
}

/*
 * ua_hb_confirm
 *		The peer shows heartbeats up to newest (0: none of the pending):
 *		confirm them, record latencies, publish.
 */
static void
ua_hb_confirm(int64 newest, TimestampTz seen_at)
{
	int64		last_latency = -1;
	int64		sorted[UA_HB_WINDOW];
	TimestampTz oldest = 0;

	while (hb_pending_count > 0 && hb_pending[hb_pending_head].seq <= newest)
	{
		UaHbPending *p = &hb_pending[hb_pending_head];

		last_latency = Max(seen_at - p->written_at, 0);
		hb_latencies[hb_latency_pos] = last_latency;
		hb_latency_pos = (hb_latency_pos + 1) % UA_HB_WINDOW;
		hb_nlatencies = Min(hb_nlatencies + 1, UA_HB_WINDOW);
		hb_pending_head = (hb_pending_head + 1) % UA_HB_MAX_PENDING;
		hb_pending_count--;
	}
	if (hb_pending_count > 0)
		oldest = hb_pending[hb_pending_head].written_at;

	if (last_latency >= 0)
	{
		memcpy(sorted, hb_latencies, sizeof(int64) * hb_nlatencies);
		qsort(sorted, hb_nlatencies, sizeof(int64), ua_hb_cmp_int64);
	}

	LWLockAcquire(ua_hb_shared->lock, LW_EXCLUSIVE);
	hb_slot->connected = true;
	hb_slot->oldest_unconfirmed_at = oldest;
	if (last_latency >= 0)
	{
		hb_slot->last_confirmed_seq = newest;
		hb_slot->last_confirmed_at = seen_at;
		hb_slot->last_latency_us = last_latency;
		hb_slot->p50_us = ua_hb_percentile(sorted, hb_nlatencies, 50);
		hb_slot->p99_us = ua_hb_percentile(sorted, hb_nlatencies, 99);
		hb_slot->samples = hb_nlatencies;
	}
	LWLockRelease(ua_hb_shared->lock);
}

/*
 * ua_hb_read_look
 *		A confirmation result is ready (or the connection failed).
 */
static void
ua_hb_read_look(void)
{
	PGresult   *res;
	int64		newest = 0;
	bool		failed = false;
	char	   *msg = NULL;
	TimestampTz seen_at = GetCurrentTimestamp();

	while ((res = PQgetResult(hb_conn)) != NULL)
	{
		if (PQresultStatus(res) == PGRES_TUPLES_OK)
		{
			if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
				newest = (int64) strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		}
		else if (!failed)
		{
			failed = true;
			msg = pchomp(PQresultErrorMessage(res));
		}
		PQclear(res);
	}
	if (failed || PQstatus(hb_conn) != CONNECTION_OK)
	{
		ua_hb_disconnect(msg ? msg : ua_hb_error_text(hb_conn, "connection to the peer lost"));
		return;
	}
	hb_phase = UA_HB_IDLE;
	ua_hb_confirm(newest, seen_at);

	/* Next look: soon after a beat, then about 5 % of the oldest's age. */
	if (hb_pending_count > 0)
	{
		int64		age_ms = (seen_at - hb_pending[hb_pending_head].written_at) / 1000;

		hb_next_look = TimestampTzPlusMilliseconds(seen_at,
												   Max(1, ua_poll_backoff_ms(age_ms)));
	}
}

/*
 * ua_hb_read_config
 *		Pick up configuration changes; returns false when the heartbeat was
 *		stopped or forgotten.
 */
static bool
ua_hb_read_config(void)
{
	bool		run;
	bool		peer_changed = false;

	LWLockAcquire(ua_hb_shared->lock, LW_SHARED);
	run = hb_slot->configured && hb_slot->enabled;
	if (run && (!hb_configured || hb_slot->generation != hb_generation))
	{
		hb_configured = true;
		hb_generation = hb_slot->generation;
		/* heartbeat_start allows no less than 10 ms; never spin. */
		hb_every_ms = Max(hb_slot->every_ms, 10);
		if (strcmp(hb_peer, hb_slot->peer) != 0)
		{
			strlcpy(hb_peer, hb_slot->peer, sizeof(hb_peer));
			peer_changed = true;
		}
	}
	LWLockRelease(ua_hb_shared->lock);

	if (peer_changed)
	{
		if (hb_conn)
			PQfinish(hb_conn);
		hb_conn = NULL;
		hb_phase = UA_HB_DISCONNECTED;
		hb_next_connect = 0;
		hb_backoff_ms = UA_HB_BACKOFF_MIN_MS;
		hb_pending_count = 0;
		hb_nlatencies = 0;
		hb_latency_pos = 0;
	}
	return run;
}

/*
 * ua_hb_min_time
 *		Earlier of two times, 0 meaning "none".
 */
static TimestampTz
ua_hb_min_time(TimestampTz a, TimestampTz b)
{
	if (a == 0)
		return b;
	if (b == 0)
		return a;
	return Min(a, b);
}

/*
 * ua_hb_schema_check_start
 *		Start the schema check worker of this database unless the previous
 *		one still runs.  Never waits for it.  A failure to register (no free
 *		worker slot) is logged once and retried at the next interval.
 */
static void
ua_hb_schema_check_start(Oid dboid)
{
	BackgroundWorker bgw;
	MemoryContext old;
	pid_t		pid;

	if (hb_schema_worker != NULL)
	{
		if (GetBackgroundWorkerPid(hb_schema_worker, &pid) != BGWH_STOPPED)
			return;
		pfree(hb_schema_worker);
		hb_schema_worker = NULL;
	}
	ua_bgworker_init(&bgw, "ua_schema_check_main", "upgrade_assist schema check",
					 BGW_NEVER_RESTART, ObjectIdGetDatum(dboid));
	old = MemoryContextSwitchTo(TopMemoryContext);
	if (!RegisterDynamicBackgroundWorker(&bgw, &hb_schema_worker))
	{
		hb_schema_worker = NULL;
		if (!hb_schema_start_failed)
			ereport(LOG,
					(errmsg("upgrade_assist heartbeat could not start its schema check worker"),
					 errhint("Raise max_worker_processes.")));
		hb_schema_start_failed = true;
	}
	else
		hb_schema_start_failed = false;
	MemoryContextSwitchTo(old);
}

/*
 * ua_schema_check_main
 *		Entry point of the schema check worker (main_arg: the database OID):
 *		one comparison of the published tables with the peer's, as the
 *		heartbeat's owner, into the heartbeat's slot; then it exits.  A
 *		failure is logged and leaves the previous result (schema_checked_at
 *		tells its age).
 */
void
ua_schema_check_main(Datum main_arg)
{
	Oid			dboid = DatumGetObjectId(main_arg);
	UaHeartbeat *slot = NULL;
	Oid			owner = InvalidOid;
	uint32		generation = 0;
	char		peer[NAMEDATALEN];
	char	   *volatile result = NULL;
	MemoryContext cxt = CurrentMemoryContext;

	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();

	LWLockAcquire(ua_hb_shared->lock, LW_SHARED);
	for (int i = 0; i < UA_HB_MAX_DATABASES; i++)
		if (ua_hb_shared->dbs[i].dboid == dboid)
			slot = &ua_hb_shared->dbs[i];
	if (slot != NULL && slot->configured && slot->enabled)
	{
		owner = slot->owner;
		generation = slot->generation;
		strlcpy(peer, slot->peer, sizeof(peer));
	}
	LWLockRelease(ua_hb_shared->lock);
	if (!OidIsValid(owner))
		proc_exit(0);

	BackgroundWorkerInitializeConnectionByOid(dboid, owner, 0);
	pgstat_report_appname("upgrade_assist schema check");

	PG_TRY();
	{
		if (ua_hb_xact_begin("comparing the replicated tables with the peer"))
		{
			char	   *diff = ua_preflight_schema_diff(peer,
														TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
																					UA_HB_SCHEMA_TIMEOUT_MS));

			result = MemoryContextStrdup(TopMemoryContext, diff);
		}
		ua_xact_end(cxt);
	}
	PG_CATCH();
	{
		ErrorData  *edata = ua_recover_from_error(cxt);

		ereport(LOG,
				(errmsg("upgrade_assist schema check could not compare with peer \"%s\": %s",
						peer, edata->message)));
	}
	PG_END_TRY();

	if (result != NULL)
	{
		/* A result for a peer that is no longer the heartbeat's is dropped. */
		LWLockAcquire(ua_hb_shared->lock, LW_EXCLUSIVE);
		if (slot->dboid == dboid && slot->generation == generation)
		{
			strlcpy(slot->schema, result, sizeof(slot->schema));
			slot->schema_checked_at = GetCurrentTimestamp();
		}
		LWLockRelease(ua_hb_shared->lock);
	}
	proc_exit(0);
}

/*
 * ua_heartbeat_worker_main
 *		Entry point; main_arg is the database OID.
 */
void
ua_heartbeat_worker_main(Datum main_arg)
{
	Oid			dboid = DatumGetObjectId(main_arg);
	Oid			owner;
	MemoryContext loop_cxt;
	TimestampTz next_beat;
	TimestampTz next_prune;
	TimestampTz next_schema;

	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();

	/* Claim the database's heartbeat; a duplicate or a stopped one leaves. */
	LWLockAcquire(ua_hb_shared->lock, LW_EXCLUSIVE);
	hb_slot = NULL;
	for (int i = 0; i < UA_HB_MAX_DATABASES; i++)
		if (ua_hb_shared->dbs[i].dboid == dboid)
			hb_slot = &ua_hb_shared->dbs[i];
	if (hb_slot == NULL || !hb_slot->configured || !hb_slot->enabled ||
		hb_slot->worker != NULL)
	{
		LWLockRelease(ua_hb_shared->lock);
		proc_exit(0);
	}
	hb_slot->worker = MyProc;
	hb_slot->worker_pid = MyProcPid;
	owner = hb_slot->owner;
	LWLockRelease(ua_hb_shared->lock);
	before_shmem_exit(ua_hb_detach, (Datum) 0);

	/* Runs as the role that started the heartbeat: its user mapping, its rights. */
	BackgroundWorkerInitializeConnectionByOid(dboid, owner, 0);
	pgstat_report_appname("upgrade_assist heartbeat");

	loop_cxt = AllocSetContextCreate(TopMemoryContext, "upgrade_assist heartbeat loop",
									 ALLOCSET_DEFAULT_SIZES);
	hb_generation = 0;
	hb_peer[0] = '\0';
	next_beat = GetCurrentTimestamp();
	next_prune = TimestampTzPlusMilliseconds(next_beat, UA_HB_PRUNE_MS);
	next_schema = next_beat;

	for (;;)
	{
		TimestampTz now;
		TimestampTz wake;
		int			events = WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH;
		long		timeout_ms;
		int			rc;

		MemoryContextReset(loop_cxt);
		MemoryContextSwitchTo(loop_cxt);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			/* A shorter schema check interval applies from now. */
			if (ua_schema_check_interval_ms > 0)
				next_schema = Min(next_schema,
								  TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
															  ua_schema_check_interval_ms));
		}
		if (!ua_hb_read_config())
			break;

		now = GetCurrentTimestamp();
		if (now >= next_beat)
		{
			if (!ua_hb_beat())
			{
				/* DROP EXTENSION: forget this heartbeat and leave. */
				ua_hb_forget(dboid);
				break;
			}
			next_beat = TimestampTzPlusMilliseconds(next_beat, hb_every_ms);
			now = GetCurrentTimestamp();
			if (next_beat <= now)
				next_beat = TimestampTzPlusMilliseconds(now, hb_every_ms);
		}
		if (now >= next_prune)
		{
			ua_hb_prune();
			next_prune = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), UA_HB_PRUNE_MS);
		}

		if (ua_schema_check_interval_ms > 0 && now >= next_schema)
		{
			ua_hb_schema_check_start(dboid);
			next_schema = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													  ua_schema_check_interval_ms);
		}
		else if (ua_schema_check_interval_ms == 0)
			next_schema = TimestampTzPlusMilliseconds(now, 1000);

		/* The connection: open, check for timeout, or send a look. */
		if (hb_phase == UA_HB_DISCONNECTED && now >= hb_next_connect)
			ua_hb_connect_begin();
		if (hb_phase == UA_HB_CONNECTING && now >= hb_connect_deadline)
			ua_hb_disconnect("timeout expired while connecting to the peer");
		if (hb_phase == UA_HB_IDLE && hb_pending_count > 0 && now >= hb_next_look)
			ua_hb_send_look();

		/* Sleep until the next thing to do, or the socket or latch wakes us. */
		wake = next_beat;
		if (hb_phase == UA_HB_DISCONNECTED)
			wake = ua_hb_min_time(wake, hb_next_connect);
		else if (hb_phase == UA_HB_CONNECTING)
		{
			wake = ua_hb_min_time(wake, hb_connect_deadline);
			events |= (hb_poll == PGRES_POLLING_READING) ?
				WL_SOCKET_READABLE : WL_SOCKET_WRITEABLE;
		}
		else if (hb_phase == UA_HB_BUSY)
			events |= WL_SOCKET_READABLE;
		else if (hb_pending_count > 0)
			wake = ua_hb_min_time(wake, hb_next_look);
		wake = ua_hb_min_time(wake, next_prune);
		wake = ua_hb_min_time(wake, next_schema);

		timeout_ms = ua_ms_until(wake);
		if (events & (WL_SOCKET_READABLE | WL_SOCKET_WRITEABLE))
			rc = WaitLatchOrSocket(MyLatch, events, PQsocket(hb_conn),
								   timeout_ms, ua_wait_event(UA_WE_HEARTBEAT));
		else
			rc = WaitLatch(MyLatch, events, timeout_ms, ua_wait_event(UA_WE_HEARTBEAT));
		if (rc & WL_LATCH_SET)
			ResetLatch(MyLatch);

		if (hb_phase == UA_HB_CONNECTING &&
			(rc & (WL_SOCKET_READABLE | WL_SOCKET_WRITEABLE)))
		{
			hb_poll = PQconnectPoll(hb_conn);
			if (hb_poll == PGRES_POLLING_OK)
				ua_hb_connect_done();
			else if (hb_poll == PGRES_POLLING_FAILED)
				ua_hb_disconnect(ua_hb_error_text(hb_conn, "could not connect to the peer"));
		}
		else if (hb_phase == UA_HB_BUSY && (rc & WL_SOCKET_READABLE))
		{
			if (!PQconsumeInput(hb_conn))
				ua_hb_disconnect(ua_hb_error_text(hb_conn, "connection to the peer lost"));
			else if (!PQisBusy(hb_conn))
				ua_hb_read_look();
		}
	}
	proc_exit(0);
}
