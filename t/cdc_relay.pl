#!/usr/bin/perl
# Copyright (c) upgrade_assist contributors

# cdc_relay.pl: a small CDC relay for the tests and benchmarks of
# cutover(..., replication => 'external') (docs/external-pipelines.md).  Not a
# product component: it stands for a team's own pipeline (Debezium, a message
# bus and a consumer), built so that it neither loses nor repeats a change.
#
#   cdc_relay.pl --source CONNINFO --target CONNINFO --slot NAME
#                [--create] [--ready FILE] [--poll-ms N] [--batch N]
#
# It reads the source database's changes from logical slot NAME (plugin
# test_decoding, one line per change) and applies them to the target
# database.  Exactly once:
#   - it peeks (pg_logical_slot_peek_changes), which does not consume;
#   - it applies one batch of whole transactions in ONE target transaction,
#     which also records the source position it reached: the target session
#     replays as replication origin NAME and pg_replication_origin_xact_setup()
#     stores the batch's last commit LSN with that transaction's commit;
#   - only then it advances the slot (pg_replication_slot_advance).
# A relay killed anywhere loses nothing (the slot was not advanced past what
# is committed on the target) and repeats nothing: at start, and before each
# batch, transactions at or before the origin's recorded position are
# skipped, and the slot is advanced to that position.
#
# Both directions: changes applied by a relay carry its replication origin,
# and the relay decodes with only-local, so what a relay of the other
# direction applied here is never sent back.  The target session applies with
# session_replication_role = replica, so that the extension's replica
# triggers fire (the marker bounce filter, the history's keep-local trigger)
# and user triggers do not, as for a native apply worker.
#
# Carried: INSERT, UPDATE, DELETE and TRUNCATE of every table but the
# extension's own (upgrade_assist.marker is carried; the others are each
# cluster's own).  test_decoding is line-based: the peek escapes backslashes
# and newlines and the relay unescapes them, so values may hold newlines.
# Limits of a test fixture: tables need a primary key for UPDATE and DELETE, generated
# columns are not supported, unchanged TOAST values (shown as
# unchanged-toast-datum) are left as they are on the target.
#
# --create: drop a leftover slot NAME on the source and create it (it starts
# at the current position), and the origin NAME on the target afresh.
# Without it both must exist (a restart resumes where the last run stopped).
# --ready FILE: written once the slot and the origin are set up (the switch
# script waits for it).  SIGTERM or SIGINT: the relay finishes the batch in
# hand (applied and advanced) and exits 0.  Any error: it exits 1, its log
# (stderr) says why.

use strict;
use warnings;

use Getopt::Long;
use IPC::Open3;
use POSIX ();
use Time::HiRes qw(time);

my %opt = ('poll-ms' => 10, batch => 2000, psql => 'psql');
GetOptions(\%opt, 'source=s', 'target=s', 'slot=s', 'create', 'ready=s',
	'poll-ms=i', 'batch=i', 'psql=s')
  or die "usage: cdc_relay.pl --source C --target C --slot NAME [--create] [--ready FILE]\n";
for (qw(source target slot))
{
	die "cdc_relay: --$_ is required\n" unless defined $opt{$_};
}
die "cdc_relay: slot name must be a plain identifier\n"
  unless $opt{slot} =~ /^[a-z_][a-z0-9_]*$/;

my $stop = 0;
$SIG{TERM} = $SIG{INT} = sub { $stop = 1 };
$SIG{PIPE} = 'IGNORE';
STDERR->autoflush(1);

sub say_log
{
	my ($msg) = @_;
	my $t = time;
	print STDERR POSIX::strftime('%H:%M:%S', localtime $t)
	  . sprintf('.%03d', ($t - int $t) * 1000)
	  . " cdc_relay $opt{slot}: $msg\n";
	return;
}

# A psql session kept open: statements in, rows out (fields separated by a
# zero byte), each batch ended by an \echo of a unique tag.  ON_ERROR_STOP:
# an error ends psql, and so the relay (its target transaction rolls back).
sub psql_open
{
	my ($conninfo, $name) = @_;
	my ($in, $out);
	my $pid = open3($in, $out, undef, $opt{psql}, '-X', '-q', '-A', '-t',
		'-z', '-v', 'ON_ERROR_STOP=1', '-d',
		"$conninfo application_name=cdc_relay_$opt{slot}");
	$in->autoflush(1);
	my $s = { in => $in, out => $out, pid => $pid, name => $name, n => 0 };
	psql_run($s, 'SET client_min_messages = warning;');
	return $s;
}

