package benchreport

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
)

var sampleRows = []Row{
	{Name: "otp.xor.4KiB", Value: 116.25, Unit: "GB/s", Baseline: "crypto/subtle.XORBytes", BaselineValue: 48.5, Ratio: 2.41, Rounds: 5},
	{Name: "otp.xor.key32", Value: 3.21, Unit: "ns", Baseline: "crypto/subtle.XORBytes", BaselineValue: 9.8, Ratio: 3.05, Rounds: 5},
	{Name: "relay.alone", Value: 0.0125, Unit: "ms", Rounds: 5},
}

func TestWriteJSONKeys(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteJSON(&buf, sampleRows); err != nil {
		t.Fatal(err)
	}
	var objs []map[string]any
	if err := json.Unmarshal(buf.Bytes(), &objs); err != nil {
		t.Fatalf("bench.json is not an array of objects: %v\n%s", err, buf.String())
	}
	if len(objs) != len(sampleRows) {
		t.Fatalf("got %d objects, want %d", len(objs), len(sampleRows))
	}
	wantKeys := []string{"baseline", "baseline_value", "name", "ratio", "unit", "value"}
	for i, o := range objs {
		var keys []string
		for k := range o {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if !slices.Equal(keys, wantKeys) {
			t.Errorf("object %d has keys %v, want exactly %v", i, keys, wantKeys)
		}
	}
	withBaseline := map[string]any{"name": "otp.xor.4KiB", "value": 116.25, "unit": "GB/s",
		"baseline": "crypto/subtle.XORBytes", "baseline_value": 48.5, "ratio": 2.41}
	if !reflect.DeepEqual(objs[0], withBaseline) {
		t.Errorf("object 0 = %v, want %v", objs[0], withBaseline)
	}
	noBaseline := map[string]any{"name": "relay.alone", "value": 0.0125, "unit": "ms",
		"baseline": "", "baseline_value": nil, "ratio": nil}
	if !reflect.DeepEqual(objs[2], noBaseline) {
		t.Errorf("object 2 = %v, want %v", objs[2], noBaseline)
	}
}

func TestWriteJSONEmpty(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteJSON(&buf, nil); err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(buf.String()); got != "[]" {
		t.Errorf("WriteJSON(nil) = %s, want []", got)
	}
}

func TestJSONRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteJSON(&buf, sampleRows); err != nil {
		t.Fatal(err)
	}
	got, err := ReadJSON(&buf)
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(sampleRows)
	for i := range want {
		want[i].Rounds = 0 // not in bench.json
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip =\n%+v\nwant\n%+v", got, want)
	}
}

func TestWriteJSONRounds(t *testing.T) {
	var buf bytes.Buffer
	rows := []Row{{Name: "x", Value: 116000 * 1e-3, Unit: "GB/s", Baseline: "b", BaselineValue: 1.0 / 3, Ratio: 348}}
	if err := WriteJSON(&buf, rows); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"value": 116,`, `"baseline_value": 0.333333,`, `"ratio": 348`} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("bench.json lacks %s:\n%s", want, buf.String())
		}
	}
}

func TestReadJSONErrors(t *testing.T) {
	for _, in := range []string{
		`{"name": "x"}`,
		`[{"name": "x", "value": 1, "unit": "u", "baseline": "", "baseline_value": null, "ratio": null, "extra": 1}]`,
		`[{"name": "x", "value": 1, "unit": "u", "baseline": "b", "baseline_value": null, "ratio": null}]`,
		`[{"name": "x", "value": 1, "unit": "u", "baseline": "", "baseline_value": 1, "ratio": 1}]`,
	} {
		if rows, err := ReadJSON(strings.NewReader(in)); err == nil {
			t.Errorf("ReadJSON(%s) = %v, want error", in, rows)
		}
	}
}

func TestWriteTable(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteTable(&buf, sampleRows); err != nil {
		t.Fatal(err)
	}
	want := `figure         value      baseline                baseline value  ratio  rounds
otp.xor.4KiB   116 GB/s   crypto/subtle.XORBytes  48.5 GB/s       2.41x  5
otp.xor.key32  3.21 ns    crypto/subtle.XORBytes  9.80 ns         3.05x  5
relay.alone    0.0125 ms  -                       -               -      5
`
	if buf.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", buf.String(), want)
	}
}
