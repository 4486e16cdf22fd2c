/*-------------------------------------------------------------------------
 *
 * cutover_worker.c
 *	  The cutover worker: its entry point, the run over the steps
 *	  (cutover_steps.c), the pause points, the abort and the cleanup, and
 *	  the attempt's row in cutover_history.
 *
 * The worker is started by cutover() (cutover.c) in the caller's database
 * and as the caller's role, and writes through the fence.  It publishes each
 * step in the shared state (cutover.h), where the caller reads it.  A
 * failure before the point of no return aborts: the fence here is lifted,
 * the reverse subscription here, its slot and the publication on the peer
 * are dropped, and the forward direction, which was never touched, goes on
 * as before.  SIGTERM and an abort request from the caller cancel the step
 * that runs, so that the attempt aborts cleanly before the point of no
 * return or finishes after it.
 *
 * Locking: the shared state under its own LWLock, for short copies only.
 *
 * IDENTIFICATION
 *	  src/cutover_worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "cutover.h"
#include "cutover_command.h"
#include "fence.h"
#include "util.h"

/* The worker got SIGTERM: abort before the point of no return, then exit. */
static volatile sig_atomic_t ua_worker_terminated = false;

static void ua_cutover_step_finish(int i, const char *status, TimestampTz started,
								   const char *detail);
static void ua_cutover_pause_point(UaRun *run, int i);
static void ua_cutover_abort(UaRun *run, StringInfo notes);
static void ua_cutover_cleanup(UaRun *run, StringInfo notes);
static void ua_cutover_clients_moment(UaRun *run, const char *moment, StringInfo notes);
static void ua_cutover_clients_after_ponr(UaRun *run, StringInfo notes);

/* ---------------------------------------------------------------------------
 * History
 * ---------------------------------------------------------------------------
 */

/* Insert this attempt's row ('running'); returns its attempt number. */
static int64
ua_history_begin(UaRun *run, TimestampTz started)
{
	const char *vals[2];
	int64		attempt;

	vals[0] = run->peer;
	vals[1] = timestamptz_to_str(started);
	ua_xact_begin(NULL);
	/* Only one cutover runs in the cluster: any other 'running' row is dead. */
	ua_spi_exec("UPDATE upgrade_assist.cutover_history"
		   "   SET outcome = 'interrupted', finished_at = pg_catalog.now(),"
		   "       reason = 'the worker ended before finishing (server restart or crash)'"
		   " WHERE outcome = 'running'", 0, NULL, false);
	/* No sequence: sync_sequences would move it, and one runs at a time. */
	ua_spi_exec("INSERT INTO upgrade_assist.cutover_history (attempt, peer, started_at, outcome)"
		   " SELECT coalesce(max(attempt), 0) + 1, $1, $2::timestamptz, 'running'"
		   "   FROM upgrade_assist.cutover_history RETURNING attempt::text",
		   2, vals, false);
	attempt = strtoi64(ua_spi_getvalue(0, 1, run->cxt), NULL, 10);
	ua_xact_end(run->cxt);
	return attempt;
}

/* The steps as a jsonb array literal. */
static char *
ua_steps_json(void)
{
	StringInfoData buf;
	bool		first = true;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '[');
	for (int i = 0; i <= UA_ST_END; i++)
	{
		UaStepState *st = &ua_cutover_state->steps[i];

		if (st->status[0] == '\0')
			continue;
		if (!first)
			appendStringInfoString(&buf, ", ");
		first = false;
		appendStringInfoString(&buf, "{\"step\": ");
		escape_json(&buf, i < UA_NSTEPS ? ua_cutover_step_names[i] : ua_cutover_state->extra_step);
		appendStringInfoString(&buf, ", \"status\": ");
		escape_json(&buf, st->status);
		appendStringInfoString(&buf, ", \"started_at\": ");
		if (st->started_at)
			escape_json(&buf, timestamptz_to_str(st->started_at));
		else
			appendStringInfoString(&buf, "null");
		appendStringInfo(&buf, ", \"duration_ms\": %.3f, \"detail\": ",
						 st->duration_us / 1000.0);
		escape_json(&buf, st->detail);
		appendStringInfoChar(&buf, '}');
	}
	appendStringInfoChar(&buf, ']');
	return buf.data;
}

