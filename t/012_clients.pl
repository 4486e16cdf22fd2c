
# Copyright (c) upgrade_assist contributors

# Clients follow the primary (docs/clients.md), between two clusters of
# different major versions: runs in the pair runs only (UA_OLD_INSTALL).
#
# Read-only reporting: a session that starts on the fenced new side reports
# default_transaction_read_only = on (also after RESET), one of an exempt
# role does not, and libpq's target_session_attrs=read-write passes over the
# fenced cluster; a session that connected while fenced writes after the
# cutover lifted the fence.
#
# The switch command: one failing at 'before fence' aborts the cutover
# cleanly (nothing fenced, the forward direction untouched) and 'aborted'
# still runs.
#
# Under load, across a cutover and its rollback: writers through one
# multi-host connection string (target_session_attrs=read-write, never told
# which server is the primary, a new connection after every error) commit on
# the new primary after the cutover and on the old one after the rollback,
# nothing lost or duplicated; writers through PgBouncer (transaction pooling,
# started here on a free loopback port, switched by scripts/pgbouncer_switch
# as upgrade_assist.cutover_command) see not one failed transaction.  After
# the cutover the old primary has ended its client sessions but those of
# upgrade_assist.cutover_keep_roles, and the heartbeat has moved with the
# primary (and back with the rollback).

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use UATest;

plan skip_all => 'runs in the pair runs only' unless $ENV{UA_OLD_INSTALL};

my $pgbouncer = (grep { -x "$_/pgbouncer" } split /:/, "$ENV{PATH}:/usr/sbin")[0];
plan skip_all => 'pgbouncer is not installed (scripts/pg_toolchain --deps)'
  unless $pgbouncer;
$pgbouncer .= '/pgbouncer';
my $psql = (grep { -x "$_/psql" } split /:/, $ENV{PATH})[0] . '/psql';
my $switch = "$FindBin::RealBin/../scripts/pgbouncer_switch";

my ($old, $new) = UATest::cutover_pair(old_install => $ENV{UA_OLD_INSTALL});
note 'old: ' . $old->safe_psql('postgres', 'SELECT version()');
note 'new: ' . $new->safe_psql('postgres', 'SELECT version()');
my ($old_port, $new_port) = ($old->port, $new->port);

# A role exempt from the fence and one whose sessions the disconnect keeps
# (on both: the subscription does not carry roles).
for my $node ($old, $new)
{
	# new is fenced: this session writes through the fence.
	$node->safe_psql('postgres', q{
SELECT upgrade_assist.fence_exempt_session();
CREATE ROLE ua_exempt LOGIN;
CREATE ROLE ua_keeper LOGIN;
ALTER SYSTEM SET upgrade_assist.fence_exempt_roles = 'ua_exempt';
ALTER SYSTEM SET upgrade_assist.cutover_keep_roles = 'ua_keeper';
SELECT pg_reload_conf();});
	$node->poll_query_until('postgres',
		q{SELECT current_setting('upgrade_assist.cutover_keep_roles') = 'ua_keeper'})
	  or die 'settings not reloaded on ' . $node->name;
}

# Set upgrade_assist.cutover_command on node and wait until new sessions see it.
sub set_command
{
	my ($node, $command) = @_;
	(my $literal = $command) =~ s/'/''/g;
	$node->safe_psql('postgres',
		"SELECT upgrade_assist.fence_exempt_session();\n"
		  . "ALTER SYSTEM SET upgrade_assist.cutover_command = '$literal';\n"
		  . 'SELECT pg_reload_conf();');
	$node->poll_query_until('postgres',
		"SELECT current_setting('upgrade_assist.cutover_command') = '$literal'")
	  or die 'cutover_command not reloaded on ' . $node->name;
	return;
}

sub sql_on
{
	my ($node, $sql, @opts) = @_;
	return scalar $node->safe_psql('postgres', $sql, @opts);
}

sub fenced
{
	my ($node) = @_;
	return sql_on($node, 'SELECT fenced FROM upgrade_assist.fence_status');
}

# Run a cutover on node toward peer; returns (result, steps by name).
sub cutover
{
	my ($node, $peer, %args) = @_;
	my $r = UATest::sql_result($node, UATest::cutover_sql($peer, %args));
	my %steps = map { $_->{step} => $_ } UATest::cutover_steps($r->{stdout});
	return ($r, \%steps);
}

# ===========================================================================
# Read-only reporting on the fenced new side
# ===========================================================================
is(fenced($new), 't', 'setup: new fenced until its cutover');
is(sql_on($new, 'SHOW default_transaction_read_only'),
	'on', 'fenced: a new session reports default_transaction_read_only = on');
