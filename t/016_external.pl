# Copyright (c) upgrade_assist contributors

# cutover(..., replication => 'external') over a CDC pipeline that is not
# native logical replication (docs/external-pipelines.md), between two
# clusters of different major versions: runs in the pair runs only
# (UA_OLD_INSTALL).
#
# The pipeline is the fixture relay t/fixtures/cdc_relay.pl (test_decoding, peek,
# apply + position in one target transaction, advance; a replication origin
# per direction), moved by the switch command t/fixtures/cdc_switch.pl as
# upgrade_assist.cutover_command on both clusters; the relay's role is in
# upgrade_assist.fence_exempt_roles on both sides.  No native publication or
# subscription exists anywhere in this file.
#
# Cases:
#   - bad setup: no cutover_command: the checks refuse, nothing fenced;
#   - dry run: checks (with the marker round trip through the relay) and lag
#     check run, the rest would do, nothing changes;
#   - the peer stopped before the final marker: clean abort within the
#     timeout, this side writable, the 'aborted' moment ran, and after the
#     peer is back the relay carries on exactly once;
#   - the reverse pipeline not started at 'start reverse' (the command stops
#     the forward relay and starts nothing): the reverse round trip fails at
#     the timeout, clean abort, old side writable, 'aborted' restarted the
#     forward relay, and the rows written meanwhile reach the new side;
#   - under four ledger writers: a cutover to new and its rollback to old,
#     both through the relays; every acknowledged write exactly once on both
#     sides, no duplicate key, the takeover's record names no subscription,
#     and no replication slot is left but the running relay's.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use UATest;

plan skip_all => 'runs in the pair runs only' unless $ENV{UA_OLD_INSTALL};

my $switch = "$FindBin::RealBin/fixtures/cdc_switch.pl";
my $dir = PostgreSQL::Test::Utils::tempdir();

my ($old, $new) = UATest::external_pair(
	old_install => $ENV{UA_OLD_INSTALL},
	dir => $dir);
my ($op, $np) = ($old->port, $new->port);
note 'old: ' . $old->safe_psql('postgres', 'SELECT version()');
note 'new: ' . $new->safe_psql('postgres', 'SELECT version()');

# The relay carried the seed rows; nothing native exists.
is($new->safe_psql('postgres', 'SELECT count(*) FROM public.t_always'),
	'3', 'the relay carried the seed rows');
is( $new->safe_psql('postgres',
		'SELECT count(*) FROM pg_subscription') . ' '
	  . $old->safe_psql('postgres', 'SELECT count(*) FROM pg_publication'),
	'0 0',
	'no native subscription or publication');

sub cutover
{
	my ($node, $peer, %args) = @_;
	my $start = time;
	my ($rc, $out, $err) = $node->psql('postgres',
		UATest::cutover_sql($peer, replication => 'external', %args));
	return ($rc, $err, time - $start, UATest::cutover_steps($out));
}

sub status_of
{
	my ($steps, $name) = @_;
	my ($s) = grep { $_->{step} eq $name } @$steps;
	return $s ? $s->{status} : 'missing';
}

sub detail_of
{
	my ($steps, $name) = @_;
	my ($s) = grep { $_->{step} eq $name } @$steps;
	return $s ? $s->{detail} : '';
}

# A row written on from reaches to (the relay carries it), within the default
# timeout.
my $probe = 0;

sub carries
{
	my ($from, $to, $what) = @_;
	$probe++;
	$from->safe_psql('postgres',
		"INSERT INTO public.t_bigserial (tag, side) VALUES ('probe.$probe', 'probe')");
	ok( $to->poll_query_until(
			'postgres',
			"SELECT count(*) = 1 FROM public.t_bigserial WHERE tag = 'probe.$probe'"),
		"$what: a row written on " . $from->name . ' reaches ' . $to->name);
	return;
}

sub moment_ran
{
	my ($node, $moment, $offset) = @_;
	return $node->log_contains(
		qr/cutover_command for moment "$moment" of attempt/, $offset);
}

# Delete every row but the seed rows on old (the primary) and wait until the
# relay has carried that to new, so that the next writers' ledger is alone.
sub clear_rows
{
	$old->safe_psql('postgres', join("\n",
		map { "DELETE FROM public.$_ WHERE side <> 'seed';" } @UATest::LEDGER_TABLES));
	$old->safe_psql('postgres', q{SELECT upgrade_assist.round_trip('new_side', '60s')});
	return $new->safe_psql('postgres',
		'SELECT count(*) FROM (' . join(' UNION ALL ',
			map { "SELECT 1 FROM public.$_ WHERE side <> 'seed'" } @UATest::LEDGER_TABLES) . ') s');
}

