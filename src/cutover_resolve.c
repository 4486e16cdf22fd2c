/*-------------------------------------------------------------------------
 *
 * cutover_resolve.c
 *	  Settling a cutover attempt whose outcome this cluster does not know:
 *	  the question to the peer, the decision, the resolver background
 *	  worker (after the cutover's timeout, and at startup after a crash),
 *	  cutover_resolve() for the DBA, and the one function every path that
 *	  ends an attempt goes through (ua_cutover_attempt_finished).
 *
 * The record.  The peer's cutover_takeover() writes a 'committed' row of
 * upgrade_assist.cutover_attempt (origin = this cluster's system
 * identifier, attempt) inside the takeover transaction, holding a
 * transaction-level advisory lock of that attempt until it commits.  The
 * question, cutover_attempt_outcome() on the peer, takes the same lock (so
 * it waits for a takeover in flight), then answers from the row; without a
 * row it writes the tombstone 'not committed', and a takeover of that
 * attempt arriving later refuses.  So an answer never goes stale.
 *
 * The decision (docs/recovery.md):
 *	committed, peer unfenced: succeeded; drop the detached forward
 *		subscription on the peer and the old forward slot here; this side
 *		stays fenced (it is the standby now).
 *	committed, peer still fenced: the peer crashed between its commit and
 *		its fence lift; it lifts the fence itself at restart; ask again.
 *	not committed, peer fenced: aborted; lift the fence here, drop what the
 *		reverse direction had (subscription here, slot and publication on
 *		the peer); the tombstone stays.
 *	not committed, peer unfenced: someone unfenced the peer by hand; stay
 *		fenced, raise an alarm (log, fence_status.waiting_for), ask again.
 *	no answer: stay fenced, say why in fence_status, ask again.
 *
 * The peer side.  cutover_takeover() notes the takeover in the fence file
 * before it commits; after a crash between that commit and the fence lift,
 * the resolver at startup finds the note, sees the committed record and
 * lifts the fence (else it drops the note: the fence stays).
 *
 * Locking: the shared states of the fence and the cutover under their own
 * LWLocks, for short copies only.  Every settling action is idempotent (IF
 * EXISTS, guarded updates), so two settlers at once (the resolver and a
 * DBA) do no harm; the resolver runs once per cluster (a pid in the fence's
 * shared state).
 *
 * IDENTIFICATION
 *	  src/cutover_resolve.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "cutover.h"
#include "cutover_command.h"
#include "fence.h"
#include "marker.h"
#include "remote.h"
#include "util.h"

PG_FUNCTION_INFO_V1(cutover_resolve);

/* The resolver's back-off between two questions, bounds in ms. */
#define UA_RESOLVE_BACKOFF_MIN_MS 500
#define UA_RESOLVE_BACKOFF_MAX_MS 5000

/* ---------------------------------------------------------------------------
 * Local statements, from a worker (own transaction) or a backend (its own)
 * ---------------------------------------------------------------------------
 */

typedef struct UaLocal
{
	bool		own;			/* we started the transaction */
	MemoryContext cxt;
} UaLocal;

static void
ua_local_begin(UaLocal *l)
{
	l->cxt = CurrentMemoryContext;
	l->own = !IsTransactionState();
	if (l->own)
		ua_xact_begin(NULL);
	else if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}

static void
ua_local_end(UaLocal *l)
{
	if (l->own)
		ua_xact_end(l->cxt);
	else
	{
		SPI_finish();
		MemoryContextSwitchTo(l->cxt);
	}
}

/* One statement on the peer by deadline, in a transaction for the lookup. */
static PGresult *
ua_res_remote(const char *peer, const char *sql, int nparams,
			  const char *const *values, TimestampTz deadline)
{
	MemoryContext cxt = CurrentMemoryContext;
	bool		own = !IsTransactionState();
	PGresult   *res;

	if (own)
	{
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
	}
	res = ua_peer_query_ext(peer, sql, nparams, values, deadline, true);
	if (own)
		CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);
	return res;
}

static void
ua_res_remote_void(const char *peer, const char *sql, int nparams,
				   const char *const *values, TimestampTz deadline)
{
	PQclear(ua_res_remote(peer, sql, nparams, values, deadline));
}

/*
 * ua_res_try
 *		Run action(arg); true when it returned, false (message in *error)
 *		when it threw.  In a backend's transaction the action runs in a
 *		subtransaction; in a worker outside one, whatever it opened is
 *		aborted.  Cancel and termination are errors like any other here:
 *		the caller checks for interrupts between tries.
 */
