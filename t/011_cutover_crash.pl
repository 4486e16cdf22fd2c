
# Copyright (c) upgrade_assist contributors

# After a crash mid-cutover, the two clusters find their primary by
# themselves (docs/recovery.md).  Runs in the pair runs only (two clusters
# of different versions: old is UA_OLD_INSTALL), on one pair set up by
# UATest::cutover_pair, five attempts in a row, each stopped at a pause
# point (upgrade_assist.cutover_pause_before) and a server stopped there:
#
# 1. old -> new, paused right after the takeover committed on new (the
#    answer dropped), new stopped and started again: old asks until new
#    answers, and the attempt ends 'succeeded' by itself.
# 2. new -> old, paused right before the takeover, the peer (old) stopped,
#    the worker resumed, old started again: the question leaves a
#    tombstone, the attempt ends 'aborted', new unfences itself, and a late
#    takeover of that attempt refuses.
# 3. new -> old, paused before "unfence peer" (before the point of no
#    return), new stopped with an immediate shutdown and started: the
#    resolver at startup settles it 'aborted', new is writable again.
# 4. new -> old, paused right after the takeover committed on old, new
#    stopped (immediate) and started: the resolver settles it 'succeeded',
#    old is the primary and the detached forward subscription is dropped.
# 5. old -> new, paused before the takeover, new stopped and not started
#    again: after the timeout the attempt is 'unknown', old stays fenced and
#    fence_status says why; cutover_resolve() refuses without an answer;
#    once new is back, the resolver settles it 'aborted'.
# 7. old -> new, paused before "fence" (after prepare), old stopped
#    (immediate) and started: the next cutover drops the prepared reverse
#    direction left behind and succeeds; then the rollback.
# 6. new restarted with a takeover noted in its fence file (the state a
#    crash between the takeover's commit and its fence lift leaves, built by
#    hand): without the record the fence stays, with it the fence lifts.
#
# At every checked point at most one cluster is writable, and after each
# settling exactly one is.  No sleeps: every wait polls a condition.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use UATest;

plan skip_all => 'runs in the pair runs only' unless $ENV{UA_OLD_INSTALL};

my ($old, $new) = UATest::cutover_pair(old_install => $ENV{UA_OLD_INSTALL});
my %up = (old => 1, new => 1);
my %node = (old => $old, new => $new);
my %peer_of = (old => 'new_side', new => 'old_side');
my $probe = 0;

sub fenced
{
	my ($name) = @_;
	return $node{$name}->safe_psql('postgres',
		'SELECT fenced FROM upgrade_assist.fence_status');
}

# At most one running cluster is unfenced; with $exactly, exactly $exactly.
sub check_primaries
{
	my ($what, $exactly) = @_;
	my @writable = grep { $up{$_} && fenced($_) eq 'f' } sort keys %node;
	ok(@writable <= 1, "$what: never two writable primaries")
	  or diag("unfenced: @writable");
	is(join(',', @writable), $exactly, "$what: the primary is $exactly")
	  if defined $exactly;
	return;
}

# A row written on the primary arrives on the other side.
sub check_replication
{
	my ($from, $to, $what) = @_;
	$probe++;
	$node{$from}->safe_psql('postgres',
		"INSERT INTO public.t_bigserial (tag, side) VALUES ('crash.$probe', '$from')");
	ok( $node{$to}->poll_query_until(
			'postgres',
			"SELECT count(*) = 1 FROM public.t_bigserial WHERE tag = 'crash.$probe'"),
		"$what: a write on $from replicates to $to");
	return;
}

sub last_attempt
{
	my ($name) = @_;
	return $node{$name}->safe_psql('postgres',
		'SELECT coalesce(max(attempt), 0) FROM upgrade_assist.cutover_history');
}

