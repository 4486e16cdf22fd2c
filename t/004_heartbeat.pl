
# Copyright (c) upgrade_assist contributors

# The heartbeat worker and the sync_status view between two real clusters
# ('old' may be another major version, UA_OLD_INSTALL): in sync with
# latencies, lagging while the subscription is disabled and back after,
# unreachable while the peer is down and back by itself, the worker back
# after a restart, a crash and a terminate, gone after heartbeat_stop and
# DROP EXTENSION, old heartbeat markers pruned, and the mapping's password
# nowhere in views or logs.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use UATest;

my $old = UATest::node('old', install_path => $ENV{UA_OLD_INSTALL});
my $new = UATest::node('new');
# Lagging from 500 ms; prune early so that the test can see it.
$old->append_conf('postgresql.conf', qq{
upgrade_assist.lag_threshold = '500ms'
upgrade_assist.heartbeat_retention = '60s'
});
$old->reload;
my $origin = UATest::system_identifier($old);

$old->safe_psql('postgres', 'CREATE PUBLICATION ua_pub FOR ALL TABLES');
UATest::subscribe($new, $old, 'ua_sub', 'ua_pub');
UATest::create_peer($old, 'new_peer', $new);

sub status
{
	my ($cols) = @_;
	return $old->safe_psql('postgres',
		"SELECT $cols FROM upgrade_assist.sync_status WHERE datname = 'postgres'");
}

sub worker_pid
{
	return $old->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'upgrade_assist heartbeat'");
}

sub wait_state
{
	my ($state, $what) = @_;
	ok( $old->poll_query_until(
			'postgres',
			"SELECT state = '$state' FROM upgrade_assist.sync_status WHERE datname = 'postgres'"),
		$what) or diag(status('*'));
}

# No heartbeat: no worker, no row.
is(status('count(*)'), '0', 'no heartbeat configured: no row');
is(worker_pid(), '', 'no heartbeat configured: no worker');

# Bad input.
my $r = UATest::sql_result($old, "SELECT upgrade_assist.heartbeat_start(NULL)");
is($r->{sqlstate}, '22004', 'NULL peer: 22004');
$r = UATest::sql_result($old,
	"SELECT upgrade_assist.heartbeat_start('new_peer', '1ms')");
is($r->{sqlstate}, '22023', 'too fast: 22023');
$r = UATest::sql_result($old,
	"SELECT upgrade_assist.heartbeat_start('no_such_peer')");
is($r->{sqlstate}, '42704', 'unknown peer: 42704');
is(status('count(*)'), '0', 'bad input changed nothing');

# ---------------------------------------------------------------------------
# In sync, with latencies
# ---------------------------------------------------------------------------
$old->safe_psql('postgres',
	"SELECT upgrade_assist.heartbeat_start('new_peer', '100ms')");
wait_state('in sync', 'heartbeat reaches in sync');
ok( $old->poll_query_until(
		'postgres',
		"SELECT samples >= 10 FROM upgrade_assist.sync_status"),
	'latencies collected');
# Not "lag < 500ms": a loaded machine may delay a confirmation past the
# threshold at any moment; the view's state must then say so.
my $row = status(
	"last_written_seq >= last_confirmed_seq, last_latency > '0', latency_p50 > '0', "
	  . "latency_p99 >= latency_p50, (lag > '500ms') = (state = 'lagging'), "
	  . "every = '100ms', worker_pid IS NOT NULL");
is($row, 't|t|t|t|t|t|t',
	'in sync: written, confirmed, latencies shown, lag agrees with the state');
note 'in sync: ' . status('last_latency, latency_p50, latency_p99, samples');
is( $new->safe_psql(
		'postgres',
		"SELECT count(*) > 0 FROM upgrade_assist.marker WHERE origin = $origin AND kind = 'heartbeat'"
	),
	't',
	'heartbeat markers replicated');
is($old->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'upgrade_assist heartbeat'"),
	'1', 'one worker');

# A second start reconfigures; still one worker.
$old->safe_psql('postgres',
	"SELECT upgrade_assist.heartbeat_start('new_peer', '50ms')");
ok($old->poll_query_until('postgres',
		"SELECT every = '50ms' FROM upgrade_assist.sync_status"),
	'heartbeat_start again changes the pace');
is($old->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'upgrade_assist heartbeat'"),
	'1', 'still one worker');

