package main

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// compare says how a row's two medians are compared.
type compare int

const (
	higherBetter compare = iota // ratio icegate/coturn, target a minimum ratio
	lowerBetter                 // ratio icegate/coturn, target a maximum ratio
	lossPoints                  // percentages: difference in points, target "no worse"
	textOnly                    // no numbers to compare (failure counts)
)

// row is one line of the table: every round's value for each server.
type row struct {
	name    string
	unit    string // appended to values: "%", " KiB"
	cmp     compare
	target  float64 // ratio for higherBetter/lowerBetter; 0 = no target
	values  map[string][]float64
	text    map[string]string // textOnly rows
	decimal int               // decimals shown
}

func newRow(name, unit string, cmp compare, target float64, decimals int) *row {
	return &row{name: name, unit: unit, cmp: cmp, target: target, decimal: decimals,
		values: map[string][]float64{}, text: map[string]string{}}
}

func (r *row) add(server string, v float64) { r.values[server] = append(r.values[server], v) }

// median of the values; NaN when there are none.
func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// formatNum renders v with the given decimals and commas between
// thousands.
func formatNum(v float64, decimals int) string {
	if math.IsNaN(v) {
		return "n/a"
	}
	s := strconv.FormatFloat(v, 'f', decimals, 64)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	intPart, frac, _ := strings.Cut(s, ".")
	var b strings.Builder
	for i, c := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	out := b.String()
	if frac != "" {
		out += "." + frac
	}
	if neg {
		out = "-" + out
	}
	return out
}

// cells returns the icegate, coturn, comparison, target and verdict cells.
func (r *row) cells() [5]string {
	if r.cmp == textOnly {
		return [5]string{r.text[icegate], r.text[coturn], "", "", ""}
	}
	ig, ct := median(r.values[icegate]), median(r.values[coturn])
	var c [5]string
	c[0] = formatNum(ig, r.decimal) + r.unit
	c[1] = formatNum(ct, r.decimal) + r.unit
	switch r.cmp {
	case higherBetter, lowerBetter:
		ratio := ig / ct
		if ct == 0 || math.IsNaN(ratio) || math.IsInf(ratio, 0) {
			c[2] = "n/a"
		} else {
			c[2] = strconv.FormatFloat(ratio, 'f', 2, 64) + "×"
		}
		switch {
		case r.target == 0:
		case r.cmp == higherBetter:
			c[3] = "≥ " + strconv.FormatFloat(r.target, 'f', -1, 64) + "×"
			c[4] = verdict(!math.IsNaN(ratio) && ratio >= r.target)
		default:
			c[3] = "≤ " + strconv.FormatFloat(r.target, 'f', -1, 64) + "× (no worse)"
			c[4] = verdict(!math.IsNaN(ratio) && ratio <= r.target)
		}
	case lossPoints:
		d := ig - ct
		if math.IsNaN(d) {
			c[2] = "n/a"
		} else {
			c[2] = fmt.Sprintf("%+.*f pp", r.decimal, d)
		}
		if r.target != 0 {
			c[3] = "no worse"
			// Within a tenth of the larger loss (and 0.05 pp) is noise.
			slack := math.Max(0.05, 0.1*math.Max(ig, ct))
			c[4] = verdict(!math.IsNaN(d) && d <= slack)
		}
	}
	return c
}

func verdict(ok bool) string {
	if ok {
		return "yes"
	}
	return "no"
}

// markdown renders the medians table, then every round's values.
func markdown(rows []*row) string {
	var b strings.Builder
	b.WriteString("| Measurement | icegate | coturn | icegate vs coturn | Target (issue #5) | Met |\n")
	b.WriteString("|---|---:|---:|---:|---|---|\n")
	for _, r := range rows {
		c := r.cells()
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", r.name, c[0], c[1], c[2], c[3], c[4])
	}
	b.WriteString("\nEvery round (in the order run, icegate then coturn each round):\n\n")
	b.WriteString("| Measurement | icegate | coturn |\n|---|---|---|\n")
	for _, r := range rows {
		if r.cmp == textOnly {
			continue
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", r.name, joinValues(r.values[icegate], r.decimal), joinValues(r.values[coturn], r.decimal))
	}
	return b.String()
}

func joinValues(v []float64, decimals int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = formatNum(x, decimals)
	}
	return strings.Join(s, " · ")
}
