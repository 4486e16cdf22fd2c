# Copyright (c) upgrade_assist contributors

# Statistics export and import on the test command's pairs (old 15 -> new 17,
# old 13 -> new 18; UA_OLD_INSTALL names the old installation).
#
# Logical replication: a FOR ALL TABLES copy on the new side (fenced, as
# until its cutover) imports straight from the old side (source =>
# 'old_side'); every imported column's pg_stats text equals the old side's,
# the column whose type the new side changed is skipped and reported,
# stats_coverage finds only that table incomplete.
#
# pg_upgrade (13 -> 17, with 17 from UA_PG17_INSTALL, in the pair run whose
# old side is 13): export_stats() on the old side, pg_upgrade carries the export
# tables, import_stats() on the new side; pg_stats equal, and the row
# estimates of a fixed set of single-table queries equal the old side's.
#
# The schema: a partitioned table, an array column (element statistics), a
# range column, a quoted identifier, a skewed column and extended statistics
# (which no import carries).
#
# Restart (logical replication part): a first import, one table per
# transaction, waits for a table another session has locked and is
# cancelled; the tables before it stay imported; the next call (fenced,
# with rebuild_jobs => 1) resumes the run, imports only what was left and
# returns the whole run, and the rebuild it starts analyzes the table with
# extended statistics on their columns only.  After the import (pg_upgrade
# part), rebuild_stats(only_missing => true) analyzes only the table with
# extended statistics, on those columns only (the others keep their
# imported rows).

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use UATest;

my $old_install = $ENV{UA_OLD_INSTALL};
plan skip_all => 'needs a pair run (UA_OLD_INSTALL)' unless $old_install;

my $schema = q{
CREATE TABLE public.items (
    id integer PRIMARY KEY,
    "Label Text" text,
    tags integer[],
    span int4range,
    skewed integer,
    retyped integer);
CREATE TABLE public.parted (k integer, v text) PARTITION BY RANGE (k);
CREATE TABLE public.parted_1 PARTITION OF public.parted FOR VALUES FROM (0) TO (500);
CREATE TABLE public.parted_2 PARTITION OF public.parted FOR VALUES FROM (500) TO (1000);
CREATE TABLE public."Quoted Table" ("Col" integer);
CREATE STATISTICS public.items_dep (dependencies) ON id, skewed FROM public.items;
};

my $data = q{
INSERT INTO public.items
SELECT g, 'label ' || (g % 97), ARRAY[g % 5, g % 11, g % 23],
       int4range(g % 1000, g % 1000 + g % 37),
       CASE WHEN g % 10 < 7 THEN 1 ELSE g END, g % 50
  FROM generate_series(1, 20000) g;
INSERT INTO public.parted SELECT g % 1000, 'v' || (g % 31) FROM generate_series(1, 10000) g;
INSERT INTO public."Quoted Table" SELECT g % 200 FROM generate_series(1, 3000) g;
};

my @tables = ('items', 'parted', 'parted_1', 'parted_2', 'Quoted Table');
my $table_list = join(', ', map { "'$_'" } @tables);

# The statistics of pg_stats that every release from 13 on shows, as text,
# one line per column; and the range bounds histogram from pg_statistic.
my $stats_sql = qq{
SELECT tablename || '.' || attname || '.' || inherited || ': ' ||
       concat_ws(' | ', null_frac, avg_width, n_distinct,
                 most_common_vals::text, most_common_freqs::text,
                 histogram_bounds::text, correlation,
                 most_common_elems::text, most_common_elem_freqs::text,
                 elem_count_histogram::text)
  FROM pg_stats
 WHERE schemaname = 'public' AND tablename IN ($table_list)
 ORDER BY tablename COLLATE "C", attname COLLATE "C", inherited};
my $range_sql = q{
SELECT s.stavalues1::text FROM pg_statistic s
 WHERE s.starelid = 'public.items'::regclass
   AND s.staattnum = (SELECT attnum FROM pg_attribute
                       WHERE attrelid = 'public.items'::regclass AND attname = 'span')
   AND s.stakind1 = 7};

sub stats_lines
{
	my ($node, $skip) = @_;
	my @lines = split /\n/, $node->safe_psql('postgres', $stats_sql);
	@lines = grep { !/^\Q$skip\E/ } @lines if $skip;
	return \@lines;
}

# ---------------------------------------------------------------------------
# Logical replication: the new side imports from the peer.
# ---------------------------------------------------------------------------
my ($old, $new) = UATest::cutover_pair(
	old_install => $old_install,
	schema => $schema);
