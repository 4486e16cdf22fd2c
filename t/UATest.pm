
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

use File::Basename ();
use File::Spec;
use IO::Handle;
use IPC::Run;
use POSIX ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

# The role a peer connects as, and its password.
our $PEER_USER = 'upgrader';
our $PEER_PASSWORD = 'ua_peer_pw_7';

# The superuser of a cutover pair (see cutover_pair), and its password.
our $ADMIN_USER = 'ua_admin';
our $ADMIN_PASSWORD = 'ua_admin_pw_5';

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

=item create_peer(node, server, peer_node, user => role, password => pw, options => {...})

On node, create foreign server C<server> of wrapper upgrade_assist pointing at
peer_node's database postgres over 127.0.0.1, and a user mapping for the
current user as role (default $PEER_USER; cutover pairs use $ADMIN_USER) with
password pw (default: that role's password).  options are added to the
server's options or replace them (host, port, dbname); peer_node may be undef
when they give the port.

=cut

my %role_password =
  ($PEER_USER => $PEER_PASSWORD, $ADMIN_USER => $ADMIN_PASSWORD);

sub create_peer
{
	my ($node, $server, $peer, %params) = @_;
	my %opts = (
		host => '127.0.0.1',
		dbname => 'postgres',
		($peer ? (port => $peer->port) : ()),
		%{ $params{options} // {} });
	my $user = $params{user} // $PEER_USER;
	my $password = $params{password} // $role_password{$user}
	  // die "create_peer: no password known for role $user";
	my $optlist = join(', ', map { "$_ '$opts{$_}'" } sort keys %opts);

	$node->safe_psql(
		'postgres', qq{
SET log_statement = 'none';
CREATE SERVER $server FOREIGN DATA WRAPPER upgrade_assist OPTIONS ($optlist);
CREATE USER MAPPING FOR CURRENT_USER SERVER $server
    OPTIONS (user '$user', password '$password');
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

Run sql on node's database postgres through psql at VERBOSITY verbose, for
at most the harness's default timeout, and return a hash: rc (psql's exit
code; undef when it timed out), timed_out (true when psql was killed at that
timeout), stdout, stderr, sqlstate and message of the first error (undef when
none), elapsed (seconds, wall clock).

=cut

sub sql_result
{
	my ($node, $sql) = @_;
	my ($stdout, $stderr, $timed_out);
	my $start = time;
	my $rc = $node->psql(
		'postgres', "\\set VERBOSITY verbose\n$sql",
		stdout => \$stdout,
		stderr => \$stderr,
		on_error_stop => 1,
		timeout => $PostgreSQL::Test::Utils::timeout_default,
		timed_out => \$timed_out);
	my $elapsed = time - $start;
	my ($sqlstate, $message) = parse_error($stderr // '');
	return {
		rc => $rc,
		timed_out => $timed_out,
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
	return bg_psql($node, $appname, [], $sql);
}

# psql in the background with extra options and one -c per command.
sub bg_psql
{
	my ($node, $appname, $options, @commands) = @_;
	my $bg = { stdout => '', stderr => '', name => $appname };
	$bg->{timer} = IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default);
	$bg->{run} = IPC::Run::start(
		[
			'psql', '-X', '-q', @$options, '-v', 'ON_ERROR_STOP=1',
			'-v', 'VERBOSITY=verbose',
			'-d', $node->connstr('postgres') . " application_name=$appname",
			map { ('-c', $_) } @commands
		],
		'<', \undef,
		'>', \$bg->{stdout},
		'2>', \$bg->{stderr},
		$bg->{timer});
	return $bg;
}

=pod

=item bg_finish(bg, limit)

Wait at most limit seconds (default: the harness's default timeout) for a
background psql to exit.  Returns the seconds waited, or undef (after killing
psql) when it did not exit in time.  Sets $bg->{rc}, {sqlstate} and
{message}.

=cut

sub bg_finish
{
	my ($bg, $limit) = @_;
	$limit //= $PostgreSQL::Test::Utils::timeout_default;
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

=head2 Cutover pairs and writers

=over

=item $ADMIN_USER, $ADMIN_PASSWORD

The role the two clusters of a cutover pair use for each other: a superuser,
because the cutover runs DDL on its peer (publication, slot, subscription,
unfence).

=item @LEDGER_TABLES

The tables of cutover_pair's default schema, which the writers of
start_writers insert into.  Each has columns id (its key, from a sequence),
tag and side:

  t_always      id bigint GENERATED ALWAYS AS IDENTITY
  t_bydefault   id integer GENERATED BY DEFAULT AS IDENTITY
  t_shared_a    id bigint DEFAULT nextval('public.shared_seq')
  t_shared_b    id bigint DEFAULT nextval('public.shared_seq')  (the same sequence)
  t_bigserial   id bigserial

=cut

our @LEDGER_TABLES = qw(t_always t_bydefault t_shared_a t_shared_b t_bigserial);

my $ledger_schema = q{
CREATE TABLE public.t_always (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tag text NOT NULL, side text NOT NULL);
CREATE TABLE public.t_bydefault (
    id integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    tag text NOT NULL, side text NOT NULL);
CREATE SEQUENCE public.shared_seq;
CREATE TABLE public.t_shared_a (
    id bigint PRIMARY KEY DEFAULT nextval('public.shared_seq'),
    tag text NOT NULL, side text NOT NULL);
CREATE TABLE public.t_shared_b (
    id bigint PRIMARY KEY DEFAULT nextval('public.shared_seq'),
    tag text NOT NULL, side text NOT NULL);
CREATE TABLE public.t_bigserial (
    id bigserial PRIMARY KEY,
    tag text NOT NULL, side text NOT NULL);
};

=pod

=item ledger_schema()

The SQL that creates the tables of @LEDGER_TABLES (and their sequences).

=cut

sub ledger_schema
{
	return $ledger_schema;
}

=pod

=item cutover_pair(old_name => 'old', new_name => 'new', old_install => dir, schema => sql)

Create two nodes (node(); old with install_path old_install when set) and set
them up the way docs/setup.md says: on both, role $ADMIN_USER
allowed in over 127.0.0.1 with scram-sha-256 and the user's schema (default:
the tables of @LEDGER_TABLES, with three rows each on old, side 'seed'); on
old, server new_side, and on new, server old_side, each with a user mapping
as $ADMIN_USER (create_peer); publication upgrade FOR ALL TABLES on old;
subscription upgrade on new over 127.0.0.1 as $ADMIN_USER, waited for until
synchronised; new fenced ('new side: until cutover').  Returns (old, new).

=cut

sub cutover_pair
{
	my (%params) = @_;
	my $schema = $params{schema} // $ledger_schema;
	my $old = node($params{old_name} // 'old',
		install_path => $params{old_install});
	my $new = node($params{new_name} // 'new');

	for my $node ($old, $new)
	{
		prepend_hba($node,
			"host all $ADMIN_USER 127.0.0.1/32 scram-sha-256");
		$node->reload;
		$node->safe_psql(
			'postgres', qq{
SET log_statement = 'none';
CREATE ROLE $ADMIN_USER SUPERUSER LOGIN PASSWORD '$ADMIN_PASSWORD';
});
		$node->safe_psql('postgres', $schema);
	}
	create_peer($old, 'new_side', $new, user => $ADMIN_USER);
	create_peer($new, 'old_side', $old, user => $ADMIN_USER);

	if (!defined $params{schema})
	{
		$old->safe_psql('postgres',
			join(
				"\n",
				map {
					"INSERT INTO public.$_ (tag, side) "
					  . "SELECT 'seed.$_.' || g, 'seed' FROM generate_series(1, 3) g;"
				} @LEDGER_TABLES));
	}
	$old->safe_psql('postgres', 'CREATE PUBLICATION upgrade FOR ALL TABLES');
	my $old_port = $old->port;
	$new->safe_psql(
		'postgres', qq{
SET log_statement = 'none';
CREATE SUBSCRIPTION upgrade
    CONNECTION 'host=127.0.0.1 port=$old_port dbname=postgres user=$ADMIN_USER password=$ADMIN_PASSWORD'
    PUBLICATION upgrade;
});
	wait_for_sync($new, 'upgrade');
	$new->safe_psql('postgres',
		q{SELECT count(*) FROM upgrade_assist.fence('new side: until cutover')});
	return ($old, $new);
}

=pod

=item ledger_rows(node, condition)

The rows of every table of @LEDGER_TABLES on node, as sorted lines
"table id tag side", restricted by condition (SQL over id, tag and side) when
given.

=cut

sub ledger_rows
{
	my ($node, $cond) = @_;
	my $where = $cond ? " WHERE $cond" : '';
	my $sql = join(
		"\nUNION ALL ",
		map { "SELECT '$_', id, tag, side FROM public.$_$where" }
		  @LEDGER_TABLES);
	my $out = $node->safe_psql('postgres',
		"SELECT concat_ws(' ', t, id, tag, side) FROM ($sql) s(t, id, tag, side) ORDER BY 1"
	);
	return [ grep { $_ ne '' } split /\n/, $out ];
}

=pod

=item ledger_count_sql(side)

An SQL query giving the number of rows of @LEDGER_TABLES written on side (a
side name of start_writers), for poll_query_until: "SELECT count(*) >= N"
once wrapped by the caller.

=cut

sub ledger_count_sql
{
	my ($side) = @_;
	return '(SELECT count(*) FROM ('
	  . join(' UNION ALL ',
		map { "SELECT 1 FROM public.$_ WHERE side = '$side'" } @LEDGER_TABLES)
	  . ') s)';
}

=pod

=item start_writers(sides => [name => node, ...], writers => n, max_inserts => n, max_seconds => s)

Fork n writer processes.  Each inserts one row per statement, with one psql
connection per statement (a drained or stopped server never leaves a writer's
session half-way), into the tables of @LEDGER_TABLES in turn; the row's tag is
unique to the attempt ("w<writer>.<attempt>") and its side is the name of the
side written to.  A writer starts on the first side and moves to the next one
(round robin) on SQLSTATE 25006 and when it cannot connect; after a lost
connection it retries on the same side.  It stops once it has max_inserts
acknowledged rows, after max_seconds, after 50 attempts per row of
max_inserts, when stop_writers asks, or when the test has gone.  Every outcome is a line of the
writer's ledger file:

  ack TABLE ID TAG SIDE        committed: the server returned the row's id
  fenced SIDE                  25006
  noconn SIDE                  could not connect
  dup TABLE TAG SIDE           23505: a sequence handed out a key in use
  uncertain TABLE TAG SIDE     connection lost with the statement sent
  error TAG SIDE SQLSTATE      any other error (nothing committed)
  end ACKED ATTEMPTS WHY       the last line

Returns a handle for stop_writers.  The writers never use Test::More and
leave by POSIX::_exit (the END blocks of the test belong to the parent).

=cut

sub start_writers
{
	my (%params) = @_;
	my @pairs = @{ $params{sides} };
	my @sides;
	while (my ($name, $node) = splice(@pairs, 0, 2))
	{
		push @sides, [ $name, $node->connstr('postgres') ];
	}
	my $dir = PostgreSQL::Test::Utils::tempdir();
	my $w = { stopfile => "$dir/stop", files => [], pids => [] };
	my $deadline = time + $params{max_seconds};
	my $parent = $$;

	STDOUT->flush;
	STDERR->flush;
	for my $n (1 .. $params{writers})
	{
		my $file = "$dir/writer_$n.ledger";
		my $pid = fork;
		die "fork failed: $!" unless defined $pid;
		if ($pid == 0)
		{
			# Not the test's output: prove waits for whoever holds it.
			open STDOUT, '>', "$file.out";
			open STDERR, '>&', \*STDOUT;
			my $ok = eval {
				writer_loop($n, $file, $w->{stopfile}, \@sides,
					$params{max_inserts}, $deadline, $parent);
				1;
			};
			print STDERR $@ unless $ok;
			POSIX::_exit($ok ? 0 : 1);
		}
		push @{ $w->{files} }, $file;
		push @{ $w->{pids} }, $pid;
	}
	return $w;
}

=pod

=item writer_loop(n, file, stopfile, sides, max_inserts, deadline, parent)

The body of writer n of start_writers (runs in the forked process); it also
stops when the test (process parent) has gone.

=cut

sub writer_loop
{
	my ($n, $file, $stopfile, $sides, $max_inserts, $deadline, $parent) = @_;
	open my $fh, '>', $file or die "could not write $file: $!";
	$fh->autoflush(1);
	my ($side, $acked, $attempt, $why) = (0, 0, 0);

	while (1)
	{
		if ($acked >= $max_inserts) { $why = 'max_inserts'; last; }
		if (time >= $deadline) { $why = 'max_seconds'; last; }
		if (-e $stopfile) { $why = 'stopped'; last; }
		if (getppid() != $parent) { $why = 'orphaned'; last; }
		if ($attempt >= 50 * $max_inserts) { $why = 'max_attempts'; last; }

		$attempt++;
		my ($name, $connstr) = @{ $sides->[$side] };
		my $table = $LEDGER_TABLES[ ($n + $attempt) % @LEDGER_TABLES ];
		my $tag = "w$n.$attempt";
		my ($out, $err) = ('', '');
		my $exited = eval {
			IPC::Run::run(
				[
					'psql', '-X', '-A', '-t', '-q',
					'-v', 'ON_ERROR_STOP=1',
					'-v', 'VERBOSITY=verbose',
					'-d', "$connstr application_name=ua_writer_$n",
					'-c',
					"INSERT INTO public.$table (tag, side) VALUES ('$tag', '$name') RETURNING id"
				],
				'<', \undef, '>', \$out, '2>', \$err,
				IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
		};
		$err .= "\n$@" if $@;
		my ($state) = parse_error($err);

		if ($exited && $out =~ /^(\d+)\s*$/)
		{
			print $fh "ack $table $1 $tag $name\n";
			$acked++;
		}
		elsif (defined $state && $state eq '25006')
		{
			print $fh "fenced $name\n";
			$side = ($side + 1) % @$sides;
		}
		elsif (defined $state && $state eq '23505')
		{
			print $fh "dup $table $tag $name\n";
		}
		elsif ($err =~ /^psql: error: connection to server (on socket|at) .*failed/m)
		{
			print $fh "noconn $name\n";
			$side = ($side + 1) % @$sides;
		}
		elsif (!defined $state || $state =~ /^(08|57P0)/)
		{
			print $fh "uncertain $table $tag $name\n";
		}
		else
		{
			$err =~ s/\s+/ /g;
			print $fh "error $tag $name $state $err\n";
		}
	}
	print $fh "end $acked $attempt $why\n";
	close $fh;
	return;
}

=pod

=item stop_writers(handle)

Ask the writers of start_writers to stop, wait for them (each stops within
one statement) and return their ledgers merged: a hash of acked (tag =>
"table id side"), uncertain (tag => "table side"), dup, error and end (lists
of ledger lines), fenced and noconn (counts) and failed (writers that exited
non-zero or wrote no end line).

=cut

sub stop_writers
{
	my ($w) = @_;
	open my $fh, '>', $w->{stopfile} or die "could not write $w->{stopfile}: $!";
	close $fh;

	my %l = (
		acked => {},
		uncertain => {},
		dup => [],
		error => [],
		end => [],
		fenced => 0,
		noconn => 0,
		failed => []);
	for my $i (0 .. $#{ $w->{pids} })
	{
		waitpid($w->{pids}[$i], 0);
		my $rc = $? >> 8;
		my $ended = 0;
		for my $line (split /\n/, slurp_file($w->{files}[$i]))
		{
			my ($kind, @f) = split / /, $line;
			if ($kind eq 'ack')
			{
				$l{acked}{ $f[2] } = "$f[0] $f[1] $f[3]";
			}
			elsif ($kind eq 'uncertain')
			{
				$l{uncertain}{ $f[1] } = "$f[0] $f[2]";
			}
			elsif ($kind eq 'fenced' || $kind eq 'noconn')
			{
				$l{$kind}++;
			}
			else
			{
				push @{ $l{$kind} }, $line;
				$ended = 1 if $kind eq 'end';
			}
		}
		push @{ $l{failed} }, "writer " . ($i + 1) . " (exit $rc)"
		  if $rc != 0 || !$ended;
	}
	return \%l;
}

=pod

=item ledger_problems(ledger, node)

Compare the ledger of stop_writers with node's rows: every acknowledged row
must be there exactly once with its table and id, and every other writer's
row must come from an uncertain attempt.  Returns the problems found, as
lines (none: the node agrees with the ledger).

=cut

sub ledger_problems
{
	my ($l, $node) = @_;
	my (@problems, %seen);
	for my $row (@{ ledger_rows($node, q{side <> 'seed'}) })
	{
		my ($table, $id, $tag, $side) = split / /, $row;
		push @{ $seen{$tag} }, "$table $id $side";
	}
	for my $tag (sort keys %{ $l->{acked} })
	{
		my $rows = $seen{$tag} // [];
		if (@$rows != 1 || $rows->[0] ne $l->{acked}{$tag})
		{
			push @problems,
			  "acknowledged $tag ($l->{acked}{$tag}) is there "
			  . scalar(@$rows)
			  . " times: @$rows";
		}
	}
	for my $tag (sort keys %seen)
	{
		next if $l->{acked}{$tag};
		push @problems, "row $tag (@{ $seen{$tag} }) was not acknowledged"
		  . ' and its attempt failed for certain'
		  unless $l->{uncertain}{$tag} && @{ $seen{$tag} } == 1;
	}
	return @problems;
}

=pod

=item orphan_slots(node, other)

The replication slots on node that no subscription on other uses.

=cut

sub orphan_slots
{
	my ($node, $other) = @_;
	my %used = map { $_ => 1 } split /\n/,
	  $other->safe_psql('postgres',
		'SELECT subslotname FROM pg_subscription WHERE subslotname IS NOT NULL');
	return grep { !$used{$_} } split /\n/,
	  $node->safe_psql('postgres',
		'SELECT slot_name FROM pg_replication_slots ORDER BY 1');
}

=pod

=item replication_objects(node)

Node's publications, subscriptions (with enabled, slot and publications),
replication slots and fence state, as one string to compare before and after.

=cut

sub replication_objects
{
	my ($node) = @_;
	return $node->safe_psql(
		'postgres', q{
SELECT 'publication ' || pubname FROM pg_publication
UNION ALL
SELECT concat_ws(' ', 'subscription', subname, subenabled, subslotname,
                 array_to_string(subpublications, ','))
  FROM pg_subscription
UNION ALL
SELECT 'slot ' || slot_name FROM pg_replication_slots
UNION ALL
SELECT 'fenced ' || fenced FROM upgrade_assist.fence_status
ORDER BY 1});
}

=pod

=item cutover_sql(peer, name => value, ...)

The query calling upgrade_assist.cutover(peer, ...) with named arguments and
giving one line per step "step|status|detail", the detail on one line.  It
passes on_abort => 'warning' unless told otherwise, so that an aborted
attempt gives its step table too (the tests look at it).

=cut

sub cutover_sql
{
	my ($peer, %args) = @_;
	$args{on_abort} //= 'warning';
	my $named = join('', map { ", $_ => '$args{$_}'" } sort keys %args);
	return "SELECT step, status, replace(coalesce(detail, ''), E'\\n', ' ') "
	  . "FROM upgrade_assist.cutover('$peer'$named)";
}

=pod

=item cutover_steps(output)

Parse the output of cutover_sql (psql -A -t) into a list of hashes (step,
status, detail), in order.

=cut

sub cutover_steps
{
	my ($out) = @_;
	my @steps;
	for my $line (split /\n/, $out // '')
	{
		my ($step, $status, $detail) = split /\|/, $line, 3;
		push @steps, { step => $step, status => $status, detail => $detail // '' }
		  if defined $status;
	}
	return @steps;
}

=pod

=item bg_commands(node, appname, command, ...)

Like bg_start, with each command sent on its own (psql -c per command, so
that a SET comes before the statement without making one transaction of
them), and unaligned output without headers (psql -A -t).  Returns a handle
for bg_finish.

=cut

sub bg_commands
{
	my ($node, $appname, @commands) = @_;
	return bg_psql($node, $appname, [ '-A', '-t' ], @commands);
}

=pod

=item pg_upgrade(old, name, install, old_install)

Build a new cluster called name with the installation install from the
stopped cluster old (of the installation old_install) by pg_upgrade in copy
mode (the old cluster stays usable), configured as node() configures one
(upgrade_assist preloaded, autovacuum off), and start it.  On 18 and later
the new cluster is initialised without data checksums, as the old one is.
Passes one test (pg_upgrade's exit status); returns the new node.

=cut

sub pg_upgrade
{
	my ($old, $name, $install, $old_install) = @_;
	my $new = PostgreSQL::Test::Cluster->new($name, install_path => $install);
	$new->init(
		extra => $new->pg_version >= 18 ? ['--no-data-checksums'] : []);
	$new->append_conf(
		'postgresql.conf', q{
shared_preload_libraries = 'upgrade_assist'
max_worker_processes = 16
autovacuum = off
});
	my $sockdir = PostgreSQL::Test::Utils::tempdir_short();
	my $workdir = PostgreSQL::Test::Utils::tempdir();
	# pg_upgrade writes its files into the current directory.
	chdir $workdir or die "chdir $workdir: $!";
	PostgreSQL::Test::Utils::command_ok(
		[
			"$install/bin/pg_upgrade", '--no-sync',
			'-d', $old->data_dir, '-D', $new->data_dir,
			'-b', "$old_install/bin", '-B', "$install/bin",
			'-s', $sockdir, '-p', $old->port, '-P', $new->port,
			'--copy'
		],
		"pg_upgrade " . $old->name . " -> $name");
	$new->start;
	return $new;
}

=pod

=back

=cut

=pod

=head2 Writers that do not choose the server

=over

=item start_conninfo_writers(conninfo => string, writers => n, max_inserts => n, max_seconds => s, prefix => p)

Like start_writers, but every writer connects through one connection string
(a multi-host one with target_session_attrs=read-write, or a pooler) and
never chooses a server itself: one psql per statement, and after any error
the next attempt connects through the same string again, as a pool does.
The row's side is the port of the server that ran the insert
(current_setting('port')), returned with the id, so that the ledger says
where each acknowledged row committed.  Ledger lines and stop conditions as
start_writers ("fenced PORT?" and "noconn" carry no side); use stop_writers
and ledger_problems on the handle.  Tags are "<prefix><writer>.<attempt>"
(prefix default 'c'): give each group of writers of one test its own.

=cut

sub start_conninfo_writers
{
	my (%params) = @_;
	my $dir = PostgreSQL::Test::Utils::tempdir();
	my $w = { stopfile => "$dir/stop", files => [], pids => [] };
	my $deadline = time + $params{max_seconds};
	my $parent = $$;

	STDOUT->flush;
	STDERR->flush;
	for my $n (1 .. $params{writers})
	{
		my $file = "$dir/writer_$n.ledger";
		my $pid = fork;
		die "fork failed: $!" unless defined $pid;
		if ($pid == 0)
		{
			open STDOUT, '>', "$file.out";
			open STDERR, '>&', \*STDOUT;
			my $ok = eval {
				conninfo_writer_loop($n, $file, $w->{stopfile}, $params{conninfo},
					$params{max_inserts}, $deadline, $parent, $params{prefix} // 'c');
				1;
			};
			print STDERR $@ unless $ok;
			POSIX::_exit($ok ? 0 : 1);
		}
		push @{ $w->{files} }, $file;
		push @{ $w->{pids} }, $pid;
	}
	return $w;
}

# The body of a writer of start_conninfo_writers (the forked process).
sub conninfo_writer_loop
{
	my ($n, $file, $stopfile, $conninfo, $max_inserts, $deadline, $parent, $prefix) = @_;
	open my $fh, '>', $file or die "could not write $file: $!";
	$fh->autoflush(1);
	my ($acked, $attempt, $why) = (0, 0);

	while (1)
	{
		if ($acked >= $max_inserts) { $why = 'max_inserts'; last; }
		if (time >= $deadline) { $why = 'max_seconds'; last; }
		if (-e $stopfile) { $why = 'stopped'; last; }
		if (getppid() != $parent) { $why = 'orphaned'; last; }
		if ($attempt >= 50 * $max_inserts) { $why = 'max_attempts'; last; }

		$attempt++;
		my $table = $LEDGER_TABLES[ ($n + $attempt) % @LEDGER_TABLES ];
		my $tag = "$prefix$n.$attempt";
		my ($out, $err) = ('', '');
		my $exited = eval {
			IPC::Run::run(
				[
					'psql', '-X', '-A', '-t', '-q',
					'-v', 'ON_ERROR_STOP=1',
					'-v', 'VERBOSITY=verbose',
					'-d', "$conninfo application_name=ua_cwriter_$n",
					'-c',
					"INSERT INTO public.$table (tag, side) "
					  . "VALUES ('$tag', current_setting('port')) RETURNING id, side"
				],
				'<', \undef, '>', \$out, '2>', \$err,
				IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
		};
		$err .= "\n$@" if $@;
		my ($state) = parse_error($err);

		if ($exited && $out =~ /^(\d+)\|(\d+)\s*$/)
		{
			print $fh "ack $table $1 $tag $2\n";
			$acked++;
		}
		elsif (defined $state && $state eq '25006')
		{
			print $fh "fenced ?\n";
		}
		elsif (defined $state && $state eq '23505')
		{
			print $fh "dup $table $tag ?\n";
		}
		elsif ($err =~ /^psql: error: connection to server/m)
		{
			print $fh "noconn ?\n";
		}
		elsif (!defined $state || $state =~ /^(08|57P0)/)
		{
			print $fh "uncertain $table $tag ?\n";
		}
		else
		{
			$err =~ s/\s+/ /g;
			print $fh "error $tag ? $state $err\n";
		}
	}
	print $fh "end $acked $attempt $why\n";
	close $fh;
	return;
}

=pod

=back

=cut

=pod

=head2 Pairs over an external pipeline

=over

=item $RELAY_USER

The role of the fixture relay t/fixtures/cdc_relay.pl: a superuser (replication
origins, slots), listed in upgrade_assist.fence_exempt_roles on both sides of
external_pair.

=item external_pair(dir => d, old_install => dir, command_prefix => string)

Two nodes set up as cutover_pair sets them up (roles, the tables of
@LEDGER_TABLES with three seed rows on old, servers new_side and old_side, new
fenced), but WITHOUT native replication: the fixture relay t/fixtures/cdc_relay.pl
carries old's changes to new, and t/fixtures/cdc_switch.pl is
upgrade_assist.cutover_command on both (command_prefix, e.g. an environment
assignment, goes in front of it).  d (a directory) gets the relay's conninfo
files, pid files and logs.  The relay old->new is started with a new slot
before the seed rows are written; returns once they are on new.  Returns
(old, new).

=cut

our $RELAY_USER = 'cdc_relay';

# This file's directory: the relay and the switch script live beside it.
my $tdir = File::Basename::dirname(File::Spec->rel2abs(__FILE__));

sub external_command
{
	my ($dir, $prefix) = @_;
	my $psql = (grep { -x "$_/psql" } split /:/, $ENV{PATH})[0] . '/psql';
	return ($prefix // '') . "CDC_PSQL=$psql $^X $tdir/fixtures/cdc_switch.pl $dir %m %s %o";
}

sub external_pair
{
	my (%params) = @_;
	my $dir = $params{dir};
	my $old = node($params{old_name} // 'old',
		install_path => $params{old_install});
	my $new = node($params{new_name} // 'new');
	my $command = external_command($dir, $params{command_prefix});

	for my $node ($old, $new)
	{
		prepend_hba($node,
			"host all $ADMIN_USER 127.0.0.1/32 scram-sha-256");
		$node->append_conf('postgresql.conf', qq{
upgrade_assist.fence_exempt_roles = '$RELAY_USER'
upgrade_assist.cutover_command = '$command'
});
		$node->reload;
		$node->safe_psql(
			'postgres', qq{
SET log_statement = 'none';
CREATE ROLE $ADMIN_USER SUPERUSER LOGIN PASSWORD '$ADMIN_PASSWORD';
CREATE ROLE $RELAY_USER SUPERUSER LOGIN;
});
		$node->safe_psql('postgres', $params{schema} // $ledger_schema);
		open my $fh, '>', "$dir/conn." . $node->port or die "$dir: $!";
		print $fh 'host=' . $node->host . ' port=' . $node->port
		  . " dbname=postgres user=$RELAY_USER\n";
		close $fh;
	}
	create_peer($old, 'new_side', $new, user => $ADMIN_USER);
	create_peer($new, 'old_side', $old, user => $ADMIN_USER);
	$new->safe_psql('postgres',
		q{SELECT count(*) FROM upgrade_assist.fence('new side: until cutover')});

	local $ENV{CDC_PSQL} = (grep { -x "$_/psql" } split /:/, $ENV{PATH})[0] . '/psql';
	system($^X, "$tdir/fixtures/cdc_switch.pl", $dir, 'relay-start',
		$old->port, $new->port, 'create') == 0
	  or die "external_pair: the relay did not start (see $dir)";
	$old->safe_psql('postgres',
		join(
			"\n",
			map {
				"INSERT INTO public.$_ (tag, side) "
				  . "SELECT 'seed.$_.' || g, 'seed' FROM generate_series(1, 3) g;"
			} @LEDGER_TABLES));
	$old->safe_psql('postgres', q{SELECT upgrade_assist.round_trip('new_side', '60s')});
	return ($old, $new);
}

=pod

=back

=cut


1;
