
# Copyright (c) upgrade_assist contributors

# Monitoring: Debian's prometheus-postgres-exporter with monitoring/queries.yaml
# against a cutover pair ('old' may be another major version, UA_OLD_INSTALL),
# one exporter per cluster on a free loopback port, connecting as role
# prometheus (member of pg_monitor) over the Unix socket, as docs/monitoring.md's
# "The role" section says.  Scraped over HTTP: the heartbeat old -> new in
# sync with latencies, the fences (old down, new up), the fence raised and
# lifted on old, a cutover seen while it runs (paused before a step) and after
# it (outcome, blackout, steps, attempts), the heartbeat new -> old, and a
# statistics rebuild on new; every metric queries.yaml defines is there with
# its help text, and no query or collector fails on this version.
# monitoring/dashboard.json is checked too: the structure Grafana's import
# needs, and every expression over metrics that the exporters serve.
# UA_POSTGRES_EXPORTER names another exporter binary than Debian's.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use HTTP::Tiny;
use JSON::PP;
use POSIX ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use UATest;

my $MONITORING = "$FindBin::RealBin/../monitoring";
my $QUERIES = "$MONITORING/queries.yaml";
my $EXPORTER = $ENV{UA_POSTGRES_EXPORTER} // 'prometheus-postgres-exporter';
# The role docs/monitoring.md tells the exporter to connect as.
my $MONITOR_ROLE = 'prometheus';
my $started = time;

# ---------------------------------------------------------------------------
# queries.yaml: the metrics it defines
# ---------------------------------------------------------------------------

