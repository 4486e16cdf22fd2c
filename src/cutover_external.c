/*-------------------------------------------------------------------------
 *
 * cutover_external.c
 *	  cutover(..., replication => 'external'): the cutover over a
 *	  replication pipeline that is not native logical replication (a CDC
 *	  consumer, pglogical, Debezium and a message bus, a team's own relay).
 *
 * In external mode nothing of the pipeline is looked at or created: the
 * cutover proves each direction with markers only (upgrade_assist.marker is
 * an ordinary table, so a pipeline that carries the user's tables carries
 * it), and the team's switch command (upgrade_assist.cutover_command,
 * cutover_command.c) moves the pipeline at two extra moments:
 *
 *	'start reverse'	(reverse => true) inside the reverse replication step:
 *		the command stops the forward pipeline (it must have stopped
 *		applying when the command exits) and starts the reverse one (it
 *		must be ready to carry what the peer writes from then on); the
 *		reverse round trip then proves it with a marker written on the
 *		peer that must arrive here within the timeout.
 *	'stop forward'	(reverse => false) at the start of unfence peer: the
 *		command stops the forward pipeline.
 *
 * Either way the peer is unfenced (the point of no return) only after the
 * command said, by its exit status 0, that the forward pipeline no longer
 * applies; a failure or a timeout of the command aborts like any failure
 * before the point of no return: the fence here is lifted and the command
 * runs at 'aborted' (cutover_worker.c), where the team's script puts its
 * pipeline back.
 *
 * The steps that differ from native mode call in here from a short branch
 * at their top (cutover_steps.c, cutover_worker.c): checks, reverse
 * replication, reverse round trip, the takeover statement, the dry run's
 * words and the cleanup.  Lag check, fence, drain, final marker, wait for
 * marker and sync sequences are the same in both modes: they only write
 * and read markers and sequences.  The takeover is
 * cutover_takeover_external() on the peer, which records the attempt as
 * cutover_takeover() does but has no subscription to detach, so that the
 * crash resolution (cutover_resolve.c), which drops only the subscription
 * the record names, never looks for one.
 *
 * State: none of its own; the run state (cutover.h, UaRun.external).
 *
 * IDENTIFICATION
 *	  src/cutover_external.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "cutover.h"
#include "cutover_command.h"
#include "fence.h"
#include "marker.h"
#include "preflight.h"
#include "remote.h"
#include "util.h"

/*
 * Preflight checks about native publications and subscriptions, which say
 * nothing about another pipeline: accepted in external mode (the marker
 * round trip of the checks step proves the pipeline instead).
 */
static const char *const ua_external_native_checks[] = {
	"not_published", "marker_not_published", "publish_actions", "row_filter",
	"column_list", "forward_subscription", "subscription_state", "apply_errors",
	NULL
};

/*
 * ua_external_read_replication
 *		cutover()'s replication argument: false for 'native', true for
 *		'external'; 22004 for NULL, 22023 for anything else.
 */
bool
ua_external_read_replication(text *arg)
{
	char	   *s;

	if (arg == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("replication must not be null")));
	s = text_to_cstring(arg);
	if (strcmp(s, "native") == 0)
		return false;
	if (strcmp(s, "external") == 0)
		return true;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("replication must be 'native' or 'external', not \"%s\"", s),
			 errhint("'external': another pipeline carries the rows; the cutover proves it with markers and "
					 "moves it with upgrade_assist.cutover_command (docs/external-pipelines.md).")));
	pg_unreachable();
}

/*
 * ua_external_marker_on_peer
 *		Microseconds from start until this origin's marker seq was on the
 *		peer, -1 when the deadline came first (ua_marker_wait, in a
 *		transaction for the peer lookup).
 */
static int64
ua_external_marker_on_peer(UaRun *run, int64 seq, TimestampTz start, TimestampTz deadline)
{
	int64		waited;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	waited = ua_marker_wait(run->peer, seq, start, deadline, false);
	CommitTransactionCommand();
	MemoryContextSwitchTo(run->cxt);
	return waited;
}

/*
 * ua_external_run_moment
 *		Run the switch command at moment; its failure (exit status, timeout)
 *		is this step's error.  detail gets how long it took.
 */