sub fenced
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		'SELECT fenced FROM upgrade_assist.fence_status');
}

# ---------------------------------------------------------------------------
# No switch command: external mode refuses in the checks, before the fence
# ---------------------------------------------------------------------------
$old->safe_psql('postgres', q{ALTER SYSTEM SET upgrade_assist.cutover_command = ''});
$old->reload;
$old->poll_query_until('postgres',
	q{SELECT current_setting('upgrade_assist.cutover_command') = ''});
my ($rc, $err, $elapsed, @steps) = cutover($old, 'new_side');
is(status_of(\@steps, 'checks'), 'failed', 'no cutover_command: the checks fail');
like(detail_of(\@steps, 'checks'), qr/needs upgrade_assist\.cutover_command/,
	'no cutover_command: the checks say why');
is(fenced($old), 'f', 'no cutover_command: old not fenced');
$old->safe_psql('postgres', 'ALTER SYSTEM RESET upgrade_assist.cutover_command');
$old->reload;
$old->poll_query_until('postgres',
	q{SELECT current_setting('upgrade_assist.cutover_command') <> ''});

# ---------------------------------------------------------------------------
# Dry run
# ---------------------------------------------------------------------------
my $attempts = $old->safe_psql('postgres', 'SELECT count(*) FROM upgrade_assist.cutover_history');
($rc, $err, $elapsed, @steps) = cutover($old, 'new_side', dry_run => 'true');
# The checks' preflight counts against the timeout, and takes seconds on a
# loaded machine: the timeout of the case that waits for it to pass is made
# from what this dry run took.
my $rt_timeout = int(2 * $elapsed) + 15;
note sprintf('dry run: %.1f s; timeout of the reverse case: %d s', $elapsed, $rt_timeout);
is(status_of(\@steps, 'checks'), 'done', 'dry run: checks done');
like(detail_of(\@steps, 'checks'), qr/external pipeline: probe marker \d+ on the peer/,
	'dry run: the checks proved the pipeline with a marker');
is(status_of(\@steps, 'lag check'), 'done', 'dry run: lag check done');
is(status_of(\@steps, 'reverse replication'), 'would do', 'dry run: reverse would do');
like(detail_of(\@steps, 'reverse replication'), qr/moment 'start reverse'/,
	'dry run: says the command runs at start reverse');
is(fenced($old) . fenced($new), 'ft', 'dry run: old writable, new fenced');
is($old->safe_psql('postgres', 'SELECT count(*) FROM upgrade_assist.cutover_history'),
	$attempts, 'dry run: no attempt recorded');
carries($old, $new, 'after the dry run');

# ---------------------------------------------------------------------------
# The peer stopped before the final marker
# ---------------------------------------------------------------------------
{
	my $what = 'peer stopped before the final marker';
	my $offset = -s $old->logfile;
	my $before = $old->safe_psql('postgres',
		'SELECT coalesce(max(attempt), 0) FROM upgrade_assist.cutover_history');
	my $bg = UATest::bg_commands(
		$old, 'ua_ext_peer_stop',
		q{SET upgrade_assist.cutover_pause_before = 'final marker'},
		UATest::cutover_sql('new_side', replication => 'external', timeout => '120s'));
	$old->poll_query_until(
		'postgres', qq{
SELECT EXISTS (SELECT FROM upgrade_assist.cutover_progress
                WHERE phase = 'paused before final marker')
    OR EXISTS (SELECT FROM upgrade_assist.cutover_history
                WHERE attempt > $before AND outcome <> 'running')});
	is($old->safe_psql('postgres', 'SELECT phase FROM upgrade_assist.cutover_progress'),
		'paused before final marker', "$what: paused");
	$new->stop('immediate');
	my $t0 = time;
	$old->safe_psql('postgres', 'SELECT upgrade_assist.cutover_resume()');
	ok(defined UATest::bg_finish($bg), "$what: the cutover returns");
	my $took = time - $t0;
	@steps = UATest::cutover_steps($bg->{stdout});
	is(status_of(\@steps, 'wait for marker'), 'failed', "$what: wait for marker failed");
	is(status_of(\@steps, 'abort'), 'done', "$what: the abort ran");
	ok($took < 120, "$what: aborted within the timeout (" . sprintf('%.1f', $took) . ' s after the resume)');
	is($old->safe_psql('postgres',
			"SELECT outcome FROM upgrade_assist.cutover_history WHERE attempt > $before"),
		'aborted', "$what: recorded as aborted");
	is(fenced($old), 'f', "$what: old writable");
	$old->safe_psql('postgres',
		"INSERT INTO public.t_always (tag, side) VALUES ('after.peer.stop', 'probe')");
	ok(moment_ran($old, 'aborted', $offset), "$what: the 'aborted' moment ran");
	ok(!moment_ran($old, 'start reverse', $offset), "$what: 'start reverse' never ran");
	$new->start;
	is(fenced($new), 't', "$what: new still fenced after its restart");
	# The relay died with its target; restarted, it resumes exactly once.
	system($^X, $switch, $dir, 'relay-start', $op, $np) == 0
	  or die "could not restart the relay";
	ok( $new->poll_query_until(
			'postgres',
			q{SELECT count(*) = 1 FROM public.t_always WHERE tag = 'after.peer.stop'}),
		"$what: the row written after the abort reaches new once");
	carries($old, $new, $what);
}

