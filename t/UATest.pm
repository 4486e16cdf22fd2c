
# Copyright (c) upgrade_assist contributors

=pod

=head1 NAME

UATest - helpers shared by upgrade_assist's TAP tests

=head1 SYNOPSIS

  use FindBin;
  use lib $FindBin::RealBin;
  use UATest;

  my $old = UATest::node('old', install_path => $ENV{UA_OLD_INSTALL});
  my $new = UATest::node('new');
  UATest::create_peer($old, 'new_peer', $new);
  my $r = UATest::sql_result($old, "SELECT upgrade_assist.round_trip('new_peer', '2s')");
  is($r->{sqlstate}, '57014');

=head1 DESCRIPTION

Works with the PostgreSQL::Test::Cluster of every supported major version,
including the back-branch shim of 13 (PostgresNode underneath).  Nodes listen
on their Unix socket (for the test itself and for replication) and on
127.0.0.1 (for peers, which authenticate as role C<upgrader> with a password
through scram-sha-256).

=cut

package UATest;

use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

# The role a peer connects as, and its password.
our $PEER_USER = 'upgrader';
our $PEER_PASSWORD = 'ua_peer_pw_7';

=pod

=head1 FUNCTIONS

=over

=item node(name, install_path => dir)

Create, configure and start a node with upgrade_assist preloaded and created in
database postgres, wal_level logical, TCP on 127.0.0.1 only, and the role
upgrader (member of pg_monitor) allowed in over TCP with scram-sha-256.
install_path is passed to PostgreSQL::Test::Cluster only when set.

=cut

sub node
{
	my ($name, %params) = @_;
	my @install =
	  $params{install_path} ? (install_path => $params{install_path}) : ();

	my $node = PostgreSQL::Test::Cluster->new($name, @install);
	# Not init(allows_streaming => ...): the newer modules then write settings
	# that an older install_path server does not know.
	$node->init;
	$node->append_conf(
		'postgresql.conf', qq{
shared_preload_libraries = 'upgrade_assist'
wal_level = logical
listen_addresses = '127.0.0.1'
password_encryption = 'scram-sha-256'
max_connections = 40
max_worker_processes = 16
max_replication_slots = 10
max_wal_senders = 10
});
	prepend_hba($node,
		"host all $PEER_USER 127.0.0.1/32 scram-sha-256");
	$node->start;

	# The password must not reach the server log through log_statement.
	$node->safe_psql(
		'postgres', qq{
SET log_statement = 'none';
CREATE ROLE $PEER_USER LOGIN PASSWORD '$PEER_PASSWORD';
GRANT pg_monitor TO $PEER_USER;
CREATE EXTENSION upgrade_assist;
});
	return $node;
}

=pod

=item prepend_hba(node, line)

Put a line first in the node's pg_hba.conf (the first matching line wins).
The caller reloads or restarts.

=cut

sub prepend_hba
{
	my ($node, $line) = @_;
	my $file = $node->data_dir . '/pg_hba.conf';
	my $old = slurp_file($file);
	open my $fh, '>', $file or die "could not write $file: $!";
	print $fh "$line\n$old";
	close $fh;
	return;
}

=pod

=item create_peer(node, server, peer_node, password => pw, options => {...})

On node, create foreign server C<server> of wrapper upgrade_assist pointing at
peer_node over 127.0.0.1, and a user mapping for the current user as upgrader.
peer_node may be undef when options give host and port.

=cut

sub create_peer
{
	my ($node, $server, $peer, %params) = @_;
	my %opts = (
		host => '127.0.0.1',
		dbname => 'postgres',
		($peer ? (port => $peer->port) : ()),
		%{ $params{options} // {} });
	my $password = $params{password} // $PEER_PASSWORD;
	my $optlist = join(', ', map { "$_ '$opts{$_}'" } sort keys %opts);

	$node->safe_psql(
		'postgres', qq{
SET log_statement = 'none';
CREATE SERVER $server FOREIGN DATA WRAPPER upgrade_assist OPTIONS ($optlist);
CREATE USER MAPPING FOR CURRENT_USER SERVER $server
    OPTIONS (user '$PEER_USER', password '$password');
});
	return;
}

=pod

=item system_identifier(node)

The node's system identifier, the origin of the markers it writes.

=cut

sub system_identifier
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		'SELECT system_identifier FROM pg_control_system()');
}

=pod

=item parse_error(stderr)

From psql's stderr at VERBOSITY verbose, return (sqlstate, message) of the
first ERROR or FATAL; the message is the rest of stderr from there on.

=cut