static bool
ua_res_try(void (*action) (void *arg), void *arg, char **error)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	bool		sub = IsTransactionState();
	volatile bool ok = true;

	if (sub)
		BeginInternalSubTransaction(NULL);
	PG_TRY();
	{
		action(arg);
		if (sub)
		{
			ReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(cxt);
			CurrentResourceOwner = owner;
		}
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		if (sub)
		{
			RollbackAndReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(cxt);
			CurrentResourceOwner = owner;
		}
		else
		{
			AbortOutOfAnyTransaction();
			MemoryContextSwitchTo(cxt);
		}
		if (error)
			*error = edata->detail ?
				psprintf("%s: %s", edata->message, edata->detail) :
				pstrdup(edata->message);
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

/* ---------------------------------------------------------------------------
 * The question
 * ---------------------------------------------------------------------------
 */

typedef struct UaAskArgs
{
	const char *peer;
	int64		attempt;
	TimestampTz deadline;
	UaAttemptAnswer *out;
} UaAskArgs;

static void
ua_ask_action(void *p)
{
	UaAskArgs  *a = (UaAskArgs *) p;
	char		origin[32];
	char		attempt[32];
	const char *vals[2] = {origin, attempt};
	PGresult   *res;
	bool		own = !IsTransactionState();

	snprintf(origin, sizeof(origin), INT64_FORMAT, ua_origin());
	snprintf(attempt, sizeof(attempt), INT64_FORMAT, a->attempt);

	/* A fresh connection: a cached one may be the one that was lost. */
	if (own)
		StartTransactionCommand();
	ua_peer_forget(a->peer);
	if (own)
		CommitTransactionCommand();
	MemoryContextSwitchTo(a->out->cxt);

	/* The tombstone is a write on a fenced peer. */
	ua_res_remote_void(a->peer, "SELECT upgrade_assist.fence_exempt_session()",
					   0, NULL, a->deadline);
	res = ua_res_remote(a->peer,
						"SELECT committed, fenced, forward_subscription, forward_slot"
						"  FROM upgrade_assist.cutover_attempt_outcome($1::bigint, $2::bigint)",
						2, vals, a->deadline);
	if (PQntuples(res) != 1)
	{
		PQclear(res);
		elog(ERROR, "cutover_attempt_outcome() on peer \"%s\" returned no row", a->peer);
	}
	if (PQgetvalue(res, 0, 0)[0] == 't')
		a->out->answer = PQgetvalue(res, 0, 1)[0] == 't' ?
			UA_ANS_COMMITTED_FENCED : UA_ANS_COMMITTED;
	else
		a->out->answer = PQgetvalue(res, 0, 1)[0] == 't' ?
			UA_ANS_NOT_COMMITTED : UA_ANS_PEER_UNFENCED;
	a->out->fwd_sub = PQgetisnull(res, 0, 2) ? NULL :
		MemoryContextStrdup(a->out->cxt, PQgetvalue(res, 0, 2));
	a->out->fwd_slot = PQgetisnull(res, 0, 3) ? NULL :
		MemoryContextStrdup(a->out->cxt, PQgetvalue(res, 0, 3));
	PQclear(res);
}

/*
 * ua_attempt_ask
 *		Ask peer, on a fresh connection and within timeout_ms, whether this
 *		cluster's attempt committed its takeover there.  Never throws: no
 *		answer is UA_ANS_NONE with out->error saying why.  out->cxt is
 *		where the strings of the answer go.
 */
void
ua_attempt_ask(const char *peer, int64 attempt, int64 timeout_ms, UaAttemptAnswer *out)
{
	UaAskArgs	a;
	char	   *error = NULL;

	a.peer = peer;
	a.attempt = attempt;
	a.deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	a.out = out;
	out->answer = UA_ANS_NONE;
	out->fwd_sub = out->fwd_slot = NULL;
	out->error = NULL;
	if (!out->cxt)
		out->cxt = CurrentMemoryContext;
	if (!ua_res_try(ua_ask_action, &a, &error))
	{
		out->answer = UA_ANS_NONE;
		out->error = MemoryContextStrdup(out->cxt, error ? error : "unknown error");
	}
}

/* What an answer means, for details and logs. */
const char *
ua_attempt_answer_text(const UaAttemptAnswer *ans)
{
	switch (ans->answer)
	{
		case UA_ANS_COMMITTED:
			return "the peer committed the takeover and is unfenced";
		case UA_ANS_COMMITTED_FENCED:
			return "the peer committed the takeover but is still fenced (it lifts its fence at its restart)";
		case UA_ANS_NOT_COMMITTED:
			return "the takeover did not commit on the peer (tombstone written; a late takeover refuses)";
		case UA_ANS_PEER_UNFENCED:
			return "ALARM: the takeover did not commit on the peer, yet the peer is unfenced (unfenced by hand?)";
		case UA_ANS_NONE:
			break;
	}
	return psprintf("no answer from the peer: %s", ans->error ? ans->error : "?");
}

/* ---------------------------------------------------------------------------
 * Settling
 * ---------------------------------------------------------------------------
 */

/*
 * ua_cutover_attempt_finished
 *		Every path that ends an attempt comes here once the outcome is known
 *		and recorded in cutover_history: the worker's end, the resolver
 *		after the timeout or at restart, cutover_resolve().  outcome is
 *		"succeeded" or "aborted"; resolution says who settled it (NULL: the
 *		worker, in the run).  The fence file forgets the attempt (after
 *		"succeeded" the fence stays: this side is the standby; "aborted"
 *		lifted it already).  Never throws.
 */
void
ua_cutover_attempt_finished(int64 attempt, const char *outcome, const char *resolution,
							const char *peer)
{
	MemoryContext cxt = CurrentMemoryContext;
	char	   *volatile error = NULL;

	PG_TRY();
	{
		ua_fence_forget_attempt(attempt);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		error = edata->message;
	}
	PG_END_TRY();
	if (error)
		ereport(WARNING,
				(errmsg("upgrade_assist cutover attempt " INT64_FORMAT ": the fence file still names it: %s",
						attempt, error),
				 errhint("A restart asks the peer again and settles it the same way.")));

	/*
	 * Switch command moment 'done' (outcome "succeeded") / 'aborted'
	 * (outcome "aborted") for an attempt settled outside its worker (the
	 * worker runs them itself, in its run, with its notes), so that a paused
	 * pooler is resumed: upgrade_assist.cutover_command
	 * (src/cutover_command.c).  A failure is logged, never thrown.
	 */
	if (resolution != NULL && peer != NULL)
	{
		char	   *volatile failure = NULL;

		PG_TRY();
		{
			char	   *f = NULL;

			(void) ua_cutover_command_run(strcmp(outcome, "succeeded") == 0 ?
										  UA_MOMENT_DONE : UA_MOMENT_ABORTED,
										  attempt, peer, &f);
			failure = f;
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			MemoryContextSwitchTo(cxt);
			edata = CopyErrorData();
			FlushErrorState();
			failure = edata->message;
		}
		PG_END_TRY();
		if (failure)
			ereport(WARNING,
					(errmsg("upgrade_assist cutover attempt " INT64_FORMAT ": %s", attempt, failure)));
	}

	ereport(LOG,
			(errmsg("upgrade_assist cutover attempt " INT64_FORMAT " finished: %s%s%s",
					attempt, outcome, resolution ? ", " : "", resolution ? resolution : "")));
}

/* Record a settled attempt in cutover_history (rows still open only). */
static void
ua_history_settle(int64 attempt, const char *outcome, const char *resolution,
				  const char *detail)
{
	UaLocal		l;
	char		a[32];
	const char *vals[4];

	snprintf(a, sizeof(a), INT64_FORMAT, attempt);
	vals[0] = a;
	vals[1] = outcome;
	vals[2] = resolution;
	vals[3] = detail;
	ua_local_begin(&l);
	ua_spi_exec("UPDATE upgrade_assist.cutover_history"
				"   SET outcome = $2, resolution = $3 || ': ' || $4,"
				"       resolved_at = pg_catalog.clock_timestamp(),"
				"       finished_at = coalesce(finished_at, pg_catalog.clock_timestamp())"
				" WHERE attempt = $1::bigint AND outcome IN ('running', 'unknown')",
				4, vals, false);
	ua_local_end(&l);
}

typedef struct UaSettleArgs
{
	const char *peer;
	int64		attempt;
	const UaAttemptAnswer *ans;
	const char *slot;			/* a slot name for the step's action */
} UaSettleArgs;

/* succeeded: drop the detached forward subscription on the peer. */
static void
ua_settle_drop_fwd_sub(void *p)
{
	UaSettleArgs *s = (UaSettleArgs *) p;
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), UA_ABORT_REMOTE_MS);
	const char *vals[1] = {s->ans->fwd_sub};
	PGresult   *res;
	bool		there;

	ua_res_remote_void(s->peer, "SELECT upgrade_assist.fence_exempt_session()", 0, NULL, deadline);
	/* Only the subscription the takeover detached (disabled, no slot). */
	res = ua_res_remote(s->peer,
						"SELECT 1 FROM pg_catalog.pg_subscription s"
						"  JOIN pg_catalog.pg_database d ON d.oid = s.subdbid"
						" WHERE d.datname = pg_catalog.current_database()"
						"   AND s.subname = $1 AND NOT s.subenabled AND s.subslotname IS NULL",
						1, vals, deadline);
	there = PQntuples(res) > 0;
	PQclear(res);
	if (there)
		ua_res_remote_void(s->peer,
						   psprintf("DROP SUBSCRIPTION %s", quote_identifier(s->ans->fwd_sub)),
						   0, NULL, deadline);
}

