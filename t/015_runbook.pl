
# Copyright (c) upgrade_assist contributors

# The runbook, run as written: every `sql` block of docs/runbook.md, extracted
# by this test, in the runbook's order, on an old cluster (UA_OLD_INSTALL) and
# a new one, with the runbook's placeholders replaced by this test's loopback
# addresses.  Steps the runbook marks `sh manual` (installing, editing
# pg_hba.conf, loading the schema) are done here by the test's own means; a
# manual step this test does not know, an unknown block kind or a placeholder
# left over fails the test, so the runbook cannot drift from the product.
#
# The path: sections 1 to 13 (setup, initial copy, fence, statistics,
# preflight, heartbeat, dry run, cutover, clients and heartbeat moved,
# rollback), then 11 and 12 again (the move once more, as after a rollback
# whose reason was fixed), then 14 (decommissioning the way back).  Four
# writers keep a ledger throughout, moving to whichever side accepts writes
# (they are the application of section 12): at the end every acknowledged row
# is on both clusters exactly once.  Runs in the pair runs only.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use UATest;

plan skip_all => 'runs in the pair runs only' unless $ENV{UA_OLD_INSTALL};

my $runbook_file = "$FindBin::RealBin/../docs/runbook.md";
my $password = 'runbook_pw_3';