# ---------------------------------------------------------------------------
# The reverse pipeline not started in time
# ---------------------------------------------------------------------------
{
	my $what = 'reverse pipeline not started';
	my $offset = -s $old->logfile;
	$old->safe_psql('postgres',
		"ALTER SYSTEM SET upgrade_assist.cutover_command = '"
		  . UATest::external_command($dir, 'CDC_SWITCH_NO_REVERSE=1 ') . "'");
	$old->reload;
	$old->poll_query_until('postgres',
		q{SELECT current_setting('upgrade_assist.cutover_command') LIKE 'CDC_SWITCH_NO_REVERSE%'});
	is(clear_rows(), '0', "$what: the relay carried the deletes of earlier rows");
	my $w = UATest::start_writers(
		sides => [ old => $old, new => $new ],
		writers => 2,
		max_inserts => 100000,
		max_seconds => 60);
	$old->poll_query_until('postgres',
		'SELECT ' . UATest::ledger_count_sql('old') . ' >= 10');
	($rc, $err, $elapsed, @steps) = cutover($old, 'new_side', timeout => "${rt_timeout}s");
	is(status_of(\@steps, 'reverse replication'), 'done',
		"$what: 'start reverse' ran (and started nothing)");
	is(status_of(\@steps, 'reverse round trip'), 'failed', "$what: the reverse round trip failed");
	like(detail_of(\@steps, 'reverse round trip'), qr/did not arrive here within the timeout/,
		"$what: it says why");
	is(status_of(\@steps, 'unfence peer'), 'skipped', "$what: the peer was not unfenced");
	is(status_of(\@steps, 'abort'), 'done', "$what: the abort ran");
	ok($elapsed < $rt_timeout + 10,
		"$what: aborted within the timeout of $rt_timeout s (" . sprintf('%.1f', $elapsed) . ' s)');
	is(fenced($old) . fenced($new), 'ft', "$what: old writable, new fenced");
	ok(moment_ran($old, 'aborted', $offset), "$what: the 'aborted' moment ran");
	$old->poll_query_until('postgres',
		'SELECT ' . UATest::ledger_count_sql('old') . ' >= 20');
	my $l = UATest::stop_writers($w);
	is_deeply($l->{failed}, [], "$what: writers ended cleanly");
	is(scalar(@{ $l->{dup} }), 0, "$what: no duplicate key");
	# Everything acknowledged is on old, and the restarted relay brings it to new.
	is(join("\n", UATest::ledger_problems($l, $old)), '', "$what: old has every acknowledged row once");
	$old->safe_psql('postgres', q{SELECT upgrade_assist.round_trip('new_side', '60s')});
	is(join("\n", UATest::ledger_problems($l, $new)), '', "$what: new has every acknowledged row once");
	$old->safe_psql('postgres', 'ALTER SYSTEM RESET upgrade_assist.cutover_command');
	$old->reload;
	$old->poll_query_until('postgres',
		q{SELECT current_setting('upgrade_assist.cutover_command') NOT LIKE 'CDC_SWITCH_NO_REVERSE%'});
}