for my $node ($old, $new)
{
	$node->append_conf('postgresql.conf', 'autovacuum = off');
	$node->reload;
}
my $old_v = $old->safe_psql('postgres', 'SHOW server_version_num');
my $new_v = $new->safe_psql('postgres', 'SHOW server_version_num');
note "logical replication pair: $old_v -> $new_v";

# The new side changes a column's type (unfenced for the DDL, fenced again).
$new->safe_psql(
	'postgres', q{
SELECT upgrade_assist.unfence();
ALTER TABLE public.items ALTER retyped TYPE bigint;
SELECT count(*) FROM upgrade_assist.fence('new side: until cutover');
});

$old->safe_psql('postgres', $data);
ok( $new->poll_query_until(
		'postgres', q{
SELECT (SELECT count(*) FROM public.items) = 20000
   AND (SELECT count(*) FROM public.parted) = 10000
   AND (SELECT count(*) FROM public."Quoted Table") = 3000}),
	'the new side has the data');
$old->safe_psql('postgres', 'ANALYZE');

is( $new->safe_psql(
		'postgres',
		"SELECT count(*) FROM pg_statistic WHERE starelid IN (SELECT oid FROM pg_class WHERE relname IN ($table_list))"
	),
	'0',
	'no statistics on the new side before the import');

# A first import, one table per transaction, stops at a table locked by
# another session (unfenced for that session's lock) and is cancelled.
$new->safe_psql('postgres', 'SELECT upgrade_assist.unfence()');
my $locker = $new->background_psql('postgres');
$locker->query_safe('BEGIN; LOCK TABLE public.parted_2 IN SHARE MODE');
my $first = UATest::bg_commands($new, 'import_first',
	"SELECT count(*) FROM upgrade_assist.import_stats('old_side', batch_size => 1)");
ok( $new->poll_query_until(
		'postgres', q{
SELECT EXISTS (SELECT FROM pg_locks l JOIN pg_stat_activity a USING (pid)
                WHERE NOT l.granted AND l.relation = 'public.parted_2'::regclass
                  AND a.backend_type = 'upgrade_assist import_stats')}),
	'the import worker waits for the locked table');
my $caller = UATest::backend_pid($new, 'import_first');
$new->safe_psql('postgres', "SELECT pg_cancel_backend($caller)");
ok(defined UATest::bg_finish($first), 'the cancelled import returns');
is($first->{sqlstate}, '57014', 'the first import was cancelled');
ok( $new->poll_query_until(
		'postgres', q{
SELECT NOT EXISTS (SELECT FROM pg_stat_activity
                    WHERE backend_type = 'upgrade_assist import_stats')}),
	'the cancel stopped the worker');
is( $new->safe_psql(
		'postgres', qq{
SELECT string_agg(t.relname || ' ' || t.status || ' ' || t.attempt, ', '
                  ORDER BY t.relname COLLATE "C")
  FROM upgrade_assist.stats_import_table t
  JOIN upgrade_assist.stats_import_run r USING (run_id)
 WHERE r.state = 'running' AND t.relname IN ($table_list)}),
	'Quoted Table imported 1, items imported 1, parted imported 1, parted_1 imported 1',
	'the tables before the locked one were imported and committed, one by one');
is( $new->safe_psql(
		'postgres', q{
SELECT count(*) FROM pg_statistic WHERE starelid = 'public.items'::regclass}),
	'5', 'their statistics are there');
$locker->query_safe('COMMIT');
$locker->quit;
$new->safe_psql('postgres',
	"SELECT count(*) FROM upgrade_assist.fence('new side: until cutover')");

# The next call (fenced) resumes the run and returns all of it; with
# rebuild_jobs, a rebuild of the extended statistics runs beside it.
my $result = $new->safe_psql(
	'postgres', qq{
SELECT relname || ' ' || status || ' ' || columns_imported || ' ' || columns_skipped
       || coalesce(' ' || detail, '')
  FROM upgrade_assist.import_stats('old_side', rebuild_jobs => 1)
 WHERE relname IN ($table_list) ORDER BY relname COLLATE "C"});
is( $result, q{Quoted Table imported 1 0
items imported 5 1 column retyped: type differs (old integer, new bigint)
parted imported 2 0
parted_1 imported 2 0
parted_2 imported 2 0}, 'import from the peer: one row per table, the retyped column skipped');
is( $new->safe_psql(
		'postgres', qq{
SELECT r.attempts || ' ' || r.state || ': ' ||
       string_agg(t.relname || ' ' || t.attempt, ', ' ORDER BY t.relname COLLATE "C")
  FROM upgrade_assist.stats_import_table t
  JOIN upgrade_assist.stats_import_run r USING (run_id)
 WHERE t.relname IN ($table_list)
 GROUP BY r.run_id, r.attempts, r.state}),
	'2 done: Quoted Table 1, items 1, parted 1, parted_1 1, parted_2 2',
	'the second call resumed the run: only the table left was imported again');