# ---------------------------------------------------------------------------
# The runbook: section number => list of blocks {kind, side, check, as, text}
# ---------------------------------------------------------------------------
my (%section, @order, $current, $block);
open my $fh, '<', $runbook_file or die "cannot read $runbook_file: $!";
while (my $line = <$fh>)
{
	if (defined $block)
	{
		if ($line =~ /^```\s*$/)
		{
			push @{ $section{$current} }, $block;
			undef $block;
		}
		else
		{
			$block->{text} .= $line;
		}
		next;
	}
	if ($line =~ /^## (\d+)\. /)
	{
		$current = $1;
		push @order, $current;
		$section{$current} = [];
		next;
	}
	if ($line =~ /^```(\S.*?)\s*$/)
	{
		my @words = split ' ', $1;
		die "runbook: a code block outside a numbered section: $line"
		  unless defined $current;
		$block = { kind => shift(@words), text => '' };
		if ($block->{kind} eq 'sql')
		{
			$block->{side} = shift @words // '';
			for my $w (@words)
			{
				if ($w eq 'check') { $block->{check} = 1; }
				elsif ($w =~ /^as:(\w+)$/) { $block->{as} = $1; }
				else { $block->{bad} = $w; }
			}
		}
		else
		{
			$block->{words} = "@words";
		}
	}
}
close $fh;
ok(scalar(@order) >= 14, 'the runbook has its numbered sections')
  or diag("sections: @order");

# ---------------------------------------------------------------------------
# Two hosts (both on loopback here)
# ---------------------------------------------------------------------------
my $old = UATest::node('old', install_path => $ENV{UA_OLD_INSTALL});
my $new = UATest::node('new');
my %node = (old => $old, new => $new);

# The new host starts empty: the runbook creates the extension there through
# the schema dump (UATest::node created it for the other tests' sake).
# (CREATE EXTENSION made the schema of the control file, which DROP
# EXTENSION leaves.)
$new->safe_psql('postgres', 'DROP EXTENSION upgrade_assist; DROP SCHEMA upgrade_assist');
# The application's tables, with a few rows, on the old host only.
$old->safe_psql('postgres', UATest::ledger_schema());
$old->safe_psql('postgres',
	join("\n",
		map { "INSERT INTO public.$_ (tag, side) SELECT 'seed.$_.' || g, 'seed' FROM generate_series(1, 3) g;" }
		  @UATest::LEDGER_TABLES));

my %subst = (
	OLD_HOST => '127.0.0.1',
	OLD_PORT => $old->port,
	NEW_HOST => '127.0.0.1',
	NEW_PORT => $new->port,
	DB => 'postgres',
	OLD_MAJOR => (split /\./, "" . $old->pg_version)[0],
	UA_PASSWORD => $password);

sub substitute
{
	my ($text) = @_;
	$text =~ s/\$\{(\w+)\}/exists $subst{$1} ? $subst{$1} : "\${$1}"/ge;
	return $text;
}

# Run SQL on a side as ua_admin (or the bootstrap superuser), in one session,
# stopping at the first error.  Statement logging is off for it: blocks carry
# the password.  Returns (ok, stdout, stderr).
sub run_sql
{
	my ($side, $sql, $as) = @_;
	my @user = (defined $as && $as eq 'postgres') ? () : ('-U', 'ua_admin');
	my ($rc, $out, $err) = $node{$side}->psql(
		'postgres',
		"SET log_statement = 'none';\n$sql",
		extra_params => [ @user, '-v', 'ON_ERROR_STOP=1' ]);
	return ($rc == 0, $out, $err);
}

# A go/no-go query: polled until it answers true, within the harness timeout.
sub check_go
{
	my ($side, $sql, $as, $what) = @_;
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	my ($ok, $out, $err);
	while (1)
	{
		($ok, $out, $err) = run_sql($side, "\\pset tuples_only on\n\\pset format unaligned\n$sql", $as);
		return pass($what) if $ok && $out =~ /^t$/m;
		last if time > $deadline;
		usleep(200_000);
	}
	fail($what);
	diag("last answer: $out\n$err");
	# Every later step depends on this one.
	BAIL_OUT("the runbook stops at a failed go/no-go: $what");
}

# The manual steps, done this test's way.
sub manual_step
{
	my ($text, $where) = @_;
	if ($text =~ /make PG_CONFIG/)
	{
		# Installed and configured by UATest::node (preloaded, wal_level
		# logical, slots, senders, workers); the pg_hba.conf lines of the
		# setup for ua_admin from the other host:
		for my $n ($old, $new)
		{
			UATest::prepend_hba($n, 'host postgres ua_admin 127.0.0.1/32 scram-sha-256');
			$n->reload;
		}
		return pass("$where: installed, configured, pg_hba.conf for ua_admin");
	}
	if ($text =~ /^createdb /m)
	{
		# Database postgres exists on the new cluster already.
		return pass("$where: the database exists");
	}
	if ($text =~ m{/bin/pg_dump .*--schema-only})
	{
		# The old version's pg_dump, as the runbook says.
		my ($dump, $err1);
		my $ok = IPC::Run::run(
			[ "$ENV{UA_OLD_INSTALL}/bin/pg_dump", '--schema-only', '-h', $old->host, '-p', $old->port, 'postgres' ],
			'>', \$dump, '2>', \$err1);
		ok($ok, "$where: pg_dump --schema-only of the old side") or diag($err1);
		my ($rc, $out, $err) = $new->psql('postgres', $dump,
			extra_params => [ '-v', 'ON_ERROR_STOP=1' ]);
		return is($rc, 0, "$where: schema loaded on the new side") || diag($err);
	}
	if ($text =~ /switch the application/)
	{
		# The writers move by themselves to whichever side takes writes.
		return pass("$where: the writers follow the primary");
	}
	return fail("$where: a manual step this test does not know:\n$text");
}

sub run_section
{
	my ($n) = @_;
	my $blocks = $section{$n} // [];
	ok(scalar(@$blocks) > 0, "section $n has commands") or return;
	my $i = 0;
	for my $b (@$blocks)
	{
		$i++;
		my $where = "section $n, block $i ($b->{kind}"
		  . ($b->{side} ? " $b->{side}" : '') . ($b->{check} ? ' check' : '') . ')';
		my $text = substitute($b->{text});
		if ($text =~ /\$\{(\w+)\}/)
		{
			fail("$where: unknown placeholder \${$1}");
			next;
		}
		if ($b->{kind} eq 'sh')
		{
			if ($b->{words} eq 'manual') { manual_step($text, $where); }
			else { fail("$where: a shell block that is not marked manual"); }
			next;
		}
		if ($b->{kind} ne 'sql' || $b->{bad} || $b->{side} !~ /^(old|new)$/)
		{
			fail("$where: unknown block kind");
			next;
		}
		if ($b->{check})
		{
			check_go($b->{side}, $text, $b->{as}, "$where: go");
		}
		else
		{
			my ($ok, $out, $err) = run_sql($b->{side}, $text, $b->{as});
			ok($ok, "$where: runs")
			  or diag("$text\n$err"), BAIL_OUT("the runbook stops at a failed command: $where");
		}
	}
	return;
}

# ---------------------------------------------------------------------------
# The path
# ---------------------------------------------------------------------------
run_section($_) for 1 .. 10;

my $writers = UATest::start_writers(
	sides => [ old => $old, new => $new ],
	writers => 4,
	max_inserts => 2000,
	max_seconds => 150);
sub written_on
{
	my ($n, $side, $count, $what) = @_;
	ok($n->poll_query_until('postgres',
			'SELECT ' . UATest::ledger_count_sql($side) . " >= $count"), $what);
}
written_on($old, 'old', 50, 'the application writes on the old side');

run_section(11);
run_section(12);
written_on($new, 'new', 50, 'after the cutover, the application writes on the new side');

run_section(13);
my $on_old = $old->safe_psql('postgres', 'SELECT ' . UATest::ledger_count_sql('old'));
written_on($old, 'old', $on_old + 50, 'after the rollback, the application writes on the old side again');

run_section(11);
run_section(12);
my $on_new = $new->safe_psql('postgres', 'SELECT ' . UATest::ledger_count_sql('new'));
written_on($new, 'new', $on_new + 50, 'after the second cutover, on the new side again');
my $ledger = UATest::stop_writers($writers);

# Everything acknowledged is on the new primary, and (through the way back)
# on the old side, exactly once.
my ($ok, $out, $err) = run_sql('new', "SELECT seq FROM upgrade_assist.round_trip('old_side')");
ok($ok, 'a marker round trip new -> old') or diag($err);
is_deeply([ UATest::ledger_problems($ledger, $new) ], [], 'the ledger: every write once on the new primary');
is_deeply([ UATest::ledger_problems($ledger, $old) ], [], 'the ledger: every write once on the old side');
note sprintf('writers: %d rows acknowledged', scalar(keys %{ $ledger->{acked} }));

run_section(14);
is($old->safe_psql('postgres', 'SELECT count(*) FROM pg_subscription'), '0',
	'decommissioned: no subscription left on the old side');
is($new->safe_psql('postgres', 'SELECT count(*) FROM pg_replication_slots'), '0',
	'decommissioned: no slot left on the new side');
is($old->safe_psql('postgres', 'SELECT count(*) FROM pg_replication_slots'), '0',
	'decommissioned: no slot left on the old side');

$old->stop;
$new->stop;
done_testing();