# ---------------------------------------------------------------------------
# Cutover and rollback under ledger writers
# ---------------------------------------------------------------------------
{
	is(clear_rows(), '0', 'the relay carried the deletes of the earlier ledger');
	my $w = UATest::start_writers(
		sides => [ old => $old, new => $new ],
		writers => 4,
		max_inserts => 100000,
		max_seconds => 90);
	$old->poll_query_until('postgres',
		'SELECT ' . UATest::ledger_count_sql('old') . ' >= 20');

	my $offset = -s $old->logfile;
	# A generous timeout: the checks' preflight takes seconds on a loaded
	# machine, and only a failure would wait for it.
	($rc, $err, $elapsed, @steps) = cutover($old, 'new_side', timeout => '180s');
	my @bad = grep { $_->{status} ne 'done' } @steps;
	is(join(', ', map { "$_->{step} $_->{status}: $_->{detail}" } @bad), '',
		'cutover: every step done');
	like(detail_of(\@steps, 'reverse replication'), qr/moment "start reverse" succeeded/,
		"cutover: 'start reverse' ran");
	like(detail_of(\@steps, 'reverse round trip'), qr/reverse pipeline/,
		'cutover: the reverse round trip came through the reverse relay');
	is(fenced($old) . fenced($new), 'tf', 'cutover: new writable, old fenced');
	ok(moment_ran($old, 'done', $offset), "cutover: the 'done' moment ran");
	is($new->safe_psql('postgres',
			q{SELECT count(*) FROM upgrade_assist.cutover_attempt
               WHERE state = 'committed' AND forward_subscription IS NULL AND forward_slot IS NULL}),
		'1', 'cutover: the takeover record names no subscription (nothing native to drop)');
	$new->poll_query_until('postgres',
		'SELECT ' . UATest::ledger_count_sql('new') . ' >= 20');
	note 'cutover blackout: '
	  . $old->safe_psql('postgres',
		'SELECT blackout FROM upgrade_assist.cutover_history ORDER BY attempt DESC LIMIT 1');

	# Rollback: the same call on new.
	my $old_rows = $old->safe_psql('postgres', 'SELECT ' . UATest::ledger_count_sql('old'));
	$offset = -s $new->logfile;
	($rc, $err, $elapsed, @steps) = cutover($new, 'old_side', timeout => '180s');
	@bad = grep { $_->{status} ne 'done' } @steps;
	is(join(', ', map { "$_->{step} $_->{status}: $_->{detail}" } @bad), '',
		'rollback: every step done');
	is(fenced($old) . fenced($new), 'ft', 'rollback: old writable, new fenced');
	ok(moment_ran($new, 'start reverse', $offset), "rollback: 'start reverse' ran on new");
	ok( $old->poll_query_until('postgres',
			'SELECT ' . UATest::ledger_count_sql('old') . " >= $old_rows + 10"),
		'rollback: the writers commit on old again');

	my $l = UATest::stop_writers($w);
	is_deeply($l->{failed}, [], 'writers ended cleanly');
	is(scalar(@{ $l->{dup} }), 0, 'no duplicate key');
	is(scalar(@{ $l->{error} }), 0, 'no other error')
	  or diag(join("\n", @{ $l->{error} }));
	ok($l->{fenced} > 0, 'the writers met the fence and moved');
	# The relay old->new carries the last rows; then both sides agree.
	$old->safe_psql('postgres', q{SELECT upgrade_assist.round_trip('new_side', '60s')});
	is(join("\n", UATest::ledger_problems($l, $old)), '',
		'old: every acknowledged write exactly once');
	is(join("\n", UATest::ledger_problems($l, $new)), '',
		'new: every acknowledged write exactly once');
	my $acked_new = grep { / new$/ } values %{ $l->{acked} };
	ok($acked_new > 0, "writes were acknowledged on new between the two ($acked_new)");
	is( $old->safe_psql('postgres', 'SELECT string_agg(slot_name, \',\') FROM pg_replication_slots')
		  . ' / '
		  . $new->safe_psql('postgres', 'SELECT string_agg(slot_name, \',\') FROM pg_replication_slots'),
		"cdc_relay_${op}_$np / ",
		'only the running relay old->new has a slot');
}

system($^X, $switch, $dir, 'relay-stop', $op, $np);
system($^X, $switch, $dir, 'relay-stop', $np, $op);
$old->stop;
$new->stop;
done_testing();
