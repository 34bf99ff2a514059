package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary bytes to Parse. It must not panic; an error
// must list at least one problem, each with a message; an accepted config
// must validate again, keep its values through Defaults, and parse back to
// itself from its own YAML (seeds put back into Redacted's output).
//
//	go test -run NONE -fuzz FuzzParse -fuzztime 30s ./config
func FuzzParse(f *testing.F) {
	f.Add(Example())
	f.Add([]byte(base))
	f.Add([]byte(base + link))
	f.Add([]byte(base + link + "routes:\n  - {dst: e, via: b}\npools: {slots: 64, low: 0}\n"))
	f.Add([]byte(""))
	f.Add([]byte("---\n---\n"))
	opts := ParseOptions{SkipFileChecks: true, BaseDir: "/etc/qrelay"}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := opts.Parse(data)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Errors) == 0 {
				t.Fatalf("error %T with no problems listed: %v", err, err)
			}
			for _, fe := range ve.Errors {
				if fe.Msg == "" || fe.Line < 0 {
					t.Fatalf("empty problem: %+v", fe)
				}
			}
			return
		}
		if err := c.Validate(opts); err != nil {
			t.Fatalf("accepted config does not validate again: %v\n%s", err, c)
		}
		text := restoreSeeds(c) // a deep snapshot
		c.Defaults()
		if again := restoreSeeds(c); again != text {
			t.Fatalf("Defaults changed an accepted config:\n%s\nto\n%s", text, again)
		}
		back, err := opts.Parse([]byte(text))
		if err != nil {
			t.Fatalf("own YAML does not parse: %v\n%s", err, strings.ReplaceAll(text, "\n", "\n\t"))
		}
		if !reflect.DeepEqual(public(back), public(c)) {
			t.Fatalf("round trip changed the config:\n%s\nto\n%s", c, back)
		}
	})
}