/* Write the attempt's outcome. */
static void
ua_history_end(UaRun *run, const char *outcome, const char *failed_step,
			   const char *reason)
{
	const char *vals[8];
	char		attempt[32];

	snprintf(attempt, sizeof(attempt), INT64_FORMAT, run->attempt);
	vals[0] = attempt;
	vals[1] = outcome;
	vals[2] = failed_step;
	vals[3] = reason;
	vals[4] = ua_cutover_state->fenced_at ? pstrdup(timestamptz_to_str(ua_cutover_state->fenced_at)) : NULL;
	vals[5] = ua_cutover_state->writable_at ? pstrdup(timestamptz_to_str(ua_cutover_state->writable_at)) : NULL;
	vals[6] = ua_steps_json();
	ua_xact_begin(NULL);
	ua_spi_exec("UPDATE upgrade_assist.cutover_history"
		   "   SET finished_at = pg_catalog.clock_timestamp(), outcome = $2,"
		   "       failed_step = $3, reason = $4,"
		   "       fenced_at = $5::timestamptz, peer_writable_at = $6::timestamptz,"
		   "       blackout = $6::timestamptz - $5::timestamptz, steps = $7::jsonb"
		   " WHERE attempt = $1::bigint",
		   7, vals, false);
	ua_xact_end(run->cxt);
}


/*
 * ua_cutover_step_finish
 *		Publish the end of step i (UA_ST_END for the abort/cleanup row) and
 *		wake the caller, which reports it.
 */
static void
ua_cutover_step_finish(int i, const char *status, TimestampTz started, const char *detail)
{
	UaStepState *st = &ua_cutover_state->steps[i];

	LWLockAcquire(ua_cutover_state->lock, LW_EXCLUSIVE);
	strlcpy(st->status, status, sizeof(st->status));
	st->started_at = started;
	st->duration_us = started ? GetCurrentTimestamp() - started : 0;
	strlcpy(st->detail, detail ? detail : "", sizeof(st->detail));
	if (ua_cutover_state->running == i)
		ua_cutover_state->running = -1;
	if (ua_cutover_state->caller)
		SetLatch(&ua_cutover_state->caller->procLatch);
	LWLockRelease(ua_cutover_state->lock);
}

/*
 * ua_cutover_pause_named
 *		Stop at the pause point name while upgrade_assist.cutover_pause_before
 *		names it, until cutover_resume(), an abort request or a termination;
 *		the time paused does not count against the timeout.  Returns
 *		whether it paused.  Inside a step (a name that is not a step's),
 *		cutover_progress shows "paused at <name>".
 */
bool
ua_cutover_pause_named(UaRun *run, const char *name)
{
	TimestampTz since;
	bool		go;
	bool		in_step = true;

	if (strcmp(ua_cutover_state->pause_before, name) != 0)
		return false;
	for (int i = 0; i < UA_NSTEPS; i++)
		if (strcmp(ua_cutover_step_names[i], name) == 0)
			in_step = false;
	since = GetCurrentTimestamp();
	LWLockAcquire(ua_cutover_state->lock, LW_EXCLUSIVE);
	ua_cutover_state->paused = true;
	ua_cutover_state->resume = false;
	strlcpy(ua_cutover_state->paused_at, in_step ? name : "",
			sizeof(ua_cutover_state->paused_at));
	LWLockRelease(ua_cutover_state->lock);
	ereport(LOG,
			(errmsg("upgrade_assist cutover paused %s \"%s\"", in_step ? "at" : "before step", name)));
	for (;;)
	{
		LWLockAcquire(ua_cutover_state->lock, LW_SHARED);
		go = ua_cutover_state->resume || ua_cutover_state->abort_requested || ua_worker_terminated;
		LWLockRelease(ua_cutover_state->lock);
		if (go)
			break;
		(void) ua_wait(WL_LATCH_SET | WL_TIMEOUT, 1000, UA_WE_CUTOVER);
	}
	LWLockAcquire(ua_cutover_state->lock, LW_EXCLUSIVE);
	ua_cutover_state->paused = false;
	ua_cutover_state->paused_at[0] = '\0';
	LWLockRelease(ua_cutover_state->lock);
	run->deadline += GetCurrentTimestamp() - since;
	return true;
}

