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

// cells returns the row's cells for servers (the last is coturn): each
// server's median, each other server compared with coturn, then the first
// server's target and verdict. With icegate and coturn: icegate, coturn,
// icegate vs coturn, target, met.
func (r *row) cells(servers []string) []string {
	last := servers[len(servers)-1]
	others := servers[:len(servers)-1]
	c := make([]string, 0, 2*len(servers)+1)
	if r.cmp == textOnly {
		for _, s := range servers {
			c = append(c, r.text[s])
		}
		for range others {
			c = append(c, "")
		}
		return append(c, "", "")
	}
	for _, s := range servers {
		v := median(r.values[s])
		if math.IsNaN(v) {
			c = append(c, "n/a") // no unit after it
			continue
		}
		c = append(c, formatNum(v, r.decimal)+r.unit)
	}
	ct := median(r.values[last])
	var target, met string
	for i, s := range others {
		v := median(r.values[s])
		switch r.cmp {
		case higherBetter, lowerBetter:
			ratio := v / ct
			if ct == 0 || math.IsNaN(ratio) || math.IsInf(ratio, 0) {
				c = append(c, "n/a")
			} else {
				c = append(c, strconv.FormatFloat(ratio, 'f', 2, 64)+"×")
			}
			switch {
			case i > 0 || r.target == 0:
			case r.cmp == higherBetter:
				target = "≥ " + strconv.FormatFloat(r.target, 'f', -1, 64) + "×"
				met = verdict(!math.IsNaN(ratio) && ratio >= r.target)
			default:
				target = "≤ " + strconv.FormatFloat(r.target, 'f', -1, 64) + "× (no worse)"
				met = verdict(!math.IsNaN(ratio) && ratio <= r.target)
			}
		case lossPoints:
			d := v - ct
			if math.IsNaN(d) {
				c = append(c, "n/a")
			} else {
				c = append(c, fmt.Sprintf("%+.*f pp", r.decimal, d))
			}
			if i == 0 && r.target != 0 {
				target = "no worse"
				// Within a tenth of the larger loss (and 0.05 pp) is noise.
				slack := math.Max(0.05, 0.1*math.Max(v, ct))
				met = verdict(!math.IsNaN(d) && d <= slack)
			}
		}
	}
	return append(c, target, met)
}

func verdict(ok bool) string {
	if ok {
		return "yes"
	}
	return "no"
}

// markdown renders the medians table, then every round's values, with a
// column per server (coturn last) and the issue whose targets the Target
// column holds.
func markdown(rows []*row, servers []string, issue string) string {
	var b strings.Builder
	last := servers[len(servers)-1]
	head := "| Measurement |"
	rule := "|---|"
	for _, s := range servers {
		head += " " + s + " |"
		rule += "---:|"
	}
	for _, s := range servers[:len(servers)-1] {
		head += " " + s + " vs " + last + " |"
		rule += "---:|"
	}
	head += " Target (" + issue + ") | Met |\n"
	rule += "---|---|\n"
	b.WriteString(head)
	b.WriteString(rule)
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s |\n", r.name, strings.Join(r.cells(servers), " | "))
	}
	b.WriteString("\nEvery round (in the order run, " + strings.Join(servers, " then ") + " each round):\n\n")
	b.WriteString("| Measurement | " + strings.Join(servers, " | ") + " |\n|---|" + strings.Repeat("---|", len(servers)) + "\n")
	for _, r := range rows {
		if r.cmp == textOnly {
			continue
		}
		vals := make([]string, len(servers))
		for i, s := range servers {
			vals[i] = joinValues(r.values[s], r.decimal)
		}
		fmt.Fprintf(&b, "| %s | %s |\n", r.name, strings.Join(vals, " | "))
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
