/*-------------------------------------------------------------------------
 *
 * heartbeat.c
 *	  Heartbeat configuration, its launcher, and the sync_status view.
 *
 * heartbeat_start(peer, every) configures a heartbeat for the current
 * database; a worker of that database (heartbeat_worker.c) then commits a
 * marker of kind 'heartbeat' at that pace and confirms each on the peer.
 *
 * Where the configuration lives: in shared memory (UaHeartbeat) and
 * in the file UA_HB_FILE of the data directory, rewritten durably at every
 * change and read back by the postmaster at start.  Not in a table: a table
 * of the extension would be carried by a FOR ALL TABLES publication to the
 * peer, where its rows would collide with the peer's own configuration and
 * stop replication.  The consequence is that heartbeat_start and
 * heartbeat_stop take effect at once, not at commit.
 *
 * Who runs the workers: the heartbeat launcher, a background worker
 * connected to no database, exists while at least one heartbeat is enabled.
 * Once a second (or when woken) it starts a worker for every enabled
 * database that has none, after checking that the database still exists
 * (configuration of dropped databases is removed).  Workers that exit are
 * restarted by it, with a backoff when they keep failing.  After a server
 * restart or crash the postmaster registers the launcher again when the file
 * lists an enabled heartbeat.
 *
 * Locking: every field of UaHeartbeatShared (heartbeat.h) is read and
 * written under its lock, of the tranche "upgrade_assist heartbeat".  The file is written with the lock held
 * exclusively, so that it always matches shared memory.
 *
 * IDENTIFICATION
 *	  src/heartbeat.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/stat.h>
#include <unistd.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "foreign/foreign.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "heartbeat.h"
#include "remote.h"
#include "util.h"

/* The configuration file, relative to the data directory. */
#define UA_HB_FILE "upgrade_assist.heartbeat"
#define UA_HB_FILE_TMP "upgrade_assist.heartbeat.tmp"

/* GUC variables */
int			ua_lag_threshold_ms = 5000;
int			ua_heartbeat_retention_s = 3600;
int			ua_schema_check_interval_ms = 60000;

PG_FUNCTION_INFO_V1(heartbeat_start);
PG_FUNCTION_INFO_V1(heartbeat_stop);
PG_FUNCTION_INFO_V1(sync_status_rows);

/* Shared state; NULL unless the library was preloaded. */
UaHeartbeatShared *ua_hb_shared = NULL;

static bool ua_heartbeat_load(bool into_shmem);

/*
 * ua_heartbeat_init
 *		The heartbeat's settings; from _PG_init.
 */
void
ua_heartbeat_init(void)
{
	DefineCustomIntVariable("upgrade_assist.lag_threshold",
							"Age of the oldest unconfirmed heartbeat from which sync_status says 'lagging'.",
							NULL,
							&ua_lag_threshold_ms,
							5000, 1, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("upgrade_assist.heartbeat_retention",
							"Heartbeat markers older than this are deleted by the heartbeat worker.",
							"Markers of other kinds are kept.",
							&ua_heartbeat_retention_s,
							3600, 60, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("upgrade_assist.schema_check_interval",
							"How often the heartbeat compares the replicated tables' columns and keys with the peer's.",
							"In a worker of its own, never in the beat's path; 0 turns the comparison off.",
							&ua_schema_check_interval_ms,
							60000, 0, 24 * 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
}

/*
 * ua_heartbeat_shmem_request
 *		Ask for the shared state and its lock (shmem request hook).
 */
void
ua_heartbeat_shmem_request(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(UaHeartbeatShared)));
	RequestNamedLWLockTranche("upgrade_assist heartbeat", 1);
}

/*
 * ua_heartbeat_shmem_startup
 *		Attach to or create the shared state, filled from the configuration
 *		file when created; caller holds AddinShmemInitLock.
 */
void
ua_heartbeat_shmem_startup(void)
{
	bool		found;

	ua_hb_shared = ShmemInitStruct("upgrade_assist heartbeat",
								   MAXALIGN(sizeof(UaHeartbeatShared)), &found);
	if (!found)
	{
		memset(ua_hb_shared, 0, sizeof(UaHeartbeatShared));
		ua_hb_shared->lock = &(GetNamedLWLockTranche("upgrade_assist heartbeat"))->lock;
		(void) ua_heartbeat_load(true);
	}
}

/*
 * ua_hb_slot
 *		This database's heartbeat, its slot claimed when missing.  Caller
 *		holds the lock exclusively.  Throws 54000 when all slots are taken.
 */
static UaHeartbeat *
ua_hb_slot(void)
{
	UaHeartbeat *free_slot = NULL;

	for (int i = 0; i < UA_HB_MAX_DATABASES; i++)
	{
		UaHeartbeat *hb = &ua_hb_shared->dbs[i];

		if (hb->dboid == MyDatabaseId)
			return hb;
		if (hb->dboid == InvalidOid && free_slot == NULL)
			free_slot = hb;
	}
	if (free_slot == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("upgrade_assist is in use in too many databases"),
				 errdetail("At most %d databases per cluster can have a heartbeat.",
						   UA_HB_MAX_DATABASES)));
	memset(free_slot, 0, sizeof(*free_slot));
	free_slot->dboid = MyDatabaseId;
	return free_slot;
}