/* Stop before step i when asked to (ua_cutover_pause_named). */
static void
ua_cutover_pause_point(UaRun *run, int i)
{
	(void) ua_cutover_pause_named(run, ua_cutover_step_names[i]);
}


/* ---------------------------------------------------------------------------
 * The worker
 * ---------------------------------------------------------------------------
 */

/* What a dry run says each later step would do. */
static const char *
ua_would_do(UaRun *run, int i)
{
	if (run->external && ua_external_would_do(run, i))
		return ua_external_would_do(run, i);
	switch (i)
	{
		case UA_ST_PREPARE:
			return run->reverse ?
				"plan the peer's sequences and move them forward; create publication " UA_REVERSE_NAME " (publishing nothing yet) and the reverse slot on the peer, and subscription " UA_REVERSE_NAME " here, enabled" :
				"plan the peer's sequences and move them forward";
		case UA_ST_FENCE:
			return "fence this cluster";
		case UA_ST_DRAIN:
			return psprintf("let write transactions finish for up to %d ms, then terminate them",
							ua_cutover_drain_ms);
		case UA_ST_MARKER:
			return "write a 'cutover' marker";
		case UA_ST_WAIT:
			return psprintf("wait until it is on the peer through subscription %s", run->fwd_sub);
		case UA_ST_SEQUENCES:
			return psprintf("move the peer's sequences past this side's values (margin " INT64_FORMAT ")",
							run->margin);
		case UA_ST_REVERSE:
			return run->reverse ?
				"make publication " UA_REVERSE_NAME " on the peer publish" :
				"nothing (reverse => false)";
		case UA_ST_REVERSE_RT:
			return run->reverse ? "write a marker on the peer and wait for it here" :
				"nothing (reverse => false)";
		case UA_ST_UNFENCE_PEER:
			return psprintf("record the attempt on the peer, disable and detach subscription %s there and lift its fence (point of no return); drop it after",
							run->fwd_sub);
	}
	return "";
}

/*
 * ua_cutover_run
 *		All steps, then the abort or the cleanup, then the history row.
 */
