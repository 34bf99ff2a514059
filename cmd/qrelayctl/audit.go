package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/qrelay/qrelay/internal/audit"
	"github.com/qrelay/qrelay/internal/pki"
)

const auditWhat = "Show the node's audit record, oldest first: QKD blocks appended to each link's pads, pad ranges used " +
	"(tx: sent under, rx: received and consumed) and burnt (zeroised unused, with the reason), per link and direction, " +
	"and the key IDs handed to each SAE (role master: enc_keys, slave: dec_keys, stream: a WireGuard tunnel's key stream). " +
	"Positions are byte offsets in a direction's pad, TO exclusive. The table shortens key IDs; --json gives every field, " +
	"which is what audit.CheckLink compares between the two ends of a link."

// auditTimeLayout is how the table shows record times.
const auditTimeLayout = "2006-01-02T15:04:05.000Z07:00"

// runAudit is `qrelayctl audit`.
func runAudit(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("audit", flag.ContinueOnError)
	var nf nodeFlags
	nf.register(fs)
	kinds := make([]string, len(audit.Kinds))
	for i, k := range audit.Kinds {
		kinds[i] = string(k)
	}
	kind := fs.String("kind", "", "only records of this `kind`: "+strings.Join(kinds, ", "))
	peer := fs.String("peer", "", "only records of the link to this `node` (pad records) or of keys shared with it")
	since := fs.String("since", "", "only records from this `time` on: a duration ago (10m, 2h) or an RFC 3339 time")
	limit := fs.Int("limit", audit.DefaultLimit, fmt.Sprintf("show at most this many `records`, 1 to %d", audit.MaxLimit))
	usage := "qrelayctl audit [--kind KIND] [--peer NODE] [--since TIME] [--limit N] [--json] [--node URL] [--cert FILE --key FILE] [--ca FILE]"
	if _, err := parseArgs(fs, args, usage); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			help(stdout, fs, usage, auditWhat)
			return nil
		}
		return err
	}
	q := audit.Query{Limit: *limit}
	var err error
	if q.Kind, err = audit.ParseKind(*kind); err != nil {
		return usageError{"--kind: " + err.Error()}
	}
	if *peer != "" {
		if err := pki.ValidID(*peer); err != nil {
			return usageError{fmt.Sprintf("--peer %q is not a node ID: %v", *peer, err)}
		}
		q.Peer = *peer
	}
	if q.Since, err = parseSince(*since); err != nil {
		return usageError{err.Error()}
	}
	if q.Limit < 1 || q.Limit > audit.MaxLimit {
		return usageError{fmt.Sprintf("--limit %d: want 1 to %d records", q.Limit, audit.MaxLimit)}
	}
	client, err := nf.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, nf.timeout)
	defer cancel()
	rs, err := client.Audit(ctx, q)
	if err != nil {
		return explain(err)
	}
	if nf.json {
		return writeJSON(stdout, rs)
	}
	return showAudit(stdout, rs, q.Limit)
}

// parseSince reads --since: "" is all, a positive duration is that long
// ago, anything else an RFC 3339 time.
func parseSince(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 {
			return time.Time{}, fmt.Errorf("--since %s: want a positive duration (that long ago) or an RFC 3339 time", s)
		}
		return now().Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("--since %q: want a duration ago like 10m or 2h, or an RFC 3339 time like 2026-03-01T12:00:00Z", s)
	}
	return t, nil
}

func showAudit(w io.Writer, rs []audit.Record, limit int) error {
	if len(rs) == 0 {
		_, err := fmt.Fprintln(w, "no audit records")
		return err
	}
	tw := table(w)
	row(tw, "TIME", "KIND", "PEER", "DIR", "SIDE", "FROM", "TO", "SIZE", "DETAIL")
	for _, r := range rs {
		t := r.Time.Local().Format(auditTimeLayout)
		if r.Kind == audit.KindKeys {
			row(tw, t, string(r.Kind), r.Remote, "-", "-", "-", "-", keyCount(len(r.KeyIDs)),
				r.Role+" "+r.SAE+": "+keyIDList(r.KeyIDs))
			continue
		}
		detail := r.Block
		if r.Kind == audit.KindPadBurnt {
			detail = r.Reason
		}
		row(tw, t, string(r.Kind), r.Peer, r.Dir, cmp.Or(r.Side, "-"), strconv.FormatUint(r.From, 10), strconv.FormatUint(r.To, 10),
			bytesIEC(r.To-r.From), cmp.Or(detail, "-"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	ids := 0
	for _, r := range rs {
		ids += len(r.KeyIDs)
	}
	if len(rs) == limit || ids >= audit.MaxKeyIDs {
		last := rs[len(rs)-1].Time.Format(time.RFC3339Nano)
		_, err := fmt.Fprintf(w, "(the first %d records; more may follow: --since %s, or a higher --limit)\n", len(rs), last)
		return err
	}
	return nil
}

func keyCount(n int) string {
	if n == 1 {
		return "1 key"
	}
	return strconv.Itoa(n) + " keys"
}

// keyIDList shows a record's key IDs in a table cell: the first, and the
// last if there are more.
func keyIDList(ids []string) string {
	switch len(ids) {
	case 0:
		return "-"
	case 1:
		return ids[0]
	case 2:
		return ids[0] + ", " + ids[1]
	}
	return fmt.Sprintf("%s … %s", ids[0], ids[len(ids)-1])
}
