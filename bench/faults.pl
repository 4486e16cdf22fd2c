
# Copyright (c) upgrade_assist contributors

# The campaign of bench/faults (which builds, installs and sets the
# environment): cutovers and rollbacks between two clusters of different
# major versions under ledger writers, each attempt with one fault at a
# random moment, and after each the invariants of docs/recovery.md checked.
# Printed: one line per run and the totals.  See bench/faults for what it
# does; this file is run by it, with PostgreSQL's TAP modules and t/UATest.pm.

use strict;
use warnings;

# PostgreSQL::Test::Utils sends STDOUT to its log file: keep the terminal.
our $report;
BEGIN { open($report, '>&', \*STDOUT) or die "cannot dup STDOUT: $!"; }

use FindBin;
use lib "$FindBin::RealBin/../t";

use IPC::Run;
use POSIX ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);
use UATest;

my $runs = $ENV{RUNS} // 6;
my $seed = $ENV{SEED} // (int(time) ^ $$);
my $timeout = $ENV{TIMEOUT} // 30;
my $writers = $ENV{WRITERS} // 4;
my @only = split /,/, ($ENV{FAULTS} // '');
srand($seed);

sub say_line { print $report @_, "\n"; $report->flush; return; }

# ---------------------------------------------------------------------------
# The pair, as the tests set it up (UATest::cutover_pair), with the crash
# restart on that the TAP harness turns off.
# ---------------------------------------------------------------------------
my ($old, $new) = UATest::cutover_pair(old_install => $ENV{UA_OLD_INSTALL});
my %node = (old => $old, new => $new);
my %peer_of = (old => 'new_side', new => 'old_side');
my %other = (old => 'new', new => 'old');
my %up = (old => 1, new => 1);
for my $n ($old, $new)
{
	$n->append_conf('postgresql.conf', "restart_after_crash = on\n");
	$n->reload;
}
say_line(
	sprintf(
		"faults: %d runs, seed %d, old %s -> new %s, cutover timeout %d s, %d writers",
		$runs, $seed,
		$old->safe_psql('postgres', 'SHOW server_version'),
		$new->safe_psql('postgres', 'SHOW server_version'),
		$timeout, $writers));

# ---------------------------------------------------------------------------
# The watcher: a process that asks both clusters every 10 ms whether they are
# fenced, over one kept-open psql session each (reopened when a server went
# away), and writes every change of the pair of states, and every sample in
# which both are unfenced, to its file.
# ---------------------------------------------------------------------------
my $dir = PostgreSQL::Test::Utils::tempdir();
my $watch_file = "$dir/watch";
my $watch_stop = "$dir/watch.stop";
my $parent = $$;

sub watcher
{
	open my $fh, '>', $watch_file or die "cannot write $watch_file: $!";
	$fh->autoflush(1);
	my (%h, %in, %out);
	my $sample = sub {
		my ($side) = @_;
		if (!$h{$side})
		{
			($in{$side}, $out{$side}) = ('', '');
			$h{$side} = eval {
				IPC::Run::start(
					[
						'psql', '-X', '-A', '-t', '-q',
						'-d', $node{$side}->connstr('postgres') . ' application_name=ua_watcher'
					],
					'<', \$in{$side}, '>', \$out{$side}, '2>', '/dev/null');
			};
			return 'down' unless $h{$side};
		}
		$out{$side} = '';
		$in{$side} .= "SELECT fenced FROM upgrade_assist.fence_status;\n";
		my $t = IPC::Run::timer(1);
		$t->start;
		my $ok = eval {
			$h{$side}->pump until $out{$side} =~ /\n/ || $t->is_expired;
			1;
		};
		if ($ok && $out{$side} =~ /^([tf])$/m)
		{
			return $1;
		}
		eval { $h{$side}->kill_kill; };
		delete $h{$side};
		return 'down';
	};
	my ($last, $n, $double) = ('', 0, 0);
	while (!-e $watch_stop && getppid() == $parent)
	{
		my $t0 = time;
		my $o = $sample->('old');
		my $w = $sample->('new');
		$n++;
		my $state = "$o $w";
		if ($o eq 'f' && $w eq 'f')
		{
			$double++;
			printf $fh "%.3f DOUBLE\n", $t0;
		}
		if ($state ne $last)
		{
			printf $fh "%.3f %s\n", $t0, $state;
			$last = $state;
		}
		my $left = 0.010 - (time - $t0);
		sleep($left) if $left > 0;    # the sampling period
	}
	printf $fh "end %d %d\n", $n, $double;
	close $fh;
	return;
}

STDOUT->flush;
STDERR->flush;
my $watcher_pid = fork;
die "fork: $!" unless defined $watcher_pid;
if ($watcher_pid == 0)
{
	my $ok = eval { watcher(); 1; };
	print STDERR $@ unless $ok;
	POSIX::_exit($ok ? 0 : 1);
}

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------
sub q1
{
	my ($side, $sql) = @_;
	my ($rc, $out) = (0, '');
	$rc = $node{$side}->psql('postgres', $sql, stdout => \$out, on_error_die => 0);
	return $rc == 0 ? $out : undef;
}

sub fenced { return q1($_[0], 'SELECT fenced FROM upgrade_assist.fence_status') // 'down'; }

sub unfenced_sides { return grep { fenced($_) eq 'f' } qw(old new); }

sub wait_up
{
	my ($side) = @_;
	return $node{$side}->poll_query_until('postgres', 'SELECT true');
}

sub last_attempt
{
	return q1($_[0], 'SELECT coalesce(max(attempt), 0) FROM upgrade_assist.cutover_history') // 0;
}

sub pids
{
	my ($side, $where) = @_;
	return grep { /^\d+$/ } split /\n/,
	  (q1($side, "SELECT pid FROM pg_stat_activity WHERE $where") // '');
}

# The ledger tables on both sides agree once a probe written on the primary
# has arrived on the other side.
my $probe = 0;
sub caught_up
{
	my ($primary) = @_;
	$probe++;
	return 0
	  unless defined q1($primary,
		"INSERT INTO public.t_bigserial (tag, side) VALUES ('probe.$probe', 'seed')");
	return $node{ $other{$primary} }->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM public.t_bigserial WHERE tag = 'probe.$probe'");
}

# Empty the ledger tables on the primary (replicated to the other side), so
# that the next run's writers start with tags of their own.
sub wipe
{
	my ($primary) = @_;
	q1($primary,
		join(';', map { "DELETE FROM public.$_ WHERE side <> 'seed'" } @UATest::LEDGER_TABLES));
	return caught_up($primary);
}

# ---------------------------------------------------------------------------
# Faults.  Each takes the side running the cutover (the primary) and the
# cutover's background psql, and returns a short description.
# ---------------------------------------------------------------------------
sub restart_down
{
	for my $side (qw(old new))
	{
		next if $up{$side};
		$node{$side}->start;
		$up{$side} = 1;
	}
	return;
}

sub shutdown_side
{
	my ($side) = @_;
	$node{$side}->stop('immediate');
	$up{$side} = 0;
	return;
}

sub signal_pids
{
	my ($sig, $side, $where) = @_;
	my @p = pids($side, $where);
	kill $sig, $_ for @p;
	return scalar @p;
}

# SIGKILL of one client backend of side, chosen at random among the writers',
# the cutover caller's, the peer connection's and the watcher's (the watcher
# always has one): the postmaster then restarts the whole cluster.
sub sigkill_backend
{
	my ($side) = @_;
	my @p = pids($side,
		"backend_type = 'client backend' AND application_name IN ('upgrade_assist', 'ua_watcher') "
		  . "OR application_name LIKE 'ua_writer_%' OR application_name LIKE 'ua_faults_%'");
	return 'no backend to kill' unless @p;
	my $victim = $p[ int(rand(@p)) ];
	my $app = q1($side, "SELECT application_name FROM pg_stat_activity WHERE pid = $victim") // '?';
	kill 'KILL', $victim;
	return "$app killed";
}

my %faults = (
	'shutdown primary' => sub { my ($p) = @_; shutdown_side($p); return 'immediate shutdown'; },
	'shutdown peer' => sub { my ($p) = @_; shutdown_side($other{$p}); return 'immediate shutdown'; },
	'sigkill backend primary' => sub { my ($p) = @_; return sigkill_backend($p); },
	'sigkill backend peer' => sub { my ($p) = @_; return sigkill_backend($other{$p}); },
	'sigterm cutover worker' => sub {
		my ($p) = @_;
		return signal_pids('TERM', $p, "backend_type = 'upgrade_assist cutover'") . ' terminated';
	},
	'sigterm peer backend' => sub {
		my ($p) = @_;
		return signal_pids('TERM', $other{$p},
			"backend_type = 'client backend' AND application_name = 'upgrade_assist'")
		  . ' terminated';
	},
	'sigterm walsender' => sub {
		my ($p) = @_;
		my $side = rand() < 0.5 ? $p : $other{$p};
		return signal_pids('TERM', $side, "backend_type = 'walsender'") . " terminated on $side";
	},
	'sigterm apply worker' => sub {
		my ($p) = @_;
		my $side = rand() < 0.5 ? $p : $other{$p};
		return signal_pids('TERM', $side, "backend_type LIKE 'logical replication%worker'")
		  . " terminated on $side";
	},
	'caller dropped' => sub {
		my ($p, $bg) = @_;
		eval { $bg->{run}->signal('KILL'); };
		return 'psql killed';
	},
);
my @fault_names = @only ? @only : sort keys %faults;
for my $f (@fault_names)
{
	die "unknown fault '$f' (known: " . join(', ', sort keys %faults) . ")\n"
	  unless $faults{$f};
}
my @pauses = (
	'checks', 'lag check', 'prepare', 'fence',
	'drain', 'final marker', 'wait for marker', 'sync sequences',
	'reverse replication', 'reverse round trip', 'unfence peer', 'takeover',
	'takeover answer');

# ---------------------------------------------------------------------------
# The campaign
# ---------------------------------------------------------------------------
my $primary = 'old';
my %total = (lost => 0, dup => 0, other => 0, unsettled => 0, next_failed => 0, orphans => 0, slow => 0);
my @rows;
my $last_ms = 2000;    # length of the last clean cutover, for the delays

for my $run (1 .. $runs)
{
	my $fault = $fault_names[ int(rand(@fault_names)) ];
	my ($moment, $pause);
	if (rand() < 0.5)
	{
		$pause = $pauses[ int(rand(@pauses)) ];
		$moment = "at '$pause'";
	}
	else
	{
		my $ms = int(rand($last_ms));
		$moment = "${ms} ms in";
		$pause = $ms;
	}
	my $p = $primary;
	my $w = UATest::start_writers(
		sides => [ $p => $node{$p}, $other{$p} => $node{ $other{$p} } ],
		writers => $writers,
		max_inserts => 1_000_000,
		max_seconds => 600);
	$node{$p}->poll_query_until('postgres',
		'SELECT ' . UATest::ledger_count_sql($p) . ' >= 20');

	my $before = last_attempt($p);
	my @cmds = (UATest::cutover_sql($peer_of{$p}, timeout => "${timeout}s"));
	unshift @cmds, "SET upgrade_assist.cutover_pause_before = '$pause'" if $pause !~ /^\d+$/;
	my $bg = UATest::bg_commands($node{$p}, "ua_faults_$run", @cmds);
	if ($pause =~ /^\d+$/)
	{
		sleep($pause / 1000);    # the random moment
	}
	else
	{
		my $phase = $pause =~ /^takeover/ ? "paused at $pause" : "paused before $pause";
		$node{$p}->poll_query_until(
			'postgres', qq{
SELECT EXISTS (SELECT FROM upgrade_assist.cutover_progress WHERE phase = '$phase')
    OR EXISTS (SELECT FROM upgrade_assist.cutover_history
                WHERE attempt > $before AND outcome <> 'running')});
	}
	my $what = $faults{$fault}->($p, $bg);
	my $t_fault = time;
	restart_down();
	wait_up($_) for qw(old new);
	q1($p, 'SELECT upgrade_assist.cutover_resume()') if $pause !~ /^\d+$/;
	UATest::bg_finish($bg, $timeout + 60);

	# The attempt settles (by the worker, or by the resolver after a restart).
	my $attempt = $before + 1;
	# Bounded by the cutover's timeout (plus a margin for a restart), not by
	# the harness's default, so that a run left unsettled is reported, not
	# waited for.
	my $settle_by = time + $timeout + 60;
	while (time < $settle_by)
	{
		last
		  if (q1($p, qq{
SELECT coalesce((SELECT outcome IN ('succeeded', 'aborted')
                   FROM upgrade_assist.cutover_history WHERE attempt = $attempt), true)}) // '') eq 't';
		sleep(0.2);    # polling the condition
	}
	my $outcome = q1($p,
		"SELECT outcome || coalesce(' (' || resolution || ')', '') FROM upgrade_assist.cutover_history WHERE attempt = $attempt"
	) // '?';
	$outcome = 'no attempt' if $outcome eq '';
	$total{unsettled}++ unless $outcome =~ /^(succeeded|aborted|no attempt)/;

	# Exactly one primary.
	my @primaries;
	my $deadline = time + $timeout + 60;
	while (time < $deadline)
	{
		@primaries = unfenced_sides();
		last if @primaries == 1;
		sleep(0.05);    # polling the condition
	}
	my $one_after = time - $t_fault;
	$total{slow}++ if $one_after > $timeout;
	my $now = @primaries == 1 ? $primaries[0] : undef;

	my ($lost, $dup) = ('?', '?');
	if (defined $now)
	{
		# Some writes on the primary after the fault, then the check.
		my $have = q1($now, 'SELECT ' . UATest::ledger_count_sql($now)) // 0;
		$node{$now}->poll_query_until('postgres',
			'SELECT ' . UATest::ledger_count_sql($now) . ' >= ' . ($have + 20));
		my $l = UATest::stop_writers($w);
		caught_up($now);
		my @problems = UATest::ledger_problems($l, $node{$now});
		my $a = UATest::ledger_rows($node{$now});
		my $b = UATest::ledger_rows($node{ $other{$now} });
		push @problems, 'the two sides differ' if join("\n", @$a) ne join("\n", @$b);
		$lost = scalar grep { /is there 0 times/ } @problems;
		$dup = @{ $l->{dup} } + scalar grep { /is there ([2-9]|\d\d+) times/ } @problems;
		$total{other} += @problems - $lost - scalar(grep { /is there ([2-9]|\d\d+) times/ } @problems);
		if (@problems || @{ $l->{dup} })
		{
			say_line("  run $run: $_") for (@problems, @{ $l->{dup} });
		}
		$total{lost} += $lost;
		$total{dup} += $dup;
		wipe($now);
	}
	else
	{
		UATest::stop_writers($w);
		say_line("  run $run: no single primary: " . join(',', map { "$_=" . fenced($_) } qw(old new)));
	}

	# The next cutover, without a fault, succeeds, and leaves no orphan slot.
	my $next = 'not run';
	if (defined $now)
	{
		my $t0 = time;
		my $out = q1($now, UATest::cutover_sql($peer_of{$now}, timeout => "${timeout}s")) // '';
		my @steps = UATest::cutover_steps($out);
		if (grep { $_->{step} eq 'unfence peer' && $_->{status} eq 'done' } @steps)
		{
			$last_ms = int((time - $t0) * 1000);
			$next = 'succeeded';
			$primary = $other{$now};
			my @orphans = (UATest::orphan_slots($old, $new), UATest::orphan_slots($new, $old));
			if (@orphans)
			{
				$next .= ', orphan slots: ' . join(' ', @orphans);
				$total{orphans} += @orphans;
			}
		}
		else
		{
			$next = 'FAILED';
			$total{next_failed}++;
			$primary = $now;
			say_line("  run $run: next cutover: $out");
		}
	}
	else
	{
		$total{next_failed}++;
	}
	my $row = sprintf("%3d  %-24s %-26s %-20s %-34s %4s %4s %6.1f  %s",
		$run, $fault, $moment, $what, $outcome, $lost, $dup, $one_after, $next);
	push @rows, $row;
	say_line($row);
	last unless defined $now;
}

open my $stop, '>', $watch_stop or die;
close $stop;
waitpid($watcher_pid, 0);
my ($samples, $double) = (0, 0);
for my $line (split /\n/, slurp_file($watch_file))
{
	($samples, $double) = ($1, $2) if $line =~ /^end (\d+) (\d+)/;
}

say_line('');
say_line(sprintf("%3s  %-24s %-26s %-20s %-34s %4s %4s %6s  %s",
	'run', 'fault', 'moment', 'what', 'outcome', 'lost', 'dup', 'one(s)', 'next cutover'));
say_line($_) for @rows;
say_line('');
say_line(
	sprintf(
		"totals: %d runs, %d lost, %d duplicated, %d other ledger problems, %d double-primary samples of %d (every 10 ms), "
		  . "%d unsettled, %d with no single primary within the timeout, %d next cutovers failed, %d orphan slots",
		scalar(@rows), $total{lost}, $total{dup}, $total{other}, $double, $samples,
		$total{unsettled}, $total{slow}, $total{next_failed}, $total{orphans}));
say_line("seed $seed (SEED=$seed repeats the choices)");
my $bad = $total{lost} + $total{dup} + $total{other} + $double + $total{unsettled}
  + $total{next_failed} + $total{orphans} + ($runs - @rows);
ok(!$bad, 'no run broke an invariant');
done_testing();