static void
ua_cutover_run(UaRun *run)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile int failed = -1;
	char	   *volatile reason = NULL;
	const char *outcome;
	StringInfoData extra;

	if (!run->dry_run)
	{
		run->attempt = ua_history_begin(run, ua_cutover_state->started_at);
		UA_CUTOVER_SET(attempt, run->attempt);
	}

	for (int i = 0; i < UA_NSTEPS; i++)
	{
		StringInfoData detail;
		TimestampTz started;

		if (failed >= 0)
		{
			ua_cutover_step_finish(i, "skipped", 0, NULL);
			continue;
		}
		if (run->dry_run && i > UA_ST_LAG)
		{
			ua_cutover_step_finish(i, "would do", 0, ua_would_do(run, i));
			continue;
		}
		if (!run->reverse && (i == UA_ST_REVERSE || i == UA_ST_REVERSE_RT))
		{
			ua_cutover_step_finish(i, "skipped", 0, "reverse => false");
			continue;
		}

		initStringInfo(&detail);
		started = GetCurrentTimestamp();
		UA_CUTOVER_SET(running, i);
		PG_TRY();
		{
			bool		abort_requested;

			ua_cutover_pause_point(run, i);
			LWLockAcquire(ua_cutover_state->lock, LW_SHARED);
			abort_requested = ua_cutover_state->abort_requested || ua_worker_terminated;
			LWLockRelease(ua_cutover_state->lock);
			if (abort_requested)
				ereport(ERROR,
						(errcode(ERRCODE_QUERY_CANCELED),
						 errmsg("canceling cutover")));
			ua_cutover_step_fns[i] (run, &detail);
		}
		PG_CATCH();
		{
			ErrorData  *edata = ua_recover_from_error(cxt);

			LWLockAcquire(ua_cutover_state->lock, LW_SHARED);
			if (ua_worker_terminated && !run->ponr_unknown)
				reason = pstrdup("the cutover worker was terminated (pg_terminate_backend or server shutdown)");
			else if (ua_cutover_state->abort_requested && !run->ponr_unknown)
				reason = psprintf("%s", ua_cutover_state->abort_cause);
			LWLockRelease(ua_cutover_state->lock);
			if (reason == NULL)
				reason = edata->detail ?
					psprintf("%s: %s", edata->message, edata->detail) :
					pstrdup(edata->message);
			failed = i;
		}
		PG_END_TRY();
		ua_cutover_step_finish(i, failed == i ? "failed" : "done", started,
					   failed == i ? reason : detail.data);
	}

	initStringInfo(&extra);
	if (failed >= 0 && run->ponr_unknown)
	{
		bool		started = ua_cutover_start_resolver();

		outcome = "unknown";
		strlcpy(ua_cutover_state->extra_step, "abort", sizeof(ua_cutover_state->extra_step));
		appendStringInfo(&extra,
						 "not aborted: the peer may have taken over; this cluster stays fenced; %s",
						 started ?
						 "the cutover resolver keeps asking the peer and settles the attempt (fence_status.waiting_for)" :
						 "the cutover resolver could not start (max_worker_processes): a restart starts it, or call cutover_resolve()");
		ua_fence_set_waiting(psprintf("cutover attempt " INT64_FORMAT " to peer \"%s\": no answer whether the peer took over before the timeout; %s",
									  run->attempt, run->peer,
									  started ? "the resolver keeps asking" : "the resolver could not start"));
		ua_cutover_step_finish(UA_ST_END, "skipped", 0, extra.data);
	}
	else if (failed >= 0)
	{
		TimestampTz started = GetCurrentTimestamp();

		outcome = "aborted";
		strlcpy(ua_cutover_state->extra_step, "abort", sizeof(ua_cutover_state->extra_step));
		ua_cutover_abort(run, &extra);
		ua_cutover_clients_moment(run, UA_MOMENT_ABORTED, &extra);
		ua_cutover_step_finish(UA_ST_END, "done", started, extra.data);
	}
	else if (!run->dry_run)
	{
		TimestampTz started = GetCurrentTimestamp();

		outcome = "succeeded";
		strlcpy(ua_cutover_state->extra_step, "cleanup", sizeof(ua_cutover_state->extra_step));
		ua_cutover_clients_after_ponr(run, &extra);
		ua_cutover_cleanup(run, &extra);
		ua_cutover_clients_moment(run, UA_MOMENT_DONE, &extra);
		ua_cutover_step_finish(UA_ST_END, "done", started, extra.data);
	}
	else
		outcome = "dry run";

	if (!run->dry_run)
		ua_history_end(run, outcome, failed >= 0 ? ua_cutover_step_names[failed] : NULL, reason);
	/* The worker's end of an attempt; "unknown" ends in the resolver. */
	if (!run->dry_run && strcmp(outcome, "unknown") != 0)
		ua_cutover_attempt_finished(run->attempt, outcome, NULL, run->peer);

	LWLockAcquire(ua_cutover_state->lock, LW_EXCLUSIVE);
	strlcpy(ua_cutover_state->outcome, outcome, sizeof(ua_cutover_state->outcome));
	LWLockRelease(ua_cutover_state->lock);
}

/*
 * ua_worker_finish
 *		Publish the end of the worker's run (failure: the error that ended
 *		it outside any step, else NULL), wake the caller, or free the slot
 *		when the caller is gone.
 */