is(sql_on($new, 'RESET default_transaction_read_only; SHOW default_transaction_read_only'),
	'on', 'fenced: its reset value is on too');
is(sql_on($new, 'SHOW default_transaction_read_only', extra_params => [ '-U', 'ua_exempt' ]),
	'off', 'fenced: a session of an exempt role reports off');
is(sql_on($old, 'SHOW default_transaction_read_only'),
	'off', 'unfenced: old reports off');

my $multihost = "host=127.0.0.1,127.0.0.1 port=$new_port,$old_port dbname=postgres"
  . " user=$UATest::ADMIN_USER password=$UATest::ADMIN_PASSWORD"
  . ' target_session_attrs=read-write connect_timeout=10';
my ($out, $err) = ('', '');
IPC::Run::run([ $psql, '-X', '-A', '-t', '-d', $multihost, '-c', 'SELECT inet_server_port()' ],
	'<', \undef, '>', \$out, '2>', \$err);
chomp $out;
is($out, $old_port,
	'target_session_attrs=read-write skips the fenced new side listed first')
  or diag($err);

# A session on new that connected while fenced, kept across the cutover.
my $early = $new->background_psql('postgres', on_error_stop => 0);
is($early->query_safe('SHOW default_transaction_read_only'),
	'on', 'a session connected while fenced reports on');

# ===========================================================================
# A switch command failing before the point of no return aborts cleanly
# ===========================================================================
my $dir = PostgreSQL::Test::Utils::tempdir();
my $objects_before = UATest::replication_objects($old);
set_command($old, "echo %m >> $dir/moments; test %m != 'before fence'");
# (Whether an aborted cutover() is an error or a WARNING is not this test's
# business: it looks at the history and the step reports, in either output.)
my ($r, $steps) = cutover($old, 'new_side');
like($r->{stdout} . $r->{stderr},
	qr/cutover_command at moment "before fence" exited with status 1/,
	'failing command: the fence step says why');
is( sql_on($old,
		q{SELECT concat_ws('|', outcome, failed_step, reason LIKE 'cutover_command at moment "before fence" exited with status 1%')
		    FROM upgrade_assist.cutover_history ORDER BY attempt DESC LIMIT 1}),
	'aborted|fence|t', 'failing command: cutover_history says aborted at fence, and why');
is(fenced($old) . fenced($new), 'ft', 'failing command: old writable, new still fenced');
is(UATest::replication_objects($old), $objects_before,
	'failing command: nothing of the attempt left on old');
is(slurp_file("$dir/moments"), "before fence\naborted\n",
	"failing command: it ran at 'before fence', then at 'aborted'");

# ===========================================================================
# PgBouncer in front, switched by scripts/pgbouncer_switch
# ===========================================================================
my $pgb_port = PostgreSQL::Test::Cluster::get_free_port();
my $pgb_ini = "$dir/pgbouncer.ini";
append_to_file("$dir/databases.ini",
	"app = host=127.0.0.1 port=$old_port dbname=postgres\n");
append_to_file("$dir/users.txt",
	qq{"$UATest::ADMIN_USER" "$UATest::ADMIN_PASSWORD"\n"pgb_admin" ""\n});
append_to_file(
	$pgb_ini, qq{[databases]
%include $dir/databases.ini
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $pgb_port
unix_socket_dir =
auth_type = trust
auth_file = $dir/users.txt
admin_users = pgb_admin
pool_mode = transaction
default_pool_size = 8
max_client_conn = 100
server_login_retry = 1
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
});
system($pgbouncer, '-d', '-q', $pgb_ini) == 0 or die "pgbouncer did not start: $?";
my $pgb_admin = "host=127.0.0.1 port=$pgb_port dbname=pgbouncer user=pgb_admin";
my $pgb_up = 0;
for my $i (1 .. 100)
{
	last if ($pgb_up = -s "$dir/pgbouncer.pid" && system($psql, '-X', '-q', '-d', $pgb_admin, '-c', 'SHOW VERSION', '-o', '/dev/null') == 0);
	select(undef, undef, undef, 0.1);    # bounded: 100 tries, 10 s
}
ok($pgb_up, 'pgbouncer answers on its admin console');

END
{
	if ($dir && -s "$dir/pgbouncer.pid")
	{
		my $pid = slurp_file("$dir/pgbouncer.pid");
		chomp $pid;
		kill 'TERM', $pid if $pid =~ /^\d+$/;
	}
}