# The rebuild beside the import analyzed items on the columns of its
# extended statistics only (id, skewed): the new side's own statistics
# there (its table is another file), the imported ones everywhere else.
ok( $new->poll_query_until(
		'postgres', q{
SELECT state = 'done' AND workers = 0 FROM upgrade_assist.stats_progress
 ORDER BY run DESC LIMIT 1}),
	'the rebuild beside the import ends');
is( $new->safe_psql(
		'postgres', q{
SELECT string_agg(t.relid::regclass::text || ' ' || t.columns::text || ' ' || t.stage_done, ', ')
  FROM upgrade_assist.stats_task t
 WHERE t.run_id = (SELECT max(run_id) FROM upgrade_assist.stats_run)}),
	'items {1,5} 1',
	'the rebuild beside the import: the table with extended statistics, on their columns');
is( $new->safe_psql(
		'postgres', q{
SELECT count(*) FROM pg_statistic_ext x JOIN pg_statistic_ext_data d ON d.stxoid = x.oid
 WHERE x.stxrelid = 'public.items'::regclass AND d.stxddependencies IS NOT NULL}),
	'1', 'the extended statistics are built on the new side');
my @reanalyzed = ('items.id.', 'items.skewed.');
my $new_lines = [ grep { my $l = $_; !grep { index($l, $_) == 0 } @reanalyzed } @{ stats_lines($new) } ];
cmp_ok(scalar @$new_lines, '==', 10,
	'pg_stats on the new side: every column but the skipped and the re-analyzed ones');
is_deeply(
	$new_lines,
	[ grep { my $l = $_; !grep { index($l, $_) == 0 } @reanalyzed } @{ stats_lines($old, 'items.retyped.') } ],
	'pg_stats on the new side equals the old side for every imported column');
is($new->safe_psql('postgres', $range_sql), $old->safe_psql('postgres', $range_sql),
	'range bounds histogram equal');
isnt($old->safe_psql('postgres', $range_sql), '', 'the old side has range statistics');
is( $new->safe_psql(
		'postgres', q{
SELECT most_common_elems IS NOT NULL FROM pg_stats
 WHERE tablename = 'items' AND attname = 'tags'}),
	't', 'element statistics imported');
is( $new->safe_psql(
		'postgres', q{
SELECT reltuples FROM pg_class WHERE oid = 'public.items'::regclass}),
	'20000', 'relation statistics imported');
is( $new->safe_psql(
		'postgres', qq{
SELECT string_agg(relname, ',' ORDER BY relname) FROM upgrade_assist.stats_coverage
 WHERE relname IN ($table_list) AND NOT has_statistics}),
	'items', 'stats_coverage: only the table with the skipped column is incomplete');
my ($rc, $out, $err) = $new->psql('postgres', 'INSERT INTO public."Quoted Table" VALUES (1)');
like($err, qr/25006|fence/i, 'the new side stayed fenced (writes refused)');

$old->stop;
$new->stop;

# ---------------------------------------------------------------------------
# pg_upgrade: export on the old side, import from the carried table.
# ---------------------------------------------------------------------------
# Only from 13, as in t/005_stats_rebuild.pl: the 15 of the test machines
# (Debian's) writes attribute options that 17 refuses in pg_upgrade.
my $target;
if ($ENV{UA_PG17_INSTALL}
	&& `$ENV{UA_PG17_INSTALL}/bin/pg_config --version` =~ /PostgreSQL 17\./)
{
	$target = $ENV{UA_PG17_INSTALL};
}

