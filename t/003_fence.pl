# Copyright (c) upgrade_assist contributors

# The write fence on real clusters: every write path and every way around
# the fence gives SQLSTATE 25006; reads, read-only transactions, new
# connections, VACUUM and ANALYZE keep working; an exempt role writes;
# logical replication keeps applying into a fenced cluster; prepared
# transactions make fence() fail; a restart and an immediate-mode crash keep
# the fence; auto_unfence_after lifts it.  'old' is UA_OLD_INSTALL when set.

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
my $old_version = $old->safe_psql('postgres', 'SHOW server_version_num');

$old->append_conf('postgresql.conf', "max_prepared_transactions = 5\n");
$old->restart;

$old->safe_psql(
	'postgres', q{
CREATE ROLE exempt_writer LOGIN;
CREATE ROLE plain_writer LOGIN;
CREATE TABLE public.items (id int PRIMARY KEY, v text);
CREATE SEQUENCE public.s;
GRANT ALL ON public.items, public.s TO exempt_writer, plain_writer;
CREATE FUNCTION public.add_item(i int) RETURNS void LANGUAGE sql
  AS $$ INSERT INTO public.items VALUES (i, 'function') $$;
CREATE FUNCTION public.copy_to_items() RETURNS trigger LANGUAGE plpgsql
  AS $$ BEGIN INSERT INTO public.items VALUES (NEW.a, 'trigger'); RETURN NEW; END $$;
CREATE PROCEDURE public.commit_then_nextval(INOUT v bigint) LANGUAGE plpgsql
  AS $$ BEGIN COMMIT; v := nextval('public.s'); END $$;
INSERT INTO public.items VALUES (1, 'before');
ALTER SYSTEM SET upgrade_assist.fence_exempt_roles = 'exempt_writer';
SELECT pg_reload_conf();
});

# Logical replication old -> new of the user table and the markers.
$new->safe_psql('postgres', 'CREATE TABLE public.items (id int PRIMARY KEY, v text)');
$old->safe_psql('postgres', 'CREATE PUBLICATION ua_pub FOR ALL TABLES');
UATest::subscribe($new, $old, 'ua_sub', 'ua_pub');

# ---------------------------------------------------------------------------
# Every write path and every bypass gives 25006
# ---------------------------------------------------------------------------
is( $old->safe_psql('postgres',
		"SELECT count(*) FROM upgrade_assist.fence('tap cutover', '2s')"),
	'0', 'fence: nothing to drain');

my $lofile = PostgreSQL::Test::Utils::tempdir() . '/lo.txt';
open my $fh, '>', $lofile or die;
print $fh "large object\n";
close $fh;