# Each server runs the psql of its own installation: its environment
# (LD_LIBRARY_PATH of an install_path node) carries that installation's libpq.
for my $node ($old, $new)
{
	my $node_psql =
	  $node == $old ? "$ENV{UA_OLD_INSTALL}/bin/psql" : $psql;
	set_command($node,
		qq{$switch --admin "$pgb_admin" --db app --include $dir/databases.ini --psql $node_psql %m %h %o %d});
}

# scripts/pgbouncer_switch ran 'peer writable' through the admin session it
# opened at 'before fence' (no psql of its own while clients queue), and
# closed that session at 'done'.
sub switch_used_its_session
{
	my ($node, $what) = @_;
	my $log = slurp_file($node->logfile);
	like($log, qr/cutover_command \(before fence\): paused app at \d/,
		"$what: the switch script paused app");
	like($log, qr/cutover_command \(peer writable\): resumed app at \d/,
		"$what: the switch script resumed app");
	unlike($log, qr/the admin session does not answer|no admin session/,
		"$what: through the admin session it opened at 'before fence'");
	ok(!-e "$dir/databases.ini.session",
		"$what: the switch script closed its admin session at 'done'");
	return;
}

# ===========================================================================
# Cutover and rollback under load
# ===========================================================================
my $mh = UATest::start_conninfo_writers(
	conninfo => $multihost,
	prefix => 'mh',
	writers => 2,
	max_inserts => 2000,
	max_seconds => 150);
my $pb = UATest::start_conninfo_writers(
	conninfo => "host=127.0.0.1 port=$pgb_port dbname=app user=$UATest::ADMIN_USER",
	prefix => 'pb',
	writers => 2,
	max_inserts => 2000,
	max_seconds => 150);

# A query: how many rows committed on port were written by writers whose
# tags start with prefix ('mh', 'pb'; all writers when undef).
sub rows_on
{
	my ($node, $port, $prefix) = @_;
	my $sql = 'SELECT ' . UATest::ledger_count_sql($port);
	$sql =~ s/side = '$port'/side = '$port' AND tag LIKE '$prefix%'/g if defined $prefix;
	return $sql;
}

# Wait until both kinds of writer have n more rows on node (port) than before.
sub both_kinds_write
{
	my ($node, $port, $n, $what) = @_;
	for my $prefix ('mh', 'pb')
	{
		my $before = sql_on($node, rows_on($node, $port, $prefix));
		ok( $node->poll_query_until('postgres',
				rows_on($node, $port, $prefix) . ' >= ' . ($before + $n)),
			"$what ($prefix writers)");
	}
	return;
}

both_kinds_write($old, $old_port, 10, 'writers commit on old');

# The heartbeat runs on old toward new; the cutover moves it.
sql_on($old, q{SELECT upgrade_assist.heartbeat_start('new_side', '100ms')});

my $victim = $old->background_psql('postgres', on_error_stop => 0);
my $keeper = $old->background_psql('postgres', on_error_stop => 0,
	extra_params => [ '-U', 'ua_keeper' ]);
my $victim_pid = $victim->query_safe('SELECT pg_backend_pid()');
my $keeper_pid = $keeper->query_safe('SELECT pg_backend_pid()');

($r, $steps) = cutover($old, 'new_side');
is($r->{rc}, 0, 'cutover: returns') or diag($r->{stderr});
is($steps->{'unfence peer'}{status}, 'done', 'cutover: past the point of no return')
  or diag($r->{stdout});
like($steps->{cleanup}{detail}, qr/ended \d+ client session\(s\)/,
	'cutover: the old primary ended its client sessions');
unlike($steps->{cleanup}{detail}, qr/FAILED/, 'cutover: the switch command succeeded')
  or diag($steps->{cleanup}{detail});