/* succeeded: drop the old forward slot here once no walsender holds it. */
static void
ua_settle_drop_local_slot(void *p)
{
	UaSettleArgs *s = (UaSettleArgs *) p;
	TimestampTz start = GetCurrentTimestamp();
	TimestampTz deadline = TimestampTzPlusMilliseconds(start, UA_SLOT_DROP_MS);
	const char *vals[1] = {s->slot};

	for (;;)
	{
		UaLocal		l;
		bool		exists;
		char	   *pid = NULL;

		ua_local_begin(&l);
		exists = ua_spi_exec("SELECT active_pid FROM pg_catalog.pg_replication_slots"
							 " WHERE slot_name = $1", 1, vals, true) > 0;
		if (exists)
			pid = ua_spi_getvalue(0, 1, l.cxt);
		if (exists && pid == NULL)
			ua_spi_exec("SELECT pg_catalog.pg_drop_replication_slot($1)", 1, vals, false);
		else if (exists && ua_ms_since(start) > 1000)
		{
			const char *pv[1] = {pid};

			/* The walsender outlived its subscriber (disabled): end it. */
			ua_spi_exec("SELECT pg_catalog.pg_terminate_backend($1::int)", 1, pv, false);
		}
		ua_local_end(&l);
		if (!exists || pid == NULL)
			return;
		if (GetCurrentTimestamp() >= deadline)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_IN_USE),
					 errmsg("replication slot \"%s\" stays in use", s->slot)));
		(void) ua_wait(WL_LATCH_SET | WL_TIMEOUT, 20, UA_WE_CUTOVER);
	}
}