sub psql_run
{
	my ($s, $sql) = @_;
	$s->{n}++;
	my $tag = "__cdc_relay_sync_$s->{n}__";
	print { $s->{in} } "$sql\n\\echo $tag\n";
	my @lines;
	while (1)
	{
		my $l = readline($s->{out});
		if (!defined $l)
		{
			next if $!{EINTR};
			die "psql on the $s->{name} ended: " . join("\n", @lines) . "\n";
		}
		chomp $l;
		last if $l eq $tag;
		push @lines, $l;
	}
	return \@lines;
}

sub psql_value
{
	my ($s, $sql) = @_;
	my $rows = psql_run($s, $sql);
	return $rows->[0] // '';
}

sub lsn_num
{
	my ($lsn) = @_;
	return 0 if !defined $lsn || $lsn eq '';
	my ($hi, $lo) = split m{/}, $lsn;
	return hex($hi) * 4294967296 + hex($lo);
}

my $slot = $opt{slot};
my $src = psql_open($opt{source}, 'source');
my $tgt = psql_open($opt{target}, 'target');

if ($opt{create})
{
	psql_run($src,
		"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
		  . " WHERE slot_name = '$slot';");
	psql_run($src,
		"SELECT lsn FROM pg_create_logical_replication_slot('$slot', 'test_decoding');");
	psql_run($tgt,
		"SELECT pg_replication_origin_drop(roname) FROM pg_replication_origin"
		  . " WHERE roname = '$slot';");
}
psql_run($tgt,
	"SELECT pg_replication_origin_create('$slot') WHERE NOT EXISTS"
	  . " (SELECT FROM pg_replication_origin WHERE roname = '$slot');");
die "cdc_relay: slot $slot does not exist on the source (--create makes it)\n"
  unless psql_value($src,
	"SELECT count(*) FROM pg_replication_slots WHERE slot_name = '$slot';") eq
  '1';
psql_run($tgt,
	"SET session_replication_role = replica;"
	  . " SELECT pg_replication_origin_session_setup('$slot');");

# Where the last run got to: advance the slot there (it may be behind when a
# run died between its target commit and the advance).
my $done = psql_value($tgt,
	"SELECT coalesce(pg_replication_origin_progress('$slot', true)::text, '0/0');");
my $confirmed = psql_value($src,
	"SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '$slot';");
if (lsn_num($done) > lsn_num($confirmed))
{
	psql_run($src, "SELECT pg_replication_slot_advance('$slot', '$done');");
	say_log("advanced the slot from $confirmed to $done (applied before)");
}
say_log("running: applied up to $done, slot at $confirmed");
if ($opt{ready})
{
	open my $fh, '>', "$opt{ready}.tmp" or die "cdc_relay: $opt{ready}: $!\n";
	print $fh "$$\n";
	close $fh;
	rename "$opt{ready}.tmp", $opt{ready} or die "cdc_relay: $opt{ready}: $!\n";
}

# Primary key columns of a target table (quoted as test_decoding quotes).
my %pkey;

sub primary_key
{
	my ($table) = @_;
	return $pkey{$table} if $pkey{$table};
	(my $lit = $table) =~ s/'/''/g;
	my $cols = psql_run($tgt,
		"SELECT quote_ident(a.attname) FROM pg_index i"
		  . " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)"
		  . " WHERE i.indrelid = '$lit'::regclass AND i.indisprimary ORDER BY a.attnum;");
	die "cdc_relay: table $table has no primary key on the target\n"
	  unless @$cols;
	return $pkey{$table} = { map { $_ => 1 } @$cols };
}

# "col[type]:value ..." into [column, type, value] triples.
sub parse_tuple
{
	my ($s) = @_;
	my @cols;
	pos($s) = 0;
	while ($s =~ /\G\s*("(?:[^"]|"")*"|[^\s\[]+)\[(.+?)\]:('(?:[^']|'')*'|\S+)/gc)
	{
		push @cols, [ $1, $2, $3 ];
	}
	die "cdc_relay: cannot parse the tuple \"$s\"\n"
	  unless pos($s) // 0 == length($s) && @cols;
	return \@cols;
}

# An untyped literal: the target column's type takes it (a cast to the type
# test_decoding names would lose the typmod: 'x'::character is char(1)).
sub value_sql
{
	my ($type, $v) = @_;
	return 'NULL' if $v eq 'null';
	$v = "'$v'" unless $v =~ /^'/;
	return $v;
}

sub where_sql
{
	my ($cols) = @_;
	return join(' AND ',
		map { $_->[2] eq 'null' ? "$_->[0] IS NULL" : "$_->[0] = " . value_sql($_->[1], $_->[2]) }
		  @$cols);
}