/*
 * ua_hb_write_file
 *		Rewrite the configuration file from shared memory, durably.  Caller
 *		holds the lock exclusively.  Throws on I/O errors (before the
 *		rename, so that the old file stays whole).
 */
static void
ua_hb_write_file(void)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "# upgrade_assist heartbeats: dboid owner every_ms enabled peer\n");
	for (int i = 0; i < UA_HB_MAX_DATABASES; i++)
	{
		UaHeartbeat *slot = &ua_hb_shared->dbs[i];

		if (slot->dboid == InvalidOid || !slot->configured)
			continue;
		appendStringInfo(&buf, "%u %u " INT64_FORMAT " %d %s\n",
						 slot->dboid, slot->owner, slot->every_ms,
						 slot->enabled ? 1 : 0, slot->peer);
	}

	ua_write_file_durably(UA_HB_FILE, UA_HB_FILE_TMP, buf.data, buf.len);
	pfree(buf.data);
}

/*
 * ua_heartbeat_load
 *		Read the configuration file.  With into_shmem, put its entries into
 *		shared memory (the postmaster does this when it creates shared
 *		memory); without, only look.  Returns whether some heartbeat is
 *		enabled.  The data directory is the working directory.  A malformed
 *		line is skipped with a warning.
 */
static bool
ua_heartbeat_load(bool into_shmem)
{
	FILE	   *f = AllocateFile(UA_HB_FILE, "r");
	char		line[NAMEDATALEN + 128];
	bool		any_enabled = false;

	if (f == NULL)
	{
		if (errno != ENOENT)
			ereport(LOG,
					(errcode_for_file_access(),
					 errmsg("could not read file \"%s\": %m", UA_HB_FILE)));
		return false;
	}
	while (fgets(line, sizeof(line), f) != NULL)
	{
		unsigned int dboid;
		unsigned int owner;
		long long	every;
		int			enabled;
		int			consumed = 0;
		char	   *peer;
		UaHeartbeat *slot = NULL;

		if (line[0] == '#' || line[0] == '\n')
			continue;
		if (sscanf(line, "%u %u %lld %d %n", &dboid, &owner, &every, &enabled,
				   &consumed) != 4 || consumed == 0 || dboid == InvalidOid ||
			every <= 0)
		{
			ereport(WARNING,
					(errmsg("skipping malformed line in \"%s\"", UA_HB_FILE)));
			continue;
		}
		peer = line + consumed;
		peer[strcspn(peer, "\n")] = '\0';
		if (enabled)
			any_enabled = true;
		if (!into_shmem)
			continue;

		for (int i = 0; i < UA_HB_MAX_DATABASES && slot == NULL; i++)
			if (ua_hb_shared->dbs[i].dboid == InvalidOid)
				slot = &ua_hb_shared->dbs[i];
		if (slot == NULL)
			break;
		memset(slot, 0, sizeof(*slot));
		slot->dboid = dboid;
		slot->configured = true;
		slot->enabled = (enabled != 0);
		slot->owner = owner;
		slot->every_ms = every;
		strlcpy(slot->peer, peer, sizeof(slot->peer));
	}
	FreeFile(f);
	return any_enabled;
}

/*
 * ua_hb_fill_launcher
 *		Describe the launcher worker.
 */
static void
ua_hb_fill_launcher(BackgroundWorker *bgw)
{
	ua_bgworker_init(bgw, "ua_heartbeat_launcher_main",
					 "upgrade_assist heartbeat launcher", 5, (Datum) 0);
	/* Also registered by the postmaster, which wants no notification. */
	bgw->bgw_notify_pid = 0;
}

/*
 * ua_heartbeat_register_launcher
 *		From _PG_init in the postmaster: register the launcher when the
 *		configuration file lists an enabled heartbeat, so that heartbeats
 *		come back by themselves after a restart.
 */
void
ua_heartbeat_register_launcher(void)
{
	BackgroundWorker bgw;

	if (!ua_heartbeat_load(false))
		return;
	ua_hb_fill_launcher(&bgw);
	RegisterBackgroundWorker(&bgw);
}

