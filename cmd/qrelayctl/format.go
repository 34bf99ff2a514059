package main

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"
)

// now is the clock that "up 5m" and "3s ago" are measured against.
var now = time.Now

// tableWriter aligns tab-separated cells in columns (text/tabwriter) and
// trims the padding tabwriter leaves at the end of lines.
type tableWriter struct {
	*tabwriter.Writer
	buf bytes.Buffer
	out io.Writer
}

// table is a tableWriter writing to w; Flush it once at the end.
func table(w io.Writer) *tableWriter {
	t := &tableWriter{out: w}
	t.Writer = tabwriter.NewWriter(&t.buf, 0, 0, 2, ' ', 0)
	return t
}

func (t *tableWriter) Flush() error {
	if err := t.Writer.Flush(); err != nil {
		return err
	}
	var b strings.Builder
	for line := range strings.Lines(t.buf.String()) {
		b.WriteString(strings.TrimRight(line, " \n"))
		b.WriteByte('\n')
	}
	t.buf.Reset()
	_, err := io.WriteString(t.out, b.String())
	return err
}

// row writes cells as one tab-separated line.
func row(w io.Writer, cells ...string) {
	fmt.Fprintln(w, strings.Join(cells, "\t"))
}

// bytesIEC is n bytes in binary units: "512 B", "1.5 KiB", "3.2 MiB".
func bytesIEC(n uint64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	v, unit := float64(n), ""
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"} {
		v, unit = v/1024, u
		if v < 1024 {
			break
		}
	}
	if v < 10 {
		return fmt.Sprintf("%.1f %s", v, unit)
	}
	return fmt.Sprintf("%.0f %s", v, unit)
}

// bitRate is a rate in bits per second in SI units: "950 bit/s",
// "3.2 Mbit/s".
func bitRate(bitS float64) string {
	if math.IsNaN(bitS) || bitS < 0 {
		return "-"
	}
	if bitS < 1000 {
		return fmt.Sprintf("%.0f bit/s", bitS)
	}
	v, unit := bitS, ""
	for _, u := range []string{"kbit/s", "Mbit/s", "Gbit/s", "Tbit/s"} {
		v, unit = v/1000, u
		if v < 1000 {
			break
		}
	}
	if v < 10 {
		return fmt.Sprintf("%.1f %s", v, unit)
	}
	return fmt.Sprintf("%.0f %s", v, unit)
}

// byteRate is a rate given in bytes per second, shown in bits per second
// as link rates are.
func byteRate(bps float64) string { return bitRate(bps * 8) }

// duration is d rounded for people: "850ms", "12s", "3m12s", "5h3m", "2d5h".
func duration(d time.Duration) string {
	switch {
	case d < 0:
		return "-" + duration(-d)
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	case d < 24*time.Hour:
		return strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
	}
	d = d.Round(time.Hour)
	days, hours := d/(24*time.Hour), (d%(24*time.Hour))/time.Hour
	return fmt.Sprintf("%dd%dh", days, hours)
}

// seconds is a duration in float seconds (the API's "_s" fields).
func seconds(s float64) string {
	return duration(time.Duration(s * float64(time.Second)))
}

// since is how long ago t was, "" for a zero time.
func since(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return duration(now().Sub(t))
}

// ago is how long ago t was, "3s ago"; "never" for a zero time, and
// "in 2s" for a time ahead of this machine's clock (the node's clock is ahead).
func ago(t time.Time) string {
	switch d := now().Sub(t); {
	case t.IsZero():
		return "never"
	case d < 0:
		return "in " + duration(-d)
	default:
		return duration(d) + " ago"
	}
}

// shorten is s cut to its first n characters and "…", if it is longer.
func shorten(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	i := 0
	for range n {
		_, size := utf8.DecodeRuneInString(s[i:])
		i += size
	}
	return s[:i] + "…"
}

// percent is part of whole: "25%", "-" for an empty whole.
func percent(part, whole float64) string {
	if whole <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f%%", 100*part/whole)
}

// yesNo is a boolean for a table.
func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// cost is a link or path cost.
func cost(c float64) string {
	return fmt.Sprintf("%.3g", c)
}
