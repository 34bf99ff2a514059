package wgkey

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestKeyNeverPrinted(t *testing.T) {
	var k Key
	for i := range k {
		k[i] = 0xa5
	}
	u := Update{PSK: k}
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("x", "key", k, "update", u)
	for _, s := range []string{fmt.Sprint(k), fmt.Sprintf("%x %X %+v %#v %s", k, k, u, u, k), logged.String()} {
		if strings.Contains(strings.ToLower(s), "a5a5") || strings.Contains(s, "165") {
			t.Errorf("key bytes printed: %s", s)
		}
	}
}