static void
ua_worker_finish(const char *failure)
{
	LWLockAcquire(ua_cutover_state->lock, LW_EXCLUSIVE);
	if (failure)
	{
		strlcpy(ua_cutover_state->outcome, "failed", sizeof(ua_cutover_state->outcome));
		strlcpy(ua_cutover_state->failure, failure, sizeof(ua_cutover_state->failure));
	}
	ua_cutover_state->worker_done = true;
	ua_cutover_state->worker = NULL;
	ua_cutover_state->running = -1;
	if (ua_cutover_state->caller == NULL)
		ua_cutover_state->active = false;
	else
		SetLatch(&ua_cutover_state->caller->procLatch);
	LWLockRelease(ua_cutover_state->lock);
}

/*
 * ua_cutover_sigterm
 *		SIGTERM (pg_terminate_backend, server shutdown) does not kill the
 *		worker mid-step: it cancels what runs, like SIGINT, so that the
 *		attempt aborts cleanly before the point of no return (or finishes
 *		after it), and the worker then exits.
 */
static void
ua_cutover_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	ua_worker_terminated = true;
	QueryCancelPending = true;
	InterruptPending = true;
	SetLatch(MyLatch);
	errno = save_errno;
}

/*
 * ua_cutover_worker_main
 *		Entry point of the cutover worker (cutover() starts it by name).  Runs as the caller's role in the
 *		caller's database, writing through the fence.
 */
void
ua_cutover_worker_main(Datum main_arg pg_attribute_unused())
{
	UaRun		run;
	Oid			dboid;
	Oid			userid;
	MemoryContext cxt;

	pqsignal(SIGTERM, ua_cutover_sigterm);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();

	memset(&run, 0, sizeof(run));
	LWLockAcquire(ua_cutover_state->lock, LW_EXCLUSIVE);
	ua_cutover_state->worker = MyProc;
	ua_cutover_state->worker_pid = MyProcPid;
	dboid = ua_cutover_state->dboid;
	userid = ua_cutover_state->userid;
	strlcpy(run.peer, ua_cutover_state->peer, sizeof(run.peer));
	run.max_lag_ms = ua_cutover_state->max_lag_ms;
	run.margin = ua_cutover_state->margin;
	run.reverse = ua_cutover_state->reverse;
	run.dry_run = ua_cutover_state->dry_run;
	run.disconnect = ua_cutover_state->disconnect;
	run.external = ua_cutover_state->external;
	run.deadline = TimestampTzPlusMilliseconds(ua_cutover_state->started_at, ua_cutover_state->timeout_ms);
	LWLockRelease(ua_cutover_state->lock);

	BackgroundWorkerInitializeConnectionByOid(dboid, userid, 0);
	pgstat_report_appname("upgrade_assist cutover");
	ua_fence_exempt_session();

	cxt = AllocSetContextCreate(TopMemoryContext, "upgrade_assist cutover",
								ALLOCSET_DEFAULT_SIZES);
	run.cxt = cxt;
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		ua_cutover_run(&run);
	}
	PG_CATCH();
	{
		/* Outside any step (the history table): say so, then exit. */
		MemoryContextSwitchTo(cxt);
		ua_worker_finish(CopyErrorData()->message);
		PG_RE_THROW();
	}
	PG_END_TRY();
	ua_worker_finish(NULL);
}


/* ---------------------------------------------------------------------------
 * Abort and cleanup
 * ---------------------------------------------------------------------------
 */

/*
 * ua_drop_local_sub
 *		Drop the reverse subscription here without touching its slot (the
 *		slot is on the peer and dropped separately).
 */
static void
ua_drop_local_sub(UaRun *run)
{
	const char *vals[1] = {UA_REVERSE_NAME};

	ua_xact_begin(NULL);
	if (ua_spi_exec("SELECT 1 FROM pg_catalog.pg_subscription WHERE subname = $1"
			   "   AND subdbid = (SELECT oid FROM pg_catalog.pg_database"
			   "                   WHERE datname = pg_catalog.current_database())",
			   1, vals, true) > 0)
	{
		ua_spi_exec("ALTER SUBSCRIPTION " UA_REVERSE_NAME " DISABLE", 0, NULL, false);
		ua_spi_exec("ALTER SUBSCRIPTION " UA_REVERSE_NAME " SET (slot_name = NONE)", 0, NULL, false);
		ua_spi_exec("DROP SUBSCRIPTION " UA_REVERSE_NAME, 0, NULL, false);
	}
	ua_xact_end(run->cxt);
}

