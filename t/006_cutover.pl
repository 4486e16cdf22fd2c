
# Copyright (c) upgrade_assist contributors

# cutover() between two real clusters: 'old' (UA_OLD_INSTALL when set,
# another major version) replicates to 'new', set up as docs/setup.md says
# (UATest::cutover_pair).
#
# Under load: four writers insert on old, the cutover moves them to new, the
# rollback (cutover on new) moves them back, and in the end every write the
# servers acknowledged is on both clusters exactly once, no sequence handed
# out a key twice, and no replication slot is left that no subscription uses.
#
# Faults, on a second pair: a dry run; a forward subscription that is
# disabled and one whose apply is held up by a lock (lag above max_lag); then,
# paused before their step with upgrade_assist.cutover_pause_before, the
# caller cancelled, the caller terminated, the cutover worker terminated, and
# the peer stopped before each step.  After each: old writable, new still
# fenced, forward replication working, no row lost, nothing of the attempt
# left on old; and a last cutover on that pair succeeds.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use UATest;

my @STEPS = (
	'checks', 'lag check', 'prepare',
	'fence', 'drain',
	'final marker', 'wait for marker',
	'sync sequences', 'reverse replication',
	'reverse round trip', 'unfence peer');

# Call cutover on node and wait for it; returns psql's result (see
# UATest::sql_result) and the steps.
sub cutover
{
	my ($node, $peer, %args) = @_;
	my $r = UATest::sql_result($node, UATest::cutover_sql($peer, %args));
	return ($r, UATest::cutover_steps($r->{stdout}));
}

sub step_list
{
	return join(', ', map { "$_->{step}=$_->{status}" } @_);
}

# The steps of a cutover that failed at $failed (undef: that succeeded), as
# step_list gives them.
sub expected_steps
{
	my ($failed) = @_;
	my @list;
	my $state = 'done';
	for my $step (@STEPS)
	{
		if (defined $failed && $step eq $failed)
		{
			push @list, "$step=failed";
			$state = 'skipped';
			next;
		}
		push @list, "$step=$state";
	}
	push @list, defined $failed ? 'abort=done' : 'cleanup=done';
	return join(', ', @list);
}

# Returns whether they are as expected.
sub steps_are
{
	my ($steps, $failed, $what) = @_;
	my $ok = is(step_list(@$steps), expected_steps($failed), $what)
	  or diag(join("\n", map { "$_->{step}: $_->{status}: $_->{detail}" } @$steps));
	return $ok;
}

sub fenced
{
	my ($node) = @_;
	return $node->safe_psql('postgres', 'SELECT fenced FROM upgrade_assist.fence_status');
}

# The newest history row on node for peer: outcome, failed step, whether a
# blackout was recorded.
sub history
{
	my ($node, $peer) = @_;
	return $node->safe_psql(
		'postgres', qq{
SELECT concat_ws('|', outcome, coalesce(failed_step, '-'),
                 coalesce((blackout > interval '0')::text, 'none'))
  FROM upgrade_assist.cutover_history
 WHERE peer = '$peer' ORDER BY attempt DESC LIMIT 1});
}

sub round_trip_ok
{
	my ($node, $peer, $what) = @_;
	my $r = UATest::sql_result($node,
		"SELECT latency >= interval '0' FROM upgrade_assist.round_trip('$peer', '60s')");
	is($r->{stdout}, 't', $what) or diag($r->{stderr});
	return;
}

sub no_orphan_slots
{
	my ($a, $b, $what) = @_;
	is_deeply([ UATest::orphan_slots($a, $b) ], [],
		"$what: no slot on " . $a->name . ' without a subscription');
	is_deeply([ UATest::orphan_slots($b, $a) ], [],
		"$what: no slot on " . $b->name . ' without a subscription');
	return;
}

# ===========================================================================
# Cutover and rollback under load, with a ledger of acknowledged writes
# ===========================================================================
my ($old, $new) = UATest::cutover_pair(old_install => $ENV{UA_OLD_INSTALL});
note 'old: ' . $old->safe_psql('postgres', 'SELECT version()');
note 'new: ' . $new->safe_psql('postgres', 'SELECT version()');
is(fenced($new), 't', 'setup: new fenced until its cutover');
is_deeply(UATest::ledger_rows($new), UATest::ledger_rows($old),
	'setup: the initial copy carries the rows');