switch_used_its_session($old, 'cutover');
is(fenced($old) . fenced($new), 'tf', 'cutover: old fenced, new writable');
like($steps->{cleanup}{detail}, qr/heartbeat moved to the peer \(server old_side there, every 100 ms/,
	'cutover: the heartbeat moved to new, toward old_side');
ok( $new->poll_query_until('postgres',
		q{SELECT state = 'in sync' FROM upgrade_assist.sync_status WHERE peer = 'old_side'}),
	'cutover: the heartbeat on new is in sync with old');
is(sql_on($old, q{SELECT string_agg(peer || ' ' || state, ',') FROM upgrade_assist.sync_status}),
	'new_side stopped', 'cutover: the heartbeat on old is stopped');
ok( $old->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $victim_pid"),
	'cutover: a session on old is ended');
is(sql_on($old, "SELECT count(*) FROM pg_stat_activity WHERE pid = $keeper_pid"),
	'1', 'cutover: the session of a cutover_keep_roles role is kept');
is(sql_on($old, 'SHOW default_transaction_read_only'),
	'on', 'cutover: a new session on the fenced old side reports on');
is($early->query_safe('SHOW default_transaction_read_only'),
	'off', 'cutover: the session that connected to new while fenced reports off');
my $early_id = $early->query_safe(
	q{INSERT INTO public.t_always (tag, side) VALUES ('early', 'early') RETURNING id});
like($early_id, qr/^\d+$/, 'cutover: and writes from its next transaction');
$early->quit;

both_kinds_write($new, $new_port, 10, 'writers commit on new after the cutover');
my @server_ports = map { (split /\|/)[5] } grep { (split /\|/)[2] eq 'app' } split /\n/,
  `$psql -X -A -t -d "$pgb_admin" -c "SHOW SERVERS"`;
ok(@server_ports > 0, 'pgbouncer: server connections for app exist');
is_deeply([ grep { $_ ne $new_port } @server_ports ], [],
	'pgbouncer: none of them goes to the old primary');

($r, $steps) = cutover($new, 'old_side');
is($r->{rc}, 0, 'rollback: returns') or diag($r->{stderr});
is($steps->{'unfence peer'}{status}, 'done', 'rollback: past the point of no return')
  or diag($r->{stdout});
unlike($steps->{cleanup}{detail}, qr/FAILED/, 'rollback: the switch command succeeded')
  or diag($steps->{cleanup}{detail});
switch_used_its_session($new, 'rollback');
is(fenced($old) . fenced($new), 'ft', 'rollback: old writable, new fenced');
like($steps->{cleanup}{detail}, qr/heartbeat moved to the peer \(server new_side there/,
	'rollback: the heartbeat moved back to old');
ok( $old->poll_query_until('postgres',
		q{SELECT state = 'in sync' FROM upgrade_assist.sync_status WHERE peer = 'new_side'}),
	'rollback: the heartbeat on old is in sync with new again');
both_kinds_write($old, $old_port, 10, 'writers are back on old after the rollback');

my $l_mh = UATest::stop_writers($mh);
my $l_pb = UATest::stop_writers($pb);
$keeper->quit;
eval { $victim->quit; 1 } or note 'the ended session on old: ' . $@;

# Every acknowledged row has reached the other side: a marker round trip.
is( sql_on($old, q{SELECT latency >= interval '0' FROM upgrade_assist.round_trip('new_side', '60s')}),
	't', 'a marker round trip old -> new after the rollback');

# The rows of the other kind of writer and of the early session, for
# ledger_problems, which wants every row of the ledger tables accounted for.
my %all_acked = (%{ $l_mh->{acked} }, %{ $l_pb->{acked} }, early => "t_always $early_id early");
my %all_uncertain = (%{ $l_mh->{uncertain} }, %{ $l_pb->{uncertain} });
for my $case ([ 'multi-host libpq', $l_mh ], [ 'pgbouncer', $l_pb ])
{
	my ($what, $l) = @$case;
	my %on;
	$on{ (split / /)[2] }++ for values %{ $l->{acked} };
	note sprintf('%s: %d acknowledged (%d on old, %d on new), %d uncertain, %d fenced, %d connections failed; %s',
		$what, scalar(keys %{ $l->{acked} }), $on{$old_port} // 0, $on{$new_port} // 0,
		scalar(keys %{ $l->{uncertain} }), $l->{fenced}, $l->{noconn},
		join('; ', @{ $l->{end} }));
	is_deeply($l->{failed}, [], "$what: every writer ended normally");
	is_deeply($l->{dup}, [], "$what: no duplicate key");
	is_deeply($l->{error}, [], "$what: no other error");
	ok($on{$old_port} && $on{$new_port}, "$what: commits on old and on new");
}
my $all = { acked => \%all_acked, uncertain => \%all_uncertain };
is_deeply([ UATest::ledger_problems($all, $old) ], [],
	'old has every acknowledged write exactly once, and no other');
is_deeply([ UATest::ledger_problems($all, $new) ], [],
	'new has every acknowledged write exactly once, and no other');
is( $l_pb->{fenced} + $l_pb->{noconn} + scalar(keys %{ $l_pb->{uncertain} }),
	0, 'pgbouncer: not one failed transaction across cutover and rollback');

done_testing();
