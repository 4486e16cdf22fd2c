
# Copyright (c) upgrade_assist contributors

# Statistics rebuild after a real pg_upgrade from PostgreSQL 13 to 17 and to
# 18 of a database with pgbench data, a few hundred small tables, a
# partitioned table and extended statistics: coverage before, rebuild with
# two workers while progress is watched (percent never goes backwards, an
# estimate of the time left appears), every non-empty table covered at the
# end, a table locked by someone else retried instead of waited for, cancel
# stopping the workers within seconds, a restart leaving the run interrupted
# and a new call carrying on, and on 18 (which carries statistics across
# pg_upgrade) only_missing finding almost nothing to do.
#
# Runs only in the pair runs whose old side is PostgreSQL 13 (UA_OLD_INSTALL);
# the 17 target is the installation named by UA_PG17_INSTALL (scripts/test
# sets it), the 18 target the one in PATH when it is 18.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use File::Basename qw(dirname);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use UATest;

my $old_install = $ENV{UA_OLD_INSTALL};
plan skip_all => 'needs a pair run with old PostgreSQL 13 (UA_OLD_INSTALL)'
  unless $old_install
  && `$old_install/bin/pg_config --version` =~ /PostgreSQL 13\./;

my $path_bindir = `pg_config --bindir`;
chomp $path_bindir;
my @targets;
push @targets, [ 'new17', $ENV{UA_PG17_INSTALL} ]
  if $ENV{UA_PG17_INSTALL}
  && `$ENV{UA_PG17_INSTALL}/bin/pg_config --version` =~ /PostgreSQL 17\./;
push @targets, [ 'new18', dirname($path_bindir) ]
  if `$path_bindir/pg_config --version` =~ /PostgreSQL 18\./;
plan skip_all => 'no 17 (UA_PG17_INSTALL) or 18 (PATH) target available'
  unless @targets;

my $SMALL_TABLES = 300;

# ---------------------------------------------------------------------------
# The old cluster: pgbench data, small tables, a partitioned table and
# extended statistics, all analyzed (as a production database would be).
# ---------------------------------------------------------------------------
my $old = UATest::node('old', install_path => $old_install);
$old->command_ok([ 'pgbench', '-i', '-s', '5', '-q', 'postgres' ],
	'pgbench data on 13');
$old->safe_psql(
	'postgres', qq{
DO \$\$
BEGIN
  FOR i IN 1..$SMALL_TABLES LOOP
    EXECUTE format('CREATE TABLE small_%s (id int PRIMARY KEY, v text, n numeric)', i);
    EXECUTE format('INSERT INTO small_%s SELECT g, md5(g::text), g %% 13 FROM generate_series(1, 20 + %s) g', i, i);
  END LOOP;
END
\$\$;
CREATE TABLE small_empty (id int);
CREATE TABLE measurement (id int, city int, at date) PARTITION BY RANGE (id);
CREATE TABLE measurement_1 PARTITION OF measurement FOR VALUES FROM (0) TO (20000);
CREATE TABLE measurement_2 PARTITION OF measurement FOR VALUES FROM (20000) TO (40000);
INSERT INTO measurement SELECT g, g % 50, date '2024-01-01' + g % 365 FROM generate_series(0, 39999) g;
CREATE STATISTICS accounts_dep (dependencies, ndistinct) ON aid, bid FROM pgbench_accounts;
CREATE STATISTICS measurement_city (mcv) ON city, at FROM measurement_1;
ANALYZE;
});
$old->stop;

# Build a new cluster from the old one with pg_upgrade (copy mode, so that
# the old cluster stays usable for the next target) and start it.
sub upgrade_to
{
	my ($name, $install) = @_;
	return UATest::pg_upgrade($old, $name, $install, $old_install);
}

sub coverage_missing
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM upgrade_assist.stats_coverage WHERE NOT has_statistics AND pages > 0"
	);
}