# Wait until node holds at least n rows written on side; returns whether so.
sub wait_written
{
	my ($node, $side, $n, $what) = @_;
	return ok(
		$node->poll_query_until(
			'postgres', 'SELECT ' . UATest::ledger_count_sql($side) . " >= $n"),
		$what);
}

# The scenario; a step that goes wrong ends it (after stopping the writers),
# not the test.
sub cutover_under_load
{
	my $writers = UATest::start_writers(
		sides => [ old => $old, new => $new ],
		writers => 4,
		max_inserts => 3000,
		max_seconds => 150);

	wait_written($old, 'old', 100, 'writers write on old')
	  or return UATest::stop_writers($writers);
	my ($r, @steps) = cutover($old, 'new_side');
	is($r->{rc}, 0, 'cutover: returns') or diag($r->{stderr});
	steps_are(\@steps, undef, 'cutover: every step done, then cleanup')
	  or return UATest::stop_writers($writers);
	is(history($old, 'new_side'), 'succeeded|-|true', 'cutover: history succeeded, with a blackout');
	is(fenced($old) . fenced($new), 'tf', 'cutover: old fenced, new writable');
	is( $old->safe_psql('postgres',
			q{SELECT count(*) FROM pg_subscription WHERE subname = 'upgrade_assist_cutover'}),
		'1', 'cutover: the reverse subscription lives on old');
	is( $new->safe_psql('postgres',
			q{SELECT count(*) FROM pg_subscription WHERE subname = 'upgrade'}),
		'0', 'cutover: the forward subscription is dropped');
	no_orphan_slots($old, $new, 'after the cutover');

	wait_written($new, 'new', 100, 'writers continue on new')
	  or return UATest::stop_writers($writers);
	($r, @steps) = cutover($new, 'old_side');
	is($r->{rc}, 0, 'rollback: returns') or diag($r->{stderr});
	steps_are(\@steps, undef, 'rollback: every step done, then cleanup')
	  or return UATest::stop_writers($writers);
	is(history($new, 'old_side'), 'succeeded|-|true', 'rollback: history succeeded, with a blackout');
	is(fenced($old) . fenced($new), 'ft', 'rollback: old writable, new fenced');

	my $on_old = $old->safe_psql('postgres', 'SELECT ' . UATest::ledger_count_sql('old'));
	wait_written($old, 'old', $on_old + 100, 'writers are back on old');
	my $ledger = UATest::stop_writers($writers);
	round_trip_ok($old, 'new_side', 'a final marker round trip old -> new');

	my %acked_on;
	$acked_on{ (split / /)[2] }++ for values %{ $ledger->{acked} };
	note sprintf(
		'writers: %d rows acknowledged (%d on old, %d on new), %d uncertain, '
		  . '%d refused by the fence, %d connections failed; %s',
		scalar(keys %{ $ledger->{acked} }), $acked_on{old} // 0, $acked_on{new} // 0,
		scalar(keys %{ $ledger->{uncertain} }), $ledger->{fenced}, $ledger->{noconn},
		join('; ', @{ $ledger->{end} }));
	is_deeply($ledger->{failed}, [], 'every writer ended normally');
	is_deeply($ledger->{dup}, [], 'no insert failed on a duplicate key');
	is_deeply($ledger->{error}, [], 'no insert failed for another reason');
	ok($acked_on{old} && $acked_on{new}, 'writes acknowledged on both sides');
	is_deeply([ UATest::ledger_problems($ledger, $old) ], [],
		'old: every acknowledged write exactly once');
	is_deeply([ UATest::ledger_problems($ledger, $new) ], [],
		'new: every acknowledged write exactly once');
	is_deeply(UATest::ledger_rows($new), UATest::ledger_rows($old),
		'old and new hold the same rows');
	is( $old->safe_psql('postgres',
			'SELECT count(*) FROM public.t_shared_a JOIN public.t_shared_b USING (id)'),
		'0', 'the shared sequence gave no key to both of its tables');
	no_orphan_slots($old, $new, 'after the rollback');
	return;
}
cutover_under_load();