# The metric names of queries.yaml (query key _ column, for every column that is
# not a label), each with its description.  The file is read line by line in the
# layout it is written in (no YAML module is needed).
sub defined_metrics
{
	my (%metrics, $key, $column, $usage);
	for my $line (split /\n/, slurp_file($QUERIES))
	{
		if ($line =~ /^(\w+):\s*$/) { $key = $1; }
		elsif ($line =~ /^    - (\w+):\s*$/) { ($column, $usage) = ($1, undef); }
		elsif ($line =~ /^        usage: "(\w+)"\s*$/) { $usage = $1; }
		elsif ($line =~ /^        description: "(.*)"\s*$/)
		{
			$metrics{"${key}_$column"} = $1 if ($usage // '') ne 'LABEL';
		}
	}
	return \%metrics;
}

my $metrics = defined_metrics();
ok(keys %$metrics >= 40, 'queries.yaml defines the metrics (' . keys(%$metrics) . ')');
is_deeply([ grep { !/^upgrade_assist_[a-z0-9_]+$/ } sort keys %$metrics ],
	[], 'every metric is named upgrade_assist_...');

# ---------------------------------------------------------------------------
# The exporter
# ---------------------------------------------------------------------------

# The exporter's binary: $EXPORTER when it is a path, else found in PATH.
sub exporter_binary
{
	return $EXPORTER if $EXPORTER =~ m{/};
	for my $dir (split /:/, $ENV{PATH} // '')
	{
		return "$dir/$EXPORTER" if -x "$dir/$EXPORTER";
	}
	return undef;
}

my $binary = exporter_binary();
BAIL_OUT("$EXPORTER not found: scripts/pg_toolchain --deps installs it")
  unless defined $binary;

# Start an exporter for node on a free loopback port, connected as
# $MONITOR_ROLE over the node's Unix socket, with the collectors that fail on
# some version disabled (docs/monitoring.md, "The exporter").  It ends with the test, and by
# itself after five times the default timeout at the latest.  Returns a handle
# for scrape().
sub start_exporter
{
	my ($node) = @_;
	my $port = PostgreSQL::Test::Cluster::get_free_port();
	my $log = "$PostgreSQL::Test::Utils::log_path/exporter_" . $node->name . '.log';
	my $dsn = 'host=' . $node->host . ' port=' . $node->port
	  . " user=$MONITOR_ROLE dbname=postgres sslmode=disable";
	my @cmd = (
		'timeout', 5 * $PostgreSQL::Test::Utils::timeout_default,
		$binary, "--web.listen-address=127.0.0.1:$port",
		"--extend.query-path=$QUERIES", '--no-collector.bgwriter');
	note "exporter for " . $node->name . ": DATA_SOURCE_NAME='$dsn' @cmd[2 .. $#cmd]";

	my $pid = fork;
	die "fork failed: $!" unless defined $pid;
	if ($pid == 0)
	{
		open STDOUT, '>', $log or POSIX::_exit(1);
		open STDERR, '>&', \*STDOUT or POSIX::_exit(1);
		$ENV{DATA_SOURCE_NAME} = $dsn;
		exec @cmd or POSIX::_exit(1);
	}
	return {
		name => $node->name,
		pid => $pid,
		log => $log,
		url => "http://127.0.0.1:$port/metrics",
		http => HTTP::Tiny->new(timeout => 10),
	};
}

my @exporters;

sub stop_exporters
{
	for my $e (@exporters)
	{
		next unless $e->{pid};
		kill 'TERM', $e->{pid};
		waitpid($e->{pid}, 0);
		$e->{pid} = undef;
	}
	return;
}

END { stop_exporters(); }

# Parse the exposition format: { series => { name => [ { labels => {...}, value
# => v } ] }, help => { name => text } }.
sub parse_metrics
{
	my ($text) = @_;
	my (%series, %help);
	for my $line (split /\n/, $text)
	{
		if ($line =~ /^# HELP (\S+) (.*)$/) { $help{$1} = $2; next; }
		next if $line =~ /^#/ || $line !~ /\S/;
		my ($name, $labels, $value) =
		  $line =~ /^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/
		  or next;
		my %l;
		while (($labels // '') =~ /(\w+)="((?:[^"\\]|\\.)*)"/g) { $l{$1} = $2; }
		push @{ $series{$name} }, { labels => \%l, value => $value };
	}
	return { series => \%series, help => \%help };
}

# The help text of every metric any scrape of the test served (some exist only
# for a while, as the phase of a running cutover).
my %served;

# One scrape of exporter e, parsed; undef when it does not answer (yet).
sub scrape
{
	my ($e) = @_;
	my $res = $e->{http}->get($e->{url});
	return undef unless $res->{success};
	my $s = parse_metrics($res->{content});
	$served{$_} = $s->{help}{$_} // '' for keys %{ $s->{series} };
	return $s;
}

# The value of the one series of metric name whose labels include these;
# undef when there is none (or more than one).  NaN comes back as 'NaN'.
sub value
{
	my ($s, $name, %want) = @_;
	return undef unless $s;
	my @hits = grep {
		my $l = $_->{labels};
		!grep { ($l->{$_} // '') ne $want{$_} } keys %want
	} @{ $s->{series}{$name} // [] };
	return @hits == 1 ? $hits[0]{value} : undef;
}

# A value that is a finite number.
sub number
{
	my ($v) = @_;
	return defined $v && $v =~ /^-?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?$/i;
}

# Scrape e until cond (given a scrape) holds, at most the default timeout, a
# tenth of a second between scrapes.  Returns the scrape that satisfied it, or
# undef (the last scrape is in $e->{last}).
sub scrape_until
{
	my ($e, $cond) = @_;
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	while (1)
	{
		my $s = scrape($e);
		$e->{last} = $s;
		return $s if $s && $cond->($s);
		return undef if time > $deadline;
		if ($e->{pid} && waitpid($e->{pid}, POSIX::WNOHANG()) == $e->{pid})
		{
			diag("exporter $e->{name} exited ($?): " . slurp_file($e->{log}));
			$e->{pid} = undef;
			return undef;
		}
		Time::HiRes::sleep(0.1);
	}
}

# The lines of upgrade_assist's metrics in the last scrape of e, for diag.
sub show
{
	my ($e) = @_;
	my $s = $e->{last} or return "no scrape of $e->{name}";
	my @lines;
	for my $name (sort grep { /^upgrade_assist_|^pg_up$|^pg_exporter/ } keys %{ $s->{series} })
	{
		push @lines, map {
			my $l = $_->{labels};
			"$name\{" . join(',', map { "$_=$l->{$_}" } sort keys %$l) . "} $_->{value}"
		} @{ $s->{series}{$name} };
	}
	return join("\n", @lines);
}

# ---------------------------------------------------------------------------
# A cutover pair, the monitoring role, the heartbeat old -> new, the exporters
# ---------------------------------------------------------------------------
my ($old, $new) = UATest::cutover_pair(old_install => $ENV{UA_OLD_INSTALL});
for my $node ($old, $new)
{
	# Read-only transactions: the fence's drain never waits for a scrape.
	# (new is fenced already: this session writes through the fence.)
	$node->safe_psql(
		'postgres', qq{
SELECT upgrade_assist.fence_exempt_session();
CREATE ROLE $MONITOR_ROLE LOGIN IN ROLE pg_monitor;
ALTER ROLE $MONITOR_ROLE SET default_transaction_read_only = on;
});
}
$old->safe_psql('postgres',
	"SELECT upgrade_assist.heartbeat_start('new_side', '100ms')");

my $eold = start_exporter($old);
my $enew = start_exporter($new);
@exporters = ($eold, $enew);
for my $e (@exporters)
{
	ok(scrape_until($e, sub { (value($_[0], 'pg_up') // '') eq '1' }),
		"exporter of $e->{name} answers and reaches its cluster")
	  or diag(show($e) . "\n" . slurp_file($e->{log}));
}
ok( $old->poll_query_until(
		'postgres',
		"SELECT count(*) > 0 FROM pg_stat_activity WHERE usename = '$MONITOR_ROLE'"),
	"the exporter connects as $MONITOR_ROLE");

# ---------------------------------------------------------------------------
# In sync, latencies, fences
# ---------------------------------------------------------------------------
my %hb = (datname => 'postgres', peer => 'new_side');
my $s = scrape_until(
	$eold,
	sub {
		my ($s) = @_;
		(value($s, 'upgrade_assist_sync_state', %hb, state => 'in sync') // '') eq '1'
		  && (value($s, 'upgrade_assist_sync_latency_samples', %hb) // 0) >= 5;
	});
ok($s, 'old: sync state in sync, latencies collected') or diag(show($eold));
is( join(',',
		map { value($s, 'upgrade_assist_sync_state', %hb, state => $_) // 'none' }
		  ('in sync', 'lagging', 'unreachable', 'starting', 'stopped')),
	'1,0,0,0,0',
	'sync state: one series per state, only in sync is 1');
my $p50 = value($s, 'upgrade_assist_sync_latency_p50_seconds', %hb);
my $p99 = value($s, 'upgrade_assist_sync_latency_p99_seconds', %hb);
ok(number($p50) && $p50 > 0 && $p50 < 5, "latency p50 > 0 ($p50 s)");
ok(number($p99) && $p99 >= $p50 && $p99 < 10, "latency p99 >= p50 ($p99 s)");
ok(number(value($s, 'upgrade_assist_sync_latency_last_seconds', %hb))
	  && value($s, 'upgrade_assist_sync_latency_last_seconds', %hb) > 0,
	'last latency > 0');
is(value($s, 'upgrade_assist_sync_interval_seconds', %hb), '0.1', 'interval 0.1 s');
is(value($s, 'upgrade_assist_sync_worker_up', %hb), '1', 'worker up');
for my $age (qw(written confirmed))
{
	my $v = value($s, "upgrade_assist_sync_last_${age}_age_seconds", %hb);
	ok(number($v) && $v >= 0 && $v < 30, "last $age marker age plausible ($v s)");
}
my $written = value($s, 'upgrade_assist_sync_last_written_seq', %hb);
my $confirmed = value($s, 'upgrade_assist_sync_last_confirmed_seq', %hb);
ok(number($confirmed) && $confirmed > 0 && $written >= $confirmed,
	"markers written ($written) >= confirmed ($confirmed) > 0");
ok(number(value($s, 'upgrade_assist_sync_lag_seconds', %hb)), 'lag is a number');
is(value($s, 'upgrade_assist_sync_last_error_timestamp_seconds', %hb),
	'0', 'no heartbeat error');

is(value($s, 'upgrade_assist_fence_up'), '0', 'old: fence down');
is(value($s, 'upgrade_assist_fence_since_timestamp_seconds'), '0', 'old: no fence since');
is(value($s, 'upgrade_assist_cutover_running'), '0', 'old: no cutover running');
is(value($s, 'upgrade_assist_cutover_blackout_seconds'), '0', 'old: no blackout');
is(value($s, 'upgrade_assist_cutover_attempts_total', outcome => 'succeeded'),
	'0', 'old: no cutover yet');
is(value($s, 'upgrade_assist_last_cutover_attempt'), undef, 'old: no last cutover yet');

$s = scrape_until($enew, sub { defined value($_[0], 'upgrade_assist_fence_up') });
is(value($s, 'upgrade_assist_fence_up'), '1', 'new: fenced until its cutover');
my $since = value($s, 'upgrade_assist_fence_since_timestamp_seconds');
ok(number($since) && $since > $started - 60 && $since <= time + 1,
	'new: fence since plausible');
ok(value($s, 'upgrade_assist_fence_up_duration_seconds') > 0, 'new: fence up for a while');

# ---------------------------------------------------------------------------
# Fence raised and lifted on old
# ---------------------------------------------------------------------------
my $t0 = time;
$old->safe_psql('postgres',
	q{SELECT count(*) FROM upgrade_assist.fence('monitoring test')});
$s = scrape_until($eold, sub { (value($_[0], 'upgrade_assist_fence_up') // '') eq '1' });
ok($s, 'fence(): the fence metric goes up') or diag(show($eold));
$since = value($s, 'upgrade_assist_fence_since_timestamp_seconds');
ok(number($since) && $since >= $t0 - 1 && $since <= time + 1,
	'fence since: when fence() was called');
$old->safe_psql('postgres', 'SELECT upgrade_assist.unfence()');
$s = scrape_until($eold, sub { (value($_[0], 'upgrade_assist_fence_up') // '') eq '0' });
ok($s, 'unfence(): the fence metric goes down') or diag(show($eold));
ok(value($s, 'upgrade_assist_fence_lifted_timestamp_seconds') >= $since,
	'lifted after it went up');

# ---------------------------------------------------------------------------
# A cutover old -> new, paused before its last step, then finished
# ---------------------------------------------------------------------------
my $bg = UATest::bg_commands(
	$old, 'ua_monitored_cutover',
	"SET upgrade_assist.cutover_pause_before = 'unfence peer'",
	UATest::cutover_sql('new_side'));
$s = scrape_until($eold,
	sub { (value($_[0], 'upgrade_assist_cutover_running') // '') eq '1'
		  && defined value($_[0], 'upgrade_assist_cutover_phase_info',
			phase => 'paused before unfence peer') });
ok($s, 'cutover running, paused before unfence peer: seen') or diag(show($eold));
my $attempt = value($s, 'upgrade_assist_cutover_attempt');
ok(number($attempt) && $attempt >= 1, "attempt $attempt");
is( value(
		$s, 'upgrade_assist_cutover_phase_info',
		attempt => $attempt,
		peer => 'new_side',
		phase => 'paused before unfence peer'),
	'1',
	'phase info carries attempt, peer and phase');
ok(value($s, 'upgrade_assist_cutover_blackout_seconds') > 0, 'blackout so far > 0');
ok( value($s, 'upgrade_assist_cutover_elapsed_seconds')
	  >= value($s, 'upgrade_assist_cutover_blackout_seconds'),
	'elapsed >= blackout');
is(value($s, 'upgrade_assist_cutover_past_point_of_no_return'), '0',
	'not past the point of no return');
is(value($s, 'upgrade_assist_fence_up'), '1', 'old fenced by the cutover');
is(value($s, 'upgrade_assist_last_cutover_outcome_info', outcome => 'running'),
	'1', 'last cutover: running');

$old->safe_psql('postgres', 'SELECT upgrade_assist.cutover_resume()');
ok(defined UATest::bg_finish($bg, $PostgreSQL::Test::Utils::timeout_default),
	'cutover returns');
is($bg->{rc}, 0, 'cutover call succeeded') or diag($bg->{stderr});

$s = scrape_until($eold,
	sub { (value($_[0], 'upgrade_assist_last_cutover_succeeded') // '') eq '1' });
ok($s, 'last cutover: succeeded') or diag(show($eold));
is( value(
		$s, 'upgrade_assist_last_cutover_outcome_info',
		attempt => $attempt,
		peer => 'new_side',
		outcome => 'succeeded',
		failed_step => ''),
	'1',
	'outcome info: attempt, peer, succeeded, no failed step');
is(value($s, 'upgrade_assist_last_cutover_attempt'), $attempt, 'last cutover attempt');
my $blackout = value($s, 'upgrade_assist_last_cutover_blackout_seconds');
my $history_blackout = $old->safe_psql('postgres',
	"SELECT extract(epoch FROM blackout)::float8 FROM upgrade_assist.cutover_history WHERE attempt = $attempt"
);
ok(number($blackout) && $blackout > 0 && abs($blackout - $history_blackout) < 1e-6,
	"last cutover blackout: cutover_history's ($blackout s)");
ok( value($s, 'upgrade_assist_last_cutover_duration_seconds') >= $blackout,
	'duration >= blackout');
ok( value($s, 'upgrade_assist_last_cutover_finished_timestamp_seconds')
	  >= value($s, 'upgrade_assist_last_cutover_started_timestamp_seconds'),
	'finished after started');
for my $step ('fence', 'drain', 'unfence peer', 'cleanup')
{
	my $v = value($s, 'upgrade_assist_last_cutover_step_seconds',
		step => $step, status => 'done');
	ok(number($v) && $v >= 0, "step $step: done, $v s");
}
is(value($s, 'upgrade_assist_cutover_attempts_total', outcome => 'succeeded'),
	'1', 'one cutover succeeded');
is(value($s, 'upgrade_assist_cutover_running'), '0', 'no cutover running any more');
is(value($s, 'upgrade_assist_cutover_phase_info'), undef, 'no phase any more');
is(value($s, 'upgrade_assist_fence_up'), '1', 'old stays fenced (standby)');
$s = scrape_until($enew, sub { (value($_[0], 'upgrade_assist_fence_up') // '') eq '0' });
ok($s, 'new: fence down, primary now') or diag(show($enew));

# ---------------------------------------------------------------------------
# The heartbeat moves: new -> old
# ---------------------------------------------------------------------------
$old->safe_psql('postgres', 'SELECT upgrade_assist.heartbeat_stop()');
$new->safe_psql('postgres',
	"SELECT upgrade_assist.heartbeat_start('old_side', '100ms')");
%hb = (datname => 'postgres', peer => 'old_side');
$s = scrape_until(
	$enew,
	sub {
		(value($_[0], 'upgrade_assist_sync_state', %hb, state => 'in sync') // '') eq '1'
		  && (value($_[0], 'upgrade_assist_sync_latency_p50_seconds', %hb) // 0) > 0;
	});
ok($s, 'new -> old: in sync, latency > 0') or diag(show($enew));
$s = scrape_until(
	$eold,
	sub {
		(value($_[0], 'upgrade_assist_sync_state', peer => 'new_side', state => 'stopped') // '')
		  eq '1';
	});
ok($s, 'old: its heartbeat stopped') or diag(show($eold));

# ---------------------------------------------------------------------------
# A statistics rebuild on new
# ---------------------------------------------------------------------------
my $run = $new->safe_psql('postgres',
	"SELECT upgrade_assist.rebuild_stats('{1,-1}', 2, false)");
ok( $new->poll_query_until(
		'postgres',
		"SELECT state = 'done' FROM upgrade_assist.stats_progress WHERE run = $run"),
	'rebuild done');
$s = scrape_until($enew,
	sub { (value($_[0], 'upgrade_assist_stats_rebuild_run') // '') eq $run });
ok($s, "rebuild run $run seen") or diag(show($enew));
is(value($s, 'upgrade_assist_stats_rebuild_percent'), '100', 'rebuild: 100 percent');
is(value($s, 'upgrade_assist_stats_rebuild_estimated_left_seconds'), '0', 'rebuild: 0 s left');
is(value($s, 'upgrade_assist_stats_rebuild_running'), '0', 'rebuild: not running');
is(value($s, 'upgrade_assist_stats_rebuild_stages'), '2', 'rebuild: 2 stages');
my $tables = value($s, 'upgrade_assist_stats_rebuild_tables_total');
ok(number($tables) && $tables >= scalar(@UATest::LEDGER_TABLES),
	"rebuild: $tables tables");
is(value($s, 'upgrade_assist_stats_rebuild_tables_done'), $tables, 'rebuild: all done');
is(value($s, 'upgrade_assist_stats_rebuild_info', run => $run, state => 'done', phase => 'done'),
	'1', 'rebuild info: done');
ok( value($s, 'upgrade_assist_stats_coverage_tables') >= $tables
	  && value($s, 'upgrade_assist_stats_coverage_tables')
	  >= value($s, 'upgrade_assist_stats_coverage_tables_with_statistics'),
	'coverage: tables >= tables with statistics');

# ---------------------------------------------------------------------------
# Every metric, its help, and no failure
# ---------------------------------------------------------------------------
for my $e (@exporters)
{
	my $last = scrape($e);
	is(value($last, 'pg_exporter_last_scrape_error'), '0',
		"$e->{name}: no query failed in the last scrape");
	is( join(',',
			map { "$_->{labels}{collector}=$_->{value}" }
			  grep { $_->{value} ne '1' }
			  @{ $last->{series}{pg_scrape_collector_success} // [] }),
		'',
		"$e->{name}: every collector left on succeeds");
	is_deeply(
		[
			grep { /^upgrade_assist_/ && !$metrics->{$_} }
			  sort keys %{ $last->{series} }
		],
		[],
		"$e->{name}: no metric that queries.yaml does not define");
	unlike(slurp_file($e->{log}), qr/level=error/, "$e->{name}: no error in the exporter's log");
}
is_deeply([ grep { !defined $served{$_} } sort keys %$metrics ],
	[], 'every metric of queries.yaml was served');
is_deeply([ grep { defined $served{$_} && $served{$_} ne $metrics->{$_} } sort keys %$metrics ],
	[], 'every metric has its help text');

# ---------------------------------------------------------------------------
# monitoring/dashboard.json: what Grafana's import needs
# ---------------------------------------------------------------------------
my $dash = eval { decode_json(slurp_file("$MONITORING/dashboard.json")) };
ok($dash, 'dashboard.json is JSON') or diag($@);
$dash //= {};
my @inputs = grep { $_->{type} eq 'datasource' && $_->{pluginId} eq 'prometheus' }
  @{ $dash->{__inputs} // [] };
is(scalar @inputs, 1, '__inputs: one Prometheus data source');
my $ds = '${' . ($inputs[0]{name} // '') . '}';
ok(grep({ $_->{type} eq 'datasource' && $_->{id} eq 'prometheus' } @{ $dash->{__requires} // [] }),
	'__requires: the Prometheus data source');
ok($dash->{title} && $dash->{uid} && $dash->{schemaVersion}, 'title, uid, schemaVersion');
ok(!defined $dash->{id}, 'id null (import assigns one)');
my @vars = @{ $dash->{templating}{list} // [] };
ok(@vars && !grep({ ($_->{datasource}{uid} // $ds) ne $ds } @vars),
	'template variables use the input data source');

my (%ids, @problems, %used, @cells);
my %types = map { $_ => 1 } qw(row timeseries state-timeline stat bargauge gauge table);
for my $p (@{ $dash->{panels} // [] })
{
	my $what = "panel " . ($p->{title} // '?');
	push @problems, "$what: no integer id" unless ($p->{id} // '') =~ /^\d+$/;
	push @problems, "$what: id $p->{id} twice" if $p->{id} && $ids{ $p->{id} }++;
	push @problems, "$what: type " . ($p->{type} // 'none') unless $types{ $p->{type} // '' };
	push @problems, "$what: no title" unless $p->{title};
	my $g = $p->{gridPos} // {};
	if (grep { ($g->{$_} // '') !~ /^\d+$/ } qw(h w x y))
	{
		push @problems, "$what: gridPos";
	}
	elsif ($g->{x} + $g->{w} > 24 || $g->{w} == 0 || $g->{h} == 0)
	{
		push @problems, "$what: gridPos outside 24 columns";
	}
	else
	{
		for my $x ($g->{x} .. $g->{x} + $g->{w} - 1)
		{
			for my $y ($g->{y} .. $g->{y} + $g->{h} - 1)
			{
				push @problems, "$what overlaps $cells[$x][$y]" if $cells[$x][$y];
				$cells[$x][$y] = $what;
			}
		}
	}
	next if ($p->{type} // '') eq 'row';
	push @problems, "$what: data source" unless ($p->{datasource}{uid} // '') eq $ds;
	my @targets = @{ $p->{targets} // [] };
	push @problems, "$what: no targets" unless @targets;
	for my $t (@targets)
	{
		push @problems, "$what: a target without expr or refId"
		  unless $t->{expr} && $t->{refId};
		for my $m (($t->{expr} // '') =~ /\b(upgrade_assist_\w+|pg_\w+)/g)
		{
			$used{$m} = 1;
			push @problems, "$what: $m is not defined in queries.yaml"
			  unless $metrics->{$m} || $m =~ /^pg_/;
			push @problems, "$what: $m was not served" unless defined $served{$m};
		}
	}
}
is_deeply(\@problems, [], 'panels: id, type, title, gridPos, data source, targets');
for my $want (
	qw(upgrade_assist_sync_state upgrade_assist_sync_latency_p50_seconds
	upgrade_assist_sync_latency_p99_seconds upgrade_assist_fence_up
	upgrade_assist_cutover_phase_info upgrade_assist_cutover_blackout_seconds
	upgrade_assist_last_cutover_blackout_seconds upgrade_assist_stats_rebuild_percent
	upgrade_assist_stats_rebuild_estimated_left_seconds))
{
	ok($used{$want}, "dashboard shows $want");
}

note sprintf('monitoring test: %.1f s', time - $started);
stop_exporters();
$old->stop;
$new->stop;
done_testing();
