
# Copyright (c) upgrade_assist contributors

# A cluster with more than one replicated database (runs in the pair runs
# only: its point is two clusters of different versions).  The fence is
# cluster-wide and cutover() moves the database it is called in, so the
# checks step refuses, before the fence, while another database of this
# cluster still has a forward subscription into the peer
# (src/cutover_multidb.c, docs/many-databases.md).
#
# The pair of UATest::cutover_pair (database postgres, four ledger writers
# throughout) plus a second replicated database whose name needs quoting,
# 'Shop "Two"', with its own publication on old and subscription on new.
#   1. cutover() in postgres is refused in its checks step, naming the other
#      database, its subscription and slot: 40000 at the call, the attempt
#      aborted with fenced_at NULL, old never fenced, nothing changed on
#      either side (publications, subscriptions, slots, fences), and both
#      databases still replicate.  A dry run is refused the same way.
#   2. The other database's subscription disabled: still refused (it is
#      still a forward subscription, only paused).
#   3. Dropped (and its slot with it), with a logical slot left in that
#      database that no subscription of the peer uses (a CDC consumer's, say):
#      the cutover of postgres goes through, and so does the rollback from
#      new (whose other database has no subscription from new).  The writers'
#      ledger has every acknowledged row exactly once on both sides.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use UATest;

plan skip_all => 'runs in the pair runs only' unless $ENV{UA_OLD_INSTALL};

my $DB2 = 'Shop "Two"';
my $DB2_SQL = '"Shop ""Two"""';    # the identifier in SQL
my $DB2_CONN = q{''Shop "Two"''};  # the conninfo value inside an SQL literal

# Database $DB2 on both nodes with the extension and the ledger tables (two
# seed rows each on old), published on old and subscribed to on new by
# subscription 'two'; new is unfenced for the setup and fenced again after.
sub add_replicated_database
{
	my ($old, $new) = @_;
	$new->safe_psql('postgres', 'SELECT upgrade_assist.unfence()');
	for my $node ($old, $new)
	{
		$node->safe_psql('postgres', "CREATE DATABASE $DB2_SQL");
		$node->safe_psql($DB2,
			"CREATE EXTENSION upgrade_assist;\n" . UATest::ledger_schema());
	}
	$old->safe_psql(
		$DB2,
		join("\n",
			(map { "INSERT INTO public.$_ (tag, side) SELECT 'two.seed.' || g, 'seed' FROM generate_series(1, 2) g;" }
			  @UATest::LEDGER_TABLES),
			'CREATE PUBLICATION upgrade_two FOR ALL TABLES;'));
	my $port = $old->port;
	$new->safe_psql(
		$DB2, qq{
SET log_statement = 'none';
CREATE SUBSCRIPTION two
    CONNECTION 'host=127.0.0.1 port=$port dbname=$DB2_CONN user=$UATest::ADMIN_USER password=$UATest::ADMIN_PASSWORD'
    PUBLICATION upgrade_two;
});
	$new->poll_query_until($DB2,
		q{SELECT count(*) = 0 FROM pg_subscription_rel WHERE srsubstate NOT IN ('r', 's')})
	  or die "subscription two did not synchronise";
	$new->poll_query_until($DB2,
		q{SELECT count(*) = 1 FROM pg_stat_subscription WHERE subname = 'two' AND pid IS NOT NULL AND relid IS NULL})
	  or die "apply worker of two did not start";
	$new->safe_psql('postgres',
		q{SELECT count(*) FROM upgrade_assist.fence('new side: until cutover')});
	return;
}

# A row inserted on old in $DB2 reaches new.
sub db2_replicates
{
	my ($old, $new, $tag) = @_;
	$old->safe_psql($DB2,
		"INSERT INTO public.t_always (tag, side) VALUES ('$tag', 'check')");
	return $new->poll_query_until($DB2,
		"SELECT count(*) = 1 FROM public.t_always WHERE tag = '$tag'");
}

# Everything a refused attempt must leave as it was, on both nodes.
sub state_of
{
	my ($old, $new) = @_;
	return join("\n--\n",
		map { UATest::replication_objects($_) } ($old, $new));
}

# cutover() on old is refused in its checks step, naming $DB2: returns the
# step table's checks row.
sub refused
{
	my ($old, $new, $what, %args) = @_;
	my $before = state_of($old, $new);
	my $r = UATest::sql_result($old,
		UATest::cutover_sql('new_side', on_abort => 'error', %args));
	is($r->{sqlstate}, '40000', "$what: the call fails with 40000");
	like(
		$r->{message},
		qr/Step "checks" failed: database "Shop "Two"" of this cluster also replicates to peer "new_side"/,
		"$what: the reason names the other database");
	like($r->{message},
		qr/subscription "two" \((enabled|disabled)\) of database "Shop "Two"" on the peer uses slot "two" of database "Shop "Two"" here/,
		"$what: and its subscription and slot");
	is(state_of($old, $new), $before, "$what: nothing changed on either side");
	is($old->safe_psql('postgres', 'SELECT fenced FROM upgrade_assist.fence_status'),
		'f', "$what: old is writable");
	return $r;
}

