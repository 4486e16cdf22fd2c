# Copyright (c) upgrade_assist contributors

# verify() on two clusters of different major versions (pair runs only:
# old is UA_OLD_INSTALL), native logical replication old -> new:
#  - under live ledger writers and pgbench-style updates of the table being
#    verified, three runs in a row report no difference, while the writers
#    keep committing (the ranges are consistent under writes): two with the
#    primary's ranges computed by the snapshot helper, one with them
#    computed under the lock (verify_helper off);
#  - the two servers run with different TimeZone and extra_float_digits,
#    and a table keyed by (text, int) with timestamptz, float8 and bytea
#    columns compares equal (pinned settings, "C" key order);
#  - a table that exists only here is reported 'not comparable' and the
#    run goes on;
#  - then a row changed on the new side only (through its fence
#    exemption), a row deleted there and a row added there are each found
#    with its key, and a change in a table without primary key is found by
#    its whole-table checksum;
#  - cancel_verify() stops the worker and its snapshot helper, which leave no
#    lock behind.

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

my $schema = q{
CREATE TABLE public.accounts (
    aid integer PRIMARY KEY, bid integer NOT NULL,
    abalance integer NOT NULL, filler character(84));
CREATE TABLE public.keyed (
    k1 text, k2 integer, ts timestamptz, f float8, b bytea, iv interval,
    PRIMARY KEY (k1, k2));
CREATE TABLE public.nopk (a integer, b text);
CREATE TABLE public.ctl (id integer PRIMARY KEY, stop boolean NOT NULL);
};
my ($old, $new) = UATest::cutover_pair(
	old_install => $ENV{UA_OLD_INSTALL},
	schema => $schema . UATest::ledger_schema());

# Different session defaults on the two sides: the checksums must not care.
$old->append_conf('postgresql.conf',
	"TimeZone = 'America/New_York'\nextra_float_digits = 0\n");
$new->append_conf('postgresql.conf',
	"TimeZone = 'Asia/Tokyo'\nextra_float_digits = 3\nbytea_output = 'escape'\n");
$_->reload for ($old, $new);

$old->safe_psql(
	'postgres', q{
INSERT INTO public.accounts
    SELECT g, 1 + g / 1000, 0, '' FROM generate_series(1, 20000) g;
INSERT INTO public.keyed
    SELECT CASE g % 3 WHEN 0 THEN 'a' WHEN 1 THEN 'B' ELSE 'é' END || md5(g::text),
           g, timestamptz '2020-01-01 00:00+00' + g * interval '1 hour 7 min',
           g / 7.0, decode(md5(g::text), 'hex'), g * interval '1 day 3 s'
      FROM generate_series(1, 500) g;
INSERT INTO public.nopk SELECT g % 20, 'v' || g FROM generate_series(1, 50) g;
INSERT INTO public.ctl VALUES (1, false);
-- Only here: never written, so replication does not miss it.
CREATE TABLE public.only_here (id integer PRIMARY KEY);
});
$old->poll_query_until('postgres',
	q{SELECT count(*) = 0 FROM pg_stat_replication WHERE replay_lsn < pg_current_wal_lsn()})
  or die 'initial rows not replicated';
$new->poll_query_until('postgres', 'SELECT count(*) = 20000 FROM public.accounts')
  or die 'accounts not replicated';

# Wait for a run to end; returns its state.
sub wait_run
{
	my ($run) = @_;
	$old->poll_query_until('postgres',
		"SELECT state <> 'running' FROM upgrade_assist.verify_run WHERE run_id = $run")
	  or die "verify run $run did not end";
	return $old->safe_psql('postgres',
		"SELECT state FROM upgrade_assist.verify_run WHERE run_id = $run");
}

# ---------------------------------------------------------------------------
# Under live writes: no difference, three times
# ---------------------------------------------------------------------------
my $writers = UATest::start_writers(
	sides => [ old => $old ],
	writers => 2,
	max_inserts => 2000,
	max_seconds => 80);
