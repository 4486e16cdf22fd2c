
# Copyright (c) upgrade_assist contributors

# Secrets (issue #24 item 5): with a password in every user mapping (and in
# the forward subscription), the password appears in no view of the
# extension, no NOTICE, WARNING or error our functions send, no
# pg_stat_activity.query of any session while a cutover and its rollback run,
# neither server log at log_statement = all and log_min_messages = debug1,
# and no file of either data directory outside the relation, WAL and
# transaction-status directories (the catalogs hold it by design: see
# docs/security.md), but for the password file a reverse subscription on a
# subscriber before 16 names (mode 0600, checked).  The test's own statements that carry a password run
# with log_statement = 'none'.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use File::Find;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use UATest;

my @passwords = ($UATest::ADMIN_PASSWORD, $UATest::PEER_PASSWORD,
	'ua_bad_peer_pw_3');

# The passwords (if any) found in text.
sub leaked
{
	my ($text) = @_;
	return join(', ', grep { index($text // '', $_) >= 0 } @passwords);
}

my ($old, $new) = UATest::cutover_pair(
	old_install => $ENV{UA_OLD_INSTALL},
	old_name => 'sec_old',
	new_name => 'sec_new');

# A peer with a password that is never reachable (nothing listens on port 1),
# on old (new is fenced), so that the connection errors are searched too.
UATest::create_peer($old, 'bad_peer', undef,
	user => $UATest::ADMIN_USER,
	password => 'ua_bad_peer_pw_3',
	options => { port => '1' });
for my $node ($old, $new)
{
	$node->append_conf(
		'postgresql.conf', q{
log_statement = 'all'
log_min_messages = 'debug1'
client_min_messages = 'debug1'
});
	$node->reload;
}

my $everything = '';

# Run sql on node in the background while sampling pg_stat_activity.query of
# both nodes until it ends (bounded by count); returns psql's output.
sub run_sampled
{
	my ($node, $sql, $name) = @_;
	my $bg = UATest::bg_commands($node, $name, $sql);
	my $samples = '';
	for my $i (1 .. 2000)
	{
		last unless $bg->{run}->pumpable;
		$bg->{run}->pump_nb;
		for my $n ($old, $new)
		{
			# psql, not safe_psql: the cutover's disconnect after its point
			# of no return may end a sampling session.
			my ($rc, $sample) = $n->psql('postgres',
				q{SELECT string_agg(coalesce(backend_type, '') || ': ' || coalesce(query, ''), E'\n') FROM pg_stat_activity WHERE pid <> pg_backend_pid()});
			$samples .= $sample // '';
		}
	}
	UATest::bg_finish($bg);
	is(leaked($samples), '', "$name: no password in pg_stat_activity.query");
	return "$bg->{stdout}\n$bg->{stderr}";
}

my $out = run_sampled($old, UATest::cutover_sql('new_side'), 'cutover');
like($out, qr/unfence peer\|done/, 'cutover succeeded');
is(leaked($out), '', 'cutover: no password in its rows, NOTICEs or WARNINGs');
$everything .= $out;

$out = run_sampled($new, UATest::cutover_sql('old_side'), 'rollback');
like($out, qr/unfence peer\|done/, 'rollback succeeded');
is(leaked($out), '', 'rollback: no password in its rows, NOTICEs or WARNINGs');
$everything .= $out;

# Errors and NOTICEs of functions that reach a peer, a good one and one that
# cannot be reached.
for my $node ($old, $new)
{
	my $peer = $node == $old ? 'new_side' : 'old_side';
	my $bad = $node == $old ? 'bad_peer' : 'no_such_peer';
	for my $sql (
		"SELECT * FROM upgrade_assist.preflight('$peer')",
		"SELECT * FROM upgrade_assist.round_trip('$peer')",
		"SELECT * FROM upgrade_assist.round_trip('$bad')",
		"SELECT * FROM upgrade_assist.preflight('$bad')",
		"SELECT * FROM upgrade_assist.cutover('$bad', on_abort => 'warning')",
		"SELECT * FROM upgrade_assist.sync_sequences('$bad')")
	{
		my ($rc, $stdout, $stderr) = $node->psql('postgres', $sql,
			extra_params => [ '-v', 'VERBOSITY=verbose' ]);
		my $text = "$stdout\n$stderr";
		is(leaked($text), '', "no password in the output of $sql on " . $node->name);
		$everything .= $text;
	}
	# Every view of the extension, as text.
	my $views = $node->safe_psql('postgres',
		q{SELECT string_agg(format('SELECT %L || (t.*)::text FROM %I.%I t', c.relname, n.nspname, c.relname), ' UNION ALL ')
		  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		  WHERE n.nspname = 'upgrade_assist' AND c.relkind = 'v'});
	my $rows = $node->safe_psql('postgres', $views);
	is(leaked($rows), '', 'no password in any view of the extension on ' . $node->name);
}
like($everything, qr/bad_peer/, 'the errors name the unreachable peer');

for my $node ($old, $new)
{
	# The log is complete once the server has stopped.
	$node->stop;
	my $log = slurp_file($node->logfile);
	like($log, qr/statement: /, $node->name . ': log_statement = all logged statements');
	is(leaked($log), '', $node->name . ': no password in the server log');

	my (@found, @passfiles);
	my $dir = $node->data_dir;
	find(
		{
			no_chdir => 1,
			wanted => sub {
				if (-d $_
					&& m{^\Q$dir\E/(base|global|pg_wal|pg_xact|pg_multixact|pg_subtrans|pg_commit_ts)$})
				{
					$File::Find::prune = 1;
					return;
				}
				return unless -f $_;
				# The password file of a reverse subscription before 16
				# (docs/security.md): owner-only, and named by no log line.
				if (m{/upgrade_assist\.\d+\.\d+\.pgpass$})
				{
					push @passfiles, sprintf('%s %04o', $_, (stat $_)[2] & 07777);
					return;
				}
				my $content = slurp_file($_);
				push @found, $_ if leaked($content) ne '';
			}
		},
		$dir);
	is(join(' ', @found), '',
		$node->name . ': no password in a file of the data directory outside the catalogs and WAL');
	is(scalar(grep { !/ 0600$/ } @passfiles), 0,
		$node->name . ': password files are the owner\'s only')
	  or diag(join("\n", @passfiles));
}

done_testing();
