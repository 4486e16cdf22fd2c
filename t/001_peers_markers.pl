
# Copyright (c) upgrade_assist contributors

# Peers and markers between two real clusters: 'old' (UA_OLD_INSTALL when set,
# another major version) replicates to 'new' with native logical replication;
# old calls new as its peer.  Covers emit_marker, wait_for_marker and
# round_trip: success, inside a transaction block, the timeout, cancel and
# terminate during a wait, a stopped peer, a peer that never answers, a wrong
# password, and concurrent markers.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use IO::Select;
use IO::Socket::INET;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use UATest;

my $old = UATest::node('old', install_path => $ENV{UA_OLD_INSTALL});
my $new = UATest::node('new');
note 'old: ' . $old->safe_psql('postgres', 'SELECT version()');
note 'new: ' . $new->safe_psql('postgres', 'SELECT version()');

my $origin = UATest::system_identifier($old);

# No wall-clock limit here but the harness's: a call that should end promptly
# (cancelled, terminated, its peer gone) is given timeouts of its own (the
# round trip's, connect_timeout) beyond that limit, so that its returning
# within the limit proves that it was ended by what the test did and not by
# waiting them out, and the error's SQLSTATE says what ended it.
my $TIMEOUT = $PostgreSQL::Test::Utils::timeout_default;
my $BEYOND = 2 * $TIMEOUT;
$BEYOND = 3600 if $BEYOND > 3600;    # connect_timeout's maximum

# Replication: a user table and the marker table, old -> new.
for my $node ($old, $new)
{
	$node->safe_psql('postgres',
		'CREATE TABLE public.items (id int PRIMARY KEY, v text)');
}
$old->safe_psql(
	'postgres', q{
INSERT INTO public.items VALUES (1, 'before the subscription');
SELECT upgrade_assist.emit_marker('initial');
CREATE PUBLICATION ua_pub FOR ALL TABLES;
});
UATest::subscribe($new, $old, 'ua_sub', 'ua_pub');
is( $new->safe_psql(
		'postgres',
		"SELECT count(*) FROM upgrade_assist.marker WHERE origin = $origin"),
	'1',
	'initial copy carries the marker table');

UATest::create_peer($old, 'new_peer', $new);

# ---------------------------------------------------------------------------
# emit_marker and wait_for_marker
# ---------------------------------------------------------------------------
my $row = $old->safe_psql(
	'postgres', q{
SELECT origin, seq, kind, note IS NULL,
       written_at BETWEEN now() AND clock_timestamp(),
       written_lsn > '0/0'::pg_lsn
  FROM upgrade_assist.emit_marker()});
my ($m_origin, $seq1, $m_kind, $m_nonote, $m_at, $m_lsn) = split /\|/, $row;
is($m_origin, $origin, 'emit_marker: origin is the system identifier');
is($m_kind, 'probe', 'emit_marker: kind defaults to probe');
is($m_nonote, 't', 'emit_marker: note defaults to NULL');
is($m_at, 't', 'emit_marker: written_at set');
is($m_lsn, 't', 'emit_marker: written_lsn set');

$row = $old->safe_psql('postgres',
	"SELECT seq, kind, note FROM upgrade_assist.emit_marker('test', 'hello')");
my ($seq2, $kind2, $note2) = split /\|/, $row;
cmp_ok($seq2, '>', $seq1, 'emit_marker: seq increases');
is("$kind2|$note2", 'test|hello', 'emit_marker: kind and note stored');

# A rolled-back emit_marker leaves nothing behind.
$old->safe_psql('postgres',
	"BEGIN; SELECT upgrade_assist.emit_marker('rolled back'); ROLLBACK;");
is( $old->safe_psql(
		'postgres',
		"SELECT count(*) FROM upgrade_assist.marker WHERE kind = 'rolled back'"),
	'0',
	'emit_marker writes in the caller\'s transaction');

$new->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM upgrade_assist.marker WHERE origin = $origin AND seq = $seq2"
) or die 'marker did not replicate';
pass('marker replicated to new');