/* aborted: the reverse subscription here (this attempt's, if any). */
static void
ua_settle_drop_reverse_sub(void *p pg_attribute_unused())
{
	UaLocal		l;
	const char *vals[1] = {UA_REVERSE_NAME};

	ua_local_begin(&l);
	if (ua_spi_exec("SELECT 1 FROM pg_catalog.pg_subscription WHERE subname = $1"
					"   AND subdbid = (SELECT oid FROM pg_catalog.pg_database"
					"                   WHERE datname = pg_catalog.current_database())",
					1, vals, true) > 0)
	{
		ua_spi_exec("ALTER SUBSCRIPTION " UA_REVERSE_NAME " DISABLE", 0, NULL, false);
		ua_spi_exec("ALTER SUBSCRIPTION " UA_REVERSE_NAME " SET (slot_name = NONE)", 0, NULL, false);
		ua_spi_exec("DROP SUBSCRIPTION " UA_REVERSE_NAME, 0, NULL, false);
	}
	ua_local_end(&l);
}

/* aborted: the reverse slot and publication on the peer. */
static void
ua_settle_drop_reverse_peer(void *p)
{
	UaSettleArgs *s = (UaSettleArgs *) p;
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), UA_ABORT_REMOTE_MS);
	const char *vals[1] = {s->slot};

	ua_res_remote_void(s->peer, "SELECT upgrade_assist.fence_exempt_session()", 0, NULL, deadline);
	ua_res_remote_void(s->peer,
					   "SELECT pg_catalog.pg_terminate_backend(active_pid)"
					   "  FROM pg_catalog.pg_replication_slots"
					   " WHERE slot_name = $1 AND active_pid IS NOT NULL",
					   1, vals, deadline);
	for (;;)
	{
		PGresult   *res;
		bool		gone;

		ua_res_remote_void(s->peer,
						   "SELECT count(pg_catalog.pg_drop_replication_slot(slot_name))"
						   "  FROM pg_catalog.pg_replication_slots"
						   " WHERE slot_name = $1 AND NOT active",
						   1, vals, deadline);
		res = ua_res_remote(s->peer,
							"SELECT count(*) FROM pg_catalog.pg_replication_slots WHERE slot_name = $1",
							1, vals, deadline);
		gone = strcmp(PQgetvalue(res, 0, 0), "0") == 0;
		PQclear(res);
		if (gone)
			break;
		if (GetCurrentTimestamp() >= deadline)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_IN_USE),
					 errmsg("replication slot \"%s\" on the peer stays in use", s->slot)));
		(void) ua_wait(WL_LATCH_SET | WL_TIMEOUT, 20, UA_WE_CUTOVER);
	}
	ua_res_remote_void(s->peer, "DROP PUBLICATION IF EXISTS " UA_REVERSE_NAME, 0, NULL, deadline);
}