SKIP:
{
	skip 'pg_upgrade path: needs old 13 and UA_PG17_INSTALL', 14 unless $target;

	my $src = UATest::node('src', install_path => $old_install);
	$src->append_conf('postgresql.conf', 'autovacuum = off');
	$src->reload;
	$src->safe_psql('postgres', $schema . $data . 'ANALYZE;');
	ok($src->safe_psql('postgres', 'SELECT upgrade_assist.export_stats()') >= 5,
		'export on the old side');

	my @queries = (
		'SELECT * FROM public.items WHERE id BETWEEN 1000 AND 3000',
		'SELECT * FROM public.items WHERE id IN (5, 17, 900, 12000)',
		'SELECT * FROM public.items WHERE skewed = 1',
		'SELECT * FROM public.items WHERE skewed = 1234',
		q{SELECT * FROM public.items WHERE "Label Text" LIKE 'label 1%'},
		q{SELECT * FROM public.items WHERE tags @> ARRAY[3]},
		q{SELECT * FROM public.items WHERE span && int4range(10, 20)},
		'SELECT * FROM public.parted WHERE k < 300',
		q{SELECT * FROM public."Quoted Table" WHERE "Col" = 7});
	my $estimates = sub {
		my ($node) = @_;
		my @rows;
		for my $q (@queries)
		{
			my $plan = $node->safe_psql('postgres', "EXPLAIN $q");
			my ($rows) = $plan =~ /rows=(\d+)/;
			push @rows, "$q: " . ($rows // 'none');
		}
		return \@rows;
	};
	my $old_estimates = $estimates->($src);
	my $old_stats = stats_lines($src);
	my $old_range = $src->safe_psql('postgres', $range_sql);
	$src->stop;

	my $dst = UATest::pg_upgrade($src, 'dst', $target, $old_install);
	isnt(join("\n", @{ $estimates->($dst) }), join("\n", @$old_estimates),
		'before the import, the estimates differ from the old side');

	$result = $dst->safe_psql(
		'postgres', qq{
SELECT string_agg(relname || ' ' || status || ' ' || columns_imported || ' ' || columns_skipped, ', '
                  ORDER BY relname COLLATE "C")
  FROM upgrade_assist.import_stats()
 WHERE relname IN ($table_list)});
	is( $result,
		'Quoted Table imported 1 0, items imported 6 0, parted imported 2 0, parted_1 imported 2 0, parted_2 imported 2 0',
		'import from the table pg_upgrade carried');
	is_deeply(stats_lines($dst), $old_stats,
		'pg_stats after pg_upgrade and import equals the old side');
	is($dst->safe_psql('postgres', $range_sql), $old_range,
		'range bounds histogram equal after pg_upgrade');
	is_deeply($estimates->($dst), $old_estimates,
		'row estimates of single-table queries equal the old side');
	is( $dst->safe_psql(
			'postgres', qq{
SELECT string_agg(relname || ' ' || columns || '/' || columns_with_stats || ' '
                  || ext_stats || '/' || ext_stats_built, ', ')
  FROM upgrade_assist.stats_coverage
 WHERE relname IN ($table_list) AND NOT has_statistics}),
		'items 6/6 1/0',
		'stats_coverage: only the table with extended statistics is incomplete');

	# The rebuild after the import analyzes only what the import left: of
	# items, only the columns of its extended statistics (id, skewed).  A
	# mark on another column's imported row shows that it is not analyzed.
	$dst->safe_psql(
		'postgres', q{
UPDATE pg_statistic SET stanullfrac = 0.25
 WHERE starelid = 'public.items'::regclass AND staattnum = 2});
	my $run = $dst->safe_psql('postgres',
		'SELECT upgrade_assist.rebuild_stats(only_missing => true)');
	ok( $dst->poll_query_until(
			'postgres',
			"SELECT state <> 'running' AND workers = 0 FROM upgrade_assist.stats_progress WHERE run = $run"
		),
		'the rebuild ends');
	is( $dst->safe_psql(
			'postgres',
			"SELECT string_agg(relid::regclass::text, ',') FROM upgrade_assist.stats_task WHERE run_id = $run"
		),
		'items', 'the rebuild analyzed the table with extended statistics only');
	is( $dst->safe_psql(
			'postgres',
			"SELECT columns FROM upgrade_assist.stats_task WHERE run_id = $run"),
		'{1,5}', 'only the columns of its extended statistics');
	is( $dst->safe_psql(
			'postgres', q{
SELECT stanullfrac FROM pg_statistic
 WHERE starelid = 'public.items'::regclass AND staattnum = 2}),
		'0.25', 'the other columns kept their imported statistics');
	is( $dst->safe_psql(
			'postgres', q{
SELECT count(*) FROM pg_statistic_ext x JOIN pg_statistic_ext_data d ON d.stxoid = x.oid
 WHERE x.stxrelid = 'public.items'::regclass AND d.stxddependencies IS NOT NULL}),
		'1', 'the extended statistics are built');
	is( $dst->safe_psql(
			'postgres', qq{
SELECT count(*) FROM upgrade_assist.stats_coverage
 WHERE relname IN ($table_list) AND NOT has_statistics}),
		'0', 'stats_coverage: every table complete after the rebuild');
	$dst->stop;
}

done_testing();