$old->stop;
$new->stop;

# ===========================================================================
# Faults, on a second pair
# ===========================================================================
my ($fo, $fn) = UATest::cutover_pair(
	old_name => 'old_f',
	new_name => 'new_f',
	old_install => $ENV{UA_OLD_INSTALL});

# Change the forward subscription on new, through new's fence.
sub alter_forward
{
	my ($action) = @_;
	$fn->safe_psql('postgres',
		"SELECT upgrade_assist.fence_exempt_session();\nALTER SUBSCRIPTION upgrade $action");
	return;
}

my $fault_rows = 0;
my ($r, @steps);

sub resume
{
	return $fo->safe_psql('postgres', 'SELECT upgrade_assist.cutover_resume()');
}

# Start cutover on old in the background, paused before step; wait until it
# is.  Returns the handle and the attempt, or nothing (after a failed test)
# when the cutover ended without pausing.
sub start_paused
{
	my ($step, $appname) = @_;
	my $before = $fo->safe_psql('postgres',
		'SELECT coalesce(max(attempt), 0) FROM upgrade_assist.cutover_history');
	my $bg = UATest::bg_commands(
		$fo, $appname,
		"SET upgrade_assist.cutover_pause_before = '$step'",
		UATest::cutover_sql('new_side'));
	$fo->poll_query_until(
		'postgres', qq{
SELECT EXISTS (SELECT FROM upgrade_assist.cutover_progress
                WHERE phase = 'paused before $step')
    OR EXISTS (SELECT FROM upgrade_assist.cutover_history
                WHERE attempt > $before AND outcome <> 'running')});
	my ($phase, $attempt) = split /\|/,
	  $fo->safe_psql('postgres',
		'SELECT phase, attempt FROM upgrade_assist.cutover_progress');
	if (!is($phase, "paused before $step", "$step: the cutover pauses before it"))
	{
		UATest::bg_finish($bg);
		diag("$appname: $bg->{stdout}$bg->{stderr}");
		return;
	}
	return ($bg, $attempt);
}

# After an attempt that did not succeed: its history row says aborted (and
# failed_step when given), nothing runs any more, old is writable and has no
# reverse subscription left, new is still fenced.
sub check_aborted
{
	my ($attempt, $failed, $what) = @_;
	$fo->poll_query_until('postgres',
		"SELECT outcome <> 'running' FROM upgrade_assist.cutover_history WHERE attempt = $attempt"
	);
	is( $fo->safe_psql(
			'postgres',
			"SELECT outcome FROM upgrade_assist.cutover_history WHERE attempt = $attempt"),
		'aborted', "$what: history says aborted");
	if (defined $failed)
	{
		is( $fo->safe_psql(
				'postgres',
				"SELECT failed_step FROM upgrade_assist.cutover_history WHERE attempt = $attempt"),
			$failed, "$what: history names the failed step");
	}
	is($fo->safe_psql('postgres', 'SELECT count(*) FROM upgrade_assist.cutover_progress'),
		'0', "$what: no attempt runs any more");
	is(fenced($fo), 'f', "$what: old not fenced");
	$fault_rows++;
	my $r = UATest::sql_result($fo,
		"INSERT INTO public.t_bigserial (tag, side) VALUES ('fault.$fault_rows', 'old')");
	is($r->{rc}, 0, "$what: old writable") or diag($r->{stderr});
	is( $fo->safe_psql(
			'postgres',
			q{SELECT count(*) FROM pg_subscription WHERE subname = 'upgrade_assist_cutover'}),
		'0', "$what: no reverse subscription left on old");
	return;
}

# With new up: forward replication works, new is still fenced, no row lost.
sub check_forward
{
	my ($what) = @_;
	round_trip_ok($fo, 'new_side', "$what: forward replication works");
	is(fenced($fn), 't', "$what: new still fenced");
	is_deeply(UATest::ledger_rows($fn), UATest::ledger_rows($fo),
		"$what: no row lost");
	return;
}