/*
 * ua_drop_peer_slot
 *		Drop the reverse slot on the peer, ending a walsender that still
 *		holds it; throws when the peer cannot be reached by deadline.
 */
static void
ua_drop_peer_slot(UaRun *run, TimestampTz deadline)
{
	const char *vals[1] = {run->slot_name};

	for (;;)
	{
		PGresult   *res;
		bool		gone;

		ua_cutover_remote_until(run,
					"SELECT pg_catalog.pg_terminate_backend(active_pid)"
					"  FROM pg_catalog.pg_replication_slots"
					" WHERE slot_name = $1 AND active_pid IS NOT NULL",
					1, vals, deadline);
		ua_cutover_remote_until(run,
					"SELECT count(pg_catalog.pg_drop_replication_slot(slot_name))"
					"  FROM pg_catalog.pg_replication_slots"
					" WHERE slot_name = $1 AND NOT active",
					1, vals, deadline);
		res = ua_cutover_remote_ext(run,
						"SELECT count(*) FROM pg_catalog.pg_replication_slots"
						" WHERE slot_name = $1", 1, vals, deadline, true);
		gone = strcmp(PQgetvalue(res, 0, 0), "0") == 0;
		PQclear(res);
		if (gone)
			return;
		if (GetCurrentTimestamp() >= deadline)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_IN_USE),
					 errmsg("replication slot \"%s\" on the peer stays in use", run->slot_name)));
		(void) ua_wait(WL_LATCH_SET | WL_TIMEOUT, 20, UA_WE_CUTOVER);
	}
}

/*
 * ua_cutover_drop_leftover_reverse
 *		Drop the reverse subscription here and its slot on the peer, left by
 *		an attempt that ended before its fence (a crash or an immediate
 *		shutdown of this cluster after prepare: no fence file names such an
 *		attempt, so no resolver settles it).  The checks made sure that the
 *		publication on the peer still publishes nothing, so the subscription
 *		never carried a change; prepare replaces the publication.
 */
void
ua_cutover_drop_leftover_reverse(UaRun *run, StringInfo detail)
{
	ua_drop_local_sub(run);
	ua_drop_peer_slot(run, run->deadline);
	appendStringInfo(detail, "dropped subscription %s here and slot %s on the peer,"
					 " left by an attempt interrupted before its fence; ",
					 UA_REVERSE_NAME, run->slot_name);
}

/*
 * ua_cutover_undo
 *		Run one undo action, noting its outcome in notes; never throws.
 */
static void
ua_cutover_undo(UaRun *run, StringInfo notes, const char *what,
		void (*action) (UaRun *run))
{
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		action(run);
		appendStringInfo(notes, "%s%s", notes->len ? "; " : "", what);
	}
	PG_CATCH();
	{
		ErrorData  *edata = ua_recover_from_error(cxt);

		appendStringInfo(notes, "%sFAILED to %s: %s", notes->len ? "; " : "",
						 what, edata->message);
	}
	PG_END_TRY();
}

static void
ua_cutover_undo_fence(UaRun *run pg_attribute_unused())
{
	(void) ua_fence_release("cutover abort");
}

static void
ua_cutover_undo_sub(UaRun *run)
{
	ua_drop_local_sub(run);
}

static void
ua_cutover_undo_slot(UaRun *run)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   UA_ABORT_REMOTE_MS);

	ua_drop_peer_slot(run, deadline);
}

static void
ua_cutover_undo_pub(UaRun *run)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   UA_ABORT_REMOTE_MS);

	ua_cutover_remote_exempt(run, deadline);
	ua_cutover_remote_until(run, "DROP PUBLICATION IF EXISTS " UA_REVERSE_NAME, 0, NULL, deadline);
}

/*
 * ua_cutover_abort
 *		Undo what this attempt did, this side first (so that it is writable
 *		again at once), then the peer.  Writes what it did to notes.
 */