my @writes = (
	[ 'INSERT', q{INSERT INTO public.items VALUES (2, 'x')} ],
	[ 'UPDATE', q{UPDATE public.items SET v = 'x'} ],
	[ 'DELETE', q{DELETE FROM public.items} ],
	[ 'write in a function', q{SELECT public.add_item(3)} ],
	[ 'DO block', q{DO $$ BEGIN INSERT INTO public.items VALUES (4, 'do'); END $$} ],
	[ 'trigger (on a temporary table, writing a permanent one)',
		q{CREATE TEMP TABLE tt (a int);
		  CREATE TRIGGER tt_copy AFTER INSERT ON tt FOR EACH ROW
		    EXECUTE FUNCTION public.copy_to_items();
		  INSERT INTO tt VALUES (5)} ],
	[ 'DDL', q{CREATE TABLE public.other (a int)} ],
	[ 'DROP', q{DROP TABLE public.items} ],
	[ 'nextval', q{SELECT nextval('public.s')} ],
	[ 'setval', q{SELECT setval('public.s', 100)} ],
	[ 'SELECT FOR UPDATE', q{SELECT * FROM public.items FOR UPDATE} ],
	[ 'SELECT FOR SHARE', q{SELECT * FROM public.items FOR SHARE} ],
	[ 'COPY FROM', qq{COPY public.items FROM PROGRAM 'echo 6\tcopy'} ],
	[ 'lo_create', q{SELECT lo_create(0)} ],
	[ 'lo_import (fast path)', "\\lo_import '$lofile'" ],
	[ 'procedure: COMMIT, then nextval in a new transaction',
		q{CALL public.commit_then_nextval(NULL)} ],
	[ 'SET default_transaction_read_only = off',
		q{SET default_transaction_read_only = off} ],
	[ 'BEGIN READ WRITE', q{BEGIN READ WRITE} ],
	[ 'SET TRANSACTION READ WRITE', q{BEGIN; SET TRANSACTION READ WRITE} ],
	[ 'SET SESSION CHARACTERISTICS',
		q{SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE} ],
	[ 'set_config(transaction_read_only)',
		q{SELECT set_config('transaction_read_only', 'off', false)} ],
	[ 'set_config(default_transaction_read_only)',
		q{SELECT set_config('default_transaction_read_only', 'off', false)} ],
	[ 'prepared statement',
		q{PREPARE ins AS INSERT INTO public.items VALUES (7, 'prepared'); EXECUTE ins} ],
	[ 'superuser', q{SET ROLE postgres; INSERT INTO public.items VALUES (8, 'su')} ],
	[ 'plain role', q{SET ROLE plain_writer; INSERT INTO public.items VALUES (9, 'plain')} ],
	[ 'SET ROLE to the exempt role (the session user decides)',
		q{SET ROLE exempt_writer; INSERT INTO public.items VALUES (10, 'setrole')} ],
);
push @writes,
  [ 'MERGE',
	q{MERGE INTO public.items i USING (SELECT 1 AS id) s ON i.id = s.id
	  WHEN MATCHED THEN UPDATE SET v = 'merge'} ]
  if $old_version >= 150000;

for my $w (@writes)
{
	my ($name, $sql) = @$w;
	my $r = UATest::sql_result($old, $sql);
	is($r->{sqlstate}, '25006', "fenced: $name gives 25006")
	  or diag($r->{stderr});
}

my $r = UATest::sql_result($old, q{INSERT INTO public.items VALUES (2, 'x')});
like($r->{message}, qr/write fence is up \(tap cutover\)/,
	'the message names the fence and its reason');
like($r->{stderr}, qr/upgrade_assist\.unfence\(\)/, 'the hint says how it ends');

# ---------------------------------------------------------------------------
# What keeps working
# ---------------------------------------------------------------------------
is($old->safe_psql('postgres', 'SELECT count(*) FROM public.items'), '1', 'reads work');
is( $old->safe_psql('postgres',
		'BEGIN READ ONLY; SELECT count(*) FROM public.items; COMMIT'),
	'1', 'read-only transactions work');
is($old->safe_psql('postgres', 'SELECT 1', extra_params => [ '-U', 'plain_writer' ]),
	'1', 'new connections work');
$r = UATest::sql_result($old, 'VACUUM public.items');
is($r->{rc}, 0, 'VACUUM works') or diag($r->{stderr});
$r = UATest::sql_result($old, 'ANALYZE public.items');
is($r->{rc}, 0, 'ANALYZE works') or diag($r->{stderr});
$r = UATest::sql_result($old,
	q{CREATE TEMP TABLE tt (a int)});
is($r->{sqlstate}, '25006', 'creating a temporary table is DDL: refused');
is($old->safe_psql('postgres', q{SELECT kind FROM upgrade_assist.emit_marker('fenced')}),
	'fenced', 'the extension writes its markers');

$old->psql('postgres', q{INSERT INTO public.items VALUES (11, 'exempt')},
	extra_params => [ '-U', 'exempt_writer' ], on_error_stop => 1);
is($old->safe_psql('postgres', 'SELECT v FROM public.items WHERE id = 11'),
	'exempt', 'an exempt role writes');