/* Run one settling action, noting it (or its failure) in notes. */
static void
ua_settle_do(StringInfo notes, const char *what, void (*action) (void *), UaSettleArgs *s)
{
	char	   *error = NULL;

	if (ua_res_try(action, s, &error))
		appendStringInfo(notes, "%s%s", notes->len ? "; " : "", what);
	else
		appendStringInfo(notes, "%sFAILED to %s: %s", notes->len ? "; " : "", what, error);
}

/*
 * ua_attempt_settle
 *		Act on a final answer (UA_ANS_COMMITTED or UA_ANS_NOT_COMMITTED, or
 *		UA_ANS_NONE with peer_gone from cutover_resolve) for this cluster's
 *		attempt: the cleanup or the abort, the history row, then
 *		ua_cutover_attempt_finished.  Returns the outcome; what it did goes
 *		to notes.  The fence here is lifted only for an abort.  Throws only
 *		when the history row cannot be written (the fence file then still
 *		names the attempt: the next settler does it again).
 */
const char *
ua_attempt_settle(const char *peer, int64 attempt, const UaAttemptAnswer *ans,
				  const char *resolution, StringInfo notes)
{
	UaSettleArgs s;
	const char *outcome;
	char		slot[NAMEDATALEN];

	s.peer = peer;
	s.attempt = attempt;
	s.ans = ans;
	s.slot = NULL;

	if (ans->answer == UA_ANS_COMMITTED || ans->answer == UA_ANS_COMMITTED_FENCED)
	{
		outcome = "succeeded";
		appendStringInfoString(notes, ua_attempt_answer_text(ans));
		appendStringInfoString(notes, "; this cluster stays fenced (it is the standby now)");
		if (ans->fwd_sub)
			ua_settle_do(notes, psprintf("drop the detached forward subscription %s on the peer", ans->fwd_sub),
						 ua_settle_drop_fwd_sub, &s);
		if (ans->fwd_slot)
		{
			s.slot = ans->fwd_slot;
			ua_settle_do(notes, psprintf("drop the old forward slot %s here", ans->fwd_slot),
						 ua_settle_drop_local_slot, &s);
		}
	}
	else
	{
		bool		lifted;

		outcome = "aborted";
		appendStringInfoString(notes, ua_attempt_answer_text(ans));
		lifted = ua_fence_release_attempt(attempt, resolution);
		appendStringInfo(notes, "; %s", lifted ? "lifted the fence here" :
						 "the fence here was no longer this attempt's");
		ua_settle_do(notes, "drop subscription " UA_REVERSE_NAME " here",
					 ua_settle_drop_reverse_sub, &s);
		snprintf(slot, sizeof(slot), "ua_cutover_" UINT64_FORMAT "_%u",
				 (uint64) ua_origin(), MyDatabaseId);
		s.slot = slot;
		if (ans->answer != UA_ANS_NONE)
			ua_settle_do(notes, psprintf("drop slot %s and publication " UA_REVERSE_NAME " on the peer", slot),
						 ua_settle_drop_reverse_peer, &s);
		else
			appendStringInfo(notes, "; slot %s and publication " UA_REVERSE_NAME " on the peer, if any, are left (peer unreachable)",
							 slot);
		/*
		 * The resolver does not know the attempt's mode (the peer's record
		 * names no forward subscription in either mode when it did not
		 * commit), so the note holds for both.
		 */
		appendStringInfoString(notes, "; native forward replication untouched"
							   " (an external pipeline: the switch command's moment 'aborted')");
	}
	ua_history_settle(attempt, outcome, resolution, notes->data);
	ua_cutover_attempt_finished(attempt, outcome, resolution, peer);
	return outcome;
}