is( $old->safe_psql(
		'postgres',
		"SELECT upgrade_assist.wait_for_marker('new_peer', $seq2, '30s') >= interval '0'"
	),
	't',
	'wait_for_marker returns an interval for a marker already on the peer');

# ---------------------------------------------------------------------------
# round_trip
# ---------------------------------------------------------------------------
$row = $old->safe_psql(
	'postgres', q{
SELECT seq, written_lsn IS NOT NULL, latency > interval '0'
  FROM upgrade_assist.round_trip('new_peer', '30s')});
my ($rt_seq, $rt_lsn, $rt_latency) = split /\|/, $row;
cmp_ok($rt_seq, '>', $seq2, 'round_trip: new marker');
is("$rt_lsn|$rt_latency", 't|t', 'round_trip: written_lsn and latency > 0');
is( $new->safe_psql(
		'postgres',
		"SELECT count(*) FROM upgrade_assist.marker WHERE origin = $origin AND seq = $rt_seq"
	),
	'1',
	'round_trip: the marker is on the peer');

# Inside a transaction block: the marker is committed independently.
my $tx_seq = $old->safe_psql(
	'postgres', q{
BEGIN;
SELECT seq FROM upgrade_assist.round_trip('new_peer', '30s');
ROLLBACK;});
like($tx_seq, qr/^\d+$/, 'round_trip works inside a transaction block');
cmp_ok($tx_seq, '>', $rt_seq, 'round_trip in a transaction: new marker');
is( $old->safe_psql(
		'postgres',
		"SELECT count(*) FROM upgrade_assist.marker WHERE origin = $origin AND seq = $tx_seq"
	),
	'1',
	'round_trip marker stays committed after the caller rolls back');

# ---------------------------------------------------------------------------
# Subscription disabled: timeout, cancel, terminate
# ---------------------------------------------------------------------------
$new->safe_psql('postgres', 'ALTER SUBSCRIPTION ua_sub DISABLE');
$new->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM pg_stat_subscription WHERE subname = 'ua_sub' AND pid IS NOT NULL"
) or die 'apply worker did not stop';

my $r = UATest::sql_result($old,
	"SELECT * FROM upgrade_assist.round_trip('new_peer', '2s')");
is($r->{sqlstate}, '57014', 'round_trip times out with 57014')
  or diag($r->{stderr});
like($r->{message}, qr/did not arrive/, 'timeout message says the marker did not arrive');
like($r->{message}, qr/new_peer/, 'timeout message names the peer');
like($r->{message}, qr/within the timeout of 2000 ms/,
	'timeout message names its own timeout');
note sprintf('round_trip with timeout 2s failed after %.3f s', $r->{elapsed});
cmp_ok($r->{elapsed}, '>=', 2, 'round_trip waits for its timeout');
ok(!$r->{timed_out}, 'round_trip fails at its timeout, within the harness\'s');

# Cancel while waiting for the marker: the marker is committed, so the wait
# has begun once this origin's newest seq moves past the current one.
sub max_seq
{
	return $old->safe_psql('postgres',
		"SELECT coalesce(max(seq), 0) FROM upgrade_assist.marker WHERE origin = $origin"
	);
}

sub start_waiting_round_trip
{
	my ($appname) = @_;
	my $before = max_seq();
	my $bg = UATest::bg_start($old,
		"SELECT * FROM upgrade_assist.round_trip('new_peer', '${BEYOND}s')",
		$appname);
	$old->poll_query_until('postgres',
		"SELECT coalesce(max(seq), 0) > $before FROM upgrade_assist.marker WHERE origin = $origin"
	) or die "$appname: marker not written";
	my $pid = UATest::backend_pid($old, $appname);
	return ($bg, $pid);
}

my ($bg, $pid) = start_waiting_round_trip('ua_cancel');
my $t0 = time;
$old->safe_psql('postgres', "SELECT pg_cancel_backend($pid)");
my $waited = UATest::bg_finish($bg);
ok(defined $waited, 'cancelled round_trip returns before its own timeout');
note sprintf('cancel took %.3f s', time - $t0);
is($bg->{sqlstate}, '57014', 'cancelled round_trip fails with 57014')
  or diag($bg->{stderr});
