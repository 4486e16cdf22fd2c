# bench/cutover_plot.gp: the picture of bench/cutover --plot.
#
#   gnuplot -c bench/cutover_plot.gp DIR OUT.png
#
# DIR holds what bench/cutover_plot.py wrote (vars.gp, overview.dat, zoomN.dat,
# stepsN.dat).  Top: commits per 10 ms on each side over the whole run, the two
# blackouts shaded.  Below, for the cutover (left) and the rollback (right): the
# same around it, in milliseconds from its first step, then its steps as bars on the
# same axis; the blackout (fence up -> peer writable) shaded in both, and the
# clients' return (the first commit on the new primary) marked.

dir = ARG1
load dir.'/vars.gp'

set terminal pngcairo size 1200,860 font 'DejaVu Sans,9' noenhanced
set output ARG2
old_color = '#1f77b4'
new_color = '#d94801'
shade = 'fc rgb "#f4cccc" fs solid 1.0 noborder behind'

set multiplot title main_title font ',11'
# the same margins everywhere, so that a zoom and its steps share their x axis
set lmargin 9
set rmargin 3

# --- the whole run
set size 1, 0.34
set origin 0, 0.62
set xrange [ov_lo:ov_hi]
set yrange [0:*]
set xlabel 'seconds from the start of the cutover'
set ylabel 'commits / 10 ms'
set key top right horizontal opaque
set grid ytics lc rgb '#dddddd'
eval 'set object 1 rect from b1_lo, graph 0 to b1_hi, graph 1 '.shade
eval 'set object 2 rect from b2_lo, graph 0 to b2_hi, graph 1 '.shade
set label 1 'cutover' at (b1_lo + b1_hi) / 2, graph 1.04 center
set label 2 'rollback' at (b2_lo + b2_hi) / 2, graph 1.04 center
plot dir.'/overview.dat' using 1:2 with steps lw 1.2 lc rgb old_color title old_title, \
     '' using 1:3 with steps lw 1.2 lc rgb new_color title new_title
unset object 1
unset object 2
unset label 1
unset label 2

# --- each cutover: commits, then its steps
do for [i=1:2] {
	x0 = (i - 1) * 0.5
	lo = value(sprintf('z%d_lo', i))
	hi = value(sprintf('z%d_hi', i))
	f = value(sprintf('f%d', i))
	w = value(sprintf('w%d', i))
	r = value(sprintf('r%d', i))
	n = value(sprintf('n%d', i))

	set size 0.5, 0.30
	set origin x0, 0.30
	set title value(sprintf('z%d_title', i))
	set xrange [lo:hi]
	set yrange [0:*]
	set xlabel ''
	set format x ''
	set ylabel 'commits / 10 ms'
	unset key
	eval 'set object 1 rect from f, graph 0 to w, graph 1 '.shade
	set label 1 'blackout' at (f + w) / 2, graph 0.05 center font ',8'
	set arrow 1 from r, graph 0 to r, graph 0.8 nohead dt 2 lc rgb '#555555'
	set label 2 'writes back' at r, graph 0.85 center font ',8'
	plot dir.'/zoom'.i.'.dat' using 1:2 with steps lw 1.5 lc rgb old_color title old_title, \
	     '' using 1:3 with steps lw 1.5 lc rgb new_color title new_title
	unset label 1
	unset label 2
	unset arrow 1

	set size 0.5, 0.30
	set origin x0, 0.0
	unset title
	set format x '%g'
	set xlabel 'ms from the first step'
	set ylabel 'steps'
	set yrange [n + 0.7:0.3]
	unset ytics
	set grid noytics xtics
	plot dir.'/steps'.i.'.dat' using (($2 + $3) / 2):1:2:3:($1 - 0.35):($1 + 0.35) \
	         with boxxyerror fc rgb '#636363' fs solid 0.8 noborder notitle, \
	     '' using 3:1:4 with labels left offset char 0.4, 0 font ',8' notitle
	unset object 1
	set ytics
	set grid ytics noxtics
}
unset multiplot