static void
ua_cutover_abort(UaRun *run, StringInfo notes)
{
	HOLD_CANCEL_INTERRUPTS();
	QueryCancelPending = false;
	UA_CUTOVER_SET(aborting, true);

	if (run->did_fence)
		ua_cutover_undo(run, notes, "lift the fence here", ua_cutover_undo_fence);
	if (run->did_sub)
		ua_cutover_undo(run, notes, "drop subscription " UA_REVERSE_NAME " here", ua_cutover_undo_sub);
	if (run->did_slot)
		ua_cutover_undo(run, notes, psprintf("drop slot %s on the peer", run->slot_name),
				ua_cutover_undo_slot);
	if (run->did_pub)
		ua_cutover_undo(run, notes, "drop publication " UA_REVERSE_NAME " on the peer",
				ua_cutover_undo_pub);
	if (notes->len == 0)
		appendStringInfoString(notes, "nothing to undo");
	appendStringInfoString(notes, run->external ?
						   "; the external pipeline is the switch command's (moment 'aborted')" :
						   "; forward replication untouched");

	QueryCancelPending = false;
	RESUME_CANCEL_INTERRUPTS();
}

/*
 * ua_cleanup_drop_fwd_sub
 *		After the point of no return: drop the forward subscription on the
 *		peer, which the takeover disabled and detached from its slot (so the
 *		drop touches no slot).  Only that one: disabled and without a slot.
 */
static void
ua_cleanup_drop_fwd_sub(UaRun *run)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   UA_ABORT_REMOTE_MS);
	const char *vals[1] = {run->fwd_sub};
	PGresult   *res;
	bool		there;

	ua_cutover_remote_exempt(run, deadline);
	res = ua_cutover_remote_ext(run,
								"SELECT 1 FROM pg_catalog.pg_subscription s"
								"  JOIN pg_catalog.pg_database d ON d.oid = s.subdbid"
								" WHERE d.datname = pg_catalog.current_database()"
								"   AND s.subname = $1 AND NOT s.subenabled AND s.subslotname IS NULL",
								1, vals, deadline, true);
	there = PQntuples(res) > 0;
	PQclear(res);
	if (there)
		ua_cutover_remote_until(run, psprintf("DROP SUBSCRIPTION %s", quote_identifier(run->fwd_sub)),
								0, NULL, deadline);
}

/*
 * ua_cutover_cleanup
 *		After the point of no return: drop the detached forward subscription
 *		on the peer, then the old forward slot here once its walsender is
 *		gone.
 */
static void
ua_cutover_cleanup(UaRun *run, StringInfo notes)
{
	TimestampTz start;
	TimestampTz deadline;
	MemoryContext cxt = CurrentMemoryContext;
	const char *vals[1] = {run->fwd_slot};

	if (run->external)
	{
		ua_external_cleanup(run, notes);
		return;
	}
	ua_cutover_undo(run, notes, psprintf("drop the detached forward subscription %s on the peer", run->fwd_sub),
					ua_cleanup_drop_fwd_sub);
	appendStringInfoString(notes, "; ");

	start = GetCurrentTimestamp();
	deadline = TimestampTzPlusMilliseconds(start, UA_SLOT_DROP_MS);
	PG_TRY();
	{
		for (;;)
		{
			char	   *pid = NULL;
			bool		exists;

			ua_xact_begin(NULL);
			exists = ua_spi_exec("SELECT active_pid FROM pg_catalog.pg_replication_slots"
							" WHERE slot_name = $1", 1, vals, true) > 0;
			if (exists)
				pid = ua_spi_getvalue(0, 1, run->cxt);
			if (exists && pid == NULL)
				ua_spi_exec("SELECT pg_catalog.pg_drop_replication_slot($1)", 1, vals, false);
			else if (exists && ua_ms_since(start) > 1000)
			{
				/* The walsender outlived its subscriber: end it. */
				vals[0] = pid;
				ua_spi_exec("SELECT pg_catalog.pg_terminate_backend($1::int)", 1, vals, false);
				vals[0] = run->fwd_slot;
			}
			ua_xact_end(run->cxt);
			if (!exists || pid == NULL)
				break;
			if (GetCurrentTimestamp() >= deadline)
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_IN_USE),
						 errmsg("replication slot \"%s\" stays in use", run->fwd_slot)));
			(void) ua_wait(WL_LATCH_SET | WL_TIMEOUT, 10, UA_WE_CUTOVER);
		}
		appendStringInfo(notes, "dropped the old forward slot %s here", run->fwd_slot);
	}
	PG_CATCH();
	{
		ErrorData  *edata = ua_recover_from_error(cxt);

		appendStringInfo(notes, "could not drop the old forward slot %s here: %s; drop it with pg_drop_replication_slot()",
						 run->fwd_slot, edata->message);
	}
	PG_END_TRY();
}