my @updaters = map {
	UATest::bg_start(
		$old, qq{
DO \$\$
DECLARE
    stop_at timestamptz := clock_timestamp() + interval '80 s';
BEGIN
    FOR i IN 1 .. 200000 LOOP
        EXIT WHEN clock_timestamp() > stop_at
               OR (SELECT stop FROM public.ctl WHERE id = 1);
        UPDATE public.accounts SET abalance = abalance + 1
         WHERE aid = 1 + (random() * 18999)::int;
        UPDATE public.keyed SET f = f + 0.1, ts = ts + interval '1 s'
         WHERE k2 = 1 + (random() * 499)::int;
        COMMIT;
    END LOOP;
END
\$\$;}, "ua_updater_$_")
} 1 .. 2;
$old->poll_query_until('postgres', 'SELECT sum(abalance) > 50 FROM public.accounts')
  or die 'updaters do not update';

my $acked_before = $old->safe_psql('postgres',
	'SELECT ' . UATest::ledger_count_sql('old'));
for my $i (1 .. 3)
{
	# Runs 1 and 2 compute the primary's ranges in the snapshot helper, run
	# 3 under the lock (the helper off): both must be consistent.
	if ($i == 3)
	{
		$old->safe_psql('postgres',
			'ALTER SYSTEM SET upgrade_assist.verify_helper = off');
		$old->reload;
		$old->poll_query_until('postgres',
			q{SELECT current_setting('upgrade_assist.verify_helper') = 'off'})
		  or die 'verify_helper did not change';
	}
	my $run = $old->safe_psql('postgres',
		q{SELECT upgrade_assist.verify('new_side', chunk_rows => 1500)});
	is(wait_run($run), 'done', "run $i under writes: done");
	is( $old->safe_psql(
			'postgres', qq{
SELECT format('%s %s', count(*) FILTER (WHERE rows_here IS NULL) > 0,
              count(*) FILTER (WHERE rows_here IS NOT NULL) > 0)
  FROM upgrade_assist.verify_range WHERE run_id = $run AND mode = 'range'}),
		$i < 3 ? 't f' : 'f t',
		"run $i under writes: ranges computed "
		  . ($i < 3 ? 'by the snapshot helper' : 'under the lock'));
	is( $old->safe_psql(
			'postgres', qq{
SELECT string_agg(format('%s %s %s %s', table_name, kind, key, detail), E'\n')
  FROM upgrade_assist.verify_result($run)}),
		'public.only_here not comparable  the table does not exist on the peer',
		"run $i under writes: only the table missing on the peer is reported");
	is( $old->safe_psql(
			'postgres', qq{
SELECT format('%s %s %s', tables_different, tables_not_comparable,
              ranges_done >= 22 AND rows_done >= 20500)
  FROM upgrade_assist.verify_progress WHERE run_id = $run}),
		'0 1 t', "run $i under writes: every range of every table compared");
}
$old->safe_psql('postgres', 'ALTER SYSTEM RESET upgrade_assist.verify_helper');
$old->reload;
my $acked_after = $old->safe_psql('postgres',
	'SELECT ' . UATest::ledger_count_sql('old'));
cmp_ok($acked_after, '>', $acked_before,
	'the writers kept committing during the runs');
is( $new->safe_psql(
		'postgres', q{
SELECT count(*) FROM upgrade_assist.verify_range
 WHERE computed_at IS NULL OR error_there IS NOT NULL}),
	'0', 'the peer computed every range as it was applied');

$old->safe_psql('postgres', 'UPDATE public.ctl SET stop = true');
for my $u (@updaters)
{
	ok(defined UATest::bg_finish($u), "$u->{name} stopped");
	is($u->{rc}, 0, "$u->{name} succeeded") or diag($u->{stderr});
}
my $ledger = UATest::stop_writers($writers);
is_deeply($ledger->{error}, [], 'the writers saw no error');
$old->poll_query_until('postgres',
	q{SELECT count(*) = 0 FROM pg_stat_replication WHERE replay_lsn < pg_current_wal_lsn()})
  or die 'writes not replicated';
is_deeply([ UATest::ledger_problems($ledger, $new) ],
	[], 'every acknowledged row arrived on the new side');