my ($old, $new) = UATest::cutover_pair(old_install => $ENV{UA_OLD_INSTALL});
note 'old: ' . $old->safe_psql('postgres', 'SELECT version()');
note 'new: ' . $new->safe_psql('postgres', 'SELECT version()');
add_replicated_database($old, $new);
ok(db2_replicates($old, $new, 'two.before'), "database $DB2 replicates");

my $writers = UATest::start_writers(
	sides => [ old => $old, new => $new ],
	writers => 4,
	max_inserts => 3000,
	max_seconds => 150);
$old->poll_query_until('postgres', 'SELECT ' . UATest::ledger_count_sql('old') . ' >= 20')
  or die 'the writers did not write on old';

# 1. Refused, before the fence.
refused($old, $new, 'another database replicates');
is( $old->safe_psql(
		'postgres',
		q{SELECT concat_ws(' ', outcome, failed_step, fenced_at IS NULL)
		    FROM upgrade_assist.cutover_history ORDER BY attempt DESC LIMIT 1}),
	'aborted checks t',
	'the attempt aborted in checks and never fenced');
ok(db2_replicates($old, $new, 'two.after_refusal'),
	"database $DB2 still replicates after the refusal");
$new->poll_query_until('postgres',
	"SELECT count(*) > 0 FROM public.t_always WHERE side = 'old'")
  or die 'postgres does not replicate';
refused($old, $new, 'dry run', dry_run => 'true');

# 2. A disabled subscription is still a forward subscription.
# (new is fenced: DDL there needs an exempt session)
$new->safe_psql($DB2,
	"SELECT upgrade_assist.fence_exempt_session();\nALTER SUBSCRIPTION two DISABLE;");
$new->poll_query_until($DB2,
	q{SELECT count(*) = 0 FROM pg_stat_subscription WHERE subname = 'two' AND pid IS NOT NULL})
  or die 'the apply worker of two did not stop';
my $r = refused($old, $new, 'the other subscription disabled');
like($r->{message}, qr/subscription "two" \(disabled\)/, 'disabled: says so');

# 3. Dropped: a slot in that database that the peer does not use is no
# reason to refuse.
$new->safe_psql($DB2,
	"SELECT upgrade_assist.fence_exempt_session();\nDROP SUBSCRIPTION two;");
is($old->safe_psql('postgres', q{SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'two'}),
	'0', 'dropping the subscription dropped its slot on old');
$old->safe_psql($DB2,
	q{SELECT pg_create_logical_replication_slot('cdc_two', 'pgoutput')});

for my $dir ([ $old, 'new_side', 'cutover' ], [ $new, 'old_side', 'rollback' ])
{
	my ($node, $peer, $what) = @$dir;
	my $cr = UATest::sql_result($node, UATest::cutover_sql($peer));
	my @steps = UATest::cutover_steps($cr->{stdout});
	is($cr->{rc}, 0, "$what: returns") or diag($cr->{stderr});
	is(scalar(grep { $_->{status} ne 'done' } @steps), 0, "$what: every step done")
	  or diag(join("\n", map { "$_->{step}: $_->{status}: $_->{detail}" } @steps));
	my $side = $what eq 'cutover' ? 'new' : 'old';
	my $other = $what eq 'cutover' ? $new : $old;
	ok($other->poll_query_until('postgres',
			'SELECT ' . UATest::ledger_count_sql($side) . ' >= 20'),
		"$what: the writers write on $side");
}

my $ledger = UATest::stop_writers($writers);
note 'writers: ' . join('; ', @{ $ledger->{end} });
is_deeply($ledger->{failed}, [], 'every writer ended cleanly');
is_deeply($ledger->{dup}, [], 'no duplicate key');
is_deeply($ledger->{error}, [], 'no unexpected error');
$old->safe_psql('postgres', 'SELECT * FROM upgrade_assist.round_trip(\'new_side\')');
for my $node ($old, $new)
{
	my @problems = UATest::ledger_problems($ledger, $node);
	is(scalar(@problems), 0, $node->name . ': every acknowledged row exactly once')
	  or diag(join("\n", @problems));
}
$old->safe_psql($DB2, q{SELECT pg_drop_replication_slot('cdc_two')});
is(join(',', UATest::orphan_slots($new, $old), UATest::orphan_slots($old, $new)),
	'', 'no slot on either side without a subscription');

done_testing();