# Start cutover on $name in the background, paused at $pause; wait until
# it is.  Returns the handle and the attempt.
sub start_paused
{
	my ($name, $pause, %args) = @_;
	my $node = $node{$name};
	my $before = last_attempt($name);
	my $phase = $pause =~ /^takeover/ ? "paused at $pause" : "paused before $pause";
	my $bg = UATest::bg_commands(
		$node, "ua_crash_$name",
		"SET upgrade_assist.cutover_pause_before = '$pause'",
		UATest::cutover_sql($peer_of{$name}, %args));
	$node->poll_query_until(
		'postgres', qq{
SELECT EXISTS (SELECT FROM upgrade_assist.cutover_progress WHERE phase = '$phase')
    OR EXISTS (SELECT FROM upgrade_assist.cutover_history
                WHERE attempt > $before AND outcome <> 'running')});
	my ($got, $attempt) = split /\|/,
	  $node->safe_psql('postgres',
		'SELECT phase, attempt FROM upgrade_assist.cutover_progress');
	is($got, $phase, "$name: the cutover is $phase")
	  or diag(UATest::bg_finish($bg) // '', $bg->{stdout}, $bg->{stderr});
	return ($bg, $attempt);
}

sub resume
{
	my ($name) = @_;
	return $node{$name}->safe_psql('postgres', 'SELECT upgrade_assist.cutover_resume()');
}

sub stop
{
	my ($name) = @_;
	$node{$name}->stop('immediate');
	$up{$name} = 0;
	return;
}

sub start
{
	my ($name) = @_;
	$node{$name}->start;
	$up{$name} = 1;
	return;
}

# Wait until attempt's history row on $name is settled; returns outcome and
# resolution.
sub settled
{
	my ($name, $attempt, @outcomes) = @_;
	my $list = join(', ', map { "'$_'" } @outcomes);
	$node{$name}->poll_query_until('postgres',
		"SELECT outcome IN ($list) FROM upgrade_assist.cutover_history WHERE attempt = $attempt")
	  or diag("attempt $attempt on $name not settled: "
		  . $node{$name}->safe_psql('postgres',
			"SELECT outcome, reason FROM upgrade_assist.cutover_history WHERE attempt = $attempt"));
	return split /\|/,
	  $node{$name}->safe_psql('postgres',
		"SELECT outcome, coalesce(resolution, '') FROM upgrade_assist.cutover_history WHERE attempt = $attempt"
	  );
}

sub sysid
{
	my ($name) = @_;
	return $node{$name}->safe_psql('postgres',
		'SELECT system_identifier FROM pg_control_system()');
}

sub count_sql
{
	my ($name, $sql) = @_;
	return $node{$name}->safe_psql('postgres', "SELECT count(*) FROM ($sql) x");
}

check_primaries('set up', 'old');

# ---------------------------------------------------------------------------
# 1. old -> new; the answer of the committed takeover lost, new restarted
# ---------------------------------------------------------------------------
my ($bg, $attempt) = start_paused('old', 'takeover answer');
check_primaries('1: takeover committed on new, answer not read', 'new');
is( $new->safe_psql(
		'postgres',
		"SELECT state FROM upgrade_assist.cutover_attempt WHERE attempt = $attempt AND origin = "
		  . sysid('old')),
	'committed',
	'1: new recorded the attempt as committed in the takeover');
is( count_sql('new',
		"SELECT FROM pg_subscription WHERE subname = 'upgrade' AND NOT subenabled AND subslotname IS NULL"),
	'1', '1: the forward subscription is disabled and detached, not dropped, inside the takeover');
stop('new');
is(resume('old'), 't', '1: resumed with new down');
check_primaries('1: new down, old asking');
start('new');
UATest::bg_finish($bg);
is($bg->{rc}, 0, '1: cutover() returned') or diag($bg->{stderr});
my ($outcome) = settled('old', $attempt, 'succeeded', 'aborted', 'unknown');
is($outcome, 'succeeded', '1: the attempt succeeded by itself');
like($bg->{stdout}, qr/unfence peer\|done\|the answer was lost; asked the peer \d+ time/,
	'1: the worker asked the peer after the lost answer');
check_primaries('1: settled', 'new');
is(count_sql('new', "SELECT FROM pg_subscription WHERE subname = 'upgrade'"),
	'0', '1: the detached forward subscription was dropped after the point of no return');
is( count_sql('old',
		"SELECT FROM pg_replication_slots WHERE slot_name = 'upgrade'"),
	'0', '1: the old forward slot is dropped');
is($old->safe_psql('postgres', 'SELECT cutover_attempt IS NULL FROM upgrade_assist.fence_status'),
	't', '1: the fence on old no longer names the attempt');
check_replication('new', 'old', '1');

# ---------------------------------------------------------------------------
# 2. new -> old; the peer (old) stopped right before the takeover
# ---------------------------------------------------------------------------
($bg, $attempt) = start_paused('new', 'takeover');
check_primaries('2: paused before the takeover', '');
stop('old');
is(resume('new'), 't', '2: resumed with old down');
check_primaries('2: old down, new asking', '');
start('old');
UATest::bg_finish($bg);
($outcome) = settled('new', $attempt, 'succeeded', 'aborted', 'unknown');
is($outcome, 'aborted', '2: the attempt aborted by itself');
check_primaries('2: settled', 'new');
is( $old->safe_psql(
		'postgres',
		"SELECT state FROM upgrade_assist.cutover_attempt WHERE attempt = $attempt AND origin = "
		  . sysid('new')),
	'not committed',
	'2: the answer left a tombstone on old');
my $late = UATest::sql_result($old,
	    'SELECT upgrade_assist.fence_exempt_session(); '
	  . "SELECT upgrade_assist.cutover_takeover('upgrade_assist_cutover', "
	  . sysid('new')
	  . ", $attempt)");
is($late->{sqlstate}, '55000', '2: a late takeover of that attempt refuses')
  or diag($late->{stderr});
is(fenced('old'), 't', '2: old still fenced after the refused takeover');
is(count_sql('old', "SELECT FROM pg_subscription WHERE subname = 'upgrade_assist_cutover' AND subenabled"),
	'1', '2: the forward subscription on old is untouched');
check_replication('new', 'old', '2');

# ---------------------------------------------------------------------------
# 3. new -> old; new crashes before the point of no return
# ---------------------------------------------------------------------------
($bg, $attempt) = start_paused('new', 'unfence peer');
stop('new');
UATest::bg_finish($bg);
isnt($bg->{rc}, 0, '3: the caller lost its server');
start('new');
my $resolution;
($outcome, $resolution) = settled('new', $attempt, 'succeeded', 'aborted');
is($outcome, 'aborted', '3: settled as aborted at restart, without a call');
like($resolution, qr/resolver/, '3: by the resolver');
check_primaries('3: settled', 'new');
is(count_sql('new', "SELECT FROM pg_subscription WHERE subname = 'upgrade_assist_cutover'"),
	'0', '3: the reverse subscription on new is dropped');
is( count_sql('old',
		"SELECT FROM pg_replication_slots WHERE slot_name LIKE 'ua_cutover_%'"),
	'0', '3: no reverse slot left on old');
check_replication('new', 'old', '3');

# ---------------------------------------------------------------------------
# 4. new -> old; new crashes after the takeover committed on old
# ---------------------------------------------------------------------------
($bg, $attempt) = start_paused('new', 'takeover answer');
check_primaries('4: takeover committed on old', 'old');
stop('new');
UATest::bg_finish($bg);
start('new');
($outcome, $resolution) = settled('new', $attempt, 'succeeded', 'aborted');
is($outcome, 'succeeded', '4: settled as succeeded at restart, without a call');
like($resolution, qr/resolver/, '4: by the resolver');
check_primaries('4: settled', 'old');
ok( $old->poll_query_until(
		'postgres',
		"SELECT count(*) = 0 FROM pg_subscription WHERE subname = 'upgrade_assist_cutover'"),
	'4: the detached forward subscription on old is dropped');
is( count_sql('new',
		"SELECT FROM pg_replication_slots WHERE slot_name LIKE 'ua_cutover_%'"),
	'0', '4: the old forward slot on new is dropped');
check_replication('old', 'new', '4');

# ---------------------------------------------------------------------------
# 5. old -> new; the peer never comes back (until the end)
# ---------------------------------------------------------------------------
# (30 s: long enough for the steps before the takeover on a loaded machine,
# the preflight aside, which no longer counts against the timeout; the
# worker asks the peer until the timeout passes.)
($bg, $attempt) = start_paused('old', 'takeover', timeout => '30s');
stop('new');
is(resume('old'), 't', '5: resumed with new down');
UATest::bg_finish($bg);
like($bg->{stderr}, qr/WARNING/, '5: the caller is warned');
($outcome) = settled('old', $attempt, 'unknown', 'succeeded', 'aborted');
is($outcome, 'unknown', '5: unknown after the timeout');
check_primaries('5: new down');
is(fenced('old'), 't', '5: old stays fenced');
ok( $old->poll_query_until(
		'postgres', qq{
SELECT cutover_attempt = $attempt AND waiting_for LIKE '%no answer from the peer%'
  FROM upgrade_assist.fence_status}),
	'5: fence_status says what old waits for')
  or diag($old->safe_psql('postgres', 'SELECT * FROM upgrade_assist.fence_status'));
my $r = UATest::sql_result($old, 'SELECT * FROM upgrade_assist.cutover_resolve()');
is($r->{sqlstate}, '08006', '5: cutover_resolve() without an answer refuses')
  or diag($r->{stderr});
is(fenced('old'), 't', '5: old still fenced');
start('new');
($outcome, $resolution) = settled('old', $attempt, 'succeeded', 'aborted');
is($outcome, 'aborted', '5: new back: the resolver settles it as aborted');
check_primaries('5: settled', 'old');
check_replication('old', 'new', '5');

# ---------------------------------------------------------------------------
# 7. old -> new, paused before "fence" (after prepare made the reverse
#    direction), old stopped with an immediate shutdown and started: no
#    fence was up, so no resolver settles the attempt; old is writable and
#    the reverse subscription prepare made is left.  The next cutover drops
#    that leftover (its publication on new still publishes nothing) and
#    succeeds; the interrupted attempt's row says so; the rollback follows.
# ---------------------------------------------------------------------------
($bg, $attempt) = start_paused('old', 'fence');
stop('old');
UATest::bg_finish($bg);
start('old');
check_primaries('7: old restarted before its fence', 'old');
# the forward subscription's apply worker on new reconnects to old first
check_replication('old', 'new', '7 after the restart');
is( count_sql('old',
		"SELECT FROM pg_subscription WHERE subname = 'upgrade_assist_cutover'"),
	'1', '7: the prepared reverse subscription is left on old');
my $out7 = $old->safe_psql('postgres', UATest::cutover_sql('new_side'));
my %st7 = map { $_->{step} => $_ } UATest::cutover_steps($out7);
ok(!grep({ $_->{status} ne 'done' } UATest::cutover_steps($out7)) && $st7{cleanup},
	'7: the next cutover succeeds') or diag($out7);
like($st7{checks}{detail}, qr/interrupted before its fence/,
	'7: its checks name the leftover');
like($st7{prepare}{detail}, qr/dropped subscription upgrade_assist_cutover here and slot/,
	'7: its prepare drops it');
is( $old->safe_psql('postgres',
		"SELECT outcome FROM upgrade_assist.cutover_history WHERE attempt = $attempt"),
	'interrupted', '7: the interrupted attempt is recorded as such');
check_primaries('7: after the cutover', 'new');
check_replication('new', 'old', '7');
$out7 = $new->safe_psql('postgres', UATest::cutover_sql('old_side'));
%st7 = map { $_->{step} => $_ } UATest::cutover_steps($out7);
ok(!grep({ $_->{status} ne 'done' } UATest::cutover_steps($out7)) && $st7{cleanup},
	'7: the rollback succeeds') or diag($out7);
check_primaries('7: after the rollback', 'old');
check_replication('old', 'new', '7 back');

# ---------------------------------------------------------------------------
# 6. The peer's own restart after a takeover noted in its fence file: the
#    state a crash between the takeover's commit and its fence lift leaves
#    (built here by hand, with old fenced so that one primary remains).
# ---------------------------------------------------------------------------
$old->safe_psql('postgres', q{SELECT count(*) FROM upgrade_assist.fence('test: new takes over')});
$new->safe_psql(
	'postgres', q{
SELECT upgrade_assist.fence_exempt_session();
SELECT upgrade_assist.fence_note_takeover(12345, 7);
});
stop('new');
start('new');
$new->wait_for_log(qr/takeover of attempt 7 \(cluster 12345\) did not commit here; the fence stays/);
is(fenced('new'), 't', '6: a takeover noted without its record: the fence stays at restart');
$new->safe_psql(
	'postgres', q{
SELECT upgrade_assist.fence_exempt_session();
BEGIN;
INSERT INTO upgrade_assist.cutover_attempt (origin, attempt, state) VALUES (12345, 8, 'committed');
SELECT upgrade_assist.fence_note_takeover(12345, 8);
COMMIT;
});
stop('new');
start('new');
ok( $new->poll_query_until(
		'postgres', q{
SELECT NOT fenced AND lifted_by LIKE 'takeover of attempt 8 %' FROM upgrade_assist.fence_status}),
	'6: a committed takeover noted in the fence file: the fence lifts at restart');
check_primaries('6: settled', 'new');

$old->stop;
$new->stop;
done_testing();