# ---------------------------------------------------------------------------
# Differences made on the new side only, through its fence exemption
# ---------------------------------------------------------------------------
$new->safe_psql(
	'postgres', q{
SELECT upgrade_assist.fence_exempt_session();
UPDATE public.accounts SET abalance = abalance + 7 WHERE aid = 19995;
DELETE FROM public.accounts WHERE aid = 7001;
INSERT INTO public.accounts VALUES (20001, 21, 0, 'added there');
UPDATE public.keyed SET b = '\x00' WHERE k2 = 250;
UPDATE public.nopk SET b = 'changed' WHERE b = 'v10';
});
# Fixed range bounds (chunk_rows each) for the expected output below: no
# adaptation to the lock time on a slow machine.
$old->safe_psql('postgres',
	q{ALTER SYSTEM SET upgrade_assist.verify_max_lock_time = '10s'});
$old->reload;
$old->poll_query_until('postgres',
	q{SELECT setting = '10000' FROM pg_settings WHERE name = 'upgrade_assist.verify_max_lock_time'})
  or die 'setting not reloaded';
my $run = $old->safe_psql('postgres',
	q{SELECT upgrade_assist.verify('new_side',
	    '{public.accounts, public.keyed, public.nopk}', chunk_rows => 1500)});
is(wait_run($run), 'done', 'run with differences: done');
is( $old->safe_psql(
		'postgres', qq{
SELECT string_agg(format('%s|%s|%s|%s|%s', table_name, kind, key, rows_here, rows_there),
                  E'\n' ORDER BY table_name, kind, key, range_no)
  FROM upgrade_assist.verify_result($run)}),
	join("\n",
		'public.accounts|changed|19995||',
		'public.accounts|missing here|20001||',
		'public.accounts|missing there|7001||',
		'public.accounts|range||1500|1499',
		'public.accounts|range||500|501',
		'public.keyed|changed|(' . $old->safe_psql('postgres',
			q{SELECT k1 FROM public.keyed WHERE k2 = 250}) . ',250)||',
		'public.keyed|range||500|500',
		'public.nopk|range||50|50'),
	'each difference found, with its key');
is( $old->safe_psql(
		'postgres', qq{
SELECT string_agg(format('%s %s', relname, state), ', ' ORDER BY relname)
  FROM upgrade_assist.verify_table WHERE run_id = $run}),
	'accounts different, keyed different, nopk different',
	'the tables are marked different');

# ---------------------------------------------------------------------------
# Cancel: the worker stops and leaves no lock behind
# ---------------------------------------------------------------------------
$run = $old->safe_psql('postgres',
	q{SELECT upgrade_assist.verify('new_side', '{public.accounts}', chunk_rows => 5)});
$old->poll_query_until('postgres',
	"SELECT rows_done > 0 FROM upgrade_assist.verify_workers() WHERE run_id = $run")
  or die 'the verify worker does not progress';
my $helper_pid = $old->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity
	   WHERE application_name = 'upgrade_assist verify helper'});
like($helper_pid, qr/^\d+$/, 'the run has its snapshot helper');
is($old->safe_psql('postgres', "SELECT upgrade_assist.cancel_verify($run)"),
	't', 'cancel_verify() marks the run');
ok( $old->poll_query_until(
		'postgres',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $helper_pid"),
	'cancel_verify() stops the snapshot helper');
$old->poll_query_until('postgres',
	q{SELECT count(*) = 0 FROM pg_stat_activity
	   WHERE backend_type = 'upgrade_assist verify'})
  or die 'the verify worker did not exit';
is($old->safe_psql('postgres', "SELECT state FROM upgrade_assist.verify_run WHERE run_id = $run"),
	'cancelled', 'the run is cancelled');
is($old->safe_psql('postgres', 'SELECT count(*) FROM upgrade_assist.verify_workers()'),
	'0', 'no worker slot left');
is( $old->safe_psql(
		'postgres',
		q{SELECT count(*) FROM pg_locks WHERE relation = 'public.accounts'::regclass}),
	'0', 'no lock left on the table');
is($old->safe_psql('postgres', "SELECT upgrade_assist.cancel_verify($run)"),
	'f', 'nothing left to cancel');

done_testing();
