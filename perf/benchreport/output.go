package benchreport

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"text/tabwriter"
)

// jsonRow is one object of bench.json. A figure without a baseline has
// baseline "" and null baseline_value and ratio.
type jsonRow struct {
	Name          string   `json:"name"`
	Value         float64  `json:"value"`
	Unit          string   `json:"unit"`
	Baseline      string   `json:"baseline"`
	BaselineValue *float64 `json:"baseline_value"`
	Ratio         *float64 `json:"ratio"`
}

// WriteJSON writes rows as bench.json: a JSON array of objects with the keys
// name, value, unit, baseline, baseline_value and ratio. Numbers are
// rounded to 6 significant digits, far finer than benchmark noise.
// Rounds is not written.
func WriteJSON(w io.Writer, rows []Row) error {
	out := make([]jsonRow, len(rows))
	for i, r := range rows {
		out[i] = jsonRow{Name: r.Name, Value: round6(r.Value), Unit: r.Unit, Baseline: r.Baseline}
		if r.Baseline != "" {
			bv, ratio := round6(r.BaselineValue), round6(r.Ratio)
			out[i].BaselineValue, out[i].Ratio = &bv, &ratio
		}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// ReadJSON reads what WriteJSON wrote, for comparing with an earlier run.
// Rounds is 0 in the rows it returns.
func ReadJSON(r io.Reader) ([]Row, error) {
	var in []jsonRow
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return nil, fmt.Errorf("reading bench JSON: %w", err)
	}
	rows := make([]Row, len(in))
	for i, j := range in {
		rows[i] = Row{Name: j.Name, Value: j.Value, Unit: j.Unit, Baseline: j.Baseline}
		if (j.Baseline == "") != (j.BaselineValue == nil || j.Ratio == nil) {
			return nil, fmt.Errorf("reading bench JSON: figure %q: baseline %q does not match baseline_value and ratio", j.Name, j.Baseline)
		}
		if j.Baseline != "" {
			rows[i].BaselineValue, rows[i].Ratio = *j.BaselineValue, *j.Ratio
		}
	}
	return rows, nil
}

// WriteTable writes rows as an aligned text table for people.
func WriteTable(w io.Writer, rows []Row) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "figure\tvalue\tbaseline\tbaseline value\tratio\trounds")
	for _, r := range rows {
		baseline, baselineValue, ratio := "-", "-", "-"
		if r.Baseline != "" {
			baseline = r.Baseline
			baselineValue = formatNumber(r.BaselineValue) + " " + r.Unit
			ratio = strconv.FormatFloat(r.Ratio, 'f', 2, 64) + "x"
		}
		fmt.Fprintf(tw, "%s\t%s %s\t%s\t%s\t%s\t%d\n",
			r.Name, formatNumber(r.Value), r.Unit, baseline, baselineValue, ratio, r.Rounds)
	}
	return tw.Flush()
}

// formatNumber prints v with about three significant digits.
func formatNumber(v float64) string {
	switch a := math.Abs(v); {
	case a >= 100 || a == 0:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
}

func round6(v float64) float64 {
	r, err := strconv.ParseFloat(strconv.FormatFloat(v, 'g', 6, 64), 64)
	if err != nil {
		return v
	}
	return r
}