# ---------------------------------------------------------------------------
# Dry run: reports, changes nothing
# ---------------------------------------------------------------------------
my %objects = (old => UATest::replication_objects($fo), new => UATest::replication_objects($fn));
my $history_rows = $fo->safe_psql('postgres', 'SELECT count(*) FROM upgrade_assist.cutover_history');
($r, @steps) = cutover($fo, 'new_side', dry_run => 'true');
is($r->{rc}, 0, 'dry run: returns') or diag($r->{stderr});
is( join(', ', map { $_->{step} } grep { $_->{step} ne 'cleanup' } @steps),
	join(', ', @STEPS), 'dry run: every step reported');
is( scalar(grep { $_->{status} ne 'done' && $_->{status} ne 'would do' } @steps),
	0, 'dry run: no step failed or skipped')
  or diag(step_list(@steps));
ok(scalar(grep { $_->{status} eq 'would do' } @steps), "dry run: 'would do' rows");
is(UATest::replication_objects($fo), $objects{old}, 'dry run: nothing changed on old');
is(UATest::replication_objects($fn), $objects{new}, 'dry run: nothing changed on new');
is($fo->safe_psql('postgres', 'SELECT count(*) FROM upgrade_assist.cutover_history'),
	$history_rows, 'dry run: no history row');

# ---------------------------------------------------------------------------
# Forward subscription disabled: the checks refuse, nothing touched
# ---------------------------------------------------------------------------
alter_forward('DISABLE');
$fn->poll_query_until('postgres',
	q{SELECT count(*) = 0 FROM pg_stat_subscription WHERE subname = 'upgrade' AND pid IS NOT NULL}
) or die 'apply worker did not stop';
%objects = (old => UATest::replication_objects($fo), new => UATest::replication_objects($fn));
($r, @steps) = cutover($fo, 'new_side', max_lag => '200ms');
is($r->{rc}, 0, 'subscription disabled: returns') or diag($r->{stderr});
steps_are(\@steps, 'checks', "subscription disabled: 'checks' failed");
like($r->{stderr}, qr/WARNING/, 'subscription disabled: a warning');
is(UATest::replication_objects($fo), $objects{old}, 'subscription disabled: nothing changed on old');
is(UATest::replication_objects($fn), $objects{new}, 'subscription disabled: nothing changed on new');
is(history($fo, 'new_side'), 'aborted|checks|none', 'subscription disabled: history aborted at the checks');
alter_forward('ENABLE');
UATest::wait_for_sync($fn, 'upgrade');
check_forward('subscription disabled');

# ---------------------------------------------------------------------------
# Lag above max_lag: the apply on new waits for a lock, nothing touched
# ---------------------------------------------------------------------------
# Locking a table of new needs a session that writes through its fence.
my $locker = $fn->background_psql('postgres');
$locker->query_safe('SELECT upgrade_assist.fence_exempt_session()');
$locker->query_safe('BEGIN');
$locker->query_safe('LOCK TABLE public.t_bigserial IN SHARE MODE');
$fo->safe_psql('postgres',
	q{INSERT INTO public.t_bigserial (tag, side) VALUES ('lag.1', 'old')});
$fn->poll_query_until('postgres',
	q{SELECT count(*) > 0 FROM pg_locks WHERE relation = 'public.t_bigserial'::regclass AND NOT granted}
) or die 'the apply did not wait for the lock';
%objects = (old => UATest::replication_objects($fo), new => UATest::replication_objects($fn));
($r, @steps) = cutover($fo, 'new_side', max_lag => '200ms');
is($r->{rc}, 0, 'lag: returns') or diag($r->{stderr});
steps_are(\@steps, 'lag check', "lag: 'lag check' failed");
like($r->{stderr}, qr/WARNING/, 'lag: a warning');
is(UATest::replication_objects($fo), $objects{old}, 'lag: nothing changed on old');
is(UATest::replication_objects($fn), $objects{new}, 'lag: nothing changed on new');
is(history($fo, 'new_side'), 'aborted|lag check|none', 'lag: history aborted at the lag check');
$locker->query_safe('ROLLBACK');
$locker->quit;
check_forward('lag');

