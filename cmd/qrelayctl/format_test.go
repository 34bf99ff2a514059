package main

import (
	"testing"
	"time"
)

func TestFormat(t *testing.T) {
	setNow(t, t0)
	cases := []struct{ got, want string }{
		{bytesIEC(0), "0 B"},
		{bytesIEC(1023), "1023 B"},
		{bytesIEC(1536), "1.5 KiB"},
		{bytesIEC(64 << 20), "64 MiB"},
		{bytesIEC(3 << 30), "3.0 GiB"},
		{bitRate(950), "950 bit/s"},
		{bitRate(3.2e6), "3.2 Mbit/s"},
		{bitRate(25e9), "25 Gbit/s"},
		{byteRate(400e3), "3.2 Mbit/s"},
		{duration(850 * time.Microsecond), "1ms"},
		{duration(1540 * time.Millisecond), "1.5s"},
		{duration(192 * time.Second), "3m12s"},
		{duration(5*time.Hour + 3*time.Minute + 20*time.Second), "5h3m"},
		{duration(50*time.Hour + 20*time.Minute), "2d2h"},
		{seconds(3723.5), "1h2m"},
		{percent(300, 4096), "7%"},
		{percent(1, 0), "-"},
		{ago(time.Time{}), "never"},
		{ago(t0.Add(-3 * time.Second)), "3s ago"},
		{ago(t0), "0s ago"},
		{ago(t0.Add(1500 * time.Millisecond)), "in 1.5s"},
		{shorten("xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=", 8), "xTIBA5rb…"},
		{shorten("12345678", 8), "12345678"},
		{shorten("ééééééééé", 8), "éééééééé…"}, // cut at characters, not bytes
		{shorten("", 8), ""},
	}
	for i, c := range cases {
		if c.got != c.want {
			t.Errorf("case %d: got %q, want %q", i, c.got, c.want)
		}
	}
}