static void
ua_external_run_moment(UaRun *run, const char *moment, StringInfo detail)
{
	char	   *failure;
	TimestampTz start = GetCurrentTimestamp();

	if (!ua_cutover_command_run(moment, run->attempt, run->peer, &failure))
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("%s", failure),
				 errdetail("Its output is in the server log; the forward pipeline may not have stopped.")));
	appendStringInfo(detail, "cutover_command at moment \"%s\" succeeded after %.1f ms",
					 moment, ua_ms_since(start));
}

/*
 * checks, external mode: this side is primary; the peer is reachable, runs
 * the extension, is another cluster and is fenced; a switch command is set
 * (it alone can stop the forward pipeline); a probe marker written here
 * reaches the peer within the timeout, so the pipeline carries the marker
 * table; then the preflight with the peer, its checks of native
 * replication accepted.  Writes only the probe marker.
 */
void
ua_external_checks(UaRun *run, StringInfo detail)
{
	UaMarker	m;
	int64		waited;
	TimestampTz started;
	char		accept[UA_ACCEPT_MAX];
	StringInfoData acc;
	UaPreflightSummary pf;

	if (!ua_cutover_command_configured())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("replication => 'external' needs upgrade_assist.cutover_command"),
				 errdetail("Only the team's switch command can stop the forward pipeline (moment \"%s\" or \"%s\") "
						   "before the peer is unfenced.", UA_MOMENT_START_REVERSE, UA_MOMENT_STOP_FORWARD),
				 errhint("Set upgrade_assist.cutover_command on this cluster (docs/external-pipelines.md).")));

	ua_cutover_check_basics(run);

	/* The pipeline carries the marker table: a probe marker gets there. */
	started = GetCurrentTimestamp();
	ua_xact_begin(NULL);
	ua_insert_marker("probe", "cutover checks: external pipeline", 0, &m);
	ua_xact_end(run->cxt);
	waited = ua_external_marker_on_peer(run, m.seq, started, run->deadline);
	if (waited < 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("probe marker " INT64_FORMAT " did not reach peer \"%s\" within the timeout", m.seq, run->peer),
				 errdetail("replication => 'external' needs a pipeline that carries table upgrade_assist.marker to the peer."),
				 errhint("Check that the pipeline runs and includes upgrade_assist.marker.")));
	appendStringInfo(detail, "peer on PostgreSQL %d.%d, fenced; external pipeline: probe marker " INT64_FORMAT " on the peer after %.1f ms; ",
					 run->peer_version / 10000, run->peer_version % 10000, m.seq, waited / 1000.0);

	/* The preflight, with the caller's accepted checks and the native ones. */
	LWLockAcquire(ua_cutover_state->lock, LW_SHARED);
	strlcpy(accept, ua_cutover_state->accept, sizeof(accept));
	LWLockRelease(ua_cutover_state->lock);
	initStringInfo(&acc);
	appendStringInfoString(&acc, accept);
	for (int i = 0; ua_external_native_checks[i] != NULL; i++)
		if (!ua_preflight_accepted(acc.data, ua_external_native_checks[i]))
			appendStringInfo(&acc, "%s%s", acc.len > 0 ? "," : "", ua_external_native_checks[i]);
	/* Each known name once (cutover.c): this always fits. */
	Assert(acc.len < UA_ACCEPT_MAX);
	started = GetCurrentTimestamp();
	ua_xact_begin("cutover preflight");
	ua_preflight_summarize(run->peer, run->deadline, acc.data, run->cxt, &pf);
	ua_xact_end(run->cxt);
	if (pf.blocking > 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("preflight found %d error(s): %s", pf.blocking, pf.blocking_list.data),
				 errhint("SELECT * FROM upgrade_assist.preflight('%s') says what each means and what to do; "
						 "once decided, name the check in cutover(..., accept => '{check}').",
						 run->peer)));
	appendStringInfo(detail,
					 "preflight %.0f ms (checks of native replication not applied): %d error(s) accepted%s%s%s, %d warning(s)%s%s%s, %d info",
					 ua_ms_since(started), pf.accepted,
					 pf.accepted ? " (" : "", pf.accepted_list.data, pf.accepted ? ")" : "",
					 pf.warnings,
					 pf.warnings ? " (" : "", pf.warning_list.data, pf.warnings ? ")" : "",
					 pf.infos);
}