like($bg->{message}, qr/canceling statement due to user request/,
	'cancel is reported as a user request');

my $start_time = $old->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');
($bg, $pid) = start_waiting_round_trip('ua_terminate');
$t0 = time;
$old->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
$waited = UATest::bg_finish($bg);
ok(defined $waited, 'terminated round_trip returns before its own timeout');
note sprintf('terminate took %.3f s', time - $t0);
is($bg->{sqlstate}, '57P01', 'terminated round_trip fails with 57P01')
  or diag($bg->{stderr});
like(
	$bg->{message},
	qr/terminating connection due to administrator command/,
	'round_trip session terminated');
$old->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $pid")
  or die 'terminated backend still there';
is($old->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'),
	$start_time, 'terminate did not restart the server');

$new->safe_psql('postgres', 'ALTER SUBSCRIPTION ua_sub ENABLE');
$r = UATest::sql_result($old,
	"SELECT latency > interval '0' FROM upgrade_assist.round_trip('new_peer', '30s')"
);
is($r->{stdout}, 't', 'round_trip succeeds once the subscription is enabled again')
  or diag($r->{stderr});

# ---------------------------------------------------------------------------
# Wrong password
# ---------------------------------------------------------------------------
my $secret = 'wrongpw_SECRET123';
UATest::create_peer($old, 'bad_peer', $new, password => $secret);
$r = UATest::sql_result($old,
	"SELECT * FROM upgrade_assist.round_trip('bad_peer', '5s')");
