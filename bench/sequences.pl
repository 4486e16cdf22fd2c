
# Copyright (c) upgrade_assist contributors

# The measuring half of bench/sequences (which builds, installs and sets the
# environment): TABLES tables with a stale serial sequence each, fixed three
# ways from the same stale state, each checked afterwards.

use strict;
use warnings;

# PostgreSQL::Test::Utils sends STDOUT to its log file: keep the terminal.
our $report;
BEGIN { open($report, '>&', \*STDOUT) or die "cannot dup STDOUT: $!"; }

use File::Temp qw(tempfile);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Time::HiRes qw(time);

my $tables = $ENV{TABLES} // 10000;
my $rows = $ENV{ROWS} // 100;
my $batch = 500;

my $node = PostgreSQL::Test::Cluster->new('bench_sequences');
$node->init;
# Every sequence, table and index read stays locked until commit: room for
# three locks per sequence (see docs/blackout.md, "The lock table").
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'upgrade_assist'
max_locks_per_transaction = 512
fsync = on
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION upgrade_assist');
printf $report "sequences: PostgreSQL %s, %d tables of up to %d rows\n",
  $node->safe_psql('postgres', 'SHOW server_version'), $tables, $rows;

# Tables whose keys were written without their sequences, as by replication.
for (my $first = 1; $first <= $tables; $first += $batch)
{
	my $last = $first + $batch - 1;
	$last = $tables if $last > $tables;
	$node->safe_psql(
		'postgres', qq{
DO \$\$
BEGIN
  FOR i IN $first..$last LOOP
    EXECUTE format('CREATE TABLE public.t%s (id serial PRIMARY KEY, v int)', i);
    EXECUTE format('INSERT INTO public.t%s SELECT g, g FROM generate_series(1, %s) g',
                   i, 1 + (i * 7919) % $rows);
  END LOOP;
END \$\$;});
}
$node->safe_psql('postgres', 'VACUUM ANALYZE');

# Put every sequence back to its untouched state.
sub reset_sequences
{
	for (my $first = 1; $first <= $tables; $first += $batch)
	{
		my $last = $first + $batch - 1;
		$last = $tables if $last > $tables;
		$node->safe_psql('postgres',
			"SELECT setval(format('public.t%s_id_seq', i)::regclass, 1, false)"
			  . " FROM generate_series($first, $last) i");
	}
	return;
}

# How many sequences would not give max(id) + 1 next.
sub wrong_sequences
{
	my $wrong = 0;
	for (my $first = 1; $first <= $tables; $first += $batch)
	{
		my $last = $first + $batch - 1;
		$last = $tables if $last > $tables;
		$wrong += $node->safe_psql(
			'postgres', qq{
CREATE FUNCTION pg_temp.next_of(s regclass) RETURNS bigint LANGUAGE plpgsql AS \$\$
DECLARE r bigint;
BEGIN
  EXECUTE format('SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM %s', s)
    INTO r;
  RETURN r;
END \$\$;
SELECT count(*) FROM generate_series($first, $last) i
 WHERE pg_temp.next_of(format('public.t%s_id_seq', i)::regclass)
       <> 1 + (i * 7919) % $rows + 1});
	}
	return $wrong;
}

my @psql = ('psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d',
	$node->connstr('postgres'));
my %secs;

# Baseline: the runbook, one psql per sequence.
reset_sequences();
my $start = time;
for my $i (1 .. $tables)
{
	system(@psql, '-o', '/dev/null', '-c',
		"SELECT setval('public.t${i}_id_seq', (SELECT max(id) FROM public.t$i))"
	) == 0
	  or die "psql failed for t$i";
}
$secs{percall} = time - $start;
die 'runbook (psql per sequence) left wrong sequences' if wrong_sequences();

# The runbook's statements in one psql session.
reset_sequences();
my ($fh, $script) = tempfile(UNLINK => 1);
print $fh "SELECT setval('public.t${_}_id_seq', (SELECT max(id) FROM public.t$_));\n"
  for 1 .. $tables;
close $fh;
$start = time;
system(@psql, '-o', '/dev/null', '-f', $script) == 0 or die 'psql -f failed';
$secs{script} = time - $start;
die 'runbook (one script) left wrong sequences' if wrong_sequences();

# sync_sequences(), one call.
reset_sequences();
$start = time;
system(@psql, '-o', '/dev/null', '-c',
	"SELECT count(*) FROM upgrade_assist.sync_sequences()") == 0
  or die 'sync_sequences failed';
$secs{sync} = time - $start;
die 'sync_sequences left wrong sequences' if wrong_sequences();

printf $report "%-34s %10s %10s\n", 'method', 'seconds', 'x faster';
printf $report "%-34s %10.3f %10s\n", 'runbook, psql per sequence (base)',
  $secs{percall}, '1.0';
printf $report "%-34s %10.3f %10.1f\n", 'runbook, one psql script',
  $secs{script}, $secs{percall} / $secs{script};
printf $report "%-34s %10.3f %10.1f\n", 'sync_sequences()', $secs{sync},
  $secs{percall} / $secs{sync};
printf $report "sync_sequences() against the one-script runbook: %.1f x\n",
  $secs{script} / $secs{sync};
printf $report "target (>= 10 x the runbook, psql per sequence): %s\n",
  $secs{percall} / $secs{sync} >= 10 ? 'met' : 'NOT met';

$node->stop;