# One change line of test_decoding as SQL, or undef when it is not carried.
sub change_sql
{
	my ($line) = @_;
	if ($line =~ /^table (.+): TRUNCATE: /)
	{
		my @t = grep { !/^upgrade_assist\./ } split /, /, $1;
		return @t ? 'TRUNCATE ' . join(', ', @t) : undef;
	}
	$line =~ /^table (.+?): (INSERT|UPDATE|DELETE): (.*)$/
	  or die "cdc_relay: cannot parse the change \"$line\"\n";
	my ($table, $op, $rest) = ($1, $2, $3);
	return undef
	  if $table =~ /^upgrade_assist\./ && $table ne 'upgrade_assist.marker';
	die "cdc_relay: $op on $table without tuple data (no replica identity)\n"
	  if $rest =~ /^\(no-tuple-data\)/;

	if ($op eq 'INSERT')
	{
		my $cols = parse_tuple($rest);
		return "INSERT INTO $table ("
		  . join(', ', map { $_->[0] } @$cols)
		  . ') OVERRIDING SYSTEM VALUE VALUES ('
		  . join(', ', map { value_sql($_->[1], $_->[2]) } @$cols) . ')';
	}
	if ($op eq 'DELETE')
	{
		return "DELETE FROM $table WHERE " . where_sql(parse_tuple($rest));
	}
	my ($old, $new);
	if ($rest =~ /^old-key: (.*?) new-tuple: (.*)$/)
	{
		($old, $new) = (parse_tuple($1), parse_tuple($2));
		my $pk = primary_key($table);
		$old = [ grep { $pk->{ $_->[0] } } @$old ];
	}
	else
	{
		$new = parse_tuple($rest);
		my $pk = primary_key($table);
		$old = [ grep { $pk->{ $_->[0] } } @$new ];
	}
	my @set = grep { $_->[2] ne 'unchanged-toast-datum' } @$new;
	return undef unless @set;
	return "UPDATE $table SET "
	  . join(', ', map { "$_->[0] = " . value_sql($_->[1], $_->[2]) } @set)
	  . ' WHERE ' . where_sql($old);
}

my $poll = $opt{'poll-ms'} / 1000.0;
my $applied_txns = 0;
while (!$stop)
{
	# Backslashes and newlines escaped, so that one change is one line; the
	# extension's own tables but the marker left out here already.
	my $rows = psql_run($src,
		"SELECT lsn, replace(replace(data, '\\', '\\\\'), E'\\n', '\\n')"
		  . " FROM pg_logical_slot_peek_changes('$slot', NULL, $opt{batch},"
		  . " 'skip-empty-xacts', '1', 'only-local', '1', 'include-xids', '0')"
		  . " WHERE data NOT LIKE 'table upgrade\\_assist.%'"
		  . " OR data LIKE 'table upgrade\\_assist.marker:%';");
	if (!@$rows)
	{
		select(undef, undef, undef, $poll);
		next;
	}
	my (@stmts, @txn, $last, $ntx);
	$ntx = 0;
	for my $row (@$rows)
	{
		my ($lsn, $data) = $row =~ /^([0-9A-F]+\/[0-9A-F]+)\0(.*)$/
		  or die "cdc_relay: unexpected output of the peek: \"$row\"\n";
		$data =~ s/\\(\\|n)/$1 eq 'n' ? "\n" : '\\'/ge;
		if ($data eq 'BEGIN')
		{
			@txn = ();
		}
		elsif ($data eq 'COMMIT')
		{
			$last = $lsn;
			# Applied by an earlier run already (died before its advance).
			if (lsn_num($lsn) > lsn_num($done))
			{
				push @stmts, @txn;
				$ntx++;
			}
			@txn = ();
		}
		else
		{
			my $sql = change_sql($data);
			push @txn, $sql if defined $sql;
		}
	}
	next unless defined $last;
	if (@stmts)
	{
		# One query string (psql's \; joins statements without sending):
		# one round trip for the whole batch.
		psql_run($tgt,
			"BEGIN \\; SELECT pg_replication_origin_xact_setup('$last', now()) \\; "
			  . join(' \\; ', @stmts)
			  . ' \\; COMMIT;');
		$applied_txns += $ntx;
	}
	$done = $last;
	psql_run($src, "SELECT pg_replication_slot_advance('$slot', '$last');");
}
say_log("stopping: applied $applied_txns transaction(s) in this run, up to $done");
print { $src->{in} } "\\q\n";
print { $tgt->{in} } "\\q\n";
waitpid($src->{pid}, 0);
waitpid($tgt->{pid}, 0);
exit 0;