/*
 * ua_hb_wake_launcher
 *		Make sure a launcher runs and looks at the configuration now.
 *		Throws 53000 when no worker slot is free.
 */
static void
ua_hb_wake_launcher(void)
{
	PGPROC	   *launcher;
	BackgroundWorker bgw;
	BackgroundWorkerHandle *handle;

	LWLockAcquire(ua_hb_shared->lock, LW_SHARED);
	launcher = ua_hb_shared->launcher;
	LWLockRelease(ua_hb_shared->lock);
	if (launcher != NULL)
	{
		SetLatch(&launcher->procLatch);
		return;
	}

	/* A launcher that appears meanwhile makes this one exit at once. */
	ua_hb_fill_launcher(&bgw);
	if (!RegisterDynamicBackgroundWorker(&bgw, &handle))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("could not start the upgrade_assist heartbeat launcher"),
				 errhint("Increase max_worker_processes.")));
}

/*
 * heartbeat_start(peer text, every interval) returns void
 *		Configure (or reconfigure) this database's heartbeat and make sure a
 *		worker runs it.  Takes effect at once, whatever becomes of the
 *		caller's transaction.
 */
Datum
heartbeat_start(PG_FUNCTION_ARGS)
{
	char	   *peer = PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0));
	int64		every_ms;
	UaHeartbeat *slot;
	PGPROC	   *worker;

	ua_require_preloaded(ua_hb_shared);
	every_ms = ua_interval_to_ms(PG_ARGISNULL(1) ? NULL : PG_GETARG_INTERVAL_P(1),
								 "every");
	if (every_ms < 10 || every_ms > 3600 * 1000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("every must be between 10 milliseconds and 1 hour")));
	if (peer == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("peer must not be null")));
	if (strlen(peer) >= NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("peer name \"%s\" is too long", peer)));

	/*
	 * Check now what the worker will check: the peer exists, is ours, and
	 * this role may use it (mapping, password rule).  Connecting is the
	 * worker's business.
	 */
	ua_peer_check(peer);
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot start a heartbeat during recovery")));

	LWLockAcquire(ua_hb_shared->lock, LW_EXCLUSIVE);
	slot = ua_hb_slot();
	slot->configured = true;
	slot->enabled = true;
	slot->owner = GetUserId();
	slot->every_ms = every_ms;
	if (strcmp(slot->peer, peer) != 0)
	{
		/* Another peer: what was measured no longer applies. */
		strlcpy(slot->peer, peer, sizeof(slot->peer));
		slot->last_written_seq = 0;
		slot->last_written_at = 0;
		slot->last_confirmed_seq = 0;
		slot->last_confirmed_at = 0;
		slot->oldest_unconfirmed_at = 0;
		slot->last_latency_us = slot->p50_us = slot->p99_us = 0;
		slot->samples = 0;
		slot->connected = false;
		slot->last_error[0] = '\0';
		slot->last_error_at = 0;
		slot->schema[0] = '\0';
		slot->schema_checked_at = 0;
	}
	slot->quick_failures = 0;
	slot->generation++;
	worker = slot->worker;
	ua_hb_write_file();
	LWLockRelease(ua_hb_shared->lock);

	if (worker != NULL)
		SetLatch(&worker->procLatch);
	ua_hb_wake_launcher();
	PG_RETURN_VOID();
}

/*
 * heartbeat_stop() returns boolean
 *		Stop this database's heartbeat; returns whether one was enabled.  The
 *		worker exits at its next wake-up, which this call brings forward.
 */
Datum
heartbeat_stop(PG_FUNCTION_ARGS)
{
	UaHeartbeat *slot;
	PGPROC	   *worker;
	bool		was_enabled;

	ua_require_preloaded(ua_hb_shared);
	LWLockAcquire(ua_hb_shared->lock, LW_EXCLUSIVE);
	slot = ua_hb_slot();
	was_enabled = slot->configured && slot->enabled;
	worker = slot->worker;
	if (was_enabled)
	{
		slot->enabled = false;
		slot->generation++;
		ua_hb_write_file();
	}
	LWLockRelease(ua_hb_shared->lock);

	if (worker != NULL)
		SetLatch(&worker->procLatch);
	PG_RETURN_BOOL(was_enabled);
}

/*
 * ua_hb_forget
 *		Remove the heartbeat configuration of a database (dropped database,
 *		or the extension was dropped there).  Takes the lock.
 */