/* ---------------------------------------------------------------------------
 * Moving the clients (cutover_command.c)
 * ---------------------------------------------------------------------------
 */

/*
 * ua_cutover_clients_moment
 *		Run the switch command for a moment after the steps ('aborted',
 *		'done'); a failure is noted, the attempt's outcome stays.  Never
 *		throws: cancels are held off here (the abort and the cleanup run
 *		the same way).
 */
static void
ua_cutover_clients_moment(UaRun *run, const char *moment, StringInfo notes)
{
	MemoryContext cxt = CurrentMemoryContext;
	char	   *failure = NULL;

	HOLD_CANCEL_INTERRUPTS();
	PG_TRY();
	{
		(void) ua_cutover_command_run(moment, run->attempt, run->peer, &failure);
	}
	PG_CATCH();
	{
		failure = psprintf("cutover_command at moment \"%s\" failed: %s", moment,
						   ua_recover_from_error(cxt)->message);
	}
	PG_END_TRY();
	if (failure)
		appendStringInfo(notes, "%sFAILED: %s", notes->len ? "; " : "", failure);
	QueryCancelPending = false;
	RESUME_CANCEL_INTERRUPTS();
}

/*
 * ua_cutover_clients_after_ponr
 *		Right after the point of no return: end this cluster's client
 *		sessions (disconnect => true; the caller of cutover() is kept), so
 *		that they reconnect and find the new primary, run the switch
 *		command's 'peer writable', and move the heartbeat to the peer.
 *		Failures are noted, never thrown.
 */
static void
ua_cutover_clients_after_ponr(UaRun *run, StringInfo notes)
{
	MemoryContext cxt = CurrentMemoryContext;

	if (run->disconnect)
	{
		volatile int keep_pid;

		LWLockAcquire(ua_cutover_state->lock, LW_SHARED);
		keep_pid = ua_cutover_state->caller ? ua_cutover_state->caller->pid : 0;
		LWLockRelease(ua_cutover_state->lock);
		HOLD_CANCEL_INTERRUPTS();
		PG_TRY();
		{
			StringInfoData detail;

			initStringInfo(&detail);
			ua_xact_begin(NULL);
			(void) ua_cutover_disconnect_clients(keep_pid, &detail);
			ua_xact_end(run->cxt);
			appendStringInfo(notes, "%s%s", notes->len ? "; " : "", detail.data);
		}
		PG_CATCH();
		{
			appendStringInfo(notes, "%sFAILED to end the client sessions: %s",
							 notes->len ? "; " : "", ua_recover_from_error(cxt)->message);
		}
		PG_END_TRY();
		QueryCancelPending = false;
		RESUME_CANCEL_INTERRUPTS();
	}
	ua_cutover_clients_moment(run, UA_MOMENT_PEER_WRITABLE, notes);

	/* The heartbeat follows: it runs on the new primary from now on. */
	HOLD_CANCEL_INTERRUPTS();
	PG_TRY();
	{
		ua_cutover_heartbeat_follow(run, notes);
	}
	PG_CATCH();
	{
		appendStringInfo(notes, "%sFAILED to move the heartbeat to the peer: %s",
						 notes->len ? "; " : "", ua_recover_from_error(cxt)->message);
	}
	PG_END_TRY();
	QueryCancelPending = false;
	RESUME_CANCEL_INTERRUPTS();
}