/* ---------------------------------------------------------------------------
 * The resolver background worker
 * ---------------------------------------------------------------------------
 */

/* Describe the resolver; restarted 5 s after a crash. */
static void
ua_resolver_fill(BackgroundWorker *bgw)
{
	ua_bgworker_init(bgw, "ua_cutover_resolver_main", "upgrade_assist cutover resolver",
					 5, (Datum) 0);
	bgw->bgw_notify_pid = 0;
}

/*
 * ua_cutover_register_resolver
 *		From _PG_init in the postmaster: register the resolver when the
 *		fence file names an unfinished attempt or a takeover in flight.
 */
void
ua_cutover_register_resolver(void)
{
	BackgroundWorker bgw;

	if (!ua_fence_file_has_cutover())
		return;
	ua_resolver_fill(&bgw);
	RegisterBackgroundWorker(&bgw);
}

/*
 * ua_cutover_start_resolver
 *		From the cutover worker, after its timeout without an answer: start
 *		the resolver now.  False when it cannot start (a restart starts it).
 */
bool
ua_cutover_start_resolver(void)
{
	BackgroundWorker bgw;
	BackgroundWorkerHandle *handle;

	ua_resolver_fill(&bgw);
	return RegisterDynamicBackgroundWorker(&bgw, &handle);
}

static void
ua_resolver_release(int code pg_attribute_unused(), Datum arg pg_attribute_unused())
{
	ua_fence_release_resolver();
}

/* Peer side, in the database of the takeover: did it commit?  Lift or forget. */
static void
ua_resolve_takeover(uint64 origin, int64 attempt)
{
	MemoryContext cxt = CurrentMemoryContext;
	char		o[32];
	char		a[32];
	const char *vals[2] = {o, a};
	char	   *state = NULL;
	char	   *fwd_sub = NULL;

	snprintf(o, sizeof(o), INT64_FORMAT, (int64) origin);
	snprintf(a, sizeof(a), INT64_FORMAT, attempt);
	ua_xact_begin(NULL);
	if (ua_spi_exec("SELECT state, forward_subscription FROM upgrade_assist.cutover_attempt"
					" WHERE origin = $1::bigint AND attempt = $2::bigint", 2, vals, true) > 0)
	{
		state = ua_spi_getvalue(0, 1, cxt);
		fwd_sub = ua_spi_getvalue(0, 2, cxt);
	}
	ua_xact_end(cxt);

	if (state && strcmp(state, "committed") == 0)
	{
		char	   *by = psprintf("takeover of attempt %s (cluster %s) committed before a restart", a, o);

		(void) ua_fence_release(by);
		ereport(LOG,
				(errmsg("upgrade_assist: %s: write fence lifted, this cluster is the primary", by)));
		if (fwd_sub)
		{
			const char *sv[1] = {fwd_sub};

			/* After the point of no return: the drop that follows it. */
			ua_xact_begin(NULL);
			if (ua_spi_exec("SELECT 1 FROM pg_catalog.pg_subscription s"
							" WHERE s.subname = $1 AND NOT s.subenabled AND s.subslotname IS NULL"
							"   AND s.subdbid = (SELECT oid FROM pg_catalog.pg_database"
							"                     WHERE datname = pg_catalog.current_database())",
							1, sv, true) > 0)
				ua_spi_exec(psprintf("DROP SUBSCRIPTION %s", quote_identifier(fwd_sub)), 0, NULL, false);
			ua_xact_end(cxt);
		}
	}
	else
	{
		ua_fence_forget_takeover();
		ereport(LOG,
				(errmsg("upgrade_assist: the takeover of attempt %s (cluster %s) did not commit here; the fence stays",
						a, o)));
	}
}

/*
 * ua_cutover_resolver_main
 *		Entry point of the resolver.  On the cluster that took over: settle
 *		a takeover noted in flight (connected to its database as the
 *		bootstrap superuser).  On the cluster that ran the cutover: ask the
 *		peer with back-off (as the attempt's role, in its database) until
 *		the attempt is settled, saying in fence_status what it waits for.
 *		Exits when nothing is left to settle.  SIGTERM ends it (die): it
 *		exits with 1 and the postmaster starts it again 5 s later unless
 *		the server is shutting down; a restart registers it again.
 */
