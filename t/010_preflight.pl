
# Copyright (c) upgrade_assist contributors

# preflight(peer) and the cutover's use of it, between two real clusters of
# different major versions: 'old' (UA_OLD_INSTALL) replicates to 'new' as
# docs/setup.md says (UATest::cutover_pair).  It runs in the pair
# runs only (15 -> 17 and 13 -> 18): its point is two versions.
#
#   - A fresh pair: no error finding, the schema column of sync_status 'same'.
#   - Schema drift: an ALTER TABLE on old only makes sync_status.schema say
#     'drift: ...' with the column; the same DDL on new makes it 'same' again.
#   - One setup provokes every check at least once (both sides, and the new
#     side as a publisher on its own for the checks of publications there):
#     each finding has its severity and its quoted object.
#   - Tables that differ only by a CHECK constraint or a NOT NULL are found
#     (the comparison goes column by column only where the fingerprints of a
#     table differ).
#   - cutover() refuses while an error stands, naming the findings, and
#     leaves both sides as they were; accepting only some of the errors
#     still refuses; the preflight's time does not count against the
#     timeout (a dry run whose preflight waits past it still passes); with
#     the rest fixed and the remaining errors accepted by name, the cutover
#     goes through.

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
my $old_version = $old->safe_psql('postgres', 'SHOW server_version_num');

# The schema check every 300 ms, so that the test sees it within seconds.
$old->append_conf('postgresql.conf', "upgrade_assist.schema_check_interval = '300ms'");
$old->reload;
$old->safe_psql('postgres', q{SELECT upgrade_assist.heartbeat_start('new_side', '100ms')});

