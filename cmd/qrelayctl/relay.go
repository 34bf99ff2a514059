package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/qrelay/qrelay/internal/pki"
	"github.com/qrelay/qrelay/node/adminapi"
)

const relayWhat = "Relay fresh end-to-end keys from the node to node <dst> now and report what arrived: a test of the path, or a warm-up of the pools. The keys go into the pools of both ends."

// runRelay is `qrelayctl relay <dst>`.
func runRelay(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("relay", flag.ContinueOnError)
	var nf nodeFlags
	nf.register(fs)
	keys := fs.Int("keys", 2048, "number of keys")
	size := fs.Int("size", 32, "key size in bytes")
	usage := "qrelayctl relay <dst> [--keys N] [--size BYTES] [--node URL] [--cert FILE --key FILE] [--ca FILE]"
	pos, err := parseArgs(fs, args, usage, "<dst>")
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			help(stdout, fs, usage, relayWhat)
			return nil
		}
		return err
	}
	dst := pos[0]
	if err := pki.ValidID(dst); err != nil {
		return usageError{fmt.Sprintf("destination %q is not a node ID: %v", dst, err)}
	}
	if *keys < 1 || *keys > adminapi.MaxRelayKeys {
		return usageError{fmt.Sprintf("--keys %d: want 1 to %d", *keys, adminapi.MaxRelayKeys)}
	}
	if *size < 1 || *size > 8192 {
		return usageError{fmt.Sprintf("--size %d: want 1 to 8192 bytes", *size)}
	}
	client, err := nf.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, nf.timeout)
	defer cancel()
	res, err := client.Relay(ctx, adminapi.RelayRequest{Dst: dst, Keys: *keys, KeySize: *size})
	if err != nil {
		return explain(err)
	}
	if nf.json {
		if err := writeJSON(stdout, res); err != nil {
			return err
		}
	} else {
		d := time.Duration(res.DurationS * float64(time.Second))
		rate := ""
		if res.DurationS > 0 {
			rate = fmt.Sprintf(", %s of keys", byteRate(float64(res.Delivered**size)/res.DurationS))
		}
		fmt.Fprintf(stdout, "%s → %s: %d of %d keys of %d bytes delivered in %v%s\n",
			client.URL(), dst, res.Delivered, res.Keys, *size, d.Round(time.Microsecond), rate)
		// Frames fail alike (a full pool, a dead link): the first few say
		// why; --json has them all.
		const show = 3
		for i, e := range res.Errors {
			if i == show {
				fmt.Fprintf(stdout, "  ... and %d more errors (--json lists them)\n", len(res.Errors)-show)
				break
			}
			fmt.Fprintf(stdout, "  error: %s\n", e)
		}
	}
	if len(res.Errors) > 0 {
		return fmt.Errorf("%d of %d keys not delivered", res.Keys-res.Delivered, res.Keys)
	}
	return nil
}