/*
 * reverse replication, external mode: the switch command at 'start
 * reverse' stops the forward pipeline and starts the reverse one.
 */
void
ua_external_reverse(UaRun *run, StringInfo detail)
{
	ua_external_run_moment(run, UA_MOMENT_START_REVERSE, detail);
	appendStringInfoString(detail, ": forward pipeline stopped, reverse pipeline started (by the command)");
}

/*
 * reverse round trip, external mode: a marker written on the peer (its
 * session writes through the peer's fence) arrives here within the
 * timeout, through whatever the command started.
 */
void
ua_external_reverse_rt(UaRun *run, StringInfo detail)
{
	char		note[128];
	const char *vals[2];
	char	   *seq;
	PGresult   *res;
	TimestampTz start = GetCurrentTimestamp();

	snprintf(note, sizeof(note), "cutover attempt " INT64_FORMAT ": reverse round trip (external)",
			 run->attempt);
	ua_cutover_remote_exempt(run, run->deadline);
	vals[0] = note;
	res = ua_cutover_remote(run, "SELECT origin::text, seq::text FROM upgrade_assist.emit_marker('cutover', $1)",
							1, vals);
	vals[0] = pstrdup(PQgetvalue(res, 0, 0));
	vals[1] = seq = pstrdup(PQgetvalue(res, 0, 1));
	PQclear(res);

	for (;;)
	{
		bool		found;

		ua_xact_begin(NULL);
		found = ua_spi_exec("SELECT 1 FROM upgrade_assist.marker"
							" WHERE origin = $1::bigint AND seq = $2::bigint", 2, vals, true) > 0;
		ua_xact_end(run->cxt);
		if (found)
			break;
		if (GetCurrentTimestamp() >= run->deadline)
			ereport(ERROR,
					(errcode(ERRCODE_QUERY_CANCELED),
					 errmsg("the peer's marker %s did not arrive here within the timeout", seq),
					 errdetail("The reverse pipeline that cutover_command started at moment \"%s\" does not deliver.",
							   UA_MOMENT_START_REVERSE)));
		(void) ua_wait(WL_LATCH_SET | WL_TIMEOUT, UA_POLL_MS, UA_WE_MARKER);
	}
	appendStringInfo(detail, "peer's marker %s here after %.1f ms (reverse pipeline)", seq, ua_ms_since(start));
}

/*
 * At the start of unfence peer, external mode with reverse => false: the
 * switch command at 'stop forward'.  With reverse => true, 'start reverse'
 * stopped it already.
 */
void
ua_external_stop_forward(UaRun *run, StringInfo detail)
{
	if (run->reverse)
		return;
	ua_external_run_moment(run, UA_MOMENT_STOP_FORWARD, detail);
	appendStringInfoString(detail, ": forward pipeline stopped (by the command); ");
}

/* What a dry run says an external-mode step would do; NULL: as native. */
const char *
ua_external_would_do(UaRun *run, int step)
{
	switch (step)
	{
		case UA_ST_PREPARE:
			return "plan the peer's sequences and move them forward (nothing of the pipeline)";
		case UA_ST_WAIT:
			return "wait until it is on the peer through the external pipeline";
		case UA_ST_REVERSE:
			return run->reverse ?
				"run cutover_command at moment 'start reverse' (stop the forward pipeline, start the reverse one)" :
				"nothing (reverse => false)";
		case UA_ST_REVERSE_RT:
			return run->reverse ? "write a marker on the peer and wait for it here (reverse pipeline)" :
				"nothing (reverse => false)";
		case UA_ST_UNFENCE_PEER:
			return run->reverse ?
				"record the attempt on the peer and lift its fence (point of no return)" :
				"run cutover_command at moment 'stop forward', then record the attempt on the peer and lift its fence (point of no return)";
	}
	return NULL;
}

/*
 * The cleanup after the point of no return, external mode: the cutover
 * made no replication object, so there is none to drop; what is left of
 * the old forward pipeline is the command's (moment 'done').
 */
void
ua_external_cleanup(UaRun *run pg_attribute_unused(), StringInfo notes)
{
	appendStringInfo(notes, "%sexternal pipeline: no replication object of the cutover to drop "
					 "(the forward pipeline's leftovers are cutover_command's, moment \"%s\")",
					 notes->len ? "; " : "", UA_MOMENT_DONE);
}