void
ua_hb_forget(Oid dboid)
{
	LWLockAcquire(ua_hb_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < UA_HB_MAX_DATABASES; i++)
	{
		UaHeartbeat *slot = &ua_hb_shared->dbs[i];

		if (slot->dboid == dboid && slot->configured)
		{
			slot->configured = false;
			slot->enabled = false;
			slot->generation++;
			PG_TRY();
			{
				ua_hb_write_file();
			}
			PG_CATCH();
			{
				LWLockRelease(ua_hb_shared->lock);
				PG_RE_THROW();
			}
			PG_END_TRY();
		}
	}
	LWLockRelease(ua_hb_shared->lock);
}

/*
 * ua_hb_interval
 *		An interval datum of us microseconds.
 */
static Datum
ua_hb_interval(int64 us)
{
	Interval   *iv = (Interval *) palloc0(sizeof(Interval));

	iv->time = us;
	return IntervalPGetDatum(iv);
}

/*
 * sync_status_rows() returns setof record
 *		One row per configured heartbeat of the cluster, from shared memory
 *		only: reading it costs the peer nothing.  Behind the view sync_status.
 */
Datum
sync_status_rows(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Tuplestorestate *store;
	UaHeartbeat *copy;
	int			n = 0;
	TimestampTz now = GetCurrentTimestamp();

	ua_require_preloaded(ua_hb_shared);
	store = ua_materialize_srf(fcinfo, &tupdesc);

	/* Copy under the lock, build rows after. */
	copy = palloc(sizeof(UaHeartbeat) * UA_HB_MAX_DATABASES);
	LWLockAcquire(ua_hb_shared->lock, LW_SHARED);
	for (int i = 0; i < UA_HB_MAX_DATABASES; i++)
		if (ua_hb_shared->dbs[i].dboid != InvalidOid && ua_hb_shared->dbs[i].configured)
			copy[n++] = ua_hb_shared->dbs[i];
	LWLockRelease(ua_hb_shared->lock);

	for (int i = 0; i < n; i++)
	{
		UaHeartbeat *hb = &copy[i];
		Datum		values[18];
		bool		nulls[18] = {false};
		char	   *datname = get_database_name(copy[i].dboid);
		const char *state;
		int64		lag_us = 0;

		if (hb->oldest_unconfirmed_at != 0 && now > hb->oldest_unconfirmed_at)
			lag_us = now - hb->oldest_unconfirmed_at;

		if (!hb->enabled)
			state = "stopped";
		else if (hb->worker == NULL)
			state = "starting";
		else if (!hb->connected && hb->last_error[0] != '\0')
			state = "unreachable";
		else if (lag_us > (int64) ua_lag_threshold_ms * 1000)
			state = "lagging";
		else if (hb->last_confirmed_seq == 0)
			state = "starting";
		else
			state = "in sync";

		values[0] = datname ? CStringGetTextDatum(datname) : (Datum) 0;
		nulls[0] = (datname == NULL);
		values[1] = CStringGetTextDatum(hb->peer);
		values[2] = CStringGetTextDatum(state);
		values[3] = Int64GetDatum(hb->last_written_seq);
		nulls[3] = (hb->last_written_seq == 0);
		values[4] = TimestampTzGetDatum(hb->last_written_at);
		nulls[4] = (hb->last_written_at == 0);
		values[5] = Int64GetDatum(hb->last_confirmed_seq);
		nulls[5] = (hb->last_confirmed_seq == 0);
		values[6] = TimestampTzGetDatum(hb->last_confirmed_at);
		nulls[6] = (hb->last_confirmed_at == 0);
		values[7] = ua_hb_interval(lag_us);
		nulls[7] = !hb->enabled;
		values[8] = ua_hb_interval(hb->last_latency_us);
		nulls[8] = (hb->samples == 0);
		values[9] = ua_hb_interval(hb->p50_us);
		nulls[9] = (hb->samples == 0);
		values[10] = ua_hb_interval(hb->p99_us);
		nulls[10] = (hb->samples == 0);
		values[11] = Int32GetDatum(hb->samples);
		values[12] = Int32GetDatum(hb->worker_pid);
		nulls[12] = (hb->worker == NULL);
		values[13] = CStringGetTextDatum(hb->last_error);
		nulls[13] = (hb->last_error[0] == '\0');
		values[14] = TimestampTzGetDatum(hb->last_error_at);
		nulls[14] = (hb->last_error_at == 0);
		values[15] = ua_hb_interval(hb->every_ms * 1000);
		values[16] = CStringGetTextDatum(hb->schema);
		nulls[16] = (hb->schema[0] == '\0');
		values[17] = TimestampTzGetDatum(hb->schema_checked_at);
		nulls[17] = (hb->schema_checked_at == 0);
		tuplestore_putvalues(store, tupdesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * ua_hb_database_exists
 *		Does the database still exist?  Called by the launcher, outside any
 *		transaction.
 */
static bool
ua_hb_database_exists(Oid dboid)
{
	bool		exists;

	StartTransactionCommand();
	exists = SearchSysCacheExists1(DATABASEOID, ObjectIdGetDatum(dboid));
	CommitTransactionCommand();
	return exists;
}

/*
 * ua_hb_start_worker
 *		Register the heartbeat worker of a database, without waiting for it.
 */
static bool
ua_hb_start_worker(Oid dboid)
{
	BackgroundWorker bgw;
	BackgroundWorkerHandle *handle;

	/* BGW_NEVER_RESTART: the launcher restarts it */
	ua_bgworker_init(&bgw, "ua_heartbeat_worker_main", "upgrade_assist heartbeat",
					 BGW_NEVER_RESTART, ObjectIdGetDatum(dboid));
	snprintf(bgw.bgw_name, BGW_MAXLEN,
			 "upgrade_assist heartbeat for database %u", dboid);
	return RegisterDynamicBackgroundWorker(&bgw, &handle);
}

/*
 * ua_hb_launcher_detach
 *		before_shmem_exit callback of the launcher.
 */
static void
ua_hb_launcher_detach(int code pg_attribute_unused(), Datum arg pg_attribute_unused())
{
	LWLockAcquire(ua_hb_shared->lock, LW_EXCLUSIVE);
	if (ua_hb_shared->launcher == MyProc)
		ua_hb_shared->launcher = NULL;
	LWLockRelease(ua_hb_shared->lock);
}

/*
 * ua_heartbeat_launcher_main
 *		Entry point of the heartbeat launcher.
 */
void
ua_heartbeat_launcher_main(Datum main_arg pg_attribute_unused())
{
	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	/* No database: the launcher reads only shared catalogs. */
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	LWLockAcquire(ua_hb_shared->lock, LW_EXCLUSIVE);
	if (ua_hb_shared->launcher != NULL)
	{
		LWLockRelease(ua_hb_shared->lock);
		proc_exit(0);
	}
	ua_hb_shared->launcher = MyProc;
	LWLockRelease(ua_hb_shared->lock);
	before_shmem_exit(ua_hb_launcher_detach, (Datum) 0);

	for (;;)
	{
		Oid			need[UA_HB_MAX_DATABASES];
		int			nneed = 0;
		bool		any = false;
		TimestampTz now = GetCurrentTimestamp();

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		/*
		 * Which enabled heartbeats have no worker?  A worker asked for less
		 * than 10 s ago that has not shown up yet is still starting; one that
		 * keeps failing is retried after 1, 2, 4 ... up to 60 s.
		 */
		LWLockAcquire(ua_hb_shared->lock, LW_EXCLUSIVE);
		for (int i = 0; i < UA_HB_MAX_DATABASES; i++)
		{
			UaHeartbeat *hb = &ua_hb_shared->dbs[i];
			int64		backoff_ms;

			if (ua_hb_shared->dbs[i].dboid == InvalidOid || !hb->configured ||
				!hb->enabled)
				continue;
			any = true;
			if (hb->worker != NULL)
				continue;
			backoff_ms = (hb->quick_failures == 0) ? 0 :
				Min((int64) 1000 << Min(hb->quick_failures - 1, 6), 60000);
			if (hb->start_requested_at != 0 &&
				!TimestampDifferenceExceeds(hb->start_requested_at, now,
											Max(backoff_ms, 1000)))
				continue;
			hb->start_requested_at = now;
			need[nneed++] = ua_hb_shared->dbs[i].dboid;
		}
		if (!any)
		{
			/* Nothing to run: leave (exit code 0, so not restarted). */
			ua_hb_shared->launcher = NULL;
			LWLockRelease(ua_hb_shared->lock);
			proc_exit(0);
		}
		LWLockRelease(ua_hb_shared->lock);

		for (int i = 0; i < nneed; i++)
		{
			if (!ua_hb_database_exists(need[i]))
			{
				ereport(LOG,
						(errmsg("upgrade_assist: forgetting the heartbeat of dropped database %u",
								need[i])));
				ua_hb_forget(need[i]);
				continue;
			}
			if (!ua_hb_start_worker(need[i]))
				ereport(LOG,
						(errmsg("upgrade_assist: could not start the heartbeat worker of database %u",
								need[i]),
						 errhint("Increase max_worker_processes.")));
		}

		(void) ua_wait(WL_LATCH_SET | WL_TIMEOUT, 1000L, UA_WE_HEARTBEAT);
	}
}