# Findings of preflight on node (peer: a server name, or undef), as sorted
# "severity check object" lines; extra SQL runs first in the same session.
sub findings
{
	my ($node, $peer, $extra) = @_;
	my $arg = defined $peer ? "'$peer'" : 'NULL';
	my $out = $node->safe_psql('postgres',
		($extra // '')
		  . "SELECT severity || ' ' || \"check\" || ' ' || object"
		  . " FROM upgrade_assist.preflight($arg) ORDER BY 1");
	return [ split /\n/, $out ];
}

# Is there a finding "severity check object" (object exact)?
sub has_finding
{
	my ($list, $severity, $check, $object, $what) = @_;
	my $ok = ok((grep { $_ eq "$severity $check $object" } @$list),
		"$what: $severity $check $object");
	diag(join("\n", @$list)) unless $ok;
	return $ok;
}

# DDL on new, through its fence.
sub on_new
{
	my ($sql) = @_;
	$new->safe_psql('postgres', "SELECT upgrade_assist.fence_exempt_session();\n$sql");
	return;
}

sub cutover
{
	my ($node, $peer, %args) = @_;
	my $r = UATest::sql_result($node, UATest::cutover_sql($peer, %args));
	return ($r, UATest::cutover_steps($r->{stdout}));
}

sub fenced
{
	my ($node) = @_;
	return $node->safe_psql('postgres', 'SELECT fenced FROM upgrade_assist.fence_status');
}

sub schema_is
{
	my ($pattern, $what) = @_;
	my $ok = $old->poll_query_until('postgres',
		"SELECT coalesce(schema, '') ~ '$pattern' FROM upgrade_assist.sync_status WHERE datname = 'postgres'"
	);
	ok($ok, $what)
	  or diag($old->safe_psql('postgres',
		'SELECT schema, schema_checked_at FROM upgrade_assist.sync_status'));
	return;
}

# ---------------------------------------------------------------------------
# A fresh pair: no error, and the heartbeat's schema check says 'same'
# ---------------------------------------------------------------------------
my $fresh = findings($old, 'new_side');
is_deeply([ grep { /^error / } @$fresh ], [], 'fresh pair: no error finding');

# How many tables the peer found with another fingerprint (a DEBUG1 message).
sub differing
{
	my ($node, $peer) = @_;
	my ($stdout, $stderr);
	$node->psql('postgres',
		"SET client_min_messages = debug1; SELECT count(*) FROM upgrade_assist.preflight('$peer')",
		stdout => \$stdout, stderr => \$stderr);
	return $stderr =~ /preflight: peer "\Q$peer\E" has (\d+) of the (\d+) tables asked/ ? [ $1, $2 ] : [];
}
my $fp = differing($old, 'new_side');
ok(@$fp && $fp->[0] == 0 && $fp->[1] > 0,
	'fresh pair: every table has the same fingerprint on both versions')
  or diag(explain $fp);
$fp = differing($new, 'old_side');
ok(@$fp && $fp->[0] == 0 && $fp->[1] > 0, 'fresh pair, the other direction: the same')
  or diag(explain $fp);
schema_is('^same$', "fresh pair: sync_status.schema is 'same'");

# ---------------------------------------------------------------------------
# Drift: DDL on one side, then the same on the other
# ---------------------------------------------------------------------------
$old->safe_psql('postgres', 'ALTER TABLE public.t_always ADD COLUMN extra numeric');
schema_is('^drift: column public\.t_always\.extra is missing on the peer$',
	"ALTER TABLE on old only: schema says 'drift' with the column");
on_new('ALTER TABLE public.t_always ADD COLUMN extra integer');
schema_is('^drift: column public\.t_always\.extra is numeric here and integer on the peer$',
	'another type on new: the difference is the type');
on_new('ALTER TABLE public.t_always ALTER COLUMN extra TYPE numeric');
schema_is('^same$', "the same DDL on new: 'same' again");
$old->safe_psql('postgres', 'ALTER TABLE public.t_always DROP COLUMN extra');
on_new('ALTER TABLE public.t_always DROP COLUMN extra');
schema_is('^same$', "both dropped it: 'same'");

# ---------------------------------------------------------------------------
# A table that is still being copied: subscription_state.  Its initial copy
# on new waits for a SHARE lock held there (the refresh itself only reads
# it).  pf.dup joins the subscription at the
# same refresh; a duplicate key on new then makes the apply fail once.
# ---------------------------------------------------------------------------
my $common = q{
CREATE SCHEMA pf;
CREATE TABLE pf.late (id int PRIMARY KEY);
CREATE TABLE pf.dup (id int PRIMARY KEY);
};
$old->safe_psql('postgres', $common);
on_new($common);
my $locker = $new->background_psql('postgres');
$locker->query_safe('SELECT upgrade_assist.fence_exempt_session()');
$locker->query_safe('BEGIN');
$locker->query_safe('LOCK TABLE pf.late IN SHARE MODE');
on_new('ALTER SUBSCRIPTION upgrade REFRESH PUBLICATION');
$new->poll_query_until(
	'postgres', q{
SELECT EXISTS (SELECT FROM pg_subscription_rel WHERE srrelid = 'pf.dup'::regclass AND srsubstate = 'r')
   AND EXISTS (SELECT FROM pg_subscription_rel WHERE srrelid = 'pf.late'::regclass AND srsubstate NOT IN ('r', 's'))})
  or die 'pf.dup not ready or pf.late not held';

on_new('INSERT INTO pf.dup VALUES (1)');
$old->safe_psql('postgres', 'INSERT INTO pf.dup VALUES (1)');
$new->poll_query_until(
	'postgres', q{
SELECT apply_error_count > 0 FROM pg_stat_subscription_stats WHERE subname = 'upgrade'})
  or die 'no apply error counted';
on_new('DELETE FROM pf.dup');

# ---------------------------------------------------------------------------
# Everything else, in one setup.  Both sides: pf.nokey (no key), pf.full
# (replica identity FULL on old, no index on new), pf.cols (columns that
# differ), pf.seqd (its sequence on old only), pf.parted (partitioned on old,
# a plain table on new), pf.keyed (a trigger on new that fires on apply).
# ---------------------------------------------------------------------------
$old->safe_psql(
	'postgres', q{
CREATE TABLE pf.nokey (id int, note text);
CREATE TABLE pf.full (id int, note text);
ALTER TABLE pf.full REPLICA IDENTITY FULL;
CREATE TABLE pf."Odd Name" (id int PRIMARY KEY);
CREATE UNLOGGED TABLE pf.scratch (id int PRIMARY KEY);
CREATE TABLE pf.only_here (id int PRIMARY KEY);
CREATE TABLE pf.cols (id int PRIMARY KEY, b int, c numeric, d varchar(10), e text,
                      g int GENERATED ALWAYS AS (id * 2) STORED);
CREATE SEQUENCE pf.only_seq;
CREATE TABLE pf.seqd (id int PRIMARY KEY DEFAULT nextval('pf.only_seq'));
CREATE TABLE pf.parted (id int PRIMARY KEY) PARTITION BY RANGE (id);
CREATE TABLE pf.parted_1 PARTITION OF pf.parted FOR VALUES FROM (0) TO (1000);
CREATE TABLE pf.keyed (id int PRIMARY KEY, note text);
CREATE TABLE pf.chk (id int PRIMARY KEY, v int);
CREATE TABLE pf.nn (id int PRIMARY KEY, v int);
CREATE MATERIALIZED VIEW pf.totals AS SELECT count(*) AS n FROM pf.keyed;
CREATE EXTENSION citext;
CREATE EXTENSION hstore;
SELECT lo_create(0) > 0;
});
on_new(q{
CREATE TABLE pf.nokey (id int, note text);
CREATE TABLE pf.full (id int, note text);
CREATE TABLE pf."Odd Name" (id int PRIMARY KEY, extra int NOT NULL);
CREATE TABLE pf.cols (id int PRIMARY KEY, c integer, d text, e text NOT NULL CHECK (e <> ''),
                      g int, x int NOT NULL);
CREATE TABLE pf.seqd (id int PRIMARY KEY);
CREATE TABLE pf.parted (id int PRIMARY KEY);
CREATE TABLE pf.keyed (id int PRIMARY KEY, note text);
CREATE TABLE pf.chk (id int PRIMARY KEY, v int CONSTRAINT chk_positive CHECK (v > 0));
CREATE TABLE pf.nn (id int PRIMARY KEY, v int NOT NULL);
CREATE FUNCTION pf.touch() RETURNS trigger LANGUAGE plpgsql AS
    $$BEGIN NEW.note := 'touched'; RETURN NEW; END$$;
CREATE TRIGGER touch BEFORE INSERT ON pf.keyed FOR EACH ROW EXECUTE FUNCTION pf.touch();
ALTER TABLE pf.keyed ENABLE ALWAYS TRIGGER touch;
CREATE EXTENSION hstore VERSION '1.4';
SELECT pg_create_physical_replication_slot('pf_slot_' || g) FROM generate_series(1, 10) g;
});
$old->safe_psql('postgres',
	q{ALTER PUBLICATION upgrade SET (publish = 'insert, update, delete')});

# A write transaction on old older than the drain timeout of the call.
my $writer = $old->background_psql('postgres');
$writer->query_safe('BEGIN');
$writer->query_safe('INSERT INTO pf.nokey VALUES (1)');
$old->poll_query_until(
	'postgres', q{
SELECT count(*) = 1 FROM pg_stat_activity
 WHERE backend_xid IS NOT NULL AND xact_start < now() - interval '200ms'
   AND backend_type = 'client backend'})
  or die 'no old write transaction';

my $all = findings($old, 'new_side', "SET upgrade_assist.cutover_drain_timeout = '100ms';\n");
my $w = 'both sides';
has_finding($all, 'warning', 'no_primary_key', 'pf.nokey', $w);
has_finding($all, 'warning', 'replica_identity_full', 'pf."full"', $w);
has_finding($all, 'error', 'unlogged_table', 'pf.scratch', $w);
has_finding($all, 'warning', 'apply_trigger', 'touch ON pf.keyed', $w);
has_finding($all, 'error', 'setting', 'max_replication_slots', $w);
has_finding($all, 'error', 'publish_actions', 'upgrade', $w);
has_finding($all, 'error', 'partition_layout', 'pf.parted_1', $w);
has_finding($all, 'error', 'large_objects', 'pg_largeobject', $w);
has_finding($all, 'warning', 'materialized_view', 'pf.totals', $w);
has_finding($all, 'warning', 'long_transaction', 'pid ' . $writer->query_safe('SELECT pg_backend_pid()'), $w);
has_finding($all, 'error', 'subscription_state', 'pf.late', $w);
has_finding($all, 'warning', 'apply_errors', 'upgrade', $w);
has_finding($all, 'error', 'missing_table', 'pf.only_here', $w);
has_finding($all, 'error', 'missing_column', 'pf.cols.b', $w);
has_finding($all, 'error', 'extra_column', 'pf.cols.x', $w);
has_finding($all, 'error', 'extra_column', 'pf."Odd Name".extra', $w);
has_finding($all, 'error', 'column_type', 'pf.cols.c', $w);
has_finding($all, 'warning', 'column_type', 'pf.cols.d', $w);
has_finding($all, 'error', 'generated_column', 'pf.cols.g', $w);
has_finding($all, 'warning', 'peer_constraint', 'pf.cols.e', $w);
has_finding($all, 'warning', 'peer_constraint', 'cols_e_check ON pf.cols', $w);
# Tables whose columns are alike and that differ only by a CHECK constraint or
# a NOT NULL: their fingerprints differ, so they are compared column by column.
has_finding($all, 'warning', 'peer_constraint', 'chk_positive ON pf.chk', $w);
has_finding($all, 'warning', 'peer_constraint', 'pf.nn.v', $w);
is(differing($old, 'new_side')->[0], 5,
	'both sides: five tables compared column by column (cols, "Odd Name", chk, nn, seqd)');
has_finding($all, 'error', 'missing_sequence', 'pf.only_seq', $w);
has_finding($all, 'error', 'missing_extension', 'citext', $w);
has_finding($all, 'warning', 'extension_version', 'hstore', $w);
ok(!(grep { / pf\.keyed$/ && !/apply_trigger/ } @$all), 'a table alike on both sides: no finding');

# The new side as a publisher on its own (15+): row filters, column lists,
# tables and the marker left out of its publications; and as the primary of
# the other direction, which has no forward subscription on old.
on_new(q{
CREATE PUBLICATION pf_rows FOR TABLE pf.keyed WHERE (id > 0);
CREATE PUBLICATION pf_cols FOR TABLE pf.cols (id, c);
});
my $single = findings($new, undef);
$w = 'new alone';
has_finding($single, 'error', 'row_filter', 'pf.keyed', $w);
has_finding($single, 'error', 'column_list', 'pf.cols', $w);
has_finding($single, 'error', 'not_published', 'pf.nokey', $w);
has_finding($single, 'error', 'not_published', 'public.t_always', $w);
has_finding($single, 'error', 'marker_not_published', 'upgrade_assist.marker', $w);
my $back = findings($new, 'old_side');
has_finding($back, 'error', 'forward_subscription', '', 'new with peer old');
on_new('DROP PUBLICATION pf_rows; DROP PUBLICATION pf_cols;');

# ---------------------------------------------------------------------------
# cutover() refuses, names the findings, and leaves both sides as they were
# ---------------------------------------------------------------------------
$writer->query_safe('COMMIT');
$writer->quit;
my %before = (old => UATest::replication_objects($old), new => UATest::replication_objects($new));
my ($r, @steps) = cutover($old, 'new_side');
is($r->{rc}, 0, 'errors stand: cutover returns its rows') or diag($r->{stderr});
is(join(',', map { "$_->{step}=$_->{status}" } @steps[ 0, 1, 2, 3 ]),
	'checks=failed,lag check=skipped,prepare=skipped,fence=skipped', 'errors stand: the checks step fails, the fence is not reached');
like($steps[0]{detail}, qr/^preflight found \d+ error\(s\): .*unlogged_table pf\.scratch/,
	'errors stand: the checks row names the findings');
like($r->{stderr}, qr/WARNING:.*was aborted/, 'errors stand: a warning');
is(UATest::replication_objects($old), $before{old}, 'errors stand: nothing changed on old');
is(UATest::replication_objects($new), $before{new}, 'errors stand: nothing changed on new');
is(fenced($old) . fenced($new), 'ft', 'errors stand: old writable, new fenced');
is( $old->safe_psql('postgres',
		q{SELECT outcome || ' ' || failed_step FROM upgrade_assist.cutover_history ORDER BY attempt DESC LIMIT 1}),
	'aborted checks', 'errors stand: history says aborted at the checks');

# Accepting some errors is not enough: the others still stop it.
($r, @steps) = cutover($old, 'new_side', accept => '{unlogged_table,large_objects}');
is($steps[0]{status}, 'failed', 'some accepted: the checks step still fails');
unlike($steps[0]{detail}, qr/unlogged_table|large_objects/, 'some accepted: they are no longer named');
like($steps[0]{detail}, qr/missing_table pf\.only_here/, 'some accepted: the others are');
is(UATest::replication_objects($new), $before{new}, 'some accepted: nothing changed on new');

# ---------------------------------------------------------------------------
# Fix what would break the cutover itself, accept the rest by name: it goes
# ---------------------------------------------------------------------------
$locker->query_safe('COMMIT');
$locker->quit;
UATest::wait_for_sync($new, 'upgrade');
on_new('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE \'pf_slot_%\'');
$old->safe_psql('postgres', q{ALTER PUBLICATION upgrade SET (publish = 'insert, update, delete, truncate')});
my $left = $old->safe_psql('postgres',
	q{SELECT string_agg(DISTINCT "check" COLLATE "C", ',') FROM upgrade_assist.preflight('new_side') WHERE severity = 'error'});
is( $left,
	'column_type,extra_column,generated_column,large_objects,missing_column,missing_extension,missing_sequence,missing_table,partition_layout,unlogged_table',
	'after the fixes: the errors left are the schema ones');

# The preflight's time does not count against the cutover's timeout: a dry
# run with a 2 s timeout whose preflight waits (pg_relation_size of
# pg_largeobject, for the large_objects check, behind a lock that nothing
# else of the cutover takes) until well past 2 s still passes its lag check.
my $lo_lock = $old->background_psql('postgres');
$lo_lock->query_safe('BEGIN');
$lo_lock->query_safe('LOCK TABLE pg_catalog.pg_largeobject IN ACCESS EXCLUSIVE MODE');
my $dry = UATest::bg_commands($old, 'pf_dry',
	UATest::cutover_sql('new_side', dry_run => 'true', timeout => '2s', accept => "{$left}"));
ok( $old->poll_query_until(
		'postgres', q{
SELECT EXISTS (SELECT FROM pg_locks WHERE NOT granted
                AND relation = 'pg_catalog.pg_largeobject'::regclass)}),
	'slow preflight: the checks step waits for the lock');
ok( $old->poll_query_until(
		'postgres', q{
SELECT coalesce(bool_and(now() - started_at > interval '3s'), false) FROM upgrade_assist.cutover_progress}),
	'slow preflight: the timeout has passed while it waits');
$lo_lock->query_safe('COMMIT');
$lo_lock->quit;
ok(defined UATest::bg_finish($dry), 'slow preflight: the dry run ends');
@steps = UATest::cutover_steps($dry->{stdout});
is(join(',', map { "$_->{step}=$_->{status}" } @steps[ 0, 1 ]),
	'checks=done,lag check=done', 'slow preflight: the lag check still had its time')
  or diag($dry->{stdout} . $dry->{stderr});
like($steps[0]{detail}, qr/preflight (\d{4,}) ms/, 'slow preflight: the checks row says how long it took');

($r, @steps) = cutover($old, 'new_side', accept => "{$left}");
is(join(',', map { $_->{status} } @steps), join(',', ('done') x 12), 'accepted: every step done')
  or diag(join("\n", map { "$_->{step}: $_->{status}: $_->{detail}" } @steps));
like($steps[0]{detail}, qr/preflight \d+ ms: \d+ error\(s\) accepted \(.*missing_table pf\.only_here/,
	'accepted: the checks row lists what was accepted');
is(fenced($old) . fenced($new), 'tf', 'accepted: old fenced, new writable');

$old->stop;
$new->stop;
done_testing();