void
ua_cutover_resolver_main(Datum main_arg pg_attribute_unused())
{
	uint64		tk_origin;
	int64		tk_attempt;
	Oid			tk_dboid;
	int64		attempt;
	Oid			dboid;
	Oid			userid;
	char		peer[NAMEDATALEN];
	MemoryContext cxt;
	volatile long backoff = UA_RESOLVE_BACKOFF_MIN_MS;
	volatile TimestampTz last_warning = 0;

	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();

	if (!ua_fence_claim_resolver())
		proc_exit(0);			/* one runs already */
	before_shmem_exit(ua_resolver_release, (Datum) 0);

	cxt = AllocSetContextCreate(TopMemoryContext, "upgrade_assist cutover resolver",
								ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(cxt);

	if (ua_fence_takeover_pending(&tk_origin, &tk_attempt, &tk_dboid))
	{
		BackgroundWorkerInitializeConnectionByOid(tk_dboid, InvalidOid, 0);
		pgstat_report_appname("upgrade_assist cutover resolver");
		ua_fence_exempt_session();
		ua_resolve_takeover(tk_origin, tk_attempt);
		/* An attempt of this cluster's own would be in another database. */
		proc_exit(ua_fence_cutover_attempt(NULL, NULL, NULL, NULL) ? 1 : 0);
	}
	if (!ua_fence_cutover_attempt(&attempt, &dboid, &userid, peer))
		proc_exit(0);

	BackgroundWorkerInitializeConnectionByOid(dboid, userid, 0);
	pgstat_report_appname("upgrade_assist cutover resolver");
	ua_fence_exempt_session();

	for (;;)
	{
		UaAttemptAnswer ans;
		int64		now_attempt;
		char	   *waiting;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		/* Settled meanwhile (cutover_resolve(), unfence())? */
		if (!ua_fence_cutover_attempt(&now_attempt, NULL, NULL, NULL) || now_attempt != attempt)
			break;

		MemoryContextReset(cxt);
		memset(&ans, 0, sizeof(ans));
		ans.cxt = cxt;
		ua_attempt_ask(peer, attempt, Max((int64) UA_ABORT_REMOTE_MS, (int64) ua_connect_timeout * 1000), &ans);

		if (ans.answer == UA_ANS_COMMITTED || ans.answer == UA_ANS_NOT_COMMITTED)
		{
			StringInfoData notes;
			MemoryContext ecxt = CurrentMemoryContext;
			volatile bool done = false;

			initStringInfo(&notes);
			PG_TRY();
			{
				(void) ua_attempt_settle(peer, attempt, &ans, "settled by the resolver", &notes);
				done = true;
			}
			PG_CATCH();
			{
				ErrorData  *edata = ua_recover_from_error(ecxt);

				ereport(WARNING,
						(errmsg("upgrade_assist cutover resolver: attempt " INT64_FORMAT " not settled yet: %s",
								attempt, edata->message)));
			}
			PG_END_TRY();
			if (done)
			{
				ereport(LOG,
						(errmsg("upgrade_assist cutover resolver settled attempt " INT64_FORMAT ": %s",
								attempt, notes.data)));
				break;
			}
		}

		waiting = psprintf("cutover attempt " INT64_FORMAT " to peer \"%s\" is unsettled: %s; asking again every %ld ms at most",
						   attempt, peer, ua_attempt_answer_text(&ans), (long) UA_RESOLVE_BACKOFF_MAX_MS);
		ua_fence_set_waiting(waiting);
		if (ans.answer == UA_ANS_PEER_UNFENCED &&
			(last_warning == 0 || ua_ms_since(last_warning) >= 60000))
		{
			ereport(WARNING,
					(errmsg("upgrade_assist: peer \"%s\" is unfenced although cutover attempt " INT64_FORMAT " did not take over there",
							peer, attempt),
					 errdetail("Both clusters may take writes if this one is unfenced; it stays fenced."),
					 errhint("Fence the peer again to let this attempt abort here, or, if the peer is the primary now, leave this cluster fenced.")));
			last_warning = GetCurrentTimestamp();
		}
		else if (ans.answer != UA_ANS_PEER_UNFENCED &&
				 (last_warning == 0 || ua_ms_since(last_warning) >= 60000))
		{
			ereport(LOG, (errmsg("upgrade_assist: %s", waiting)));
			last_warning = GetCurrentTimestamp();
		}

		(void) ua_wait(WL_LATCH_SET | WL_TIMEOUT, backoff, UA_WE_PEER);
		backoff = Min(backoff * 2, (long) UA_RESOLVE_BACKOFF_MAX_MS);
	}
	proc_exit(0);
}

/* ---------------------------------------------------------------------------
 * cutover_resolve() for the DBA
 * ---------------------------------------------------------------------------
 */

/*
 * cutover_resolve(peer_gone boolean) returns (attempt, outcome, detail)
 *
 *		Settle this cluster's unfinished attempt now, asking the peer once.
 *		22004 for a NULL peer_gone.
 *		Committed there: succeeded (this side stays fenced).  Not committed
 *		and the peer fenced: aborted (the fence here is lifted).  Errors:
 *		55000 when no attempt is unfinished here; 55006 while the cutover
 *		worker still runs; 3D000 from another database than the attempt's;
 *		55000 "the peer says it is primary" when the attempt did not commit
 *		but the peer is unfenced (this side stays fenced);
 *		08006 when the peer cannot answer (unless peer_gone: then aborted,
 *		the fence here lifted, on the DBA's word).
 */
Datum
cutover_resolve(PG_FUNCTION_ARGS)
{
	bool		peer_gone;
	int64		attempt;
	Oid			dboid;
	Oid			userid;
	char		peer[NAMEDATALEN];
	UaAttemptAnswer ans;
	StringInfoData notes;
	const char *outcome;
	TupleDesc	tupdesc;
	Tuplestorestate *store;
	Datum		values[3];
	bool		nulls[3] = {false};
	bool		busy;

	ua_require_preloaded(ua_cutover_state);
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("peer_gone must not be null")));
	peer_gone = PG_GETARG_BOOL(0);
	if (!ua_fence_cutover_attempt(&attempt, &dboid, &userid, peer))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("no unfinished cutover attempt on this cluster"),
				 errhint("fence_status.cutover_attempt names one while the fence of an attempt is up.")));
	if (dboid != MyDatabaseId)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_DATABASE),
				 errmsg("cutover attempt " INT64_FORMAT " ran in another database", attempt),
				 errhint("Call cutover_resolve() in database \"%s\".",
						 get_database_name(dboid) ? get_database_name(dboid) : "?")));
	LWLockAcquire(ua_cutover_state->lock, LW_SHARED);
	busy = ua_cutover_state->active && !ua_cutover_state->worker_done &&
		ua_cutover_state->attempt == attempt;
	LWLockRelease(ua_cutover_state->lock);
	if (busy)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("the cutover worker of attempt " INT64_FORMAT " still runs", attempt),
				 errhint("It keeps asking the peer until the cutover's timeout; see cutover_progress.")));

	store = ua_materialize_srf(fcinfo, &tupdesc);
	memset(&ans, 0, sizeof(ans));
	ans.cxt = CurrentMemoryContext;
	ua_attempt_ask(peer, attempt, Max((int64) UA_ABORT_REMOTE_MS, (int64) ua_connect_timeout * 1000), &ans);

	if (ans.answer == UA_ANS_PEER_UNFENCED)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("peer \"%s\" says it is primary: this cluster stays fenced", peer),
				 errdetail("Attempt " INT64_FORMAT " did not take over there, yet the peer is unfenced.", attempt),
				 errhint("Fence the peer again, then call cutover_resolve(); or keep the peer as the primary.")));
	if (ans.answer == UA_ANS_NONE && !peer_gone)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("peer \"%s\" cannot answer for attempt " INT64_FORMAT, peer, attempt),
				 errdetail_internal("%s", ans.error ? ans.error : ""),
				 errhint("If the peer is gone for good, cutover_resolve(peer_gone => true) aborts the attempt here and lifts the fence.")));
	initStringInfo(&notes);
	outcome = ua_attempt_settle(peer, attempt, &ans,
								ans.answer == UA_ANS_NONE ?
								"settled by cutover_resolve(peer_gone => true) without an answer" :
								"settled by cutover_resolve()",
								&notes);
	values[0] = Int64GetDatum(attempt);
	values[1] = CStringGetTextDatum(outcome);
	values[2] = CStringGetTextDatum(notes.data);
	tuplestore_putvalues(store, tupdesc, values, nulls);
	return (Datum) 0;
}
