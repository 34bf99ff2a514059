package daemon

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qrelay/qrelay/config"
)

// TestMainExitCodes checks what Main returns before a node starts. (The
// node itself runs in cmd/qrelayd's tests, as a separate process.)
func TestMainExitCodes(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("node: {id: a, colour: blue}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "give the config file with -config"},
		{[]string{"-config", bad, "extra"}, 2, "give the config file with -config"},
		{[]string{"-bogus"}, 2, "flag provided but not defined"},
		{[]string{"-version"}, 0, "qrelayd " + Version},
		{[]string{"-config", filepath.Join(dir, "missing.yaml")}, 1, "missing.yaml"},
		{[]string{"-config", bad}, 1, "node.colour"},
		{[]string{"-config", bad, "-check"}, 1, "node.colour"},
	} {
		var stderr bytes.Buffer
		if code := Main(tc.args, &stderr); code != tc.code || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("Main(%q) = %d, stderr %q; want %d and %q", tc.args, code, stderr.String(), tc.code, tc.want)
		}
	}
}

func TestNewLogger(t *testing.T) {
	for _, tc := range []struct {
		log       config.Log
		debug     bool
		info      bool
		jsonStart bool
	}{
		{config.Log{Level: config.LogInfo, Format: config.LogText}, false, true, false},
		{config.Log{Level: config.LogDebug, Format: config.LogJSON}, true, true, true},
		{config.Log{Level: config.LogWarn, Format: config.LogText}, false, false, false},
		{config.Log{Level: config.LogError, Format: config.LogJSON}, false, false, true},
	} {
		var buf bytes.Buffer
		l := newLogger(tc.log, &buf)
		ctx := context.Background()
		if got := l.Enabled(ctx, slog.LevelDebug); got != tc.debug {
			t.Errorf("%+v: debug enabled = %v", tc.log, got)
		}
		if got := l.Enabled(ctx, slog.LevelInfo); got != tc.info {
			t.Errorf("%+v: info enabled = %v", tc.log, got)
		}
		l.Error("x")
		if got := strings.HasPrefix(buf.String(), "{"); got != tc.jsonStart {
			t.Errorf("%+v: output %q", tc.log, buf.String())
		}
	}
}
