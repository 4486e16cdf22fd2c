# Copyright (c) upgrade_assist contributors

# A new side built by logical replication is fenced until its cutover, and
# must still prepare: rebuild_stats() there runs through the fence (its
# bookkeeping and its workers), while every application write, in the
# calling session and in any other, still fails with 25006 before, during
# and after the run.  'old' may be another major version (UA_OLD_INSTALL).

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use UATest;

my $TABLES = 20;

my $old = UATest::node('old', install_path => $ENV{UA_OLD_INSTALL});
my $new = UATest::node('new');

my $schema = join '',
  map { "CREATE TABLE t$_ (id int PRIMARY KEY, v text);\n" } 1 .. $TABLES;
$old->safe_psql('postgres', $schema);
$new->safe_psql('postgres', $schema);
$old->safe_psql('postgres',
	join '', map { "INSERT INTO t$_ SELECT g, md5(g::text) FROM generate_series(1, 500) g;\n" }
	  1 .. $TABLES);
$old->safe_psql('postgres', 'CREATE PUBLICATION ua_pub FOR ALL TABLES');
UATest::subscribe($new, $old, 'ua_sub', 'ua_pub');

# The new side: fenced from its initial copy until its cutover.
$new->safe_psql('postgres', "SELECT count(*) FROM upgrade_assist.fence('until cutover')");

# A write from another session, expected to fail with 25006.
sub other_write_refused
{
	my ($what) = @_;
	my $r = UATest::sql_result($new, 'INSERT INTO t2 VALUES (-1, \'stray\')');
	is($r->{sqlstate}, '25006', "$what: another session's write gets 25006")
	  or diag($r->{stderr});
}

other_write_refused('fenced, before the run');
is( $new->safe_psql('postgres',
		"SELECT count(*) FROM upgrade_assist.stats_coverage WHERE relname ~ '^t[0-9]+\$' AND has_statistics"),
	'0', 'a new side built by logical replication has no statistics');

sub hold_t1
{
	my $bg = UATest::bg_psql(
		$new, 'lock_holder', [],
		'SELECT upgrade_assist.fence_exempt_session()',
		'BEGIN',
		'LOCK TABLE t1 IN SHARE UPDATE EXCLUSIVE MODE',
		"SELECT pg_sleep($PostgreSQL::Test::Utils::timeout_default)");
	UATest::backend_pid($new, 'lock_holder', "query LIKE 'SELECT pg_sleep%'");
	return $bg;
}

# Hold t1 in a session that writes through the fence, so that the run is
# seen while its workers are at work (a locked table is retried, not waited
# for).
my $holder = hold_t1();

# The calling session: a write in the run's own transaction, one after it,
# and one after the run finished (it polls for that itself) all fail.
my $refuse = q{DO $$ BEGIN
  INSERT INTO t3 VALUES (-1, 'stray');
  RAISE EXCEPTION 'write passed the fence';
EXCEPTION WHEN read_only_sql_transaction THEN
  RAISE NOTICE 'write refused: %', SQLSTATE;
END $$};
my $limit = 10 * $PostgreSQL::Test::Utils::timeout_default;
my $caller = UATest::bg_psql(
	$new, 'stats_caller', [],
	'BEGIN',
	'SELECT upgrade_assist.rebuild_stats(only_missing => false)',
	$refuse,
	'COMMIT',
	$refuse,
	qq{DO \$\$ BEGIN
  FOR i IN 1 .. $limit LOOP
    EXIT WHEN (SELECT state FROM upgrade_assist.stats_progress ORDER BY run DESC LIMIT 1) <> 'running';
    PERFORM pg_sleep(0.1);
  END LOOP;
END \$\$},
	$refuse);

ok( $new->poll_query_until(
		'postgres',
		"SELECT state = 'running' AND workers > 0 AND deferred > 0 FROM upgrade_assist.stats_progress ORDER BY run DESC LIMIT 1"
	),
	'the run goes on with its workers while the fence is up (t1 deferred)');
other_write_refused('during the run');
SKIP:
{
	skip 'custom wait events need PostgreSQL 17', 1
	  if $new->safe_psql('postgres', 'SHOW server_version_num') < 170000;
	ok( $new->poll_query_until(
			'postgres',
			"SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type = 'upgrade_assist stats' AND wait_event = 'UpgradeAssistStats'"
		),
		'a waiting statistics worker shows wait event UpgradeAssistStats');
}
is($new->safe_psql('postgres', 'SELECT fenced FROM upgrade_assist.fence_status'),
	't', 'still fenced during the run');

# Replication still carries the old side's writes into the fenced new side.
$old->safe_psql('postgres', "INSERT INTO t4 VALUES (100000, 'replicated')");
ok( $new->poll_query_until('postgres', 'SELECT count(*) = 1 FROM t4 WHERE id = 100000'),
	'replication applies into the fenced new side meanwhile');

$new->safe_psql('postgres',
	"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'lock_holder'");
UATest::bg_finish($holder, $PostgreSQL::Test::Utils::timeout_default);

ok(defined UATest::bg_finish($caller, 12 * $PostgreSQL::Test::Utils::timeout_default),
	'the calling session saw the run end');
is($caller->{rc}, 0, 'the calling session: rebuild_stats() and its checks ran without error')
  or diag($caller->{stderr});
my $refused = () = $caller->{stderr} =~ /write refused: 25006/g;
is($refused, 3, 'the calling session: writes refused in the run\'s transaction, after it and after the run')
  or diag($caller->{stderr});

is( $new->safe_psql('postgres',
		"SELECT state FROM upgrade_assist.stats_progress ORDER BY run DESC LIMIT 1"),
	'done', 'the run finished while fenced');
is( $new->safe_psql('postgres',
		"SELECT count(*) FILTER (WHERE NOT has_statistics) || '/' || count(*) FROM upgrade_assist.stats_coverage WHERE relname ~ '^t[0-9]+\$'"),
	"0/$TABLES", 'full coverage: every table has statistics');
is( $new->safe_psql('postgres',
		"SELECT analyzed_by FROM upgrade_assist.stats_coverage WHERE relname = 't1'"),
	'upgrade_assist', 'the locked table too, analyzed by the run once released');
other_write_refused('after the run');
is($new->safe_psql('postgres', 'SELECT count(*) FROM t2 WHERE id = -1'),
	'0', 'no stray write arrived');
is($new->safe_psql('postgres', 'SELECT fenced FROM upgrade_assist.fence_status'),
	't', 'still fenced after the run');

# cancel_stats_rebuild() works through the fence too: with t1 held again,
# the run cannot end before it is cancelled.
$holder = hold_t1();
$new->safe_psql('postgres', 'SELECT upgrade_assist.rebuild_stats(only_missing => false)');
ok( $new->poll_query_until(
		'postgres',
		"SELECT state = 'running' AND workers > 0 FROM upgrade_assist.stats_progress ORDER BY run DESC LIMIT 1"
	),
	'a second run goes on, fenced');
is($new->safe_psql('postgres', 'SELECT upgrade_assist.cancel_stats_rebuild()'),
	't', 'cancel_stats_rebuild() on the fenced side');
is( $new->safe_psql('postgres',
		'SELECT state FROM upgrade_assist.stats_progress ORDER BY run DESC LIMIT 1'),
	'cancelled', 'the run is recorded as cancelled');
ok( $new->poll_query_until(
		'postgres',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'upgrade_assist stats'"),
	'its workers are gone');
$new->safe_psql('postgres',
	"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'lock_holder'");
UATest::bg_finish($holder, $PostgreSQL::Test::Utils::timeout_default);
other_write_refused('after the cancel');

done_testing();
