#!/usr/bin/perl
# Copyright (c) upgrade_assist contributors

# cdc_switch.pl: the switch command of the tests and benchmarks of
# cutover(..., replication => 'external'), driving the fixture relay
# t/cdc_relay.pl (docs/external-pipelines.md shows what a team's own script
# must do at each moment; this one is an example of it).
#
# As upgrade_assist.cutover_command on both clusters:
#
#   perl t/cdc_switch.pl DIR %m %s %o
#
# DIR holds conn.PORT (the relay's conninfo for the cluster on PORT, a role in
# upgrade_assist.fence_exempt_roles on both sides) and, per direction
# SRC->DST (ports), relay.SRC.DST.pid / .log / .ready.  The relay of SRC->DST
# uses slot cdc_relay_SRC_DST on SRC and the replication origin of that name
# on DST.  Moments, seen from THIS cluster (%s) cutting over to PEER (%o):
#
#   start reverse   stop the relay THIS->PEER and wait until it has exited
#                   (it applies nothing from then on), then start the relay
#                   PEER->THIS with a fresh slot on PEER (PEER is fenced and
#                   has everything from THIS) and wait until it is ready
#   stop forward    stop the relay THIS->PEER and wait until it has exited
#   aborted         stop the relay PEER->THIS if it runs and drop its slot,
#                   then start the relay THIS->PEER again where it stopped
#                   (exactly once: its origin on PEER says where)
#   done            drop the slot of the stopped relay THIS->PEER on THIS
#   other moments   nothing
#
# Direct use by a test (no cutover): DIR relay-start SRC DST [create],
# DIR relay-stop SRC DST.  Exit status 0 when done; anything else fails the
# moment (and so aborts a cutover before its point of no return).

use strict;
use warnings;

use FindBin;
use POSIX ();
use Time::HiRes qw(time);

# The server that runs this command may carry its own installation's
# LD_LIBRARY_PATH (the TAP harness sets it for an old install_path node): a
# newer psql would then load the older libpq.  Every psql here finds its own
# libpq through its run path.
delete $ENV{LD_LIBRARY_PATH};

my ($dir, $what, $a, $b, $flag) = @ARGV;
die "usage: cdc_switch.pl DIR MOMENT THIS_PORT PEER_PORT\n"
  unless defined $b;
my $relay = "$FindBin::RealBin/cdc_relay.pl";
my $bound = $ENV{CDC_SWITCH_TIMEOUT} // 20;
my $psql = $ENV{CDC_PSQL} // 'psql';
STDOUT->autoflush(1);
my $t0 = time;

sub say_log
{
	printf "cdc_switch %s: %s (%.0f ms)\n", $what, $_[0], (time - $t0) * 1000;
	return;
}

sub conninfo
{
	my ($port) = @_;
	open my $fh, '<', "$dir/conn.$port" or die "cdc_switch: no $dir/conn.$port: $!\n";
	my $c = <$fh>;
	chomp $c;
	return $c;
}

sub relay_pid
{
	my ($src, $dst) = @_;
	open my $fh, '<', "$dir/relay.$src.$dst.pid" or return undef;
	my $pid = <$fh>;
	chomp $pid;
	# Still our relay, not a recycled pid?
	open my $cmd, '<', "/proc/$pid/cmdline" or return undef;
	local $/;
	my $line = <$cmd> // '';
	return $line =~ /cdc_relay\.pl/ ? $pid : undef;
}

sub relay_stop
{
	my ($src, $dst) = @_;
	my $pid = relay_pid($src, $dst);
	if (!defined $pid)
	{
		say_log("relay $src->$dst not running");
		return;
	}
	kill 'TERM', $pid;
	my $until = time + $bound;
	while (kill 0, $pid)
	{
		if (time > $until)
		{
			kill 'KILL', $pid;
			say_log("relay $src->$dst (pid $pid) did not stop within ${bound}s: killed");
			last;
		}
		# The relay is not our child: poll its pid (bounded above).
		select(undef, undef, undef, 0.002);
		last unless relay_pid($src, $dst);
	}
	unlink "$dir/relay.$src.$dst.pid", "$dir/relay.$src.$dst.ready";
	say_log("relay $src->$dst (pid $pid) stopped");
	return;
}