# ---------------------------------------------------------------------------
# The caller cancelled, then terminated, while the cutover is paused
# ---------------------------------------------------------------------------
for my $case (
	[ 'cancelled', 'pg_cancel_backend', 'reverse round trip' ],
	[ 'terminated', 'pg_terminate_backend', 'unfence peer' ])
{
	my ($what, $how, $step) = @$case;
	my ($bg, $attempt) = start_paused($step, "ua_cutover_$what") or next;
	my $pid = UATest::backend_pid($fo, "ua_cutover_$what");
	$fo->safe_psql('postgres', "SELECT $how($pid)");
	ok(defined UATest::bg_finish($bg), "caller $what: psql returns");
	note "caller $what: " . $bg->{stdout} . $bg->{stderr};
	check_aborted($attempt, undef, "caller $what");
	is(resume(), 'f', "caller $what: nothing left paused");
	is( $fn->safe_psql(
			'postgres',
			q{SELECT count(*) FROM pg_publication WHERE pubname = 'upgrade_assist_cutover'}),
		'0', "caller $what: no reverse publication left on new");
	no_orphan_slots($fo, $fn, "caller $what");
	check_forward("caller $what");
}

# ---------------------------------------------------------------------------
# The cutover worker itself terminated (as at a server shutdown): it aborts
# before exiting instead of dying mid-step
# ---------------------------------------------------------------------------
{
	my ($bg, $attempt) = start_paused('sync sequences', 'ua_cutover_worker_term');
	if ($bg)
	{
		$fo->safe_psql('postgres',
			q{SELECT pg_terminate_backend(pid) FROM pg_stat_activity
			   WHERE backend_type = 'upgrade_assist cutover'});
		ok(defined UATest::bg_finish($bg), 'worker terminated: psql returns');
		like($bg->{stderr}, qr/WARNING/, 'worker terminated: a warning');
		check_aborted($attempt, 'sync sequences', 'worker terminated');
		like(
			$fo->safe_psql(
				'postgres',
				"SELECT reason FROM upgrade_assist.cutover_history WHERE attempt = $attempt"),
			qr/worker was terminated/, 'worker terminated: the reason says so');
		check_forward('worker terminated');
	}
}

# ---------------------------------------------------------------------------
# The peer stopped before each step that needs it
# ---------------------------------------------------------------------------
# The fence, the drain and the final marker happen here only: the peer gone
# before them fails the wait for the marker.  An abort that cannot reach the peer leaves the reverse slot
# there; the next attempt drops it (the last cutover below checks that none
# is left).
my $n = 0;
for my $case (
	[ 'checks', 'checks' ],
	[ 'lag check', 'lag check' ],
	[ 'prepare', 'prepare' ],
	[ 'fence', 'wait for marker' ],
	[ 'drain', 'wait for marker' ],
	[ 'final marker', 'wait for marker' ],
	[ 'wait for marker', 'wait for marker' ],
	[ 'sync sequences', 'sync sequences' ],
	[ 'reverse replication', 'reverse replication' ],
	[ 'reverse round trip', 'reverse round trip' ],
	[ 'unfence peer', 'unfence peer' ])
{
	my ($step, $failing) = @$case;
	my $mode = $n++ % 2 ? 'immediate' : 'fast';
	my $what = "peer stopped ($mode) before '$step'";
	my ($bg, $attempt) = start_paused($step, "ua_cutover_$n") or next;
	$fn->stop($mode);
	is(resume(), 't', "$what: resumed");
	ok(defined UATest::bg_finish($bg), "$what: cutover returns");
	@steps = UATest::cutover_steps($bg->{stdout});
	steps_are(\@steps, $failing, "$what: '$failing' failed, then abort");
	like($bg->{stderr}, qr/WARNING/, "$what: a warning");
	check_aborted($attempt, $failing, $what);
	$fn->start;
	check_forward($what);
	my @left = (UATest::orphan_slots($fo, $fn), UATest::orphan_slots($fn, $fo));
	note "$what: slots without a subscription: @left" if @left;
}

# ---------------------------------------------------------------------------
# After all that, the cutover succeeds
# ---------------------------------------------------------------------------
($r, @steps) = cutover($fo, 'new_side');
steps_are(\@steps, undef, 'after the faults: the cutover succeeds');
is(fenced($fo) . fenced($fn), 'tf', 'after the faults: old fenced, new writable');
no_orphan_slots($fo, $fn, 'after the faults and a cutover');

$fo->stop;
$fn->stop;
done_testing();