# ---------------------------------------------------------------------------
# Logical replication into a fenced cluster keeps applying
# ---------------------------------------------------------------------------
$new->safe_psql('postgres', q{SELECT count(*) FROM upgrade_assist.fence('kept fenced until its cutover')});
$r = UATest::sql_result($new, q{INSERT INTO public.items VALUES (100, 'local')});
is($r->{sqlstate}, '25006', 'subscriber: local writes refused');
$old->safe_psql('postgres', 'SELECT upgrade_assist.unfence()');
$old->safe_psql('postgres', q{INSERT INTO public.items VALUES (12, 'replicated')});
ok( $new->poll_query_until('postgres',
		'SELECT count(*) = 1 FROM public.items WHERE id = 12'),
	'logical replication applies into a fenced cluster');

# ---------------------------------------------------------------------------
# Drain: a writer that does not commit in time is terminated
# ---------------------------------------------------------------------------
my $bg = UATest::bg_start($old,
	q{BEGIN; INSERT INTO public.items VALUES (13, 'in flight'); SELECT pg_sleep(300); COMMIT;},
	'slow_writer');
my $slow_pid = UATest::backend_pid($old, 'slow_writer', q{wait_event = 'PgSleep'});
my $drained = $old->safe_psql('postgres',
	q{SELECT pid, outcome FROM upgrade_assist.fence('drain', '100ms')});
is($drained, "$slow_pid|terminated", 'drain: the slow writer is terminated');
ok(defined UATest::bg_finish($bg), 'drain: the slow writer\'s session ends');
is($old->safe_psql('postgres', 'SELECT count(*) FROM public.items WHERE id = 13'),
	'0', 'drain: its write never commits');
$old->safe_psql('postgres', 'SELECT upgrade_assist.unfence()');

# ---------------------------------------------------------------------------
# Prepared transactions make fence() fail and lift itself
# ---------------------------------------------------------------------------
$old->safe_psql('postgres',
	q{BEGIN; INSERT INTO public.items VALUES (14, 'prepared'); PREPARE TRANSACTION 'ua_p1'});
$r = UATest::sql_result($old, q{SELECT * FROM upgrade_assist.fence('with 2pc')});
is($r->{sqlstate}, '55000', 'prepared transaction: fence() fails');
like($r->{stderr}, qr/ua_p1/, 'prepared transaction: named');
is($old->safe_psql('postgres', 'SELECT fenced FROM upgrade_assist.fence_status'),
	'f', 'prepared transaction: not fenced');
$old->safe_psql('postgres', q{COMMIT PREPARED 'ua_p1'});

# ---------------------------------------------------------------------------
# Restart and crash keep the fence; auto_unfence_after lifts it
# ---------------------------------------------------------------------------
$old->safe_psql('postgres', q{SELECT count(*) FROM upgrade_assist.fence('durable')});
$old->restart;
$r = UATest::sql_result($old, q{INSERT INTO public.items VALUES (15, 'x')});
is($r->{sqlstate}, '25006', 'restart: still fenced');
$old->stop('immediate');
$old->start;
$r = UATest::sql_result($old, q{INSERT INTO public.items VALUES (15, 'x')});
is($r->{sqlstate}, '25006', 'immediate-mode crash: still fenced');
is($old->safe_psql('postgres', 'SELECT reason FROM upgrade_assist.fence_status'),
	'durable', 'crash: reason kept');
$old->safe_psql('postgres', 'SELECT upgrade_assist.unfence()');
$old->restart;
$old->safe_psql('postgres', q{INSERT INTO public.items VALUES (15, 'unfenced')});
pass('unfenced before a restart: writable after it');

$old->safe_psql('postgres',
	q{SELECT count(*) FROM upgrade_assist.fence('auto', '1s', '2s')});
$r = UATest::sql_result($old, q{INSERT INTO public.items VALUES (16, 'x')});
is($r->{sqlstate}, '25006', 'auto_unfence_after: fenced at first');
ok( $old->poll_query_until('postgres',
		'SELECT NOT fenced AND lifted_by = $$auto_unfence_after$$ FROM upgrade_assist.fence_status'),
	'auto_unfence_after: lifted by itself');
$old->safe_psql('postgres', q{INSERT INTO public.items VALUES (16, 'after auto')});
pass('auto_unfence_after: writable again');

$new->safe_psql('postgres', 'SELECT upgrade_assist.unfence()');
done_testing();