sub relay_start
{
	my ($src, $dst, $create) = @_;
	if (relay_pid($src, $dst))
	{
		say_log("relay $src->$dst runs already");
		return;
	}
	my $ready = "$dir/relay.$src.$dst.ready";
	unlink $ready;
	my @cmd = ($^X, $relay, '--source', conninfo($src), '--target', conninfo($dst),
		'--slot', "cdc_relay_${src}_$dst", '--ready', $ready,
		'--psql', $psql, ($ENV{CDC_POLL_MS} ? ('--poll-ms', $ENV{CDC_POLL_MS}) : ()),
		($create ? ('--create') : ()));
	my $pid = fork;
	die "cdc_switch: fork: $!\n" unless defined $pid;
	if ($pid == 0)
	{
		# Detached: not in the command's process group, nor on its output.
		POSIX::setsid();
		open STDIN, '<', '/dev/null';
		open STDOUT, '>>', "$dir/relay.$src.$dst.log";
		open STDERR, '>&', \*STDOUT;
		my $gp = fork;
		if ($gp)
		{
			open my $pf, '>', "$dir/relay.$src.$dst.pid" or POSIX::_exit(1);
			print $pf "$gp\n";
			close $pf;
			POSIX::_exit(0);
		}
		exec @cmd or POSIX::_exit(127);
	}
	waitpid($pid, 0);
	die "cdc_switch: could not start relay $src->$dst\n" if $? != 0;
	open my $pf, '<', "$dir/relay.$src.$dst.pid" or die "cdc_switch: no pid file: $!\n";
	my $rpid = <$pf>;
	chomp $rpid;
	my $until = time + $bound;
	while (!-e $ready)
	{
		die "cdc_switch: relay $src->$dst exited before it was ready; see $dir/relay.$src.$dst.log\n"
		  unless kill 0, $rpid;
		die "cdc_switch: relay $src->$dst not ready within ${bound}s; see $dir/relay.$src.$dst.log\n"
		  if time > $until;
		select(undef, undef, undef, 0.002);
	}
	say_log("relay $src->$dst started (pid $rpid" . ($create ? ', new slot' : '') . ')');
	return;
}

sub drop_slot
{
	my ($port, $slot) = @_;
	my $ok = system($psql, '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-d', conninfo($port),
		'-c',
		"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
		  . " WHERE slot_name = '$slot' AND NOT active") == 0;
	say_log($ok ? "slot $slot on $port dropped (if it was there)"
		: "could not drop slot $slot on $port");
	return $ok;
}

my ($this, $peer) = ($a, $b);
if ($what eq 'start reverse')
{
	relay_stop($this, $peer);
	# For the tests: a broken switch that never starts the reverse relay.
	if ($ENV{CDC_SWITCH_NO_REVERSE})
	{
		say_log('CDC_SWITCH_NO_REVERSE: the reverse relay is NOT started');
	}
	else
	{
		relay_start($peer, $this, 1);
	}
}
elsif ($what eq 'stop forward')
{
	relay_stop($this, $peer);
}
elsif ($what eq 'aborted')
{
	# The reverse relay, when 'start reverse' started it (the peer may be
	# down: its slot is then left for the next 'start reverse' to replace).
	if (-e "$dir/relay.$peer.$this.pid")
	{
		relay_stop($peer, $this);
		drop_slot($peer, "cdc_relay_${peer}_$this");
	}
	relay_start($this, $peer, 0);
}
elsif ($what eq 'done')
{
	drop_slot($this, "cdc_relay_${this}_$peer") or exit 1;
}
elsif ($what eq 'relay-start')
{
	relay_start($a, $b, ($flag // '') eq 'create');
}
elsif ($what eq 'relay-stop')
{
	relay_stop($a, $b);
}
else
{
	say_log('nothing to do');
}
exit 0;