# ---------------------------------------------------------------------------
# Subscription disabled: lagging, lag growing; enabled: in sync again
# ---------------------------------------------------------------------------
$new->safe_psql('postgres', 'ALTER SUBSCRIPTION ua_sub DISABLE');
wait_state('lagging', 'subscription disabled: lagging');
my $lag1 = status("extract(epoch FROM lag)");
ok( $old->poll_query_until(
		'postgres',
		"SELECT extract(epoch FROM lag) > $lag1 + 0.5 FROM upgrade_assist.sync_status"),
	'lag grows while lagging');
is(status('last_error IS NULL'), 't', 'lagging is not an error');
$new->safe_psql('postgres', 'ALTER SUBSCRIPTION ua_sub ENABLE');
wait_state('in sync', 'subscription enabled: in sync again');

# ---------------------------------------------------------------------------
# Peer stopped: unreachable with the error; back: in sync without action
# ---------------------------------------------------------------------------
$new->stop;
wait_state('unreachable', 'peer stopped: unreachable');
like(status('last_error'), qr/connect|server|closed|refused/i,
	'unreachable: libpq error shown');
unlike(status('*'), qr/\Q$UATest::PEER_PASSWORD\E/, 'no password in sync_status');
$new->start;
wait_state('in sync', 'peer back: in sync without any action');

# ---------------------------------------------------------------------------
# The worker comes back: terminated, server restart, crash
# ---------------------------------------------------------------------------
my $pid = worker_pid();
$old->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
ok( $old->poll_query_until(
		'postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'upgrade_assist heartbeat' AND pid <> $pid"
	),
	'terminated worker is restarted');
wait_state('in sync', 'in sync after the worker restarted');

$old->restart;
ok( $old->poll_query_until(
		'postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'upgrade_assist heartbeat'"),
	'worker back after a server restart');
wait_state('in sync', 'in sync after a restart');

$old->stop('immediate');
$old->start;
ok( $old->poll_query_until(
		'postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'upgrade_assist heartbeat'"),
	'worker back after a crash (immediate stop)');
wait_state('in sync', 'in sync after a crash');

# ---------------------------------------------------------------------------
# Pruning keeps other kinds
# ---------------------------------------------------------------------------
$old->safe_psql('postgres', q{
INSERT INTO upgrade_assist.marker
SELECT origin, seq + 1000000, kind, written_at - interval '2 hours', written_lsn, note
  FROM upgrade_assist.marker WHERE kind = 'heartbeat' ORDER BY seq LIMIT 3;
SELECT upgrade_assist.emit_marker('probe', 'keep me');
UPDATE upgrade_assist.marker SET written_at = written_at - interval '2 hours'
 WHERE note = 'keep me';
});
ok( $old->poll_query_until(
		'postgres',
		"SELECT count(*) = 0 FROM upgrade_assist.marker WHERE kind = 'heartbeat' AND written_at < now() - interval '1 hour'"
	),
	'old heartbeat markers pruned');
is($old->safe_psql('postgres',
		"SELECT count(*) FROM upgrade_assist.marker WHERE note = 'keep me'"),
	'1', 'old markers of other kinds kept');

# ---------------------------------------------------------------------------
# heartbeat_stop and DROP EXTENSION end the worker
# ---------------------------------------------------------------------------
is($old->safe_psql('postgres', 'SELECT upgrade_assist.heartbeat_stop()'),
	't', 'heartbeat_stop reports a running heartbeat');
ok( $old->poll_query_until(
		'postgres',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type LIKE 'upgrade_assist heartbeat%'"
	),
	'heartbeat_stop: worker and launcher gone');
is(status('state'), 'stopped', 'sync_status says stopped');
$old->restart;
is($old->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'upgrade_assist heartbeat%'"),
	'0', 'a stopped heartbeat stays stopped after a restart');

$old->safe_psql('postgres',
	"SELECT upgrade_assist.heartbeat_start('new_peer', '100ms')");
wait_state('in sync', 'started again');
$old->safe_psql('postgres', 'DROP EXTENSION upgrade_assist CASCADE');
ok( $old->poll_query_until(
		'postgres',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type LIKE 'upgrade_assist heartbeat%'"
	),
	'DROP EXTENSION ends the worker');

# ---------------------------------------------------------------------------
# The mapping's password appears nowhere
# ---------------------------------------------------------------------------
my $password = $UATest::PEER_PASSWORD;
unlike(slurp_file($old->logfile), qr/\Q$password\E/, 'password not in the log of old');
unlike(slurp_file($new->logfile), qr/\Q$password\E/, 'password not in the log of new');
unlike(slurp_file($old->data_dir . '/upgrade_assist.heartbeat'),
	qr/\Q$password\E/, 'password not in the heartbeat file');

$old->stop;
$new->stop;
done_testing();