sub parse_error
{
	my ($stderr) = @_;
	if ($stderr =~ /(?:ERROR|FATAL):\s+([0-9A-Z]{5}):\s+(.*)/s)
	{
		return ($1, $2);
	}
	return (undef, $stderr);
}

=pod

=item sql_result(node, sql)

Run sql on node's database postgres through psql at VERBOSITY verbose and
return a hash: rc (psql's exit code), stdout, stderr, sqlstate and message of
the first error (undef when none), elapsed (seconds, wall clock).

=cut

sub sql_result
{
	my ($node, $sql) = @_;
	my ($stdout, $stderr);
	my $start = time;
	my $rc = $node->psql(
		'postgres', "\\set VERBOSITY verbose\n$sql",
		stdout => \$stdout,
		stderr => \$stderr,
		on_error_stop => 1);
	my $elapsed = time - $start;
	my ($sqlstate, $message) = parse_error($stderr // '');
	return {
		rc => $rc,
		stdout => $stdout // '',
		stderr => $stderr // '',
		sqlstate => $sqlstate,
		message => $message,
		elapsed => $elapsed,
	};
}

=pod

=item bg_start(node, sql, appname)

Start psql in the background on node's database postgres, running sql as the
only command with application_name appname (so that pg_stat_activity finds
it).  Returns a handle for bg_finish.

=cut

sub bg_start
{
	my ($node, $sql, $appname) = @_;
	my $bg = { stdout => '', stderr => '', name => $appname };
	$bg->{timer} = IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default);
	$bg->{run} = IPC::Run::start(
		[
			'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1',
			'-v', 'VERBOSITY=verbose',
			'-d', $node->connstr('postgres') . " application_name=$appname",
			'-c', $sql
		],
		'<', \undef,
		'>', \$bg->{stdout},
		'2>', \$bg->{stderr},
		$bg->{timer});
	return $bg;
}

=pod

=item bg_finish(bg, limit)

Wait at most limit seconds for a background psql to exit.  Returns the seconds
waited, or undef (after killing psql) when it did not exit in time.  Sets
$bg->{rc}, {sqlstate} and {message}.

=cut

sub bg_finish
{
	my ($bg, $limit) = @_;
	my $start = time;
	$bg->{timer}->start($limit);
	my $ok = eval { $bg->{run}->finish; 1 };
	my $elapsed = time - $start;
	if (!$ok)
	{
		diag("background psql $bg->{name} did not exit within ${limit}s: $@");
		$bg->{run}->kill_kill;
		return undef;
	}
	$bg->{rc} = $bg->{run}->result(0);
	($bg->{sqlstate}, $bg->{message}) = parse_error($bg->{stderr});
	return $elapsed;
}

=pod

=item backend_pid(node, appname, extra_condition)

Wait until node shows exactly one active backend with this application_name
(and, when given, extra_condition, an SQL boolean over pg_stat_activity and
the current database) and return its pid.

=cut

sub backend_pid
{
	my ($node, $appname, $extra) = @_;
	my $cond = "application_name = '$appname' AND state = 'active'"
	  . ($extra ? " AND ($extra)" : '');
	$node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE $cond")
	  or die "no active backend for $appname on " . $node->name;
	return $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE $cond");
}

=pod

=item wait_for_sync(node, subscription)

Wait until every table of the subscription on node is synchronised and its
apply worker runs.

=cut

sub wait_for_sync
{
	my ($node, $sub) = @_;
	$node->poll_query_until(
		'postgres', qq{
SELECT count(*) = 0 FROM pg_subscription_rel r
  JOIN pg_subscription s ON s.oid = r.srsubid
 WHERE s.subname = '$sub' AND r.srsubstate NOT IN ('r', 's')})
	  or die "subscription $sub did not synchronise";
	$node->poll_query_until(
		'postgres', qq{
SELECT count(*) > 0 FROM pg_stat_subscription
 WHERE subname = '$sub' AND pid IS NOT NULL AND relid IS NULL})
	  or die "apply worker of $sub did not start";
	return;
}

=pod

=item subscribe(node, publisher, subscription, publication)

On node, subscribe to the publication of publisher's database postgres over
its Unix socket, and wait until every table is synchronised.

=cut

sub subscribe
{
	my ($node, $publisher, $sub, $pub) = @_;
	$node->safe_psql('postgres',
		"CREATE SUBSCRIPTION $sub CONNECTION 'host="
		  . $publisher->host
		  . ' port='
		  . $publisher->port
		  . " dbname=postgres' PUBLICATION $pub");
	wait_for_sync($node, $sub);
	return;
}

=pod

=back

=cut

1;
