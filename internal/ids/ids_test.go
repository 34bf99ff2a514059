package ids

import (
	"regexp"
	"strings"
	"testing"
)

// rule is the ID rule written independently, as a regular expression.
var rule = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

func TestValid(t *testing.T) {
	for _, tc := range []struct{ id, wantErr string }{
		{"a", ""},
		{"node-1", ""},
		{"A.b_c-9", ""},
		{".", ""},
		{"..", ""},
		{strings.Repeat("z", MaxLen), ""},
		{"", "length 0: want 1 to 64 characters"},
		{strings.Repeat("z", MaxLen+1), "length 65: want 1 to 64 characters"},
		{"a b", "character ' ' at 1: use only A-Z a-z 0-9 . _ -"},
		{"a/b", "character '/' at 1: use only A-Z a-z 0-9 . _ -"},
		{"é", `character 'Ã' at 0: use only A-Z a-z 0-9 . _ -`},
		{"ab\x00", `character '\x00' at 2: use only A-Z a-z 0-9 . _ -`},
		{"x:y", "character ':' at 1"},
	} {
		err := Valid(tc.id)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("Valid(%q) = %v, want nil", tc.id, err)
		case tc.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.wantErr)):
			t.Errorf("Valid(%q) = %v, want %q", tc.id, err, tc.wantErr)
		}
	}
}

func TestChar(t *testing.T) {
	for c := 0; c < 256; c++ {
		want := rule.MatchString(string([]byte{byte(c)}))
		if Char(byte(c)) != want {
			t.Errorf("Char(%#02x) = %v, want %v", c, !want, want)
		}
	}
}

func FuzzValid(f *testing.F) {
	for _, s := range []string{"", "a", "node-A.1_x", "a b", strings.Repeat("q", 65), "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		err := Valid(id)
		if want := rule.MatchString(id); (err == nil) != want {
			t.Fatalf("Valid(%q) = %v, want valid %v", id, err, want)
		}
		i := BadByte(id)
		if j := BadByte([]byte(id)); i != j {
			t.Fatalf("BadByte(%q) = %d as string, %d as bytes", id, i, j)
		}
		if i >= 0 && (Char(id[i]) || BadByte(id[:i]) != -1) {
			t.Fatalf("BadByte(%q) = %d, not the first bad byte", id, i)
		}
		if i < 0 && len(id) >= 1 && len(id) <= MaxLen && err != nil {
			t.Fatalf("Valid(%q) = %v though every byte is allowed", id, err)
		}
	})
}