sub wait_run_end
{
	my ($node, $run) = @_;
	ok( $node->poll_query_until(
			'postgres',
			"SELECT state <> 'running' AND workers = 0 FROM upgrade_assist.stats_progress WHERE run = $run"
		),
		"run $run ends");
	return $node->safe_psql('postgres',
		"SELECT state FROM upgrade_assist.stats_progress WHERE run = $run");
}

# Start a session holding a lock that ANALYZE needs (but readers do not).
sub lock_table
{
	my ($node, $table) = @_;
	my $s = $node->background_psql('postgres');
	$s->query_safe("BEGIN; LOCK TABLE $table IN SHARE UPDATE EXCLUSIVE MODE");
	return $s;
}

for my $target (@targets)
{
	my ($name, $install) = @$target;
	my $new = upgrade_to($name, $install);
	my $is18 = $new->pg_version >= 18;
	my $total = $new->safe_psql('postgres',
		"SELECT count(*) FROM upgrade_assist.stats_coverage");
	cmp_ok($total, '>=', $SMALL_TABLES + 7, "$name: coverage lists every table");
	my $missing = coverage_missing($new);
	note "$name: $missing of $total tables lack statistics after pg_upgrade";

	if (!$is18)
	{
		# Up to 17 pg_upgrade carries no statistics.
		cmp_ok($missing, '>=', $SMALL_TABLES, "$name: statistics missing before the rebuild");

		my $run = $new->safe_psql('postgres',
			"SELECT upgrade_assist.rebuild_stats(jobs => 2)");
		my $watch = $new->background_psql('postgres');
		my ($last, $backwards, $estimates, $polls, $max_workers) = (-1, 0, 0, 0, 0);
		my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
		while (time < $deadline)
		{
			my $row = $watch->query_safe(
				"SELECT state, percent, estimated_left IS NOT NULL, workers FROM upgrade_assist.stats_progress WHERE run = $run"
			);
			my ($state, $pct, $est, $workers) = split /\|/, $row;
			$polls++;
			$backwards++ if defined $pct && $pct ne '' && $pct < $last;
			$last = $pct if defined $pct && $pct ne '';
			$estimates++ if $state eq 'running' && $est eq 't';
			$max_workers = $workers if $workers > $max_workers;
			last if $state ne 'running';
		}
		$watch->quit;
		note "$name: $polls polls, $estimates with an estimate";
		is($backwards, 0, "$name: percent never went backwards");
		cmp_ok($estimates, '>', 0, "$name: an estimate of the time left while running");
		is($max_workers, 2, "$name: two workers");
		is(wait_run_end($new, $run), 'done', "$name: run done");
		is( $new->safe_psql('postgres',
				"SELECT percent, tables_done = tables_total FROM upgrade_assist.stats_progress WHERE run = $run"),
			'100.00|t', "$name: 100 % at the end");
		is(coverage_missing($new), '0', "$name: every non-empty table covered");
		is( $new->safe_psql('postgres',
				"SELECT string_agg(relid::text || ':' || has_statistics || ':' || ext_stats_built, ',' ORDER BY relid::text) FROM upgrade_assist.stats_coverage WHERE relname IN ('measurement', 'measurement_1', 'pgbench_accounts')"
			),
			'measurement:true:0,measurement_1:true:1,pgbench_accounts:true:1',
			"$name: partitioned parent and extended statistics covered");
		is( $new->safe_psql('postgres',
				"SELECT count(*) FROM upgrade_assist.stats_coverage WHERE pages > 0 AND analyzed_by IS DISTINCT FROM 'upgrade_assist'"
			),
			'0', "$name: analyzed_by names the rebuild");

		# A locked table is retried, not waited for; cancel stops the workers.
		my $locker = lock_table($new, 'small_7');
		$run = $new->safe_psql('postgres',
			"SELECT upgrade_assist.rebuild_stats('{1,-1}', 2, false)");
		ok( $new->poll_query_until(
				'postgres',
				"SELECT count(*) = 1 FROM upgrade_assist.stats_task WHERE run_id = $run AND stage_done < 2"
			),
			"$name: everything but the locked table analyzed");
		ok( $new->poll_query_until(
				'postgres',
				"SELECT retries > 0 AND note = 'locked by another session' FROM upgrade_assist.stats_task WHERE run_id = $run AND relname = 'public.small_7'"
			),
			"$name: the locked table is retried");
		is($new->safe_psql('postgres',
				"SELECT state FROM upgrade_assist.stats_progress WHERE run = $run"),
			'running', "$name: the run waits for the locked table");
		my $t0 = time;
		is($new->safe_psql('postgres', 'SELECT upgrade_assist.cancel_stats_rebuild()'),
			't', "$name: cancel");
		ok( $new->poll_query_until(
				'postgres',
				"SELECT count(*) = 0 FROM upgrade_assist.stats_progress_rows()"),
			"$name: workers gone after cancel");
		note sprintf('%s: workers gone %.3f s after the cancel', $name, time - $t0);
		# Gone while the lock is still held: they stopped at the cancel and did
		# not wait for the table.
		is( $new->safe_psql(
				'postgres',
				"SELECT stage_done < 2 FROM upgrade_assist.stats_task WHERE run_id = $run AND relname = 'public.small_7'"
			),
			't', "$name: workers stopped without waiting for the locked table");
		is($new->safe_psql('postgres',
				"SELECT state FROM upgrade_assist.stats_progress WHERE run = $run"),
			'cancelled', "$name: run cancelled");
		$locker->quit;

		# Restart during a run: interrupted, then carried on by a new call.
		$new->safe_psql('postgres',
			"DELETE FROM pg_statistic WHERE starelid IN ('small_1'::regclass, 'small_2'::regclass, 'small_3'::regclass)"
		);
		$locker = lock_table($new, 'small_3');
		$run = $new->safe_psql('postgres',
			"SELECT upgrade_assist.rebuild_stats(jobs => 2)");
		ok( $new->poll_query_until(
				'postgres',
				"SELECT count(*) = 1 FROM upgrade_assist.stats_task WHERE run_id = $run AND stage_done < 3"
			),
			"$name: run waits on the locked table");
		# The lock holder's session ends with the restart.
		$new->restart;
		eval { $locker->quit };
		is($new->safe_psql('postgres',
				"SELECT state, phase FROM upgrade_assist.stats_progress WHERE run = $run"),
			'interrupted|interrupted', "$name: interrupted after a restart");
		cmp_ok(coverage_missing($new), '>=', 1, "$name: the locked table still lacks statistics");
		my $resumed = $new->safe_psql('postgres',
			"SELECT upgrade_assist.rebuild_stats(jobs => 2)");
		is(wait_run_end($new, $resumed), 'done', "$name: resumed run done");
		is( $new->safe_psql('postgres',
				"SELECT resumed_from, tables_total FROM upgrade_assist.stats_progress WHERE run = $resumed"),
			"$run|1", "$name: the new call carries on with what was missing");
		is( $new->safe_psql('postgres',
				"SELECT state FROM upgrade_assist.stats_run WHERE run_id = $run"),
			'interrupted', "$name: the old run is recorded as interrupted");
		is(coverage_missing($new), '0', "$name: complete after the resumed run");
	}
	else
	{
		# 18 carries table and column statistics, not extended statistics.
		cmp_ok($missing, '<=', 5, "$name: pg_upgrade carried most statistics");
		my $run = $new->safe_psql('postgres',
			"SELECT upgrade_assist.rebuild_stats(jobs => 2)");
		my $todo = $new->safe_psql('postgres',
			"SELECT tables_total FROM upgrade_assist.stats_progress WHERE run = $run");
		note "$name: only_missing run takes $todo of $total tables";
		cmp_ok($todo, '<=', 5, "$name: only_missing finds almost nothing to do");
		is(wait_run_end($new, $run), 'done', "$name: run done");
		is(coverage_missing($new), '0', "$name: every non-empty table covered");
	}
	$new->stop;
}

done_testing();