like($r->{sqlstate} // '', qr/^08/, 'wrong password fails with an 08 SQLSTATE')
  or diag($r->{stderr});
like($r->{message}, qr/password authentication failed/,
	'wrong password reported as such');
unlike($r->{stderr}, qr/\Q$secret\E/, 'error does not show the password');
unlike($r->{stderr}, qr/password\s*=/, 'error does not show a conninfo');
unlike(slurp_file($old->logfile), qr/\Q$secret\E/,
	'password not in the log of old');
unlike(slurp_file($new->logfile), qr/\Q$secret\E/,
	'password not in the log of new');

# ---------------------------------------------------------------------------
# A peer that accepts TCP connections and never answers
# ---------------------------------------------------------------------------
my $listener = IO::Socket::INET->new(
	LocalAddr => '127.0.0.1',
	LocalPort => 0,
	Proto => 'tcp',
	Listen => 8,
	ReuseAddr => 1) or die "could not listen: $!";
UATest::create_peer($old, 'hang_peer', undef,
	options => { port => $listener->sockport, connect_timeout => $BEYOND });
my $pending = IO::Select->new($listener);

# Wait until the backend's connection sits in the listener's queue, then stop
# it.  Returns the seconds it took to go away (undef when it did not within
# the harness's timeout, far below its connect_timeout) and the handle.
sub stop_hanging_round_trip
{
	my ($appname, $how) = @_;
	my $bg = UATest::bg_start($old,
		"SELECT * FROM upgrade_assist.round_trip('hang_peer', '${BEYOND}s')",
		$appname);
	my $deadline = time + $TIMEOUT;
	$bg->{run}->pump_nb while !$pending->can_read(0.1) && time < $deadline;
	my $pid = UATest::backend_pid($old, $appname);
	my $t0 = time;
	$old->safe_psql('postgres', "SELECT $how($pid)");
	my $waited = UATest::bg_finish($bg);
	my $took = time - $t0;
	note sprintf('%s on a hanging peer took %.3f s', $how, $took);
	# Drop the queued connection so the next wait sees a fresh one.
	if ($pending->can_read(0))
	{
		my $conn = $listener->accept;
		close $conn if $conn;
	}
	return (defined $waited ? $took : undef, $bg);
}

my $took;
($took, $bg) = stop_hanging_round_trip('ua_hang_cancel', 'pg_cancel_backend');
ok(defined $took,
	'cancelled round_trip to a hanging peer returns before its connect_timeout');
is($bg->{sqlstate}, '57014', 'cancel while the peer hangs: 57014')
  or diag($bg->{stderr});

($took, $bg) = stop_hanging_round_trip('ua_hang_term', 'pg_terminate_backend');
ok(defined $took,
	'terminated round_trip to a hanging peer returns before its connect_timeout');
is($bg->{sqlstate}, '57P01', 'terminate while the peer hangs: 57P01')
  or diag($bg->{stderr});
like(
	$bg->{message},
	qr/terminating connection due to administrator command/,
	'terminate while the peer hangs ends the session');
is($old->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'),
	$start_time, 'no server restart after terminating a hanging round_trip');
close $listener;

# ---------------------------------------------------------------------------
# Concurrent markers
# ---------------------------------------------------------------------------
my $count_before = $old->safe_psql('postgres',
	"SELECT count(*) FROM upgrade_assist.marker WHERE origin = $origin");
my $script = PostgreSQL::Test::Utils::tempdir() . '/emit_marker.sql';
open my $fh, '>', $script or die "could not write $script: $!";
print $fh "SELECT upgrade_assist.emit_marker('load');\n";
close $fh;
command_ok(
	[
		'pgbench', '-n', '-c', '4', '-j', '2', '-t', '200', '-f', $script,
		'-h', $old->host, '-p', $old->port, 'postgres'
	],
	'concurrent emit_marker calls succeed');
is( $old->safe_psql(
		'postgres', qq{
SELECT count(*) - $count_before, count(*) = count(DISTINCT seq)
  FROM upgrade_assist.marker WHERE origin = $origin}),
	'800|t',
	'concurrent markers all written with distinct seqs');
$r = UATest::sql_result($old,
	"SELECT latency > interval '0' FROM upgrade_assist.round_trip('new_peer', '60s')"
);
is($r->{stdout}, 't', 'round_trip after the load') or diag($r->{stderr});
is( $new->safe_psql(
		'postgres',
		"SELECT count(*) FROM upgrade_assist.marker WHERE origin = $origin AND kind = 'load'"
	),
	'800',
	'all load markers replicated');

# ---------------------------------------------------------------------------
# Peer stopped, then back: one session keeps its cached connection throughout
# ---------------------------------------------------------------------------
my $session = $old->background_psql('postgres', on_error_stop => 0);
$session->query_safe('\set VERBOSITY verbose');
is( $session->query_safe(
		"SELECT latency > interval '0' FROM upgrade_assist.round_trip('new_peer', '30s')"
	),
	't',
	'round_trip in a long session');

$new->stop;
$session->query_safe("SET upgrade_assist.connect_timeout = $BEYOND");
$session->{stderr} = '';
$t0 = time;
$session->query(
	"SELECT * FROM upgrade_assist.round_trip('new_peer', '${BEYOND}s')");
my $stopped_took = time - $t0;
note sprintf('round_trip to a stopped peer failed after %.3f s', $stopped_took);
my ($stopped_state, $stopped_msg) = UATest::parse_error($session->{stderr});
like($stopped_state // '', qr/^08/, 'stopped peer: 08 SQLSTATE')
  or diag($session->{stderr});
cmp_ok($stopped_took, '<', $TIMEOUT,
	'stopped peer: fails without waiting out a timeout');
unlike($session->{stderr}, qr/\Q$UATest::PEER_PASSWORD\E/,
	'stopped peer: error does not show the password');

# A fresh session fails the same way.
$r = UATest::sql_result(
	$old, qq{
SET upgrade_assist.connect_timeout = $BEYOND;
SELECT * FROM upgrade_assist.round_trip('new_peer', '${BEYOND}s');});
like($r->{sqlstate} // '', qr/^08/, 'stopped peer, new session: 08 SQLSTATE')
  or diag($r->{stderr});
ok(!$r->{timed_out},
	'stopped peer, new session: fails without waiting out a timeout');

$new->start;
$session->{stderr} = '';
my $out = $session->query(
	"SELECT latency > interval '0' FROM upgrade_assist.round_trip('new_peer', '60s')"
);
is($out, 't', 'peer back: round_trip succeeds in the same session')
  or diag($session->{stderr});
$session->quit;

unlike(slurp_file($old->logfile), qr/\Q$secret\E/,
	'password never in the log of old');

$old->stop;
$new->stop;

done_testing();
